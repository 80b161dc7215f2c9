// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// sigmoid = 1 / (1 + exp(-x)); exp(-x) = inf for very negative x gives the right limit, 0.
zk.kernel @sigmoid(%x: tensor<16xf32>) -> (y: tensor<16xf32>) {
  %y = zk.sigmoid %x : tensor<16xf32>
  zk.return %y : tensor<16xf32>
}

// CHECK-LABEL: zk.kernel @sigmoid
// CHECK-NEXT:    %[[ONE:.*]] = zk.constant 1.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[NX:.*]] = zk.neg %x : tensor<16xf32>
// CHECK-NEXT:    %[[E:.*]] = zk.exp %[[NX]] : tensor<16xf32>
// CHECK-NEXT:    %[[DEN:.*]] = zk.add %[[ONE]], %[[E]] : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %y = zk.div %[[ONE]], %[[DEN]] : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    zk.return %y : tensor<16xf32>

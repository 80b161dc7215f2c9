// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// gelu (exact) = 0.5 * x * (1 + erf(x * (1 / sqrt(2)))).
zk.kernel @gelu(%x: tensor<16xf32>) -> (y: tensor<16xf32>) {
  %y = zk.gelu %x : tensor<16xf32>
  zk.return %y : tensor<16xf32>
}

// CHECK-LABEL: zk.kernel @gelu
// CHECK-NEXT:    %[[C:.*]] = zk.constant 0.70710678118654746 : tensor<f32>
// CHECK-NEXT:    %[[XC:.*]] = zk.mul %x, %[[C]] : tensor<16xf32>, tensor<f32> -> tensor<16xf32>
// CHECK-NEXT:    %[[ERF:.*]] = zk.erf %[[XC]] : tensor<16xf32>
// CHECK-NEXT:    %[[HALF:.*]] = zk.constant 5.000000e-01 : tensor<f32>
// CHECK-NEXT:    %[[HX:.*]] = zk.mul %[[HALF]], %x : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[ONE:.*]] = zk.constant 1.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[P:.*]] = zk.add %[[ONE]], %[[ERF]] : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %y = zk.mul %[[HX]], %[[P]] : tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    zk.return %y : tensor<16xf32>

// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// silu = x * sigmoid(x) = x / (1 + exp(-x)); an f16 input is computed in f32.
zk.kernel @silu(%x: tensor<2x16xf16>) -> (y: tensor<2x16xf16>) {
  %y = zk.silu %x : tensor<2x16xf16>
  zk.return %y : tensor<2x16xf16>
}

// CHECK-LABEL: zk.kernel @silu
// CHECK-NEXT:    %[[X:.*]] = zk.cast %x : tensor<2x16xf16> to tensor<2x16xf32>
// CHECK-NEXT:    %[[ONE:.*]] = zk.constant 1.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[NX:.*]] = zk.neg %[[X]] : tensor<2x16xf32>
// CHECK-NEXT:    %[[E:.*]] = zk.exp %[[NX]] : tensor<2x16xf32>
// CHECK-NEXT:    %[[DEN:.*]] = zk.add %[[ONE]], %[[E]] : tensor<f32>, tensor<2x16xf32> -> tensor<2x16xf32>
// CHECK-NEXT:    %[[Q:.*]] = zk.div %[[X]], %[[DEN]] : tensor<2x16xf32>, tensor<2x16xf32> -> tensor<2x16xf32>
// CHECK-NEXT:    %y = zk.cast %[[Q]] : tensor<2x16xf32> to tensor<2x16xf16>
// CHECK-NEXT:    zk.return %y : tensor<2x16xf16>

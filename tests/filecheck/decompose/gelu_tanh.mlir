// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// gelu_tanh = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).
zk.kernel @gelu_tanh(%x: tensor<16xf32>) -> (y: tensor<16xf32>) {
  %y = zk.gelu_tanh %x : tensor<16xf32>
  zk.return %y : tensor<16xf32>
}

// CHECK-LABEL: zk.kernel @gelu_tanh
// CHECK-NEXT:    %[[X2:.*]] = zk.mul %x, %x : tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[X3:.*]] = zk.mul %[[X2]], %x : tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[K:.*]] = zk.constant 4.471500e-02 : tensor<f32>
// CHECK-NEXT:    %[[KX3:.*]] = zk.mul %[[K]], %[[X3]] : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[IN:.*]] = zk.add %x, %[[KX3]] : tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[C:.*]] = zk.constant 0.79788456080286541 : tensor<f32>
// CHECK-NEXT:    %[[ARG:.*]] = zk.mul %[[C]], %[[IN]] : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[T:.*]] = zk.tanh %[[ARG]] : tensor<16xf32>
// CHECK-NEXT:    %[[HALF:.*]] = zk.constant 5.000000e-01 : tensor<f32>
// CHECK-NEXT:    %[[HX:.*]] = zk.mul %[[HALF]], %x : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[ONE:.*]] = zk.constant 1.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[P:.*]] = zk.add %[[ONE]], %[[T]] : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %y = zk.mul %[[HX]], %[[P]] : tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    zk.return %y : tensor<16xf32>

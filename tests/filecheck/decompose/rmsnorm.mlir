// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// rmsnorm = x * rsqrt(mean(x * x) + eps) * scale.
zk.kernel @rmsnorm(%x: tensor<4x8xf32>, %g: tensor<8xf32>) -> (y: tensor<4x8xf32>) {
  %y = zk.rmsnorm %x scale %g axis 1 eps 1.000000e-06 : tensor<4x8xf32>, scale tensor<8xf32>
  zk.return %y : tensor<4x8xf32>
}

// CHECK-LABEL: zk.kernel @rmsnorm
// CHECK-NEXT:    %[[SQ:.*]] = zk.mul %x, %x : tensor<4x8xf32>, tensor<4x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[MS:.*]] = zk.reduce_mean %[[SQ]] axes [1] keepdims : tensor<4x8xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[EPS:.*]] = zk.constant 1.000000e-06 : tensor<f32>
// CHECK-NEXT:    %[[MSE:.*]] = zk.add %[[MS]], %[[EPS]] : tensor<4x1xf32>, tensor<f32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[R:.*]] = zk.rsqrt %[[MSE]] : tensor<4x1xf32>
// CHECK-NEXT:    %[[N:.*]] = zk.mul %x, %[[R]] : tensor<4x8xf32>, tensor<4x1xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %y = zk.mul %[[N]], %g : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    zk.return %y : tensor<4x8xf32>

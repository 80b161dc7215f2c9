// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// log_softmax = (x - m) - log(sum(exp(x - m))), where m is the max along the axis, replaced by 0
// where it is infinite (as the reference evaluator does).
zk.kernel @log_softmax(%x: tensor<4x8xf32>) -> (y: tensor<4x8xf32>) {
  %y = zk.log_softmax %x axis 0 : tensor<4x8xf32>
  zk.return %y : tensor<4x8xf32>
}

// CHECK-LABEL: zk.kernel @log_softmax
// CHECK-NEXT:    %[[M:.*]] = zk.reduce_max %x axes [0] keepdims : tensor<4x8xf32> -> tensor<1x8xf32>
// CHECK-NEXT:    %[[A:.*]] = zk.abs %[[M]] : tensor<1x8xf32>
// CHECK-NEXT:    %[[INF:.*]] = zk.constant inf : tensor<f32>
// CHECK-NEXT:    %[[FIN:.*]] = zk.compare "lt", %[[A]], %[[INF]] : tensor<1x8xf32>, tensor<f32> -> tensor<1x8xi1>
// CHECK-NEXT:    %[[ZERO:.*]] = zk.constant 0.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[SHIFT:.*]] = zk.select %[[FIN]], %[[M]], %[[ZERO]] : tensor<1x8xi1>, tensor<1x8xf32>, tensor<f32> -> tensor<1x8xf32>
// CHECK-NEXT:    %[[D:.*]] = zk.sub %x, %[[SHIFT]] : tensor<4x8xf32>, tensor<1x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[E:.*]] = zk.exp %[[D]] : tensor<4x8xf32>
// CHECK-NEXT:    %[[S:.*]] = zk.reduce_sum %[[E]] axes [0] keepdims : tensor<4x8xf32> -> tensor<1x8xf32>
// CHECK-NEXT:    %[[L:.*]] = zk.log %[[S]] : tensor<1x8xf32>
// CHECK-NEXT:    %y = zk.sub %[[D]], %[[L]] : tensor<4x8xf32>, tensor<1x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    zk.return %y : tensor<4x8xf32>

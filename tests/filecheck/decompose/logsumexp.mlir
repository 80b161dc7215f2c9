// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// Without keepdims the reduced axes are kept while computing (m broadcasts against x) and a
// reshape drops them at the end; bf16 is computed in f32 and rounded once.
zk.kernel @logsumexp(%x: tensor<4x8xbf16>) -> (y: tensor<4xbf16>) {
  %y = zk.logsumexp %x axes [1] : tensor<4x8xbf16> -> tensor<4xbf16>
  zk.return %y : tensor<4xbf16>
}

// CHECK-LABEL: zk.kernel @logsumexp
// CHECK-NEXT:    %[[X:.*]] = zk.cast %x : tensor<4x8xbf16> to tensor<4x8xf32>
// CHECK-NEXT:    %[[M:.*]] = zk.reduce_max %[[X]] axes [1] keepdims : tensor<4x8xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[A:.*]] = zk.abs %[[M]] : tensor<4x1xf32>
// CHECK-NEXT:    %[[INF:.*]] = zk.constant inf : tensor<f32>
// CHECK-NEXT:    %[[FIN:.*]] = zk.compare "lt", %[[A]], %[[INF]] : tensor<4x1xf32>, tensor<f32> -> tensor<4x1xi1>
// CHECK-NEXT:    %[[ZERO:.*]] = zk.constant 0.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[SHIFT:.*]] = zk.select %[[FIN]], %[[M]], %[[ZERO]] : tensor<4x1xi1>, tensor<4x1xf32>, tensor<f32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[D:.*]] = zk.sub %[[X]], %[[SHIFT]] : tensor<4x8xf32>, tensor<4x1xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[E:.*]] = zk.exp %[[D]] : tensor<4x8xf32>
// CHECK-NEXT:    %[[S:.*]] = zk.reduce_sum %[[E]] axes [1] keepdims : tensor<4x8xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[L:.*]] = zk.log %[[S]] : tensor<4x1xf32>
// CHECK-NEXT:    %[[R:.*]] = zk.add %[[L]], %[[SHIFT]] : tensor<4x1xf32>, tensor<4x1xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[FLAT:.*]] = zk.reshape %[[R]] : tensor<4x1xf32> to tensor<4xf32>
// CHECK-NEXT:    %y = zk.cast %[[FLAT]] : tensor<4xf32> to tensor<4xbf16>
// CHECK-NEXT:    zk.return %y : tensor<4xbf16>

// With keepdims over several axes, no reshape.
zk.kernel @logsumexp_keepdims(%x: tensor<2x3x4xf32>) -> (y: tensor<1x3x1xf32>) {
  %y = zk.logsumexp %x axes [0, 2] keepdims : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
  zk.return %y : tensor<1x3x1xf32>
}

// CHECK-LABEL: zk.kernel @logsumexp_keepdims
// CHECK-NEXT:    %[[M:.*]] = zk.reduce_max %x axes [0, 2] keepdims : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
// CHECK:         %[[S:.*]] = zk.reduce_sum %{{.*}} axes [0, 2] keepdims : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
// CHECK-NEXT:    %[[L:.*]] = zk.log %[[S]] : tensor<1x3x1xf32>
// CHECK-NEXT:    %y = zk.add %[[L]], %{{.*}} : tensor<1x3x1xf32>, tensor<1x3x1xf32> -> tensor<1x3x1xf32>
// CHECK-NEXT:    zk.return %y : tensor<1x3x1xf32>

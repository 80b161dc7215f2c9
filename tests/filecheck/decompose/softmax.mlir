// RUN: zhenwu-cc opt %s -p decompose | filecheck %s
// RUN: zhenwu-cc opt %s -p decompose --print-debuginfo | filecheck %s --check-prefix=LOC

// softmax subtracts the row max; the schedule's tile moves to the op that yields the result.
zk.kernel @softmax(%x: tensor<4x8xf32>) -> (y: tensor<4x8xf32>) {
  %y = zk.softmax %x axis 1 {zk.tile = #zk.tile<[2, 8]>} : tensor<4x8xf32> loc("k.zk":3:9)
  zk.return %y : tensor<4x8xf32>
}

// CHECK-LABEL: zk.kernel @softmax
// CHECK-NEXT:    %[[M:.*]] = zk.reduce_max %x axes [1] keepdims : tensor<4x8xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[D:.*]] = zk.sub %x, %[[M]] : tensor<4x8xf32>, tensor<4x1xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[E:.*]] = zk.exp %[[D]] : tensor<4x8xf32>
// CHECK-NEXT:    %[[S:.*]] = zk.reduce_sum %[[E]] axes [1] keepdims : tensor<4x8xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %y = zk.div %[[E]], %[[S]] {zk.tile = #zk.tile<[2, 8]>} : tensor<4x8xf32>, tensor<4x1xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    zk.return %y : tensor<4x8xf32>

// LOC-LABEL: zk.kernel @softmax
// LOC-COUNT-5: loc("k.zk":3:9)
// LOC-NEXT:    zk.return

// A narrow input is widened to f32 once and the result rounded back once.
zk.kernel @softmax_f16(%x: tensor<2x3x8xf16>) -> (y: tensor<2x3x8xf16>) {
  %y = zk.softmax %x axis 1 : tensor<2x3x8xf16>
  zk.return %y : tensor<2x3x8xf16>
}

// CHECK-LABEL: zk.kernel @softmax_f16
// CHECK-NEXT:    %[[X:.*]] = zk.cast %x : tensor<2x3x8xf16> to tensor<2x3x8xf32>
// CHECK-NEXT:    %[[M:.*]] = zk.reduce_max %[[X]] axes [1] keepdims : tensor<2x3x8xf32> -> tensor<2x1x8xf32>
// CHECK-NEXT:    %[[D:.*]] = zk.sub %[[X]], %[[M]] : tensor<2x3x8xf32>, tensor<2x1x8xf32> -> tensor<2x3x8xf32>
// CHECK-NEXT:    %[[E:.*]] = zk.exp %[[D]] : tensor<2x3x8xf32>
// CHECK-NEXT:    %[[S:.*]] = zk.reduce_sum %[[E]] axes [1] keepdims : tensor<2x3x8xf32> -> tensor<2x1x8xf32>
// CHECK-NEXT:    %[[Q:.*]] = zk.div %[[E]], %[[S]] : tensor<2x3x8xf32>, tensor<2x1x8xf32> -> tensor<2x3x8xf32>
// CHECK-NEXT:    %y = zk.cast %[[Q]] : tensor<2x3x8xf32> to tensor<2x3x8xf16>
// CHECK-NEXT:    zk.return %y : tensor<2x3x8xf16>

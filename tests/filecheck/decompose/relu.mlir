// RUN: zhenwu-cc opt %s -p decompose | filecheck %s
// RUN: zhenwu-cc opt %s -p decompose --print-debuginfo | filecheck %s --check-prefix=LOC

// relu = max(x, 0). An FP8 input follows the same rule as every composite: widen to f32,
// compute, round once; the new ops keep the composite's location.
zk.kernel @relu(%x: tensor<8x8xf8E4M3FN>) -> (y: tensor<8x8xf8E4M3FN>) {
  %y = zk.relu %x {zk.tile = #zk.tile<[4, 8]>} : tensor<8x8xf8E4M3FN> loc("relu.zk":2:9)
  zk.return %y : tensor<8x8xf8E4M3FN>
}

// CHECK-LABEL: zk.kernel @relu
// CHECK-NEXT:    %[[X:.*]] = zk.cast %x : tensor<8x8xf8E4M3FN> to tensor<8x8xf32>
// CHECK-NEXT:    %[[ZERO:.*]] = zk.constant 0.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[R:.*]] = zk.max %[[X]], %[[ZERO]] : tensor<8x8xf32>, tensor<f32> -> tensor<8x8xf32>
// CHECK-NEXT:    %y = zk.cast %[[R]] {zk.tile = #zk.tile<[4, 8]>} : tensor<8x8xf32> to tensor<8x8xf8E4M3FN>
// CHECK-NEXT:    zk.return %y : tensor<8x8xf8E4M3FN>

// LOC-LABEL: zk.kernel @relu
// LOC-NEXT:    zk.cast {{.*}} loc("relu.zk":2:9)
// LOC-NEXT:    zk.constant {{.*}} loc("relu.zk":2:9)
// LOC-NEXT:    zk.max {{.*}} loc("relu.zk":2:9)
// LOC-NEXT:    %y = zk.cast {{.*}} loc("relu.zk":2:9)

// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// layernorm = (x - mean) * rsqrt(mean((x - mean)^2) + eps) * scale + bias; an f16 input, scale
// and bias are widened to f32, and the schedule's tile lands on the final cast.
zk.kernel @layernorm(%x: tensor<4x8xf16>, %g: tensor<8xf16>, %b: tensor<8xf16>) -> (y: tensor<4x8xf16>) {
  %y = zk.layernorm %x scale %g bias %b axis 1 eps 1.000000e-05 {zk.tile = #zk.tile<[2, 8]>} : tensor<4x8xf16>, scale tensor<8xf16>, bias tensor<8xf16>
  zk.return %y : tensor<4x8xf16>
}

// CHECK-LABEL: zk.kernel @layernorm
// CHECK-NEXT:    %[[X:.*]] = zk.cast %x : tensor<4x8xf16> to tensor<4x8xf32>
// CHECK-NEXT:    %[[MEAN:.*]] = zk.reduce_mean %[[X]] axes [1] keepdims : tensor<4x8xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[D:.*]] = zk.sub %[[X]], %[[MEAN]] : tensor<4x8xf32>, tensor<4x1xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[SQ:.*]] = zk.mul %[[D]], %[[D]] : tensor<4x8xf32>, tensor<4x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[VAR:.*]] = zk.reduce_mean %[[SQ]] axes [1] keepdims : tensor<4x8xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[EPS:.*]] = zk.constant 1.000000e-05 : tensor<f32>
// CHECK-NEXT:    %[[VE:.*]] = zk.add %[[VAR]], %[[EPS]] : tensor<4x1xf32>, tensor<f32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[R:.*]] = zk.rsqrt %[[VE]] : tensor<4x1xf32>
// CHECK-NEXT:    %[[N:.*]] = zk.mul %[[D]], %[[R]] : tensor<4x8xf32>, tensor<4x1xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[G:.*]] = zk.cast %g : tensor<8xf16> to tensor<8xf32>
// CHECK-NEXT:    %[[NG:.*]] = zk.mul %[[N]], %[[G]] : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[B:.*]] = zk.cast %b : tensor<8xf16> to tensor<8xf32>
// CHECK-NEXT:    %[[NGB:.*]] = zk.add %[[NG]], %[[B]] : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %y = zk.cast %[[NGB]] {zk.tile = #zk.tile<[2, 8]>} : tensor<4x8xf32> to tensor<4x8xf16>
// CHECK-NEXT:    zk.return %y : tensor<4x8xf16>

// Without scale and bias, in f32: no casts, the normalised value is the result.
zk.kernel @layernorm_plain(%x: tensor<4x8xf32>) -> (y: tensor<4x8xf32>) {
  %y = zk.layernorm %x axis 0 eps 1.000000e-03 : tensor<4x8xf32>
  zk.return %y : tensor<4x8xf32>
}

// CHECK-LABEL: zk.kernel @layernorm_plain
// CHECK-NEXT:    %[[MEAN:.*]] = zk.reduce_mean %x axes [0] keepdims : tensor<4x8xf32> -> tensor<1x8xf32>
// CHECK-NEXT:    %[[D:.*]] = zk.sub %x, %[[MEAN]] : tensor<4x8xf32>, tensor<1x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[SQ:.*]] = zk.mul %[[D]], %[[D]] : tensor<4x8xf32>, tensor<4x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %[[VAR:.*]] = zk.reduce_mean %[[SQ]] axes [0] keepdims : tensor<4x8xf32> -> tensor<1x8xf32>
// CHECK-NEXT:    %[[EPS:.*]] = zk.constant 1.000000e-03 : tensor<f32>
// CHECK-NEXT:    %[[VE:.*]] = zk.add %[[VAR]], %[[EPS]] : tensor<1x8xf32>, tensor<f32> -> tensor<1x8xf32>
// CHECK-NEXT:    %[[R:.*]] = zk.rsqrt %[[VE]] : tensor<1x8xf32>
// CHECK-NEXT:    %y = zk.mul %[[D]], %[[R]] : tensor<4x8xf32>, tensor<1x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    zk.return %y : tensor<4x8xf32>

// RUN: %zhenwu opt %s -p cast --split-input-file | filecheck %s

// `scale unit` on a softmax (FlashAttention-3's FP8 probabilities): e = exp(x - max) lies in
// [0, 1], so it is quantised per tensor with the amax fixed at 1 (no reduction), and the matmul
// that reads p as its left operand multiplies the quantised e; its result is divided by the row
// sums afterwards. The `cast` pass expands the composite itself (the `--check` yardstick runs
// `cast` on the undecomposed program). V is quantised too: the matmul takes both dequantised
// values (an FP8 matmul).
builtin.module {
  zk.kernel @k(%s: tensor<64x128xf32>, %v: tensor<128x32xf32> {zk.precision = #zk.precision<f8E4M3FN, tensor>}) -> (o: tensor<64x32xf32>) {
    %p = zk.softmax %s axis 1 {zk.precision = #zk.precision<f8E4M3FN, unit>} : tensor<64x128xf32>
    %o = zk.matmul %p, %v : tensor<64x128xf32>, tensor<128x32xf32> -> tensor<64x32xf32>
    zk.return %o : tensor<64x32xf32>
  }
}

// CHECK:      %[[M:.*]] = zk.reduce_max %s axes [1] keepdims : tensor<64x128xf32> -> tensor<64x1xf32>
// CHECK-NEXT: %[[X:.*]] = zk.sub %s, %[[M]]
// CHECK-NEXT: %[[E:.*]] = zk.exp %[[X]] : tensor<64x128xf32>
// CHECK-NEXT: %[[L:.*]] = zk.reduce_sum %[[E]] axes [1] keepdims : tensor<64x128xf32> -> tensor<64x1xf32>
// CHECK-NEXT: %[[ONE:.*]] = zk.constant 1.000000e+00 : tensor<1x1xf32>
// CHECK-NEXT: %p_q, %p_scale = zk.quantize %[[E]] amax %[[ONE]] as #zk.precision<f8E4M3FN, tensor> : tensor<64x128xf32>, tensor<1x1xf32> -> tensor<64x128xf8E4M3FN>, tensor<1x1xf32>
// CHECK-NEXT: %p_dq = zk.dequantize %p_q scales(%p_scale)
// CHECK-NEXT: %[[PV:.*]] = zk.matmul %p_dq, %v_dq : tensor<64x128xf32>, tensor<128x32xf32> -> tensor<64x32xf32>
// CHECK-NEXT: %[[O:.*]] = zk.div %[[PV]], %[[L]] : tensor<64x32xf32>, tensor<64x1xf32> -> tensor<64x32xf32>
// CHECK-NEXT: zk.return %[[O]]

// -----

// Other uses of p see dequantize(e) / sum(e): the same values, normalised before they are read.
// A bf16 softmax is computed in f32 and cast back, like its normalised value.
builtin.module {
  zk.kernel @k(%s: tensor<64x128xbf16>) -> (p2: tensor<64x128xbf16>) {
    %p = zk.softmax %s axis 1 {zk.precision = #zk.precision<f8E4M3FN, unit>} : tensor<64x128xbf16>
    %p2 = zk.mul %p, %p : tensor<64x128xbf16>, tensor<64x128xbf16> -> tensor<64x128xbf16>
    zk.return %p2 : tensor<64x128xbf16>
  }
}

// CHECK:      %[[L:.*]] = zk.reduce_sum
// CHECK:      %p_q, %p_scale = zk.quantize %{{.*}} amax %{{.*}} as #zk.precision<f8E4M3FN, tensor>
// CHECK-NEXT: %p_dq = zk.dequantize %p_q scales(%p_scale)
// CHECK-NEXT: %[[N:.*]] = zk.div %p_dq, %[[L]] : tensor<64x128xf32>, tensor<64x1xf32> -> tensor<64x128xf32>
// CHECK-NEXT: %p = zk.cast %[[N]] : tensor<64x128xf32> to tensor<64x128xbf16>
// CHECK-NEXT: %p2 = zk.mul %p, %p

// RUN: %zhenwu opt %s -p cast --split-input-file | filecheck %s

// A binding is quantised where it is produced. A per-tensor scale needs the amax of the whole
// tensor, reduced first (keepdims: one entry per scale); uses see the dequantised value in the
// binding's own dtype (f32 here: no cast back).
builtin.module {
  zk.kernel @k(%x: tensor<64x128xf32>, %w: tensor<128x32xf32>) -> (y: tensor<64x32xf32>) {
    %h = zk.exp %x {zk.precision = #zk.precision<f8E4M3FN, tensor>} : tensor<64x128xf32>
    %y = zk.matmul %h, %w : tensor<64x128xf32>, tensor<128x32xf32> -> tensor<64x32xf32>
    zk.return %y : tensor<64x32xf32>
  }
}

// CHECK:      %h = zk.exp %x : tensor<64x128xf32>
// CHECK-NEXT: %[[A:.*]] = zk.abs %h : tensor<64x128xf32>
// CHECK-NEXT: %[[M:.*]] = zk.reduce_max %[[A]] axes [0, 1] keepdims : tensor<64x128xf32> -> tensor<1x1xf32>
// CHECK-NEXT: %h_q, %h_scale = zk.quantize %h amax %[[M]] as #zk.precision<f8E4M3FN, tensor> : tensor<64x128xf32>, tensor<1x1xf32> -> tensor<64x128xf8E4M3FN>, tensor<1x1xf32>
// CHECK-NEXT: %h_dq = zk.dequantize %h_q scales(%h_scale) : tensor<64x128xf8E4M3FN>, tensor<1x1xf32> -> tensor<64x128xf32>
// One operand quantised: the matmul reads the dequantised value like any other use.
// CHECK-NEXT: %y = zk.matmul %h_dq, %w : tensor<64x128xf32>, tensor<128x32xf32> -> tensor<64x32xf32>

// -----

// Per channel: the amax over the other axes. NVFP4: the amax of the finite values, for the
// tensor scale. Block scales need no amax: each block lies in one tile.
builtin.module {
  zk.kernel @k(%x: tensor<64x128xbf16>, %w: tensor<128x32xbf16>) -> (y: tensor<64x128xbf16>, z: tensor<64x32xf32>) {
    %a = zk.exp %x {zk.precision = #zk.precision<f8E5M2, channel [0]>} : tensor<64x128xbf16>
    %b = zk.neg %x {zk.precision = #zk.precision<f4E2M1FN, nvfp4>} : tensor<64x128xbf16>
    %c = zk.add %a, %a {zk.precision = #zk.precision<f8E4M3FN, block [1, 32]>} : tensor<64x128xbf16>, tensor<64x128xbf16> -> tensor<64x128xbf16>
    %z = zk.matmul %b, %w : tensor<64x128xbf16>, tensor<128x32xbf16> -> tensor<64x32xf32>
    zk.return %c, %z : tensor<64x128xbf16>, tensor<64x32xf32>
  }
}

// CHECK:      %[[AA:.*]] = zk.abs %a : tensor<64x128xbf16>
// CHECK-NEXT: %[[AM:.*]] = zk.reduce_max %[[AA]] axes [1] keepdims : tensor<64x128xbf16> -> tensor<64x1xbf16>
// CHECK-NEXT: %a_q, %a_scale = zk.quantize %a amax %[[AM]] as #zk.precision<f8E5M2, channel [0]> : tensor<64x128xbf16>, tensor<64x1xbf16> -> tensor<64x128xf8E5M2>, tensor<64x1xf32>
// CHECK-NEXT: %a_dq = zk.dequantize %a_q scales(%a_scale)
// CHECK-NEXT: %[[A16:.*]] = zk.cast %a_dq : tensor<64x128xf32> to tensor<64x128xbf16>
// CHECK:      %[[BA:.*]] = zk.abs %b
// CHECK-NEXT: %[[INF:.*]] = zk.constant inf : tensor<bf16>
// CHECK-NEXT: %[[ZERO:.*]] = zk.constant 0.000000e+00 : tensor<bf16>
// CHECK-NEXT: %[[FIN:.*]] = zk.compare "lt", %[[BA]], %[[INF]]
// CHECK-NEXT: %[[SEL:.*]] = zk.select %[[FIN]], %[[BA]], %[[ZERO]]
// CHECK-NEXT: %[[BM:.*]] = zk.reduce_max %[[SEL]] axes [0, 1] keepdims : tensor<64x128xbf16> -> tensor<1x1xbf16>
// CHECK-NEXT: %b_q, %b_scale, %b_tensor_scale = zk.quantize %b amax %[[BM]] as #zk.precision<f4E2M1FN, nvfp4> axis 1 : tensor<64x128xbf16>, tensor<1x1xbf16> -> tensor<64x128xf4E2M1FN>, tensor<64x8xf8E4M3FN>, tensor<1x1xf32>
// CHECK:      %c = zk.add %[[A16]], %[[A16]]
// CHECK-NEXT: %c_q, %c_scale = zk.quantize %c as #zk.precision<f8E4M3FN, block [1, 32]> : tensor<64x128xbf16> -> tensor<64x128xf8E4M3FN>, tensor<64x4xf32>
// CHECK:      zk.return

// -----

// f16/bf16 are plain down-casts, there and back. A matmul of two down-cast operands multiplies
// the narrow values (the products are exact in f32 either way).
builtin.module {
  zk.kernel @k(%x: tensor<16x32xf32> {zk.precision = #zk.precision<bf16>}, %w: tensor<32x8xf32>) -> (y: tensor<16x8xf32>) {
    %v = zk.exp %w {zk.precision = #zk.precision<bf16>} : tensor<32x8xf32>
    %y = zk.matmul %x, %v : tensor<16x32xf32>, tensor<32x8xf32> -> tensor<16x8xf32>
    zk.return %y : tensor<16x8xf32>
  }
}

// CHECK:      zk.kernel @k(%x: tensor<16x32xbf16> {zk.quantized_from = {param = "x", part = 0 : i64, precision = #zk.precision<bf16>}}, %w: tensor<32x8xf32>)
// CHECK-NEXT:   %v = zk.exp %w : tensor<32x8xf32>
// CHECK-NEXT:   %[[V16:.*]] = zk.cast %v : tensor<32x8xf32> to tensor<32x8xbf16>
// CHECK-NEXT:   %y = zk.matmul %x, %[[V16]] : tensor<16x32xbf16>, tensor<32x8xbf16> -> tensor<16x8xf32>
// CHECK-NEXT:   zk.return %y

// RUN: %zhenwu opt %s -p cast --split-input-file --verify-diagnostics | filecheck %s

// fp8_fast emulates FP8 tensor cores: a kernel without an FP8/FP4 matmul is an error.
builtin.module {
  zk.kernel @k(%x: tensor<16x32xf32> {zk.precision = #zk.precision<bf16>}, %w: tensor<32x8xbf16>) -> (y: tensor<16x8xf32>) attributes {zk.accumulate = f32, zk.accumulate_mode = "fp8_fast"} {
    %xb = zk.cast %x : tensor<16x32xf32> to tensor<16x32xbf16>
    %y = zk.matmul %xb, %w : tensor<16x32xbf16>, tensor<32x8xbf16> -> tensor<16x8xf32>
    zk.return %y : tensor<16x8xf32>
  }
}
// CHECK: error[ZK0802]: `accumulate f32 fp8_fast` emulates FP8 tensor-core accumulation, but no matmul of kernel `k` has FP8 or FP4 operands

// -----

// Scales have the values' rank, one entry per block: MX along axis 1 of 64x256 is 64x8.
builtin.module {
  zk.kernel @k(%x: tensor<64x256xf32>) -> (y: tensor<64x256xf8E4M3FN>) {
    %q, %s = zk.quantize %x as #zk.precision<f8E4M3FN, mx> axis 1 : tensor<64x256xf32> -> tensor<64x256xf8E4M3FN>, tensor<64x16xf8E8M0FNU>
    zk.return %q : tensor<64x256xf8E4M3FN>
  }
}
// CHECK: error[ZK1002]: `zk.quantize`: mx scales of [64, 256] have the shape [64, 8], not [64, 16]

// -----

// Per-tensor scales are f32, and only NVFP4 has a tensor scale.
builtin.module {
  zk.kernel @k(%x: tensor<64x256xf32>) -> (y: tensor<64x256xf8E4M3FN>) {
    %q, %s = zk.quantize %x as #zk.precision<f8E4M3FN, tensor> : tensor<64x256xf32> -> tensor<64x256xf8E4M3FN>, tensor<1x1xf8E8M0FNU>
    zk.return %q : tensor<64x256xf8E4M3FN>
  }
}
// CHECK: error[ZK1002]: `zk.quantize`: tensor scales are f32

// -----

// MX and NVFP4 block along an axis; other modes take none.
builtin.module {
  zk.kernel @k(%x: tensor<64x256xf32>) -> (y: tensor<64x256xf4E2M1FN>) {
    %q, %s, %t = zk.quantize %x as #zk.precision<f4E2M1FN, nvfp4> : tensor<64x256xf32> -> tensor<64x256xf4E2M1FN>, tensor<64x16xf8E4M3FN>, tensor<1x1xf32>
    zk.return %q : tensor<64x256xf4E2M1FN>
  }
}
// CHECK: error[ZK1002]: `zk.quantize`: scale mode nvfp4 needs `axis`

// -----

// A dequantise's scales must block its values: no block size gives 5 scales for 8 elements.
builtin.module {
  zk.kernel @k(%q: tensor<4x8xf8E4M3FN>, %s: tensor<4x5xf32>) -> (y: tensor<4x8xf32>) {
    %y = zk.dequantize %q scales(%s) : tensor<4x8xf8E4M3FN>, tensor<4x5xf32> -> tensor<4x8xf32>
    zk.return %y : tensor<4x8xf32>
  }
}
// CHECK: error[ZK1002]: `zk.dequantize`: scales of shape [4, 5] do not block values of shape [4, 8]

// -----

// `scale unit` bounds a softmax's unnormalised probabilities by 1: any other value is refused.
builtin.module {
  zk.kernel @k(%x: tensor<64x128xf32>) -> (y: tensor<64x128xf32>) {
    %y = zk.exp %x {zk.precision = #zk.precision<f8E4M3FN, unit>} : tensor<64x128xf32>
    zk.return %y : tensor<64x128xf32>
  }
}
// CHECK: error[ZK0619]: scale mode `unit` quantises a softmax's unnormalised probabilities, but `y` is not the result of a softmax

// RUN: %zhenwu opt %s -p cast | filecheck %s

// A parameter with a precision directive is stored quantised: the kernel takes its values and
// scales (each saying how the host makes it), the body dequantises them to f32, and a matmul of
// two quantised operands takes the f32 dequantised values directly (transposes rebuilt on them):
// that is what the tile pass fuses into a scaled tile.mma.
builtin.module {
  zk.kernel @g(%x: tensor<64x256xbf16> {zk.precision = #zk.precision<f8E4M3FN, mx rceil>}, %w: tensor<48x256xbf16> {zk.precision = #zk.precision<f4E2M1FN, nvfp4>, zk.place = #zk.place<hbm, stacks [0]>}) -> (y: tensor<64x48xf32>) {
    %t = zk.transpose %w perm [1, 0] : tensor<48x256xbf16> -> tensor<256x48xbf16>
    %y = zk.matmul %x, %t : tensor<64x256xbf16>, tensor<256x48xbf16> -> tensor<64x48xf32>
    zk.return %y : tensor<64x48xf32>
  }
}

// CHECK:      zk.kernel @g(
// CHECK-SAME:   %x: tensor<64x256xf8E4M3FN> {zk.quantized_from = {param = "x", part = 0 : i64, precision = #zk.precision<f8E4M3FN, mx rceil>, axis = 1 : i64}},
// CHECK-SAME:   %x_scale: tensor<64x8xf8E8M0FNU> {zk.quantized_from = {param = "x", part = 1 : i64, precision = #zk.precision<f8E4M3FN, mx rceil>, axis = 1 : i64}},
// CHECK-SAME:   %w: tensor<48x256xf4E2M1FN> {zk.place = #zk.place<hbm, stacks [0]>, zk.quantized_from = {param = "w", part = 0 : i64, precision = #zk.precision<f4E2M1FN, nvfp4>, axis = 1 : i64}},
// CHECK-SAME:   %w_scale: tensor<48x16xf8E4M3FN> {zk.quantized_from = {param = "w", part = 1 : i64,
// CHECK-SAME:   %w_tensor_scale: tensor<1x1xf32> {zk.quantized_from = {param = "w", part = 2 : i64,
// CHECK-SAME: -> (y: tensor<64x48xf32>) {
// CHECK-NEXT:   %x_dq = zk.dequantize %x scales(%x_scale) : tensor<64x256xf8E4M3FN>, tensor<64x8xf8E8M0FNU> -> tensor<64x256xf32>
// CHECK-NEXT:   %w_dq = zk.dequantize %w scales(%w_scale, %w_tensor_scale) : tensor<48x256xf4E2M1FN>, tensor<48x16xf8E4M3FN>, tensor<1x1xf32> -> tensor<48x256xf32>
// CHECK-NEXT:   %[[T:.*]] = zk.transpose %w_dq perm [1, 0] : tensor<48x256xf32> -> tensor<256x48xf32>
// CHECK-NEXT:   %y = zk.matmul %x_dq, %[[T]] : tensor<64x256xf32>, tensor<256x48xf32> -> tensor<64x48xf32>
// CHECK-NEXT:   zk.return %y : tensor<64x48xf32>

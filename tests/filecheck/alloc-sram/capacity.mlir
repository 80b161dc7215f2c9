// RUN: %zhenwu opt %s -p 'alloc-sram{sram-bytes=8192}' --split-input-file --verify-diagnostics | filecheck %s

// The GEMM grid needs 12288 bytes per compute unit; 8192 are not enough. The error points at
// the grid and lists every buffer; with multi-buffered loads, `buffers 1` is suggested too.
zk.kernel @gemm(%a: tensor<100x64xf16>, %b: tensor<64x48xf16>, %bias: tensor<48xf32>) -> (c: tensor<100x48xf32>) {
  %e = tile.empty : tensor<100x48xf32>
  %c = tile.grid [4, 2] (%i, %j) ins(%ta = %a : tensor<100x64xf16>, %tb = %b : tensor<64x48xf16>, %tbias = %bias : tensor<48xf32>) outs(%tc = %e : tensor<100x48xf32>) role matmul {
    %zero = zk.constant 0.0 : tensor<32x32xf32> loc("gemm.zk":6:9)
    %acc = tile.loop %k = 0 to 2 iter(%acc_in = %zero : tensor<32x32xf32>) -> (tensor<32x32xf32>) {
      %x = tile.load %ta[%i, %k] tile [32, 32] : tensor<100x64xf16> -> tensor<32x32xf16> loc("gemm.zk":6:9)
      %y = tile.load %tb[%k, %j] tile [32, 32] : tensor<64x48xf16> -> tensor<32x32xf16> loc("gemm.zk":6:13)
      %r = tile.mma %x, %y, %acc_in : tensor<32x32xf16>, tensor<32x32xf16> -> tensor<32x32xf32>
      tile.yield %r : tensor<32x32xf32>
    }
    %bt = tile.load %tbias[%j] tile [32] : tensor<48xf32> -> tensor<32xf32> loc("gemm.zk":6:17)
    %o = zk.add %acc, %bt : tensor<32x32xf32>, tensor<32xf32> -> tensor<32x32xf32>
    tile.store %o, %tc[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<100x48xf32>
    tile.yield
  } loc("gemm.zk":6:5)
  zk.return %c : tensor<100x48xf32>
}

// CHECK:      6:5: error[ZK0601]: the on-chip buffers of this matmul grid need 12288 bytes of SRAM per compute unit, more than the 8192 of the `sram-bytes` option
// CHECK-NEXT: note: `zk.constant` 32x32xf32: 4096 bytes at offset 0
// CHECK-NEXT: note: `tile.load` 32x32xf16: 2048 bytes x 2 slots at offset 4096
// CHECK-NEXT: note: `tile.load` 32xf32: 128 bytes at offset 4096
// CHECK-NEXT: note: `tile.load` 32x32xf16: 2048 bytes x 2 slots at offset 8192

// -----

// One buffer alone is too big: no multi-buffering to blame.
zk.kernel @copy(%x: tensor<256x256xf32>) -> (y: tensor<256x256xf32>) {
  %e = tile.empty : tensor<256x256xf32>
  %y = tile.grid [1, 1] (%i, %j) ins(%tx = %x : tensor<256x256xf32>) outs(%ty = %e : tensor<256x256xf32>) role copy {
    %t = tile.load %tx[%i, %j] tile [256, 256] : tensor<256x256xf32> -> tensor<256x256xf32>
    tile.store %t, %ty[%i, %j] tile [256, 256] : tensor<256x256xf32>, tensor<256x256xf32>
    tile.yield
  } loc("copy.zk":3:9)
  zk.return %y : tensor<256x256xf32>
}

// CHECK:      3:9: error[ZK0601]: the on-chip buffers of this copy grid need 262144 bytes of SRAM per compute unit, more than the 8192 of the `sram-bytes` option
// CHECK-NEXT: note: `tile.load` 256x256xf32: 262144 bytes at offset 0
// CHECK-NOT:  note:

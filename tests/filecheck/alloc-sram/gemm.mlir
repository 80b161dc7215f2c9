// RUN: %zhenwu opt %s -p 'alloc-sram{sram-bytes=262144}' | filecheck %s

// GEMM with bias (100x64 @ 64x48, 32x32x32 tiles): the accumulator is updated in place from the
// constant through the loop to the epilogue; the double-buffered A and B tiles live for the
// whole loop; the bias tile reuses the bytes of the A slots, dead after the loop.
zk.kernel @gemm(%a: tensor<100x64xf16>, %b: tensor<64x48xf16>, %bias: tensor<48xf32>) -> (c: tensor<100x48xf32>) {
  %e = tile.empty : tensor<100x48xf32>
  %c = tile.grid [4, 2] (%i, %j) ins(%ta = %a : tensor<100x64xf16>, %tb = %b : tensor<64x48xf16>, %tbias = %bias : tensor<48xf32>) outs(%tc = %e : tensor<100x48xf32>) role matmul {
    %zero = zk.constant 0.0 : tensor<32x32xf32>
    %acc = tile.loop %k = 0 to 2 iter(%acc_in = %zero : tensor<32x32xf32>) -> (tensor<32x32xf32>) {
      %x = tile.load %ta[%i, %k] tile [32, 32] : tensor<100x64xf16> -> tensor<32x32xf16>
      %y = tile.load %tb[%k, %j] tile [32, 32] : tensor<64x48xf16> -> tensor<32x32xf16>
      %r = tile.mma %x, %y, %acc_in : tensor<32x32xf16>, tensor<32x32xf16> -> tensor<32x32xf32>
      tile.yield %r : tensor<32x32xf32>
    }
    %bt = tile.load %tbias[%j] tile [32] pad 1.5 : tensor<48xf32> -> tensor<32xf32>
    %o = zk.add %acc, %bt : tensor<32x32xf32>, tensor<32xf32> -> tensor<32x32xf32>
    tile.store %o, %tc[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<100x48xf32>
    tile.yield
  }
  zk.return %c : tensor<100x48xf32>
}

// CHECK:      %e = tile.empty : tensor<100x48xf32>
// CHECK-NEXT: tile.grid [4, 2] {{.*}} role matmul attributes {sram.peak = 12288 : i64} {
// CHECK-NEXT:   %zero = zk.constant 0.000000e+00 {sram.buffer = 0 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:   %acc = tile.loop {{.*}} attributes {sram.buffer = array<i64: 0>, sram.offset = array<i64: 0>, sram.depth = array<i64: 1>} {
// CHECK-NEXT:     %x = tile.load {{.*}} {sram.buffer = 1 : i64, sram.offset = 4096 : i64, sram.depth = 2 : i64}
// CHECK-NEXT:     %y = tile.load {{.*}} {sram.buffer = 2 : i64, sram.offset = 8192 : i64, sram.depth = 2 : i64}
// CHECK-NEXT:     %r = tile.mma {{.*}} {sram.buffer = 0 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:     tile.yield %r
// CHECK-NEXT:   }
// CHECK-NEXT:   %bt = tile.load {{.*}} {sram.buffer = 3 : i64, sram.offset = 4096 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:   %o = zk.add %acc, %bt {sram.buffer = 0 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:   tile.store %o, %tc[%i, %j] tile [32, 32] :
// CHECK-NEXT:   tile.yield
// CHECK-NEXT: }
// CHECK-NEXT: zk.return %c

// RUN: %zhenwu opt %s -p 'alloc-sram{sram-bytes=262144}' | filecheck %s

// Elementwise ops overwrite an operand of their own type that they read last (mul, exp); a
// cast changes the dtype, so it never does; the rank-0 constant and the f16 result reuse the
// bytes of the dead input tile.
zk.kernel @scale(%x: tensor<50x40xf16>) -> (y: tensor<50x40xf16>) {
  %e = tile.empty : tensor<50x40xf16>
  %y = tile.grid [2, 2] (%i, %j) ins(%tx = %x : tensor<50x40xf16>) outs(%ty = %e : tensor<50x40xf16>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [32, 32] : tensor<50x40xf16> -> tensor<32x32xf16>
    %w = zk.cast %t : tensor<32x32xf16> to tensor<32x32xf32>
    %half = zk.constant 0.5 : tensor<f32>
    %m = zk.mul %w, %half : tensor<32x32xf32>, tensor<f32> -> tensor<32x32xf32>
    %x2 = zk.exp %m : tensor<32x32xf32>
    %o = zk.cast %x2 : tensor<32x32xf32> to tensor<32x32xf16>
    tile.store %o, %ty[%i, %j] tile [32, 32] : tensor<32x32xf16>, tensor<50x40xf16>
    tile.yield
  }
  zk.return %y : tensor<50x40xf16>
}

// CHECK:      role elementwise attributes {sram.peak = 6144 : i64}
// CHECK-NEXT:   %t = tile.load {{.*}} {sram.buffer = 0 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:   %w = zk.cast %t {sram.buffer = 1 : i64, sram.offset = 2048 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:   %half = zk.constant {{.*}} {sram.buffer = 2 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64} : tensor<f32>
// CHECK-NEXT:   %m = zk.mul %w, %half {sram.buffer = 1 : i64, sram.offset = 2048 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:   %x2 = zk.exp %m {sram.buffer = 1 : i64, sram.offset = 2048 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:   %o = zk.cast %x2 {sram.buffer = 3 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64}

// RUN: %zhenwu opt %s -p 'alloc-sram{sram-bytes=262144}' | filecheck %s

// A row maximum, three buffers deep (`buffers 3`): the max accumulator (init, iter arg, the
// elementwise max and the loop result) is one buffer, the row tiles have three slots, and the
// reshape before the store views the accumulator. Offsets are 128-byte aligned.
zk.kernel @rowmax(%x: tensor<64x100xf32>) -> (m: tensor<64xf32>) attributes {zk.buffers = 3 : i64} {
  %e = tile.empty : tensor<64xf32>
  %m = tile.grid [4] (%i) ins(%tx = %x : tensor<64x100xf32>) outs(%tm = %e : tensor<64xf32>) role reduction {
    %init = zk.constant -3.0e+38 : tensor<16x1xf32>
    %acc = tile.loop %k = 0 to 4 iter(%a = %init : tensor<16x1xf32>) -> (tensor<16x1xf32>) {
      %t = tile.load %tx[%i, %k] tile [16, 32] pad -3.0e+38 : tensor<64x100xf32> -> tensor<16x32xf32>
      %r = zk.reduce_max %t axes [1] keepdims : tensor<16x32xf32> -> tensor<16x1xf32>
      %n = zk.max %a, %r : tensor<16x1xf32>, tensor<16x1xf32> -> tensor<16x1xf32>
      tile.yield %n : tensor<16x1xf32>
    }
    %flat = zk.reshape %acc : tensor<16x1xf32> to tensor<16xf32>
    tile.store %flat, %tm[%i] tile [16] : tensor<16xf32>, tensor<64xf32>
    tile.yield
  }
  zk.return %m : tensor<64xf32>
}

// CHECK:      role reduction attributes {sram.peak = 6336 : i64}
// CHECK-NEXT:   %init = zk.constant {{.*}} {sram.buffer = 0 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:   %acc = tile.loop {{.*}} attributes {sram.buffer = array<i64: 0>, sram.offset = array<i64: 0>, sram.depth = array<i64: 1>}
// CHECK-NEXT:     %t = tile.load {{.*}} {sram.buffer = 1 : i64, sram.offset = 128 : i64, sram.depth = 3 : i64}
// CHECK-NEXT:     %r = zk.reduce_max {{.*}} {sram.buffer = 2 : i64, sram.offset = 6272 : i64, sram.depth = 1 : i64}
// CHECK-NEXT:     %n = zk.max %a, %r {sram.buffer = 0 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64}
// CHECK:        %flat = zk.reshape %acc {sram.buffer = 0 : i64, sram.offset = 0 : i64, sram.depth = 1 : i64}

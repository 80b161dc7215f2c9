// RUN: %zhenwu opt %s -p 'alloc-sram{sram-bytes=262144},lower-ppu{cus=8}' --split-input-file | filecheck %s

// A row maximum: the accumulator is filled before the loop, updated in place by the vector
// engine, and viewed without its kept dim for the store.
zk.kernel @rowmax(%x: tensor<64x100xf32>) -> (m: tensor<64xf32>) {
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

// CHECK-LABEL: ppu.kernel @rowmax
// CHECK:         ppu.launch [4] (%i) cus 8 role reduction {
// CHECK-NEXT:      %init = ppu.alloc offset 0 depth 1 : memref<16x1xf32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.fill -3.000000e+38 -> %init
// CHECK-NEXT:      %t = ppu.alloc offset 128 depth 2 : memref<2x16x32xf32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.loop %k = 0 to 4 {
// CHECK-NEXT:        %[[S:.*]] = ppu.slot %t[%k]
// CHECK-NEXT:        %[[T0:.*]] = ppu.dma_load %x[%i, %k] tile [16, 32] pad -3.000000e+38 -> %[[S]]
// CHECK-NEXT:        ppu.wait %[[T0]]
// CHECK-NEXT:        %r = ppu.alloc offset 4224 depth 1 : memref<16x1xf32, #ppu.space<sram>>
// CHECK-NEXT:        ppu.vreduce "max" %[[S]] axes [1] -> %r
// CHECK-NEXT:        ppu.vmap "max"(%init, %r) -> %init
// CHECK-NEXT:        ppu.yield
// CHECK-NEXT:      }
// CHECK-NEXT:      %[[V:.*]] = ppu.view %init : memref<16x1xf32, #ppu.space<sram>> -> memref<16xf32, #ppu.space<sram>>
// CHECK-NEXT:      %[[T1:.*]] = ppu.dma_store %[[V]] -> %m[%i] tile [16]
// CHECK-NEXT:      ppu.wait %[[T1]]
// CHECK-NEXT:      ppu.yield

// -----

// The init is read again after the loop and the yielded value is computed while the
// accumulator is still read: the carried buffer is initialised by a copy, and the yielded value
// copied into it at the end of each step.
zk.kernel @carry(%x: tensor<32x64xf32>) -> (y: tensor<32x96xf32>) {
  %e = tile.empty : tensor<32x96xf32>
  %y = tile.grid [1] (%i) ins(%tx = %x : tensor<32x64xf32>) outs(%ty = %e : tensor<32x96xf32>) role elementwise {
    %c2 = arith.constant 2 : index
    %s = tile.load %tx[%i, %i] tile [32, 32] : tensor<32x64xf32> -> tensor<32x32xf32>
    %acc = tile.loop %k = 0 to 2 iter(%a = %s : tensor<32x32xf32>) -> (tensor<32x32xf32>) {
      %t = tile.load %tx[%i, %k] tile [32, 32] : tensor<32x64xf32> -> tensor<32x32xf32>
      %q = zk.add %a, %t : tensor<32x32xf32>, tensor<32x32xf32> -> tensor<32x32xf32>
      %p = zk.transpose %q perm [1, 0] : tensor<32x32xf32> -> tensor<32x32xf32>
      %z = zk.mul %a, %p : tensor<32x32xf32>, tensor<32x32xf32> -> tensor<32x32xf32>
      tile.store %z, %ty[%i, %k] tile [32, 32] : tensor<32x32xf32>, tensor<32x96xf32>
      tile.yield %p : tensor<32x32xf32>
    }
    %o = zk.add %acc, %s : tensor<32x32xf32>, tensor<32x32xf32> -> tensor<32x32xf32>
    tile.store %o, %ty[%i, %c2] tile [32, 32] : tensor<32x32xf32>, tensor<32x96xf32>
    tile.yield
  }
  zk.return %y : tensor<32x96xf32>
}

// CHECK-LABEL: ppu.kernel @carry
// CHECK:           %acc = ppu.alloc offset 4096 depth 1
// CHECK-NEXT:      %t = ppu.alloc offset 8192 depth 2
// CHECK-NEXT:      ppu.vmap "copy"(%s) -> %acc
// CHECK-NEXT:      ppu.loop %k = 0 to 2 {
// CHECK:             ppu.vtranspose %q perm [1, 0] -> %p
// CHECK-NEXT:        ppu.vmap "mul"(%acc, %p) -> %acc
// CHECK-NEXT:        %[[T:.*]] = ppu.dma_store %acc -> %y[%i, %k] tile [32, 32]
// CHECK-NEXT:        ppu.wait %[[T]]
// CHECK-NEXT:        ppu.vmap "copy"(%p) -> %acc
// CHECK-NEXT:        ppu.yield
// CHECK-NEXT:      }
// CHECK-NEXT:      ppu.vmap "add"(%acc, %s) -> %acc

// -----

// An iter arg yielded for the other accumulator (a swap) is copied first, so that neither
// accumulator is overwritten before the other has taken its value.
zk.kernel @swap(%x: tensor<16x16xf32>) -> (y: tensor<16x16xf32>) {
  %e = tile.empty : tensor<16x16xf32>
  %y = tile.grid [1] (%i) ins(%tx = %x : tensor<16x16xf32>) outs(%ty = %e : tensor<16x16xf32>) role elementwise {
    %one = zk.constant 1.0 : tensor<16x16xf32>
    %two = zk.constant 2.0 : tensor<16x16xf32>
    %p, %q = tile.loop %k = 0 to 3 iter(%a = %one : tensor<16x16xf32>, %b = %two : tensor<16x16xf32>) -> (tensor<16x16xf32>, tensor<16x16xf32>) {
      tile.yield %b, %a : tensor<16x16xf32>, tensor<16x16xf32>
    }
    %s = zk.sub %p, %q : tensor<16x16xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
    tile.store %s, %ty[%i, %i] tile [16, 16] : tensor<16x16xf32>, tensor<16x16xf32>
    tile.yield
  }
  zk.return %y : tensor<16x16xf32>
}

// CHECK-LABEL: ppu.kernel @swap
// CHECK:           ppu.loop %k = 0 to 3 {
// CHECK-NEXT:        %[[C:.*]] = ppu.alloc offset 2048 depth 1
// CHECK-NEXT:        ppu.vmap "copy"(%two) -> %[[C]]
// CHECK-NEXT:        ppu.vmap "copy"(%one) -> %two
// CHECK-NEXT:        ppu.vmap "copy"(%[[C]]) -> %one
// CHECK-NEXT:        ppu.yield

// RUN: %zhenwu opt %s -p place-hbm | filecheck %s

// The default policy on m890 (6 stacks, interleave 4096, alignment 4096). Tensors of at least
// one interleave unit per stack (24 KiB) are interleaved over all six stacks first, in program
// order (inputs, outputs, intermediates): `%x` (4 MiB, 171 units of 4 KiB on each stack), `%s`,
// then the output. `%s` is L2-resident as well as in HBM. `%w` is pinned to stacks 1 and 2 and
// starts above the interleaved tensors there. `%b` (1 KiB) and the intermediate (8 KiB) are packed
// contiguously on the stack with the fewest bytes in use (stack 0, then stack 3: stacks 1 and 2
// hold `%w`); the intermediate is named after the value it holds (`%h`).
zk.kernel @policy(%x: tensor<1024x1024xf32>, %w: tensor<1024x256xf32> {zk.place = #zk.place<hbm, stacks [1, 2]>}, %b: tensor<256xf32>, %s: tensor<1024x256xf32> {zk.place = #zk.place<l2>}) -> (y: tensor<1024x256xf32>) {
  %0 = tile.empty : tensor<8x256xf32>
  %h = tile.grid [1, 1] (%i, %j) ins(%tb = %b : tensor<256xf32>) outs(%th = %0 : tensor<8x256xf32>) role elementwise {
    %t = tile.load %tb[%j] tile [256] : tensor<256xf32> -> tensor<256xf32>
    %u = zk.broadcast %t : tensor<256xf32> to tensor<8x256xf32>
    tile.store %u, %th[%i, %j] tile [8, 256] : tensor<8x256xf32>, tensor<8x256xf32>
    tile.yield
  }
  %e1 = tile.empty : tensor<1024x256xf32>
  %y = tile.grid [8, 1] (%i, %j) ins(%tx = %x : tensor<1024x1024xf32>, %tw = %w : tensor<1024x256xf32>, %th = %h : tensor<8x256xf32>, %ts = %s : tensor<1024x256xf32>) outs(%ty = %e1 : tensor<1024x256xf32>) role matmul {
    %c0 = arith.constant 0 : index
    %a = tile.load %tx[%i, %c0] tile [128, 1024] : tensor<1024x1024xf32> -> tensor<128x1024xf32>
    %wt = tile.load %tw[%c0, %j] tile [1024, 256] : tensor<1024x256xf32> -> tensor<1024x256xf32>
    %zero = zk.constant 0.0 : tensor<128x256xf32>
    %r = tile.mma %a, %wt, %zero : tensor<128x1024xf32>, tensor<1024x256xf32> -> tensor<128x256xf32>
    %sv = tile.load %ts[%i, %j] tile [128, 256] : tensor<1024x256xf32> -> tensor<128x256xf32>
    %o = zk.add %r, %sv : tensor<128x256xf32>, tensor<128x256xf32> -> tensor<128x256xf32>
    tile.store %o, %ty[%i, %j] tile [128, 256] : tensor<128x256xf32>, tensor<1024x256xf32>
    tile.yield
  }
  zk.return %y : tensor<1024x256xf32>
}

// CHECK:      zk.kernel @policy(
// CHECK-SAME:   %x: tensor<1024x1024xf32> {ppu.hbm = #ppu.hbm<stacks [0, 1, 2, 3, 4, 5], base 0x0, size 4194304, interleave 4096>},
// CHECK-SAME:   %w: tensor<1024x256xf32> {zk.place = #zk.place<hbm, stacks [1, 2]>, ppu.hbm = #ppu.hbm<stacks [1, 2], base 0x101000, size 1048576, interleave 4096>},
// CHECK-SAME:   %b: tensor<256xf32> {ppu.hbm = #ppu.hbm<stacks [0], base 0x101000, size 1024, interleave 0>},
// CHECK-SAME:   %s: tensor<1024x256xf32> {zk.place = #zk.place<l2>, ppu.hbm = #ppu.hbm<stacks [0, 1, 2, 3, 4, 5], base 0xab000, size 1048576, interleave 4096, l2>})
// CHECK-SAME:   -> (y: tensor<1024x256xf32>) {
// CHECK-NEXT:   %h = tile.empty {ppu.hbm = #ppu.hbm<stacks [3], base 0x101000, size 8192, interleave 0>} : tensor<8x256xf32>
// CHECK:        %e1 = tile.empty {ppu.hbm = #ppu.hbm<stacks [0, 1, 2, 3, 4, 5], base 0xd6000, size 1048576, interleave 4096>} : tensor<1024x256xf32>

// RUN: %zhenwu opt %s -p 'place-hbm{target=h100},alloc-sram{sram-bytes=262144},lower-ppu{cus=8}' | filecheck %s
// RUN: %zhenwu opt %s -p 'place-hbm{target=h100},alloc-sram{sram-bytes=262144},lower-ppu{cus=8}' | %zhenwu opt - | filecheck %s

// `lower-ppu` carries each placement to the ppu level: inputs keep their argument attributes, the
// output argument takes its tile.empty's, an intermediate's moves to its ppu.global; the IR
// parses back. On h100 (5 stacks, interleave 4096) a stripe is 20 KiB: the 16 KiB output and the
// 16 KiB intermediate are packed on stacks 0 and 1, `%x` (64 KiB) interleaves over all five,
// `%b` stays on its pinned stack 4.
zk.kernel @two(%x: tensor<128x128xf32>, %b: tensor<128xf32> {zk.place = #zk.place<hbm, stacks [4]>}) -> (y: tensor<64x64xf32>) {
  %e0 = tile.empty : tensor<64x64xf32>
  %h = tile.grid [2, 2] (%i, %j) ins(%tx = %x : tensor<128x128xf32>) outs(%th = %e0 : tensor<64x64xf32>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [32, 32] : tensor<128x128xf32> -> tensor<32x32xf32>
    %u = zk.exp %t : tensor<32x32xf32>
    tile.store %u, %th[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<64x64xf32>
    tile.yield
  }
  %e1 = tile.empty : tensor<64x64xf32>
  %y = tile.grid [2, 2] (%i, %j) ins(%th = %h : tensor<64x64xf32>, %tb = %b : tensor<128xf32>) outs(%ty = %e1 : tensor<64x64xf32>) role elementwise {
    %t = tile.load %th[%i, %j] tile [32, 32] : tensor<64x64xf32> -> tensor<32x32xf32>
    %bt = tile.load %tb[%j] tile [32] : tensor<128xf32> -> tensor<32xf32>
    %u = zk.add %t, %bt : tensor<32x32xf32>, tensor<32xf32> -> tensor<32x32xf32>
    tile.store %u, %ty[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<64x64xf32>
    tile.yield
  }
  zk.return %y : tensor<64x64xf32>
}

// CHECK:      ppu.kernel @two(
// CHECK-SAME:   %x: memref<128x128xf32, #ppu.space<hbm>> {ppu.hbm = #ppu.hbm<stacks [0, 1, 2, 3, 4], base 0x0, size 65536, interleave 4096>},
// CHECK-SAME:   %b: memref<128xf32, #ppu.space<hbm>> {zk.place = #zk.place<hbm, stacks [4]>, ppu.hbm = #ppu.hbm<stacks [4], base 0x4000, size 512, interleave 4096>})
// CHECK-SAME:   -> (%y: memref<64x64xf32, #ppu.space<hbm>> {ppu.hbm = #ppu.hbm<stacks [0], base 0x4000, size 16384, interleave 0>}) attributes {ppu.target = "m890"} {
// CHECK-NEXT:   %e0 = ppu.global {ppu.hbm = #ppu.hbm<stacks [1], base 0x4000, size 16384, interleave 0>} : memref<64x64xf32, #ppu.space<hbm>>

// RUN: %zhenwu opt %s -p 'alloc-sram{sram-bytes=262144},lower-ppu{cus=8}' --split-input-file | filecheck %s

// An intermediate tensor between two grids is a ppu.global; the destination of the returned
// grid is the output argument.
zk.kernel @two(%x: tensor<64x64xf32>, %b: tensor<64xf32> {zk.place = #zk.place<hbm, stacks [1]>}) -> (y: tensor<64x64xf32>) attributes {params = {N = 64 : i64}} {
  %e0 = tile.empty : tensor<64x64xf32>
  %h = tile.grid [2, 2] (%i, %j) ins(%tx = %x : tensor<64x64xf32>) outs(%th = %e0 : tensor<64x64xf32>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [32, 32] : tensor<64x64xf32> -> tensor<32x32xf32>
    %u = zk.exp %t : tensor<32x32xf32>
    tile.store %u, %th[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<64x64xf32>
    tile.yield
  }
  %e1 = tile.empty : tensor<64x64xf32>
  %y = tile.grid [2, 2] (%i, %j) ins(%th = %h : tensor<64x64xf32>, %tb = %b : tensor<64xf32>) outs(%ty = %e1 : tensor<64x64xf32>) role elementwise {
    %t = tile.load %th[%i, %j] tile [32, 32] : tensor<64x64xf32> -> tensor<32x32xf32>
    %bt = tile.load %tb[%j] tile [32] : tensor<64xf32> -> tensor<32xf32>
    %u = zk.add %t, %bt : tensor<32x32xf32>, tensor<32xf32> -> tensor<32x32xf32>
    tile.store %u, %ty[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<64x64xf32>
    tile.yield
  }
  zk.return %y : tensor<64x64xf32>
}

// CHECK-LABEL: ppu.kernel @two(%x: memref<64x64xf32, #ppu.space<hbm>>, %b: memref<64xf32, #ppu.space<hbm>> {zk.place = #zk.place<hbm, stacks [1]>}) -> (%y: memref<64x64xf32, #ppu.space<hbm>>) attributes {params = {N = 64 : i64}, ppu.target = "m890"} {
// CHECK-NEXT:    %e0 = ppu.global : memref<64x64xf32, #ppu.space<hbm>>
// CHECK-NEXT:    ppu.launch [2, 2] (%i, %j) cus 8 role elementwise {
// CHECK-NEXT:      %t = ppu.alloc offset 0 depth 1 : memref<32x32xf32, #ppu.space<sram>>
// CHECK-NEXT:      %[[T0:.*]] = ppu.dma_load %x[%i, %j] tile [32, 32] -> %t
// CHECK-NEXT:      ppu.wait %[[T0]]
// CHECK-NEXT:      ppu.vmap "exp"(%t) -> %t
// CHECK-NEXT:      %[[T1:.*]] = ppu.dma_store %t -> %e0[%i, %j] tile [32, 32]
// CHECK-NEXT:      ppu.wait %[[T1]]
// CHECK-NEXT:      ppu.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    ppu.launch [2, 2] (%[[I:.*]], %[[J:.*]]) cus 8 role elementwise {
// CHECK-NEXT:      %[[T:.*]] = ppu.alloc offset 0 depth 1 : memref<32x32xf32, #ppu.space<sram>>
// CHECK-NEXT:      %[[T2:.*]] = ppu.dma_load %e0[%[[I]], %[[J]]] tile [32, 32] -> %[[T]]
// CHECK-NEXT:      %bt = ppu.alloc offset 4096 depth 1 : memref<32xf32, #ppu.space<sram>>
// CHECK-NEXT:      %[[T3:.*]] = ppu.dma_load %b[%[[J]]] tile [32] -> %bt
// CHECK-NEXT:      ppu.wait %[[T2]], %[[T3]]
// CHECK-NEXT:      ppu.vmap "add"(%[[T]], %bt) -> %[[T]]
// CHECK-NEXT:      %[[T4:.*]] = ppu.dma_store %[[T]] -> %y[%[[I]], %[[J]]] tile [32, 32]
// CHECK-NEXT:      ppu.wait %[[T4]]
// CHECK-NEXT:      ppu.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    ppu.return

// -----

// The kernel returns a reshape of the grid's result: the grid stores into a view of the output.
zk.kernel @flat(%x: tensor<8x16xf32>) -> (y: tensor<128xf32>) {
  %e = tile.empty : tensor<8x16xf32>
  %g = tile.grid [1, 1] (%i, %j) ins(%tx = %x : tensor<8x16xf32>) outs(%tg = %e : tensor<8x16xf32>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [8, 16] : tensor<8x16xf32> -> tensor<8x16xf32>
    %n = zk.neg %t : tensor<8x16xf32>
    tile.store %n, %tg[%i, %j] tile [8, 16] : tensor<8x16xf32>, tensor<8x16xf32>
    tile.yield
  }
  %y = zk.reshape %g : tensor<8x16xf32> to tensor<128xf32>
  zk.return %y : tensor<128xf32>
}

// CHECK-LABEL: ppu.kernel @flat(%x: memref<8x16xf32, #ppu.space<hbm>>) -> (%y: memref<128xf32, #ppu.space<hbm>>) attributes {ppu.target = "m890"} {
// CHECK-NEXT:    %[[V:.*]] = ppu.view %y : memref<128xf32, #ppu.space<hbm>> -> memref<8x16xf32, #ppu.space<hbm>>
// CHECK-NEXT:    ppu.launch [1, 1] (%i, %j) cus 8 role elementwise {
// CHECK:           ppu.dma_store %t -> %[[V]][%i, %j] tile [8, 16]
// CHECK:         ppu.return

// -----

// Two grids fill the halves of one output: both store into the output argument.
zk.kernel @halves(%x: tensor<8x32xf32>) -> (y: tensor<8x32xf32>) {
  %e = tile.empty : tensor<8x32xf32>
  %a = tile.grid [1] (%i) ins(%tx = %x : tensor<8x32xf32>) outs(%ta = %e : tensor<8x32xf32>) role elementwise {
    %t = tile.load %tx[%i, %i] tile [8, 16] : tensor<8x32xf32> -> tensor<8x16xf32>
    %n = zk.neg %t : tensor<8x16xf32>
    tile.store %n, %ta[%i, %i] tile [8, 16] : tensor<8x16xf32>, tensor<8x32xf32>
    tile.yield
  }
  %b = tile.grid [1] (%i) ins(%tx = %x : tensor<8x32xf32>) outs(%tb = %a : tensor<8x32xf32>) role elementwise {
    %t = tile.load %tx[%i, %i] tile [8, 16] base [0, 16] : tensor<8x32xf32> -> tensor<8x16xf32>
    %n = zk.abs %t : tensor<8x16xf32>
    tile.store %n, %tb[%i, %i] tile [8, 16] base [0, 16] : tensor<8x16xf32>, tensor<8x32xf32>
    tile.yield
  }
  zk.return %b : tensor<8x32xf32>
}

// CHECK-LABEL: ppu.kernel @halves
// CHECK-NOT:     ppu.global
// CHECK:         ppu.dma_store %t -> %y[%i, %i] tile [8, 16] :
// CHECK:         ppu.dma_load %x[%{{.*}}, %{{.*}}] tile [8, 16] base [0, 16] -> %[[T:.*]] :
// CHECK:         ppu.vmap "abs"(%[[T]]) -> %[[T]]
// CHECK:         ppu.dma_store %[[T]] -> %y[%{{.*}}, %{{.*}}] tile [8, 16] base [0, 16] :

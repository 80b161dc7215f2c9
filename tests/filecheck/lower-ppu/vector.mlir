// RUN: %zhenwu opt %s -p 'alloc-sram{sram-bytes=262144},lower-ppu{cus=8}' | filecheck %s

// Vector-engine work: iotas, a comparison, select with a rank-0 constant (filled into a
// one-element buffer and broadcast), a row sum, a broadcast (a copy into the bigger buffer), a
// transpose, an argmax into an i32 buffer; buffers of dead values are reused (offset 1024).
zk.kernel @misc(%x: tensor<16x16xf32>) -> (y: tensor<16x16xf32>, idx: tensor<16xi32>) {
  %e0 = tile.empty : tensor<16x16xf32>
  %e1 = tile.empty : tensor<16xi32>
  %y, %idx = tile.grid [1, 1] (%i, %j) ins(%tx = %x : tensor<16x16xf32>) outs(%ty = %e0 : tensor<16x16xf32>, %ti = %e1 : tensor<16xi32>) role elementwise {
    %t = tile.load %tx[%i, %j] tile [16, 16] : tensor<16x16xf32> -> tensor<16x16xf32>
    %r = tile.iota [%i, %j] tile [16, 16] axis 0 : tensor<16x16xi32>
    %c = tile.iota [%i, %j] tile [16, 16] axis 1 : tensor<16x16xi32>
    %mask = zk.compare "le", %c, %r : tensor<16x16xi32>, tensor<16x16xi32> -> tensor<16x16xi1>
    %low = zk.constant -1.0e+04 : tensor<f32>
    %sel = zk.select %mask, %t, %low : tensor<16x16xi1>, tensor<16x16xf32>, tensor<f32> -> tensor<16x16xf32>
    %s = zk.reduce_sum %sel axes [1] keepdims : tensor<16x16xf32> -> tensor<16x1xf32>
    %b = zk.broadcast %s : tensor<16x1xf32> to tensor<16x16xf32>
    %tt = zk.transpose %b perm [1, 0] : tensor<16x16xf32> -> tensor<16x16xf32>
    %o = zk.add %tt, %sel : tensor<16x16xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
    tile.store %o, %ty[%i, %j] tile [16, 16] : tensor<16x16xf32>, tensor<16x16xf32>
    %am = zk.argmax %t axis 1 keepdims : tensor<16x16xf32> -> tensor<16x1xi32>
    %amf = zk.reshape %am : tensor<16x1xi32> to tensor<16xi32>
    tile.store %amf, %ti[%i] tile [16] : tensor<16xi32>, tensor<16xi32>
    tile.yield
  }
  zk.return %y, %idx : tensor<16x16xf32>, tensor<16xi32>
}

// CHECK-LABEL: ppu.kernel @misc(%x: memref<16x16xf32, #ppu.space<hbm>>) -> (%y: memref<16x16xf32, #ppu.space<hbm>>, %idx: memref<16xi32, #ppu.space<hbm>>) attributes {ppu.target = "m890"} {
// CHECK:           %r = ppu.alloc offset 1024 depth 1 : memref<16x16xi32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.viota[%i, %j] tile [16, 16] axis 0 -> %r
// CHECK-NEXT:      %c = ppu.alloc offset 2048 depth 1 : memref<16x16xi32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.viota[%i, %j] tile [16, 16] axis 1 -> %c
// CHECK-NEXT:      %mask = ppu.alloc offset 3072 depth 1 : memref<16x16xi1, #ppu.space<sram>>
// CHECK-NEXT:      ppu.vmap "le"(%c, %r) -> %mask
// CHECK-NEXT:      %low = ppu.alloc offset 1024 depth 1 : memref<f32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.fill -1.000000e+04 -> %low : memref<f32, #ppu.space<sram>>
// CHECK-NEXT:      %sel = ppu.alloc offset 1152 depth 1 : memref<16x16xf32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.vmap "select"(%mask, %t, %low) -> %sel
// CHECK-NEXT:      %s = ppu.alloc offset 1024 depth 1 : memref<16x1xf32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.vreduce "sum" %sel axes [1] -> %s
// CHECK-NEXT:      %b = ppu.alloc offset 2176 depth 1 : memref<16x16xf32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.vmap "copy"(%s) -> %b
// CHECK-NEXT:      %tt = ppu.alloc offset 3200 depth 1 : memref<16x16xf32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.vtranspose %b perm [1, 0] -> %tt
// CHECK-NEXT:      ppu.vmap "add"(%tt, %sel) -> %tt
// CHECK-NEXT:      %[[T1:.*]] = ppu.dma_store %tt -> %y[%i, %j] tile [16, 16]
// CHECK-NEXT:      ppu.wait %[[T1]]
// CHECK-NEXT:      %am = ppu.alloc offset 1024 depth 1 : memref<16x1xi32, #ppu.space<sram>>
// CHECK-NEXT:      ppu.vreduce "argmax" %t axes [1] -> %am : memref<16x16xf32, #ppu.space<sram>> -> memref<16x1xi32, #ppu.space<sram>>
// CHECK-NEXT:      %[[V:.*]] = ppu.view %am : memref<16x1xi32, #ppu.space<sram>> -> memref<16xi32, #ppu.space<sram>>
// CHECK-NEXT:      %[[T2:.*]] = ppu.dma_store %[[V]] -> %idx[%i] tile [16]

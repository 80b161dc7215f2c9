// RUN: %zhenwu opt %s -p alloc-sram,lower-ppu | filecheck %s

// GEMM with bias on the default target (m890: 128 compute units): the zk kernel becomes a
// ppu.kernel with the inputs and then the output as HBM buffers; the grid becomes a launch whose
// buffers are allocated where their lives start (the bias tile reuses the bytes of the A slots
// after the loop); loads in the loop are double-buffered through slots picked by the step.
zk.kernel @gemm(%a: tensor<100x64xf16>, %b: tensor<64x48xf16>, %bias: tensor<48xf32>) -> (c: tensor<100x48xf32>) {
  %e = tile.empty : tensor<100x48xf32>
  %c = tile.grid [4, 2] (%i, %j) ins(%ta = %a : tensor<100x64xf16>, %tb = %b : tensor<64x48xf16>, %tbias = %bias : tensor<48xf32>) outs(%tc = %e : tensor<100x48xf32>) role matmul {
    %c0 = arith.constant 0 : index
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

// CHECK:      ppu.kernel @gemm(%a: memref<100x64xf16, #ppu.space<hbm>>, %b: memref<64x48xf16, #ppu.space<hbm>>, %bias: memref<48xf32, #ppu.space<hbm>>) -> (%c: memref<100x48xf32, #ppu.space<hbm>>) attributes {ppu.target = "m890"} {
// CHECK-NEXT:   ppu.launch [4, 2] (%i, %j) cus 128 role matmul {
// CHECK-NEXT:     %c0 = arith.constant 0 : index
// CHECK-NEXT:     %zero = ppu.alloc offset 0 depth 1 : memref<32x32xf32, #ppu.space<sram>>
// CHECK-NEXT:     ppu.fill 0.000000e+00 -> %zero : memref<32x32xf32, #ppu.space<sram>>
// CHECK-NEXT:     %x = ppu.alloc offset 4096 depth 2 : memref<2x32x32xf16, #ppu.space<sram>>
// CHECK-NEXT:     %y = ppu.alloc offset 8192 depth 2 : memref<2x32x32xf16, #ppu.space<sram>>
// CHECK-NEXT:     ppu.loop %k = 0 to 2 {
// CHECK-NEXT:       %[[XS:.*]] = ppu.slot %x[%k] : memref<2x32x32xf16, #ppu.space<sram>> -> memref<32x32xf16, #ppu.space<sram>>
// CHECK-NEXT:       %[[T0:.*]] = ppu.dma_load %a[%i, %k] tile [32, 32] -> %[[XS]] : memref<100x64xf16, #ppu.space<hbm>>, memref<32x32xf16, #ppu.space<sram>>
// CHECK-NEXT:       %[[YS:.*]] = ppu.slot %y[%k] : memref<2x32x32xf16, #ppu.space<sram>> -> memref<32x32xf16, #ppu.space<sram>>
// CHECK-NEXT:       %[[T1:.*]] = ppu.dma_load %b[%k, %j] tile [32, 32] -> %[[YS]] : memref<64x48xf16, #ppu.space<hbm>>, memref<32x32xf16, #ppu.space<sram>>
// CHECK-NEXT:       ppu.wait %[[T0]], %[[T1]]
// CHECK-NEXT:       ppu.mma %[[XS]], %[[YS]], %zero : memref<32x32xf16, #ppu.space<sram>>, memref<32x32xf16, #ppu.space<sram>>, memref<32x32xf32, #ppu.space<sram>>
// CHECK-NEXT:       ppu.yield
// CHECK-NEXT:     }
// CHECK-NEXT:     %bt = ppu.alloc offset 4096 depth 1 : memref<32xf32, #ppu.space<sram>>
// CHECK-NEXT:     %[[T2:.*]] = ppu.dma_load %bias[%j] tile [32] pad 1.500000e+00 -> %bt : memref<48xf32, #ppu.space<hbm>>, memref<32xf32, #ppu.space<sram>>
// CHECK-NEXT:     ppu.wait %[[T2]]
// CHECK-NEXT:     ppu.vmap "add"(%zero, %bt) -> %zero : (memref<32x32xf32, #ppu.space<sram>>, memref<32xf32, #ppu.space<sram>>) -> memref<32x32xf32, #ppu.space<sram>>
// CHECK-NEXT:     %[[T3:.*]] = ppu.dma_store %zero -> %c[%i, %j] tile [32, 32] : memref<32x32xf32, #ppu.space<sram>>, memref<100x48xf32, #ppu.space<hbm>>
// CHECK-NEXT:     ppu.wait %[[T3]]
// CHECK-NEXT:     ppu.yield
// CHECK-NEXT:   }
// CHECK-NEXT:   ppu.return
// CHECK-NEXT: }

// RUN: %zhenwu opt %s -p place-hbm --split-input-file --verify-diagnostics | filecheck %s

// 150 GiB of tensors on the 144 GiB of m890: the error is at the kernel and names every tensor
// (--verify-diagnostics prints the position, message and notes; tests/test_place_hbm.py checks
// the help).
zk.kernel @big(%x: tensor<131072x153600xf32> loc("big.zk":1:36)) -> (y: tensor<131072x153600xf32>) {
  %e = tile.empty : tensor<131072x153600xf32> loc("big.zk":2:9)
  %y = tile.grid [131072, 1200] (%i, %j) ins(%tx = %x : tensor<131072x153600xf32>) outs(%ty = %e : tensor<131072x153600xf32>) role copy {
    %t = tile.load %tx[%i, %j] tile [1, 128] : tensor<131072x153600xf32> -> tensor<1x128xf32>
    tile.store %t, %ty[%i, %j] tile [1, 128] : tensor<1x128xf32>, tensor<131072x153600xf32>
    tile.yield
  }
  zk.return %y : tensor<131072x153600xf32>
} loc("big.zk":1:8)

// CHECK:      1:8: error[ZK0901]: kernel `big` needs 150.00 GiB (161061273600 bytes) of HBM for its 2 global tensors (alignment padding included); m890 has 144.00 GiB (154618822656 bytes): 6 stacks of 24.00 GiB (25769803776 bytes)
// CHECK-NEXT: note: `x` (input, f32[131072, 153600]): 75.00 GiB (80530636800 bytes)
// CHECK-NEXT: note: `y` (output, f32[131072, 153600]): 75.00 GiB (80530636800 bytes)

// -----

// A 24 GiB tensor pinned to stack 0, above the 4 GiB that `%x` and the output take on every
// stack: stack 0 overflows; the error points at the pinned tensor (its help, checked in
// tests/test_place_hbm.py, suggests two stacks).
zk.kernel @pin(%x: tensor<65536x98304xf32> loc("pin.zk":1:37), %w: tensor<65536x98304xf32> {zk.place = #zk.place<hbm, stacks [0]>} loc("pin.zk":1:51)) -> (y: tensor<65536x98304xf32>) {
  %e = tile.empty : tensor<65536x98304xf32> loc("pin.zk":2:9)
  %y = tile.grid [65536, 768] (%i, %j) ins(%tx = %x : tensor<65536x98304xf32>) outs(%ty = %e : tensor<65536x98304xf32>) role copy {
    %t = tile.load %tx[%i, %j] tile [1, 128] : tensor<65536x98304xf32> -> tensor<1x128xf32>
    tile.store %t, %ty[%i, %j] tile [1, 128] : tensor<1x128xf32>, tensor<65536x98304xf32>
    tile.yield
  }
  zk.return %y : tensor<65536x98304xf32>
}

// CHECK:      1:51: error[ZK0902]: HBM stack 0 of m890 would hold 32.00 GiB (34359738368 bytes); it has 24.00 GiB (25769803776 bytes)
// CHECK-NEXT: note: `x` (input, f32[65536, 98304]) on stacks [0, 1, 2, 3, 4, 5]: 4.00 GiB (4294967296 bytes) on each
// CHECK-NEXT: note: `w` (input, f32[65536, 98304]) on stacks [0]: 24.00 GiB (25769803776 bytes) on each
// CHECK-NEXT: note: `y` (output, f32[65536, 98304]) on stacks [0, 1, 2, 3, 4, 5]: 4.00 GiB (4294967296 bytes) on each

// -----

// m890 has stacks 0..5.
zk.kernel @seven(%x: tensor<64x64xf32> {zk.place = #zk.place<hbm, stacks [2, 7]>} loc("seven.zk":1:30)) -> (y: tensor<64x64xf32>) {
  %e = tile.empty : tensor<64x64xf32>
  %y = tile.grid [2, 2] (%i, %j) ins(%tx = %x : tensor<64x64xf32>) outs(%ty = %e : tensor<64x64xf32>) role copy {
    %t = tile.load %tx[%i, %j] tile [32, 32] : tensor<64x64xf32> -> tensor<32x32xf32>
    tile.store %t, %ty[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<64x64xf32>
    tile.yield
  }
  zk.return %y : tensor<64x64xf32>
}

// CHECK:      1:30: error[ZK0903]: `x` (input, f32[64, 64]) is placed on HBM stack 7, but m890 has 6 stacks (0..5)

// -----

// 128 MiB placed in L2; m890 sets aside at most 48 MiB (0.75 of 64 MiB).
zk.kernel @l2(%x: tensor<4096x4096xf32> {zk.place = #zk.place<l2>} loc("l2.zk":1:30), %w: tensor<4096x4096xf32> {zk.place = #zk.place<l2>} loc("l2.zk":1:44)) -> (y: tensor<4096x4096xf32>) {
  %e = tile.empty : tensor<4096x4096xf32>
  %y = tile.grid [128, 128] (%i, %j) ins(%tx = %x : tensor<4096x4096xf32>) outs(%ty = %e : tensor<4096x4096xf32>) role copy {
    %t = tile.load %tx[%i, %j] tile [32, 32] : tensor<4096x4096xf32> -> tensor<32x32xf32>
    tile.store %t, %ty[%i, %j] tile [32, 32] : tensor<32x32xf32>, tensor<4096x4096xf32>
    tile.yield
  }
  zk.return %y : tensor<4096x4096xf32>
}

// CHECK:      1:30: error[ZK0904]: tensors placed in L2 (`x`, `w`) need 128.00 MiB (134217728 bytes); m890 can set aside 48.00 MiB (50331648 bytes) of its 64.00 MiB (67108864 bytes) L2 (l2.persisting_max_fraction 0.75)
// CHECK-NEXT: note: `x` (input, f32[4096, 4096]): 64.00 MiB (67108864 bytes)
// CHECK-NEXT: note: `w` (input, f32[4096, 4096]): 64.00 MiB (67108864 bytes)

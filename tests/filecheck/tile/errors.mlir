// RUN: %zhenwu opt %s -p tile --split-input-file --verify-diagnostics | filecheck %s

// Composites must be expanded by `decompose` first.
builtin.module {
  zk.kernel @k(%x: tensor<4x8xf32>) -> (y: tensor<4x8xf32>) {
    %y = zk.softmax %x axis 1 : tensor<4x8xf32>
    zk.return %y : tensor<4x8xf32>
  }
}
// CHECK: error[ZK0603]: `zk.softmax` must be expanded by `decompose` before `tile`

// -----

// Tile sizes from the schedule are never shrunk silently: too big for SRAM is an error that
// says which sizes fit.
builtin.module {
  zk.kernel @k(%a: tensor<1024x1024xf32>, %b: tensor<1024x1024xf32>) -> (c: tensor<1024x1024xf32>) {
    %c = zk.matmul %a, %b {zk.tile = #zk.tile<[512, 512, 256]>} : tensor<1024x1024xf32>, tensor<1024x1024xf32> -> tensor<1024x1024xf32>
    zk.return %c : tensor<1024x1024xf32>
  }
}
// CHECK: error[ZK0604]: tiles of `c` (tile [M, N, K] [512, 512, 256]) need {{[0-9]+}} bytes of SRAM per compute unit; target `m890` has 233472
// CHECK: note: f32[512, 512]: 1048576 bytes

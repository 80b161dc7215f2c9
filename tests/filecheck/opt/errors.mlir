// RUN: %zhenwu opt %s --split-input-file --verify-diagnostics | filecheck %s

// Text that does not parse: the chunk's line and column are reported.
builtin.module {
  zk.kernel @k(%x: tensor<4xf32>) -> (y: tensor<4xf32>) {
    %y = zk.frobnicate %x : tensor<4xf32>
  }
}
// CHECK: 6:24: error[ZK1001]: Operation zk.frobnicate is not registered

// -----

// IR that parses but does not verify names the op and the rule it breaks.
builtin.module {
  zk.kernel @k(%x: tensor<4x8xf32>) -> (y: tensor<4x8xf32>) {
    %y = zk.reduce_sum %x axes [1] : tensor<4x8xf32> -> tensor<4x8xf32>
    zk.return %y : tensor<4x8xf32>
  }
}
// CHECK: error[ZK1002]: `zk.reduce_sum`: zk.reduce_sum result shape must be [4]

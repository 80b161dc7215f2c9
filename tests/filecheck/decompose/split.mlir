// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// `split p 4` on a composite goes to each reduction it expands to; the other schedule
// attributes stay with the op that yields the result.
zk.kernel @layernorm(%x: tensor<4x8xf32>) -> (p: tensor<4x8xf32>) {
  %p = zk.layernorm %x axis 1 eps 1.0e-05 {zk.split = #zk.split<p, 4>, zk.tile = #zk.tile<[2, 8]>} : tensor<4x8xf32>
  zk.return %p : tensor<4x8xf32>
}

// CHECK-LABEL: zk.kernel @layernorm
// CHECK:         zk.reduce_mean %x axes [1] keepdims {zk.split = #zk.split<p, 4>}
// CHECK:         zk.reduce_mean %{{.*}} axes [1] keepdims {zk.split = #zk.split<p, 4>}
// CHECK:         %p = {{.*}} {zk.tile = #zk.tile<[2, 8]>}
// CHECK-NOT:     zk.split
// CHECK:         zk.return

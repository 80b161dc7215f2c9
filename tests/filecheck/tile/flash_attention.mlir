// RUN: %zhenwu opt %s -p tile | filecheck %s

// softmax(q @ k^T * scale) @ v, as `decompose` leaves it, becomes one flash grid: the query
// tile is loaded once, the loop streams key/value tiles with a running max, a running sum and
// a rescaled accumulator, and S never gets a tensor of its own.
builtin.module {
  zk.kernel @attention(%q: tensor<1x2x256x64xbf16>, %k: tensor<1x2x256x64xbf16>, %v: tensor<1x2x256x64xbf16>) -> (o: tensor<1x2x256x64xbf16>) {
    %kt = zk.transpose %k perm [0, 1, 3, 2] : tensor<1x2x256x64xbf16> -> tensor<1x2x64x256xbf16>
    %qk = zk.matmul %q, %kt : tensor<1x2x256x64xbf16>, tensor<1x2x64x256xbf16> -> tensor<1x2x256x256xf32>
    %c = zk.constant 1.250000e-01 : tensor<f32>
    %s = zk.mul %qk, %c : tensor<1x2x256x256xf32>, tensor<f32> -> tensor<1x2x256x256xf32>
    %m = zk.reduce_max %s axes [3] keepdims : tensor<1x2x256x256xf32> -> tensor<1x2x256x1xf32>
    %d = zk.sub %s, %m : tensor<1x2x256x256xf32>, tensor<1x2x256x1xf32> -> tensor<1x2x256x256xf32>
    %e = zk.exp %d : tensor<1x2x256x256xf32>
    %l = zk.reduce_sum %e axes [3] keepdims : tensor<1x2x256x256xf32> -> tensor<1x2x256x1xf32>
    %p = zk.div %e, %l : tensor<1x2x256x256xf32>, tensor<1x2x256x1xf32> -> tensor<1x2x256x256xf32>
    %pc = zk.cast %p : tensor<1x2x256x256xf32> to tensor<1x2x256x256xbf16>
    %o = zk.matmul %pc, %v : tensor<1x2x256x256xbf16>, tensor<1x2x256x64xbf16> -> tensor<1x2x256x64xf32>
    %out = zk.cast %o : tensor<1x2x256x64xf32> to tensor<1x2x256x64xbf16>
    zk.return %out : tensor<1x2x256x64xbf16>
  }
}
// CHECK-NOT:   tile.empty : tensor<1x2x256x256xf32>
// CHECK:       tile.grid [1, 2, 2, 1] {{.*}} role attention attributes {tile.sizes = {tile = array<i64: 1, 1, 128, 64>, step = 128 : i64}}
// CHECK:         %[[Q:[a-z0-9_]+]] = tile.load %q_1[{{.*}}] tile [1, 1, 128, 64]
// CHECK:         tile.loop %[[J:[a-z0-9_]+]] = 0 to 2 iter(%[[M:[a-z0-9_]+]] = %{{.*}} : tensor<1x1x128x1xf32>, %[[L:[a-z0-9_]+]] = %{{.*}} : tensor<1x1x128x1xf32>, %[[ACC:[a-z0-9_]+]] = %{{.*}} : tensor<1x1x128x64xf32>)
// CHECK:           %[[K:[a-z0-9_]+]] = tile.load %k_1[{{.*}}, %[[J]], {{.*}}] tile [1, 1, 128, 64]
// CHECK:           %[[S:[a-z0-9_]+]] = tile.mma %[[Q]], {{.*}} -> tensor<1x1x128x128xf32>
// CHECK:           %[[X:[a-z0-9_]+]] = zk.mul %[[S]], {{.*}}
// CHECK:           %[[MAX:[a-z0-9_]+]] = zk.reduce_max %[[X]] axes [3] keepdims
// CHECK:           %[[MNEW:[a-z0-9_]+]] = zk.max %[[M]], %[[MAX]]
// CHECK:           %[[SHIFT:[a-z0-9_]+]] = zk.select {{.*}}, %[[MNEW]], {{.*}}
// CHECK:           %[[E:[a-z0-9_]+]] = zk.exp {{.*}}
// CHECK:           %[[ALPHA:[a-z0-9_]+]] = zk.exp {{.*}}
// CHECK:           zk.mul %[[L]], %[[ALPHA]]
// CHECK:           zk.reduce_sum %[[E]] axes [3] keepdims
// CHECK:           %[[P:[a-z0-9_]+]] = zk.cast %[[E]] : tensor<1x1x128x128xf32> to tensor<1x1x128x128xbf16>
// CHECK:           %[[VT:[a-z0-9_]+]] = tile.load %v_1[{{.*}}, %[[J]], {{.*}}] tile [1, 1, 128, 64]
// CHECK:           %[[RESCALED:[a-z0-9_]+]] = zk.mul %[[ACC]], %[[ALPHA]]
// CHECK:           %[[NEXT:[a-z0-9_]+]] = tile.mma %[[P]], %[[VT]], %[[RESCALED]]
// CHECK:           tile.yield %[[MNEW]], %{{.*}}, %[[NEXT]]
// CHECK:         %[[OUT:[a-z0-9_]+]] = zk.div
// CHECK:         zk.cast %[[OUT]] : tensor<1x1x128x64xf32> to tensor<1x1x128x64xbf16>
// CHECK:         tile.store
// CHECK-NOT:     tile.grid
// CHECK:       zk.return

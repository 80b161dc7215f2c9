// RUN: zhenwu-cc opt %s -p decompose | filecheck %s

// softplus = max(x, 0) + log1p(exp(-|x|)), with log1p(u) computed from w = 1 + u as
// select(w == 1, u, log(w) * (u / (w - 1))) (Kahan), so the tail keeps its precision.
zk.kernel @softplus(%x: tensor<16xf32>) -> (y: tensor<16xf32>) {
  %y = zk.softplus %x : tensor<16xf32>
  zk.return %y : tensor<16xf32>
}

// CHECK-LABEL: zk.kernel @softplus
// CHECK-NEXT:    %[[A:.*]] = zk.abs %x : tensor<16xf32>
// CHECK-NEXT:    %[[NA:.*]] = zk.neg %[[A]] : tensor<16xf32>
// CHECK-NEXT:    %[[U:.*]] = zk.exp %[[NA]] : tensor<16xf32>
// CHECK-NEXT:    %[[ONE:.*]] = zk.constant 1.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[W:.*]] = zk.add %[[ONE]], %[[U]] : tensor<f32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[LW:.*]] = zk.log %[[W]] : tensor<16xf32>
// CHECK-NEXT:    %[[WM1:.*]] = zk.sub %[[W]], %[[ONE]] : tensor<16xf32>, tensor<f32> -> tensor<16xf32>
// CHECK-NEXT:    %[[R:.*]] = zk.div %[[U]], %[[WM1]] : tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[CORR:.*]] = zk.mul %[[LW]], %[[R]] : tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[IS1:.*]] = zk.compare "eq", %[[W]], %[[ONE]] : tensor<16xf32>, tensor<f32> -> tensor<16xi1>
// CHECK-NEXT:    %[[TAIL:.*]] = zk.select %[[IS1]], %[[U]], %[[CORR]] : tensor<16xi1>, tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    %[[ZERO:.*]] = zk.constant 0.000000e+00 : tensor<f32>
// CHECK-NEXT:    %[[POS:.*]] = zk.max %x, %[[ZERO]] : tensor<16xf32>, tensor<f32> -> tensor<16xf32>
// CHECK-NEXT:    %y = zk.add %[[POS]], %[[TAIL]] : tensor<16xf32>, tensor<16xf32> -> tensor<16xf32>
// CHECK-NEXT:    zk.return %y : tensor<16xf32>

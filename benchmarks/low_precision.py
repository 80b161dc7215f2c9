"""Figures of docs/precision.md: what each FP8/FP4 example's precision costs in accuracy, and what
switching a GEMM from f16 to FP8 saves in estimated time.

    .venv/bin/python benchmarks/low_precision.py

Accuracy: each example at reduced shapes, run on the executor with seed 0 (N(0, 1) inputs), against
the float64 reference of the source without quantisation: the numerics report's relative L2 and
max errors, and each directive's share. Time: `zhenwu-cc cost` on m890 of an f16 GEMM and of the
same GEMM with `precision a, b as f8E4M3FN scale tensor`, compute-bound (4096³) and memory-bound
(M=16, N=K=8192).
"""

from __future__ import annotations

from pathlib import Path

import zhenwu_cc

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "gemm_fp8": {"M": 256, "N": 256, "K": 256},
    "gemm_fp8_block": {"M": 256, "N": 256, "K": 256},
    "gemm_mxfp8": {"M": 256, "N": 256, "K": 256},
    "gemm_mxfp4": {"M": 256, "N": 256, "K": 256},
    "gemm_nvfp4": {"M": 256, "N": 256, "K": 256},
    "attention_fp8": {"B": 1, "H": 2, "S": 128, "D": 64},
}
GEMM = """kernel gemm<M = 4096, N = 4096, K = 4096>(a: f16[M, K], b: f16[K, N]) -> f32[M, N] {
    c = a @ b
    return c
}
"""
FP8 = GEMM + "schedule gemm {\n    precision a, b as f8E4M3FN scale tensor\n}\n"
SHAPES = {"compute-bound 4096^3": {}, "memory-bound M=16 N=K=8192": {"M": 16, "N": 8192,
                                                                      "K": 8192}}


def accuracy() -> None:
    print("example           rel L2    max abs   max abs / max |ref|   directive shares")
    for name, defines in EXAMPLES.items():
        kernel = zhenwu_cc.compile(REPO / "examples" / f"{name}.zk", defines=defines)
        (c,) = kernel.check(seed=0).checks
        shares = "; ".join(f"{a.directive.split(' as ')[0][10:]} {a.cost:+.4f}"
                           for a in c.attribution)
        print(f"{name:16}  {c.rel_l2:.4f}   {c.max_abs:8.3g}   {c.max_abs / c.scale:.4f}"
              f"               {shares}")


def cost() -> None:
    print("\nGEMM on m890            f16 time    f8 time     f8 / f16   tensor f8 / f16   HBM "
          "read f8 / f16")
    for label, defines in SHAPES.items():
        f16 = zhenwu_cc.compile(GEMM, defines=defines).cost("m890")
        f8 = zhenwu_cc.compile(FP8, defines=defines).cost("m890")
        tensor = (sum(p.terms["tensor"] for p in f8.phases)
                  / sum(p.terms["tensor"] for p in f16.phases))
        print(f"{label:24} {f16.time * 1e6:8.2f} us {f8.time * 1e6:8.2f} us   "
              f"{f8.time / f16.time:.3f}      {tensor:.3f}             "
              f"{f8.hbm_read_bytes / f16.hbm_read_bytes:.3f}")


if __name__ == "__main__":
    accuracy()
    cost()

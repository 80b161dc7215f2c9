"""A digest of every example's outputs (`k.run(seed=0)` at small shapes), to show that a change
to the executor or the numerics keeps every output bit: run it before and after, compare.

    .venv/bin/python benchmarks/output_digests.py > before.txt   # on the old commit
    .venv/bin/python benchmarks/output_digests.py | diff before.txt -

Digests depend on numpy's and the BLAS's builds (float32 GEMM summation order), so they are
compared on one machine, never stored as a test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

import zhenwu_cc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# shapes chosen so vector launches run in several row blocks and edge tiles are partial
SHAPES = {
    "attention": {"B": 1, "H": 2, "S": 256, "D": 64},
    "attention_causal": {"B": 1, "H": 2, "S": 256, "D": 64},
    "attention_fp8": {"B": 1, "H": 2, "S": 256, "D": 64},
    "attention_gqa": {"B": 1, "H": 4, "G": 2, "S": 256, "D": 64},
    "cross_entropy": {"N": 256, "C": 1000},
    "gemm": {"M": 256, "N": 384, "K": 320},
    "gemm_batched": {"B": 2, "M": 256, "N": 256, "K": 192},
    "gemm_bias_gelu": {"M": 256, "N": 512, "K": 256},
    "gemm_fp8": {"M": 256, "N": 256, "K": 512},
    "gemm_fp8_block": {"M": 256, "N": 256, "K": 512},
    "gemm_int8": {"M": 256, "N": 256, "K": 512},
    "gemm_mxfp4": {"M": 256, "N": 256, "K": 512},
    "gemm_mxfp8": {"M": 256, "N": 256, "K": 512},
    "gemm_nvfp4": {"M": 256, "N": 256, "K": 512},
    "l2_normalize": {"N": 1000, "D": 768},
    "layernorm": {"T": 1000, "D": 1024},
    "mlp_swiglu": {"T": 256, "D": 256, "F": 512},
    "rmsnorm": {"T": 1000, "D": 1024},
    "rotary_embedding": {"B": 2, "S": 128, "H": 4, "D": 128},
    "row_reductions": {"M": 300, "N": 5000},
    "softmax": {"M": 1000, "N": 1000},
}


def digest(outputs: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(outputs):
        a = np.ascontiguousarray(outputs[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def main() -> None:
    for name, defines in SHAPES.items():
        k = zhenwu_cc.compile(EXAMPLES / f"{name}.zk", defines=defines)
        print(f"{name:18} {digest(k.run(seed=0))}", flush=True)


if __name__ == "__main__":
    main()

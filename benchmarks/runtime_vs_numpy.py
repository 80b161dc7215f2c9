"""The executor's time and memory against numpy computing the same math, for every example.

Each example is compiled with `zhenwu_cc.compile(path, defines=...)` at a size that runs in
seconds and executed with `k.run(**inputs)`, its inputs already in their declared dtypes. The
baseline is the fast way to write the same math in numpy: float32, in place where natural, then
cast to the output dtype (a quantised GEMM's baseline is the float32 matmul of the same shape).
The two sides alternate, `--repeat` runs each (best of them), after one warm-up run each; the
ratio is executor / numpy. Memory is each side's peak RSS rise over one call in a fresh process
(Linux: VmHWM reset through /proc/self/clear_refs). Figures are for this machine, never pass/fail.

    .venv/bin/python benchmarks/runtime_vs_numpy.py [--repeat N] [--only NAME ...] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import scipy.special

import zhenwu_cc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
F32 = np.float32
BF16, F16 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)

GEMM_F32 = """
kernel gemm_f32<M = 2048, N = 2048, K = 2048>(a: f32[M, K], b: f32[K, N]) -> f32[M, N] {
    c = a @ b
    return c
}
schedule gemm_f32 {
    tile c [128, 128, 64]
    buffers 2
}
"""


# ---- numpy baselines: float32 math, then the output dtype -----------------------------------------
def _softmax(s: np.ndarray) -> np.ndarray:
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def _attention(q, k, v, p_dtype=None, mask=None):
    s = np.matmul(q.astype(F32), np.swapaxes(k.astype(F32), -1, -2))
    s *= F32(1 / np.sqrt(q.shape[-1]))
    if mask is not None:
        s[..., ~mask] = -np.inf
    p = _softmax(s)
    if p_dtype is not None:
        p = p.astype(p_dtype).astype(F32)
    return np.matmul(p, v.astype(F32))


def _rmsnorm(x, residual, weight):
    h = (x.astype(F32) + residual.astype(F32)).astype(BF16)
    hf = h.astype(F32)
    ms = np.einsum("ij,ij->i", hf, hf)[:, None] / F32(hf.shape[1])
    y = hf * (1 / np.sqrt(ms + F32(1e-6)))
    y *= weight.astype(F32)
    return y.astype(BF16), h


def _layernorm(x, gamma, beta):
    xf = x.astype(F32)
    xf -= xf.mean(axis=1, keepdims=True)
    var = np.einsum("ij,ij->i", xf, xf)[:, None] / F32(xf.shape[1])
    xf *= 1 / np.sqrt(var + F32(1e-5))
    xf *= gamma
    xf += beta
    return xf.astype(BF16)


def _cross_entropy(logits, labels):
    x = logits.astype(F32)
    x -= x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x).sum(axis=1))
    loss = lse - x[np.arange(len(labels)), labels]
    return loss, loss.mean(dtype=F32)


def _gelu(h):
    return h * F32(0.5) * (1 + scipy.special.erf(h * F32(1 / np.sqrt(2))))


def _swiglu(x, wg, wu, wd):
    xf = x.astype(F32)
    g = xf @ wg.astype(F32)
    u = xf @ wu.astype(F32)
    g *= scipy.special.expit(g)
    g *= u
    return (g.astype(BF16).astype(F32) @ wd.astype(F32)).astype(BF16)


def _rotary(x, cos, sin):
    xf = x.astype(F32)
    half = xf.shape[-1] // 2
    rotated = np.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    c, s = cos[:, None, :], sin[:, None, :]
    xf *= c
    rotated *= s
    xf += rotated
    return xf.astype(BF16)


def _reductions(x):
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    return (x.sum(axis=1), x.mean(axis=1), m, x.min(axis=1), lse,
            x.argmax(axis=1).astype(np.int32))


def _l2(x):
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    y = x / np.maximum(norm, F32(1e-12))
    return np.clip(y, -1, 1, out=y)


def _matmul_f32(a, b):
    return np.matmul(a.astype(F32), b.astype(F32))


def _causal(s):
    return np.tril(np.ones((s, s), np.bool_))


@dataclass(frozen=True)
class Case:
    label: str
    source: str  # an example's stem, or .zk text
    defines: dict[str, int]
    baseline: Callable[..., object]  # numpy on the same inputs (by parameter name)


CASES = [
    Case("rmsnorm + residual bf16 4096x4096", "rmsnorm", {"T": 4096, "D": 4096},
         lambda x, residual, weight: _rmsnorm(x, residual, weight)),
    Case("layernorm bf16 4096x4096", "layernorm", {"T": 4096, "D": 4096},
         lambda x, gamma, beta: _layernorm(x, gamma, beta)),
    Case("softmax f16 4096x4096", "softmax", {"M": 4096, "N": 4096},
         lambda x: _softmax(x.astype(F32)).astype(F16)),
    Case("gemm f32 2048^3", GEMM_F32, {}, lambda a, b: a @ b),
    Case("gemm_fp8 (tensor) 2048^3 vs f32", "gemm_fp8", {"M": 2048, "N": 2048, "K": 2048},
         lambda x, w: _matmul_f32(x, w).astype(BF16)),
    Case("gemm f16 2048^3", "gemm", {"M": 2048, "N": 2048, "K": 2048},
         lambda a, b: _matmul_f32(a, b)),
    Case("gemm_batched bf16 8x512^3", "gemm_batched", {"B": 8, "M": 512, "N": 512, "K": 512},
         lambda a, b: _matmul_f32(a, b).astype(BF16)),
    Case("gemm_bias_gelu f16 1024x4096x1024", "gemm_bias_gelu",
         {"M": 1024, "N": 4096, "K": 1024},
         lambda x, w, b: _gelu(_matmul_f32(x, w) + b.astype(F32)).astype(F16)),
    Case("gemm_int8 1024^3", "gemm_int8", {"M": 1024, "N": 1024, "K": 1024},
         lambda xq, wq, x_scale, w_scale:
         (_matmul_f32(xq, wq) * x_scale * w_scale).astype(F16)),
    Case("gemm_fp8_block 1024x2048x1024 vs f32", "gemm_fp8_block",
         {"M": 1024, "N": 2048, "K": 1024}, lambda x, w: _matmul_f32(x, w).astype(BF16)),
    Case("gemm_mxfp8 1024^3 vs f32", "gemm_mxfp8", {"M": 1024, "N": 1024, "K": 1024},
         lambda x, w: _matmul_f32(x, w).astype(BF16)),
    Case("gemm_mxfp4 1024^3 vs f32", "gemm_mxfp4", {"M": 1024, "N": 1024, "K": 1024},
         lambda x, w: _matmul_f32(x, w).astype(BF16)),
    Case("gemm_nvfp4 1024^3 vs f32", "gemm_nvfp4", {"M": 1024, "N": 1024, "K": 1024},
         lambda x, w: _matmul_f32(x, w.T).astype(BF16)),
    Case("mlp_swiglu bf16 512x1024x2816", "mlp_swiglu", {"T": 512, "D": 1024, "F": 2816},
         lambda x, w_gate, w_up, w_down: _swiglu(x, w_gate, w_up, w_down)),
    Case("attention bf16 1x8x1024x128", "attention", {"B": 1, "H": 8, "S": 1024, "D": 128},
         lambda q, k, v: _attention(q, k, v, BF16).astype(BF16)),
    Case("attention bf16 1x8x1024x64", "attention", {"B": 1, "H": 8, "S": 1024, "D": 64},
         lambda q, k, v: _attention(q, k, v, BF16).astype(BF16)),
    Case("attention_causal f16 1x8x1024x128", "attention_causal",
         {"B": 1, "H": 8, "S": 1024, "D": 128},
         lambda q, k, v: _attention(q, k, v, F16, _causal(q.shape[2])).astype(F16)),
    *(Case(f"attention bf16 1x8x{n}x64", "attention", {"B": 1, "H": 8, "S": n, "D": 64},
           lambda q, k, v: _attention(q, k, v, BF16).astype(BF16)) for n in (2048, 4096)),
    *(Case(f"attention_causal f16 1x8x{n}x64", "attention_causal",
           {"B": 1, "H": 8, "S": n, "D": 64},
           lambda q, k, v: _attention(q, k, v, F16, _causal(q.shape[2])).astype(F16))
      for n in (1024, 2048, 4096)),
    Case("attention_gqa bf16 1x8(2)x1024x128", "attention_gqa",
         {"B": 1, "H": 8, "G": 2, "S": 1024, "D": 128},
         lambda q, k, v: _attention(q, np.repeat(k, 4, axis=1), np.repeat(v, 4, axis=1),
                                    BF16).astype(BF16)),
    Case("attention_fp8 1x8x1024x128 vs f32", "attention_fp8",
         {"B": 1, "H": 8, "S": 1024, "D": 128},
         lambda q, k, v: _attention(q, k, v).astype(BF16)),
    Case("cross_entropy bf16 2048x32000", "cross_entropy", {"N": 2048, "C": 32000},
         lambda logits, labels: _cross_entropy(logits, labels)),
    Case("l2_normalize f32 16384x768", "l2_normalize", {"N": 16384, "D": 768},
         lambda x: _l2(x)),
    Case("rotary_embedding bf16 2x1024x32x128", "rotary_embedding",
         {"B": 2, "S": 1024, "H": 32, "D": 128}, lambda x, cos, sin: _rotary(x, cos, sin)),
    Case("row_reductions f32 4096x8192", "row_reductions", {"M": 4096, "N": 8192},
         lambda x: _reductions(x)),
]


def _compile(case: Case):
    if "\n" in case.source:
        return zhenwu_cc.compile(case.source, defines=case.defines)
    return zhenwu_cc.compile(EXAMPLES / f"{case.source}.zk", defines=case.defines)


def _prepare(case: Case):
    """The compiled kernel, its inputs in their declared dtypes, and the two calls."""
    k = _compile(case)
    inputs = k.inputs(seed=0)
    k.run(**inputs)  # lowers to ppu and warms the executor's one-time set-up
    return (lambda: k.run(**inputs)), (lambda: case.baseline(**inputs))


def _best(ours: Callable[[], object], theirs: Callable[[], object], repeat: int
          ) -> tuple[float, float]:
    """Best seconds of each side, the two alternating after a warm-up run each."""
    ours(), theirs()
    a, b = [], []
    for _ in range(repeat):
        for fn, times in ((ours, a), (theirs, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(a), min(b)


def _peak_rss_rise(fn: Callable[[], object]) -> int | None:
    """Bytes the peak resident set rises by while `fn()` runs (None where Linux's VmHWM reset is
    unavailable)."""
    def hwm() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise OSError("no VmHWM")

    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise OSError("no VmRSS")

    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = rss()
        fn()
        return hwm() - before
    except OSError:
        return None


def _memory_child(index: int, side: str) -> None:
    """In a fresh process: one call of `side` of case `index`, its peak RSS rise as JSON."""
    case = CASES[index]
    k = _compile(case)
    inputs = k.inputs(seed=0)
    k.module("ppu")
    call = (lambda: k.run(**inputs)) if side == "executor" else (lambda: case.baseline(**inputs))
    print(json.dumps(_peak_rss_rise(call)))


def _memory(index: int, side: str) -> int | None:
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(index), side],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _mib(n: int | None) -> str:
    return "    n/a" if n is None else f"{n / 2**20:7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side (best of)")
    parser.add_argument("--only", nargs="*", help="cases whose label contains one of these")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS measurement")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        _memory_child(int(args.memory_child[0]), args.memory_child[1])
        return
    threads = {k: v for k, v in sorted(os.environ.items())
               if k.startswith(("OPENBLAS", "OMP_", "MKL_", "NVPL"))}
    print(f"zhenwu-cc {zhenwu_cc.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, thread settings: {threads or 'none'}")
    print(f"{'case':40} {'executor':>9} {'numpy':>9} {'ratio':>6}  {'RSS rise MiB':>15}")
    print(f"{'':40} {'best s':>9} {'best s':>9} {'':>6}  {'executor':>7} {'numpy':>7}")
    for index, case in enumerate(CASES):
        if args.only and not any(s in case.label for s in args.only):
            continue
        ours, theirs = _prepare(case)
        mine, base = _best(ours, theirs, args.repeat)
        memory = ("" if args.no_memory else
                  f"  {_mib(_memory(index, 'executor'))} {_mib(_memory(index, 'numpy'))}")
        print(f"{case.label:40} {mine:9.3f} {base:9.3f} {mine / base:5.2f}x{memory}", flush=True)


if __name__ == "__main__":
    main()

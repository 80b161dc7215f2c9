"""The executor's time against plain numpy on the same data, as ratios (median of several runs).

Kernels: f32 GEMM 2048^3 with tiles 128x128x64 and 64x64x32, softmax over 4096x4096 rows,
layernorm over 8192x4096 rows. The ppu IR comes from the compiler when `zhenwu-cc compile` can
emit it (`--emit ppu`); until then from the small templates below, shaped as the lowering would
write them (double-buffered GEMM loop; whole-row vector kernels). Both sides run in this process
with the same BLAS threads; the figures are for this machine, never pass/fail.

    .venv/bin/python benchmarks/runtime_vs_numpy.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from xdsl.parser import Parser

from zhenwu_cc.dialects import ppu
from zhenwu_cc.pipeline import make_context
from zhenwu_cc.runtime.executor import execute


def _mem(shape: tuple[int, ...], dtype: str, space: str) -> str:
    dims = "".join(f"{d}x" for d in shape)
    return f"memref<{dims}{dtype}, #ppu.space<{space}>>"


def _kernel(name: str, ins: dict[str, tuple[int, ...]], outs: dict[str, tuple[int, ...]],
            body: str) -> str:
    args = ", ".join(f"%{n}: {_mem(s, 'f32', 'hbm')}" for n, s in ins.items())
    res = ", ".join(f"%{n}: {_mem(s, 'f32', 'hbm')}" for n, s in outs.items())
    return (f"builtin.module {{\n  ppu.kernel @{name}({args}) -> ({res}) {{\n{body}"
            "    ppu.return\n  }\n}\n")


def gemm_ir(m: int, n: int, k: int, tm: int, tn: int, tk: int) -> str:
    """C = A @ B: a [m/tm, n/tn] grid, A and B tiles double-buffered over a loop on K."""
    acc, a2, b2 = _mem((tm, tn), "f32", "sram"), _mem((2, tm, tk), "f32", "sram"), \
        _mem((2, tk, tn), "f32", "sram")
    at, bt = _mem((tm, tk), "f32", "sram"), _mem((tk, tn), "f32", "sram")
    ga, gb, gc = _mem((m, k), "f32", "hbm"), _mem((k, n), "f32", "hbm"), \
        _mem((m, n), "f32", "hbm")
    a_off, b_off = 4 * tm * tn, 4 * tm * tn + 8 * tm * tk
    body = f"""    ppu.launch [{m // tm}, {n // tn}] (%i, %j) cus 128 role matmul {{
      %acc = ppu.alloc offset 0 depth 1 : {acc}
      %abuf = ppu.alloc offset {a_off} depth 2 : {a2}
      %bbuf = ppu.alloc offset {b_off} depth 2 : {b2}
      ppu.fill 0.0 -> %acc : {acc}
      ppu.loop %k = 0 to {k // tk} {{
        %as = ppu.slot %abuf[%k] : {a2} -> {at}
        %bs = ppu.slot %bbuf[%k] : {b2} -> {bt}
        %t0 = ppu.dma_load %a[%i, %k] tile [{tm}, {tk}] -> %as : {ga}, {at}
        %t1 = ppu.dma_load %b[%k, %j] tile [{tk}, {tn}] -> %bs : {gb}, {bt}
        ppu.wait %t0, %t1
        ppu.mma %as, %bs, %acc : {at}, {bt}, {acc}
        ppu.yield
      }}
      %t2 = ppu.dma_store %acc -> %c[%i, %j] tile [{tm}, {tn}] : {acc}, {gc}
      ppu.wait %t2
      ppu.yield
    }}
"""
    return _kernel("gemm", {"a": (m, k), "b": (k, n)}, {"c": (m, n)}, body)


class _Vector:
    """Builds the body of a whole-row vector kernel: SRAM buffers placed one after another."""

    def __init__(self):
        self.lines: list[str] = []
        self.offset = 0
        self.types: dict[str, str] = {}

    def alloc(self, name: str, shape: tuple[int, ...]) -> None:
        self.types[name] = _mem(shape, "f32", "sram")
        self.lines.append(f"%{name} = ppu.alloc offset {self.offset} depth 1 : "
                          f"{self.types[name]}")
        self.offset += 4 * int(np.prod(shape))

    def vmap(self, fn: str, ins: list[str], out: str) -> None:
        args = ", ".join(f"%{x}" for x in ins)
        types = ", ".join(self.types[x] for x in ins)
        self.lines.append(f'ppu.vmap "{fn}"({args}) -> %{out} : ({types}) -> {self.types[out]}')

    def reduce(self, fn: str, x: str, out: str) -> None:
        self.lines.append(f'ppu.vreduce "{fn}" %{x} axes [1] -> %{out} : {self.types[x]} -> '
                          f"{self.types[out]}")

    def fill(self, value: float, out: str) -> None:
        self.lines.append(f"ppu.fill {value:.17e} -> %{out} : {self.types[out]}")

    def load(self, src: str, shape: tuple[int, ...], idx: str, out: str) -> None:
        self.lines.append(f"%t{len(self.lines)} = ppu.dma_load %{src}[{idx}] tile "
                          f"{list(_tile(self.types[out]))} -> %{out} : "
                          f"{_mem(shape, 'f32', 'hbm')}, {self.types[out]}")

    def store(self, x: str, dst: str, shape: tuple[int, ...], idx: str) -> None:
        self.lines.append(f"%t{len(self.lines)} = ppu.dma_store %{x} -> %{dst}[{idx}] tile "
                          f"{list(_tile(self.types[x]))} : {self.types[x]}, "
                          f"{_mem(shape, 'f32', 'hbm')}")

    def launch(self, grid: int) -> str:
        inner = "".join(f"      {line}\n" for line in self.lines)
        return (f"    ppu.launch [{grid}] (%i) cus 128 role vector {{\n"
                f"      %c0 = arith.constant 0 : index\n{inner}      ppu.yield\n    }}\n")


def _tile(memref: str) -> tuple[int, ...]:
    dims = memref[len("memref<"):].split(",")[0].split("x")[:-1]
    return tuple(int(d) for d in dims)


def softmax_ir(rows: int, cols: int, tm: int) -> str:
    v = _Vector()
    v.alloc("xb", (tm, cols))
    v.alloc("m", (tm, 1))
    v.alloc("s", (tm, 1))
    v.load("x", (rows, cols), "%i, %c0", "xb")
    v.reduce("max", "xb", "m")
    v.vmap("sub", ["xb", "m"], "xb")
    v.vmap("exp", ["xb"], "xb")
    v.reduce("sum", "xb", "s")
    v.vmap("div", ["xb", "s"], "xb")
    v.store("xb", "y", (rows, cols), "%i, %c0")
    return _kernel("softmax", {"x": (rows, cols)}, {"y": (rows, cols)}, v.launch(rows // tm))


def layernorm_ir(rows: int, cols: int, tm: int, eps: float) -> str:
    v = _Vector()
    for name, shape in (("xb", (tm, cols)), ("xc", (tm, cols)), ("g", (cols,)), ("b", (cols,)),
                        ("s", (tm, 1)), ("mean", (tm, 1)), ("var", (tm, 1)), ("inv", ()),
                        ("eps", ())):
        v.alloc(name, shape)
    v.fill(1.0 / cols, "inv")
    v.fill(eps, "eps")
    v.load("x", (rows, cols), "%i, %c0", "xb")
    v.load("gamma", (cols,), "%c0", "g")
    v.load("beta", (cols,), "%c0", "b")
    v.reduce("sum", "xb", "s")
    v.vmap("mul", ["s", "inv"], "mean")
    v.vmap("sub", ["xb", "mean"], "xc")
    v.vmap("mul", ["xc", "xc"], "xb")
    v.reduce("sum", "xb", "s")
    v.vmap("mul", ["s", "inv"], "var")
    v.vmap("add", ["var", "eps"], "var")
    v.vmap("rsqrt", ["var"], "var")
    v.vmap("mul", ["xc", "var"], "xc")
    v.vmap("mul", ["xc", "g"], "xc")
    v.vmap("add", ["xc", "b"], "xc")
    v.store("xc", "y", (rows, cols), "%i, %c0")
    ins = {"x": (rows, cols), "gamma": (cols,), "beta": (cols,)}
    return _kernel("layernorm", ins, {"y": (rows, cols)}, v.launch(rows // tm))


# ---- numpy baselines ----------------------------------------------------------------------------
def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=1, keepdims=True)
    return xc / np.sqrt(var + np.float32(eps)) * gamma + beta


# ---- measuring ----------------------------------------------------------------------------------
def _median_seconds(ours: Callable[[], object], theirs: Callable[[], object],
                   repeat: int) -> tuple[float, float]:
    """Median seconds of each side, timed alternately so drifting machine load hits both."""
    ours(), theirs()  # warm-up: page in the inputs, load BLAS
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in zip((ours, theirs), times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _parse(text: str) -> ppu.KernelOp:
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module.ops.first


def cases(rng: np.random.Generator):
    """(label, ppu IR, inputs, numpy function, numpy outputs name)."""
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    b = rng.standard_normal((2048, 2048), dtype=np.float32)
    for tiles in ((128, 128, 64), (64, 64, 32)):
        label = f"gemm f32 2048^3 tiles {'x'.join(map(str, tiles))}"
        yield label, gemm_ir(2048, 2048, 2048, *tiles), {"a": a, "b": b}, lambda: a @ b
    x = rng.standard_normal((4096, 4096), dtype=np.float32)
    yield "softmax f32 4096x4096 rows of 4096", softmax_ir(4096, 4096, 8), {"x": x}, \
        lambda: np_softmax(x)
    x = rng.standard_normal((8192, 4096), dtype=np.float32)
    gamma = rng.standard_normal(4096, dtype=np.float32)
    beta = rng.standard_normal(4096, dtype=np.float32)
    yield "layernorm f32 8192x4096 rows of 4096", layernorm_ir(8192, 4096, 8, 1e-5), \
        {"x": x, "gamma": gamma, "beta": beta}, lambda: np_layernorm(x, gamma, beta, 1e-5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side (median)")
    args = parser.parse_args()
    threads = {k: v for k, v in sorted(os.environ.items())
               if k.startswith(("OPENBLAS", "OMP_", "MKL_", "NVPL"))}
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, thread settings: {threads or 'none'}")
    print("ppu IR from: templates (the pipeline does not emit ppu yet)")
    print(f"{'kernel':42} {'executor':>10} {'numpy':>10} {'ratio':>7}  max |diff|")
    for label, text, inputs, baseline in cases(np.random.default_rng(0)):
        kernel = _parse(text)
        ours, theirs = _median_seconds(lambda: execute(kernel, inputs), baseline, args.repeat)
        (got,) = execute(kernel, inputs).values()
        diff = float(np.max(np.abs(got - baseline())))
        print(f"{label:42} {ours:9.3f}s {theirs:9.3f}s {ours / theirs:6.2f}x  {diff:.2e}")


if __name__ == "__main__":
    main()

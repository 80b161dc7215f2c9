"""Every kernel in examples/ (found by glob, so a new example is covered as soon as it lands):

(a) it parses and verifies at its default (large) shapes — no evaluation at those sizes;
(b) its printed IR round-trips through xDSL's parser, with and without locations;
(c) at reduced shapes (non-powers of two included) its float64 reference evaluation equals a
    hand-written numpy expression of the same math.

A new example needs an entry in REDUCED and EXPECTED below; the tests say so if it is missing.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer
from zhenwu_cc.dialects import zk
from zhenwu_cc.dialects.zk import ZK

from zhenwu_cc.frontend import build

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FILES = sorted(EXAMPLES.glob("*.zk"))
IDS = [p.stem for p in FILES]


def _f(x) -> np.ndarray:
    """An input as float64 (inputs arrive in their declared dtypes, e.g. bfloat16)."""
    return np.asarray(x, dtype=np.float64)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _t(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


# ---- the hand-written math, one function per example (inputs -> outputs by result name) --------
def _gemm(i):
    return {"c": _f(i["a"]) @ _f(i["b"])}


def _gemm_batched(i):
    return {"result0": np.matmul(_f(i["a"]), _f(i["b"]))}


def _gemm_bias_gelu(i):
    return {"result0": _gelu(_f(i["x"]) @ _f(i["w"]) + _f(i["b"]))}


def _softmax_rows(i):
    return {"result0": _softmax(_f(i["x"]), axis=1)}


def _layernorm(i):
    x = _f(i["x"])
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    return {"result0": (x - mu) / np.sqrt(var + 1e-5) * _f(i["gamma"]) + _f(i["beta"])}


def _rmsnorm(i):
    h = _f(i["x"]) + _f(i["residual"])
    y = h / np.sqrt((h * h).mean(axis=1, keepdims=True) + 1e-6) * _f(i["weight"])
    return {"y": y, "h": h}


def _attention(i):
    q, k, v = _f(i["q"]), _f(i["k"]), _f(i["v"])
    d = q.shape[-1]
    return {"result0": _softmax(q @ _t(k) / np.sqrt(d)) @ v}


def _attention_causal(i):
    q, k, v = _f(i["q"]), _f(i["k"]), _f(i["v"])
    s_len, d = q.shape[-2], q.shape[-1]
    s = q @ _t(k) / np.sqrt(d)
    causal = np.tril(np.ones((s_len, s_len), dtype=bool))  # j <= i
    s = np.where(causal, s, -np.inf)
    return {"result0": _softmax(s) @ v}


def _attention_gqa(i):
    q, k, v = _f(i["q"]), _f(i["k"]), _f(i["v"])
    heads, groups, d = q.shape[1], k.shape[1], q.shape[-1]
    # query head h uses KV head h // (H / G)
    k_rep = np.repeat(k, heads // groups, axis=1)
    v_rep = np.repeat(v, heads // groups, axis=1)
    s = q @ _t(k_rep) / np.sqrt(d)
    s = 50.0 * np.tanh(s / 50.0)
    return {"out": _softmax(s) @ v_rep}


def _attention_fp8(i):
    return _attention(i)


def _mlp_swiglu(i):
    x = _f(i["x"])
    h = _silu(x @ _f(i["w_gate"])) * (x @ _f(i["w_up"]))
    return {"result0": h @ _f(i["w_down"])}


def _row_reductions(i):
    x = _f(i["x"])
    top = x.max(axis=1, keepdims=True)
    return {"total": x.sum(axis=1), "avg": x.mean(axis=1), "peak": top,
            "low": x.min(axis=1), "lse": np.log(np.exp(x - top).sum(axis=1)) + top[:, 0],
            "best": np.argmax(x, axis=1)}


def _rotary_embedding(i):
    x = _f(i["x"])
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = np.concatenate([-x2, x1], axis=-1)
    cos, sin = _f(i["cos"])[:, None, :], _f(i["sin"])[:, None, :]  # [S, 1, D] over heads
    return {"result0": x * cos + rotated * sin}


def _cross_entropy(i):
    logits, labels = _f(i["logits"]), np.asarray(i["labels"])
    top = logits.max(axis=1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(len(labels)), labels]
    return {"loss": loss, "mean_loss": np.asarray(loss.mean())}


def _lm_head_logsumexp(i):
    logits = _f(i["h"]) @ _f(i["w"])
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return {"lse": lse, "z_loss": np.asarray(1e-4 * (lse * lse).mean())}


def _gemm_lowp(i):
    # precision directives change how the chip computes, not the meaning: the f64 oracle
    # ignores them, so the math is a plain matmul.
    return {"result0": _f(i["x"]) @ _f(i["w"])}


def _gemm_nvfp4(i):
    return {"result0": _f(i["x"]) @ _f(i["w"]).T}


def _gemm_int8(i):
    acc = np.asarray(i["xq"], dtype=np.int64) @ np.asarray(i["wq"], dtype=np.int64)
    return {"y": acc * _f(i["x_scale"]) * _f(i["w_scale"])}


def _l2_normalize(i):
    x = _f(i["x"])
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return {"y": np.clip(x / np.maximum(norm, 1e-12), -1.0, 1.0)}


# file stem -> (reduced -D values, numpy math). Sizes are small and mostly not powers of two;
# the low-precision examples keep the multiples their scale modes need (32 for mx, 16 for nvfp4,
# 128 for block(.., 128)).
CASES: dict[str, tuple[dict[str, int], Callable[[dict], dict]]] = {
    "gemm": ({"M": 37, "N": 48, "K": 40}, _gemm),
    "gemm_batched": ({"B": 3, "M": 20, "N": 24, "K": 18}, _gemm_batched),
    "gemm_bias_gelu": ({"M": 33, "N": 40, "K": 24}, _gemm_bias_gelu),
    "softmax": ({"M": 17, "N": 50}, _softmax_rows),
    "layernorm": ({"T": 12, "D": 96}, _layernorm),
    "rmsnorm": ({"T": 10, "D": 80}, _rmsnorm),
    "attention": ({"B": 2, "H": 3, "S": 24, "D": 16}, _attention),
    "attention_causal": ({"B": 2, "H": 2, "S": 20, "D": 12}, _attention_causal),
    "attention_gqa": ({"B": 2, "H": 6, "G": 2, "S": 14, "D": 8}, _attention_gqa),
    "attention_fp8": ({"B": 1, "H": 3, "S": 24, "D": 32}, _attention_fp8),
    "mlp_swiglu": ({"T": 9, "D": 24, "F": 56}, _mlp_swiglu),
    "row_reductions": ({"M": 13, "N": 70}, _row_reductions),
    "rotary_embedding": ({"B": 2, "S": 7, "H": 3, "D": 12}, _rotary_embedding),
    "cross_entropy": ({"N": 11, "C": 19}, _cross_entropy),
    "lm_head_logsumexp": ({"T": 19, "D": 24, "V": 70}, _lm_head_logsumexp),
    "gemm_fp8": ({"M": 24, "N": 40, "K": 56}, _gemm_lowp),
    "gemm_fp8_block": ({"M": 20, "N": 384, "K": 256}, _gemm_lowp),
    "gemm_mxfp8": ({"M": 24, "N": 40, "K": 96}, _gemm_lowp),
    "gemm_mxfp4": ({"M": 18, "N": 36, "K": 160}, _gemm_lowp),
    "gemm_nvfp4": ({"M": 20, "N": 28, "K": 48}, _gemm_nvfp4),
    "gemm_int8": ({"M": 15, "N": 22, "K": 36}, _gemm_int8),
    "l2_normalize": ({"N": 25, "D": 30}, _l2_normalize),
}

# Inputs the random generator cannot know the meaning of (it draws integers in -8..7).
ADJUST: dict[str, Callable[[dict, np.random.Generator], None]] = {
    "cross_entropy": lambda i, rng: i.__setitem__(
        "labels", rng.integers(0, i["logits"].shape[1], i["labels"].shape).astype(np.int32)),
}

REQUIRED = ["gemm", "gemm_batched", "gemm_bias_gelu", "softmax", "layernorm", "rmsnorm",
            "attention", "attention_causal", "mlp_swiglu", "row_reductions", "rotary_embedding",
            "cross_entropy", "gemm_fp8", "gemm_fp8_block", "gemm_mxfp8", "gemm_mxfp4",
            "gemm_nvfp4", "attention_fp8"]


def _ctx() -> Context:
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(ZK)
    return ctx


def _print(op, debuginfo: bool) -> str:
    buf = io.StringIO()
    Printer(stream=buf, print_debuginfo=debuginfo).print_op(op)
    return buf.getvalue()


def _kernels(module: ModuleOp) -> list[zk.KernelOp]:
    return [op for op in module.ops if isinstance(op, zk.KernelOp)]


@pytest.fixture(scope="module")
def built() -> dict[str, ModuleOp]:
    """Each example built once at its default shapes (shared by the tests of this module)."""
    return {p.stem: build(p.read_text(), str(p)) for p in FILES}


def test_the_required_examples_exist():
    assert len(FILES) >= 16
    missing = sorted(set(REQUIRED) - set(IDS))
    assert not missing, f"examples missing: {missing}"


def test_gemm_keeps_its_interface(built):
    (k,) = _kernels(built["gemm"])
    assert k.sym_name.data == "gemm"
    assert set(k.attributes["params"].data) == {"M", "N", "K"}


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_example_has_a_header_comment(path: Path):
    text = path.read_text()
    header = re.match(r"(\s*//[^\n]*\n)+", text)
    assert header and len(header.group(0)) > 60, f"{path.name} needs a header comment"
    assert "kernel " in text


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_example_builds_at_default_shapes(path: Path, built):
    module = built[path.stem]
    assert isinstance(module, ModuleOp)
    kernels = _kernels(module)
    assert kernels, f"{path.name} defines no kernel"
    module.verify()
    for k in kernels:
        # the shape parameters are recorded with their (large) default values
        params = {n: a.value.data for n, a in k.attributes["params"].data.items()}
        assert all(v >= 1 for v in params.values())
    if "schedule " in path.read_text():  # a schedule block leaves attributes in the IR
        assert "#zk." in _print(module, False) or "zk.buffers" in _print(module, False)


@pytest.mark.parametrize("debuginfo", [False, True], ids=["plain", "debuginfo"])
@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_printed_ir_round_trips(path: Path, debuginfo: bool, built):
    text = _print(built[path.stem], debuginfo)
    if debuginfo:
        assert f'loc("{path}":' in text
    reparsed = Parser(_ctx(), text, str(path)).parse_module()
    reparsed.verify()
    assert _print(reparsed, debuginfo) == text


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_reference_matches_numpy(path: Path):
    from zhenwu_cc.runtime import reference

    if path.stem not in CASES:
        pytest.fail(f"add {path.stem!r} to CASES in tests/test_examples.py: reduced -D values "
                    "and a numpy expression of its math")
    defines, expected_fn = CASES[path.stem]
    module = build(path.read_text(), str(path), defines)
    (kernel,) = _kernels(module)
    params = {n: a.value.data for n, a in kernel.attributes["params"].data.items()}
    assert params.keys() == defines.keys(), "reduce every shape parameter"
    assert params == defines
    inputs = reference.random_inputs(kernel, seed=7)
    if path.stem in ADJUST:
        ADJUST[path.stem](inputs, np.random.default_rng(7))
    got = reference.evaluate(kernel, inputs, mode="f64")
    want = expected_fn(inputs)
    assert list(got) == kernel.names_of_results
    assert set(got) == set(want)
    for name, w in want.items():
        g = got[name]
        assert g.shape == np.shape(w), f"{name}: shape {g.shape} != {np.shape(w)}"
        assert np.isfinite(g).all(), f"{name} has non-finite values"
        if np.asarray(w).dtype.kind in "iub":
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("target", ["m890", "810e"])
@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_example_lowers_with_its_schedule(path: Path, target: str):
    """What users copy compiles all the way down at its default shapes, on the default target and
    on the packaged target with the least SRAM per compute unit (so `compare` works too): its
    tile sizes fit (ZK0604 otherwise)."""
    from zhenwu_cc.pipeline import lower

    module = build(path.read_text(), str(path))
    lower(module, "ppu", target)
    module.verify()
    assert any(op.name == "ppu.kernel" for op in module.ops)


DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC_PAGES = ["language.md", "agent-guide.md"]


def _zk_blocks(page: str) -> list[tuple[int, str]]:
    text = (DOCS / page).read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1))
            for m in re.finditer(r"^```zk\n(.*?)^```", text, re.M | re.S)]


def test_doc_pages_have_kernel_blocks():
    for page in DOC_PAGES:
        assert _zk_blocks(page), page


@pytest.mark.parametrize("page", DOC_PAGES)
def test_doc_kernel_blocks_compile(page: str):
    """Every ```zk block in the user docs is a complete, valid compilation unit."""
    for line, block in _zk_blocks(page):
        try:
            module = build(block, f"{page}:{line}")
        except Exception as exc:  # noqa: BLE001 - report which block
            pytest.fail(f"{page}, block at line {line}: {exc}")
        assert _kernels(module)


_ANNOTATED = re.compile(r"^\s*(\w+)\s*=.*//:\s*(\w+)\[([^\]]*)\]\s*$", re.M)


@pytest.mark.parametrize("page", DOC_PAGES)
def test_doc_type_annotations_hold(page: str):
    """`name = expr  //: dtype[shape]` in a doc block is the type the front end gives `name`."""
    from zhenwu_cc.core import dtypes

    checked = 0
    for line, block in _zk_blocks(page):
        want = {m.group(1): (m.group(2), [int(d) for d in m.group(3).split(",") if d.strip()])
                for m in _ANNOTATED.finditer(block)}
        if not want:
            continue
        module = build(block, f"{page}:{line}")
        got = {}
        for k in _kernels(module):
            for op in k.body.walk():
                for r in op.results:
                    if r.name_hint in want:
                        got[r.name_hint] = (dtypes.from_xdsl(r.type.element_type).name,
                                            list(r.type.get_shape()))
        assert got == want, f"{page}, block at line {line}"
        checked += len(want)
    if page == "language.md":
        assert checked >= 30


# The low-precision examples exist to show these recipes: their IR must carry them.
PRECISION = {
    "gemm_fp8": ["%x: tensor<4096x4096xbf16> {zk.precision = #zk.precision<f8E4M3FN, tensor>}"],
    "gemm_fp8_block": ["{zk.precision = #zk.precision<f8E4M3FN, block [1, 128]>}",
                       "{zk.precision = #zk.precision<f8E4M3FN, block [128, 128]>}"],
    "gemm_mxfp8": ["%w: tensor<4096x4096xbf16> {zk.precision = #zk.precision<f8E4M3FN, mx>}"],
    "gemm_mxfp4": ["%w: tensor<4096x4096xbf16> {zk.precision = #zk.precision<f4E2M1FN, mx>}"],
    "gemm_nvfp4": ["%w: tensor<4096x4096xbf16> {zk.precision = #zk.precision<f4E2M1FN, nvfp4>}"],
    "attention_fp8": ["%v: tensor<4x32x4096x128xbf16> {zk.precision = "
                      "#zk.precision<f8E4M3FN, tensor>}",
                      "%p = zk.softmax %s axis 3 {zk.precision = #zk.precision<f8E4M3FN, unit>}"],
}


@pytest.mark.parametrize("name", sorted(PRECISION))
def test_low_precision_examples_carry_their_recipe(name: str, built):
    text = _print(built[name], False)
    for fragment in PRECISION[name]:
        assert fragment in text, fragment

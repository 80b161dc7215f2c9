"""Fuzzing the front end: no input may crash it (raise anything but CompileError) or hang.

Three sources of input: random kernels drawn from the grammar (mostly near-valid, so they reach
irgen and the schedule checks), random well-typed kernels (which must build), and mutations of
the example files and of those well-typed kernels. Each build runs under an alarm, so a hang fails
the example instead of the suite. Crashes found here are fixed in the front end and kept as plain
regression tests at the end of this file.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
from collections.abc import Callable

import pytest
from conftest import EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from zhenwu_cc.core import dtypes

from zhenwu_cc.cli import main
from zhenwu_cc.core.diagnostics import CODES, CompileError
from zhenwu_cc.frontend import build
from zhenwu_cc.frontend.builtins import BUILTINS, UNARY_FUNCS
from zhenwu_cc.frontend.schedules import ACCUMULATE_DTYPES, PRECISION_DTYPES, SCALE_MODES
from zhenwu_cc.frontend.parser import DIRECTIVES

TIME_LIMIT_S = 10.0  # one example takes milliseconds; this only catches hangs and blow-ups
DTYPE_NAMES = tuple(dtypes.DTYPES)
EXAMPLE_TEXTS = tuple(p.read_text() for p in sorted(EXAMPLES.glob("*.zk")))


class Hang(Exception):
    """The front end did not answer within TIME_LIMIT_S."""


@contextlib.contextmanager
def time_limit(seconds: float = TIME_LIMIT_S):
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def build_or_diagnose(text: str):
    """Build `text`; a CompileError must carry registered codes. Anything else propagates."""
    try:
        with time_limit():
            return build(text, "fuzz.zk")
    except CompileError as exc:
        assert exc.diagnostics and all(d.code in CODES for d in exc.diagnostics)
        return None


# ---- (a) random kernels from the grammar ---------------------------------------------------------
# Two leaves in three are common names and literals, so that most kernels get past the parser
# and name lookup and reach the type, shape and schedule checks.
NAMES = ("x", "y", "w", "b", "v0", "v1", "v2", "M", "N", "K")
RARE_NAMES = ("tiles", "scale", "in2", "zzz", "inf", "pi", "true", "false", "exp", "f32")
LITERALS = ("0", "1", "2", "-1", "0.5", "1.", ".5", "1e-30", "448")
RARE_LITERALS = ("1e30", "1e400", "1e300", "65504", "2147483648", "9223372036854775807", "inf")
ARITHMETIC = ("+", "-", "*", "/", "@")
OPERATORS = (*ARITHMETIC, "==", "!=", "<", "<=", ">", ">=")
KWARGS = ("axis", "keepdims", "min", "max", "scale", "bias", "eps", "perm", "axes", "dtype")
INTS = (0, 1, 2, 3, 4, 8, 16, 64, 128, 1024, 65536, 65537, 2**31, 2**63 - 1)
SHAPE_VALUES = (1, 2, 3, 4, 8, 16)  # mutations put in 0, -1 and huge values


def _join(items) -> str:
    return ", ".join(items)


def _expressions() -> st.SearchStrategy[str]:
    def extend(e: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        call = st.builds(
            lambda f, args, kws: f"{f}({_join([*args, *(f'{k}={v}' for k, v in kws)])})",
            st.sampled_from((*BUILTINS, *DTYPE_NAMES, "gelu2", "float16")),
            st.lists(e, max_size=4),
            st.lists(st.tuples(st.sampled_from(KWARGS), e), max_size=3))
        subscript = st.one_of(e, st.builds(lambda a, b: f"{a}:{b}", e | st.just(""),
                                           e | st.just("")))
        return st.one_of(
            st.builds(lambda a, op, b: f"{a} {op} {b}", e, st.sampled_from(ARITHMETIC), e),
            st.builds(lambda a, op, b: f"({a} {op} {b})", e, st.sampled_from(OPERATORS), e),
            e.map(lambda a: f"-{a}"),
            call,
            st.builds(lambda a, subs: f"{a}[{_join(subs)}]", e, st.lists(subscript, min_size=1,
                                                                        max_size=3)),
            st.lists(e, min_size=1, max_size=3).map(lambda items: f"({_join(items)},)"),
            st.lists(e, max_size=3).map(lambda items: f"[{_join(items)}]"),
        )

    leaf = st.one_of(st.sampled_from(NAMES), st.sampled_from(LITERALS),
                     st.sampled_from(RARE_NAMES + RARE_LITERALS))
    return st.recursive(leaf, extend, max_leaves=10)


EXPR = _expressions()
SHAPE_NAMES = ("M", "N", "K", "B")
_DTYPE = st.sampled_from(("f32", "f32", "f16", "bf16", *DTYPE_NAMES))  # mutations add bad ones


@st.composite
def tensor_types(draw) -> str:
    """Dimensions are mostly shape parameters or small integers, one in ten anything."""
    dims = [draw(EXPR | st.sampled_from(("0", "M * 2", "N - 1", "K / 2")))
            if draw(st.integers(0, 9)) == 9 else draw(st.sampled_from((*SHAPE_NAMES, "1", "2")))
            for _ in range(draw(st.integers(0, 3)))]
    return f"{draw(_DTYPE)}[{_join(dims)}]"


TENSOR_TYPES = tensor_types()
PARAM_NAMES = ("x", "y", "w", "b", "tile", "scale")
# names a schedule may mention: those of random_kernels and of valid_kernels, and one unknown
SCHEDULE_NAMES = (*PARAM_NAMES, "h", "r", "mm", *(f"v{i}" for i in range(8)), "nope")


def _directive() -> st.SearchStrategy[str]:
    name = st.sampled_from(SCHEDULE_NAMES)
    ints = st.lists(st.sampled_from(INTS).map(str), max_size=4)
    signed = st.lists(st.sampled_from(("-1", "0", "1", "2", "32", "128", "99999999999")),
                      max_size=3)
    dtype = st.sampled_from((*PRECISION_DTYPES, *DTYPE_NAMES, "fp8", "f64"))
    mode = st.sampled_from((*SCALE_MODES, "blocks", "row"))
    return st.one_of(
        st.builds(lambda n, s, k: f"tile {n} [{_join(s)}]" + (f" split_k {k}" if k else ""),
                  name, ints, st.none() | st.sampled_from(INTS)),
        st.builds(lambda ns, d, m, a: f"precision {_join(ns)} as {d}" +
                  ("" if m is None else f" scale {m}" + ("" if a is None else f"({_join(a)})")),
                  st.lists(name, min_size=1, max_size=2), dtype, st.none() | mode,
                  st.none() | signed),
        st.builds(lambda d: f"accumulate {d}", dtype | st.sampled_from(ACCUMULATE_DTYPES)),
        st.builds(lambda ns, s: f"place {_join(ns)} in " + (
            "l2" if s is None else "hbm" + (f" stacks({_join(s)})" if s else "")),
                  st.lists(name, min_size=1, max_size=2),
                  st.none() | st.lists(st.sampled_from(("0", "1", "3", "7", "8", "1" + "0" * 30)),
                                       max_size=3)),
        st.builds(lambda n: f"buffers {n}", st.sampled_from(INTS)),
    )


def _unknown_directive() -> st.SearchStrategy[str]:
    return st.builds(lambda d, n: f"{d} {n}", st.sampled_from(("tiles", "bufers", "placement",
                                                               "precison", "split_k", "xyz")),
                     st.sampled_from(SCHEDULE_NAMES))


DIRECTIVES_BLOCK = st.lists(_directive() | _directive() | _unknown_directive(), max_size=5).map(
    lambda ds: "".join(f"    {d}\n" for d in ds))


@st.composite
def random_kernels(draw) -> str:
    """A kernel with random shape parameters, parameters, statements and schedule."""
    shape_names = SHAPE_NAMES if draw(st.integers(0, 3)) < 3 else draw(
        st.lists(st.sampled_from(SHAPE_NAMES), unique=True))
    shape = _join(f"{n} = {draw(st.sampled_from(SHAPE_VALUES))}" for n in shape_names)
    params = ["x", "y", *draw(st.lists(st.sampled_from(PARAM_NAMES[2:]), max_size=3,
                                       unique=True))]
    param_text = _join(f"{p}: {draw(TENSOR_TYPES)}" for p in params)
    results = draw(st.lists(TENSOR_TYPES, min_size=1, max_size=2))
    result_text = results[0] if len(results) == 1 else f"({_join(results)})"
    bound = [f"v{i}" for i in range(draw(st.integers(1, 8)))]
    body = [f"    {v if draw(st.integers(0, 9)) < 9 else draw(st.sampled_from(('x', 'M', 'exp')))}"
            f" = {draw(EXPR)}" for v in bound]
    ret = _join(draw(st.lists(st.sampled_from(bound) | EXPR, min_size=1, max_size=2)))
    text = (f"kernel k<{shape}>({param_text}) -> {result_text} {{\n" + "\n".join(body)
            + f"\n    return {ret}\n}}\n")
    if draw(st.booleans()):
        target = draw(st.sampled_from(("k", "k", "k", "k", "kk")))
        text += f"schedule {target} {{\n{draw(DIRECTIVES_BLOCK)}}}\n"
    return text


# ---- (b) random well-typed kernels ---------------------------------------------------------------
# Every expression has the type f32[M, N]; the parameters are x, y: f32[M, N], h: f16[M, N],
# w: f32[N, N] and r: f32[N].
_F32_MN: tuple[str, ...] = ("x", "y", "f32(h)", "f32(iota((M, N)))")
_UNARY_TEMPLATES = (
    *(f"{f}({{a}})" for f in UNARY_FUNCS),
    "({a} * 0.5)", "({a} + 1)", "(2 - {a})", "({a} / 3.0)", "({a} + 1e30)", "max({a}, -inf)",
    "-{a}", "({a} @ w)", "({a} + r)", "pow({a}, 2.0)", "clamp({a}, -1, 1)", "clamp({a}, max=6)",
    "({a} - max({a}, axis=-1, keepdims=true))", "(sum({a}, axis=1, keepdims=true) * {a})",
    "(mean({a}, axis=0, keepdims=true) + {a})", "(logsumexp({a}, keepdims=true) - {a})",
    "softmax({a})", "log_softmax({a}, axis=0)", "layernorm({a}, r, r)",
    "rmsnorm({a}, scale=r, eps=1e-6)", "transpose(transpose({a}))",
    "reshape(reshape({a}, (-1,)), (M, N))", "broadcast_to(sum({a}, axis=0), (M, N))",
    "concat(({a}[:, 0:1], {a}[:, 1:]), axis=1)", "({a} + f32(argmax({a}, axis=-1, keepdims=true)))",
    "f32(f16({a}))", "f32(bf16({a}))", "({a} + {a}[0])", "({a}[-1:, :] * {a})",
)
_BINARY_TEMPLATES = ("({a} + {b})", "({a} - {b})", "({a} * {b})", "max({a}, {b})",
                     "min({a}, {b})", "where({a} > {b}, {a}, 0.0)", "where({a} <= {b}, {a}, {b})",
                     "concat([{a}, {b}], axis=0)[0:M]")


def _typed_expr(leaves: list[str]) -> st.SearchStrategy[str]:
    def extend(e: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        unary = st.builds(lambda t, a: t.format(a=a), st.sampled_from(_UNARY_TEMPLATES), e)
        binary = st.builds(lambda t, a, b: t.format(a=a, b=b), st.sampled_from(_BINARY_TEMPLATES),
                           e, e)
        return unary | binary

    return st.recursive(st.sampled_from(leaves), extend, max_leaves=6)


MAX_BINDINGS = 6
# TYPED[i]: expressions over the parameters, `mm` and the bindings v0 .. v{i-1}
TYPED = [_typed_expr([*_F32_MN, "mm", *(f"v{j}" for j in range(i))]) for i in range(MAX_BINDINGS)]


@st.composite
def valid_kernels(draw, random_schedule: bool = False) -> tuple[str, int, int]:
    """A well-typed kernel with a valid schedule (or a random one), and its M and N."""
    m, n = draw(st.integers(1, 16)), draw(st.integers(2, 16))
    body, leaves = ["    mm = x @ w"], [*_F32_MN, "mm"]
    for i in range(draw(st.integers(1, MAX_BINDINGS))):
        body.append(f"    v{i} = {draw(TYPED[i])}")
        leaves.append(f"v{i}")
    directives = [
        f"tile mm [{draw(st.integers(1, 1 << 16))}, {draw(st.integers(1, 256))}, "
        f"{draw(st.integers(1, 256))}]" + draw(st.sampled_from(("", " split_k 1", " split_k 4"))),
        f"buffers {draw(st.integers(1, 8))}",
        f"accumulate {draw(st.sampled_from(ACCUMULATE_DTYPES))}",
        "precision " + draw(st.sampled_from(("x, y as f16", "w as bf16", "x as f8E4M3FN",
                                             "w as f8E5M2 scale channel(0)",
                                             "y as f8E4M3FN scale block(1, 1)",
                                             "x as f4E2M1FN scale tensor"))),
        "place " + draw(st.sampled_from(("x in hbm", "w in hbm stacks(0, 1)", "r in l2",
                                         f"v0 in hbm stacks({draw(st.integers(0, 7))})"))),
    ]
    chosen = draw(st.lists(st.sampled_from(directives), unique=True))
    schedule = draw(DIRECTIVES_BLOCK) if random_schedule else "".join(f"    {d}\n" for d in chosen)
    text = (f"kernel k<M = {m}, N = {n}>(x: f32[M, N], y: f32[M, N], h: f16[M, N], w: f32[N, N],"
            f" r: f32[N]) -> f32[M, N] {{\n" + "\n".join(body)
            + f"\n    return {draw(st.sampled_from(leaves[-3:]))}\n}}\n"
            + f"schedule k {{\n{schedule}}}\n")
    return text, m, n


# ---- (c) mutations -------------------------------------------------------------------------------
_TOKEN = re.compile(r"//[^\n]*|[A-Za-z_][A-Za-z_0-9]*|[0-9.]+(?:[eE][+-]?[0-9]+)?|\s+|.")
_NUMBER = re.compile(r"(?<![A-Za-z_0-9.])[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_VOCAB = ("kernel", "schedule", "return", "tile", "split_k", "precision", "as", "scale",
          "accumulate", "place", "in", "hbm", "stacks", "l2", "buffers", "(", ")", "{", "}", "[",
          "]", "<", ">", ",", ";", ":", "=", "->", "@", "*", "**", "/", "+", "-", "==", "//", "\n",
          "1e", ".", "..", "\x00", "\u00e9", "\t", "0x10", "\"", "#", "?", "...", "\u2028")
_NUMBERS = ("0", "-1", "1" + "0" * 20, "9" * 5000, "0" * 5000 + "1", "1e999", "0.0", "-0",
            "4294967296")


def _span(draw, text: str) -> tuple[int, int]:
    i = draw(st.integers(0, len(text)))
    return i, draw(st.integers(i, min(len(text), i + 8)))


def _chars(draw, text: str) -> str:
    i, j = _span(draw, text)
    how = draw(st.sampled_from(("delete", "insert", "duplicate", "swap")))
    if how == "delete":
        return text[:i] + text[j:]
    if how == "insert":
        return text[:i] + draw(st.text(min_size=1, max_size=3)) + text[i:]
    if how == "duplicate":
        return text[:j] + text[i:j] + text[j:]
    return text[:i] + text[i:j][::-1] + text[j:]


def _parts(draw, parts: list[str], insert: st.SearchStrategy[str]) -> list[str]:
    if not parts:
        return [draw(insert)]
    i, j = draw(st.integers(0, len(parts) - 1)), draw(st.integers(0, len(parts) - 1))
    how = draw(st.sampled_from(("delete", "insert", "duplicate", "swap")))
    if how == "delete":
        return parts[:i] + parts[i + 1:]
    if how == "insert":
        return parts[:i] + [draw(insert)] + parts[i:]
    if how == "duplicate":
        return parts[:i] + [parts[i]] + parts[i:]
    parts = list(parts)
    parts[i], parts[j] = parts[j], parts[i]
    return parts


def _tokens(draw, text: str) -> str:
    return "".join(_parts(draw, _TOKEN.findall(text), st.sampled_from(_VOCAB).map(" {} ".format)))


def _lines(draw, text: str) -> str:
    lines = text.split("\n")
    return "\n".join(_parts(draw, lines, st.sampled_from(lines or [""])))


def _replace(draw, text: str, pattern: re.Pattern, choices: st.SearchStrategy[str]) -> str:
    found = list(pattern.finditer(text))
    if not found:
        return text
    m = draw(st.sampled_from(found))
    return text[:m.start()] + draw(choices) + text[m.end():]


def _numbers(draw, text: str) -> str:
    return _replace(draw, text, _NUMBER, st.sampled_from(_NUMBERS))


def _names(draw, text: str) -> str:
    words = sorted(set(_WORD.findall(text))) or ["x"]
    pool = (*words, *DIRECTIVES, *BUILTINS[:6], "f64", "fp8", "inf", "kernel", "tiles")
    return _replace(draw, text, _WORD, st.sampled_from(pool))


def _truncate(draw, text: str) -> str:
    return text[:draw(st.integers(0, len(text)))]


MUTATIONS: tuple[Callable, ...] = (_chars, _chars, _tokens, _tokens, _lines, _numbers, _names,
                                   _truncate)


@st.composite
def mutated(draw, sources: st.SearchStrategy[str]) -> str:
    text = draw(sources)
    for _ in range(draw(st.integers(1, 4))):
        text = draw(st.sampled_from(MUTATIONS))(draw, text)
    return text


EXAMPLE_MUTANTS = mutated(st.sampled_from(EXAMPLE_TEXTS or ("",)))
VALID_MUTANTS = mutated(valid_kernels().map(lambda t: t[0]))


# ---- the properties ------------------------------------------------------------------------------
@settings(max_examples=600)
@given(random_kernels())
def test_random_kernels_never_crash(text):
    build_or_diagnose(text)


@settings(max_examples=300)
@given(valid_kernels(random_schedule=True))
def test_random_schedules_never_crash(case):
    build_or_diagnose(case[0])


@settings(max_examples=300)
@given(valid_kernels())
def test_well_typed_kernels_build(case):
    text, m, n = case
    with time_limit():
        module = build(text, "fuzz.zk")
    (kernel,) = module.ops
    assert [list(t.get_shape()) for t in kernel.function_type.outputs.data] == [[m, n]]
    assert kernel.body.block.last_op.name == "zk.return"


def test_the_example_mutants_have_examples_to_mutate():
    assert len(EXAMPLE_TEXTS) >= 16  # else EXAMPLE_MUTANTS mutates the empty string


@settings(max_examples=600)
@given(EXAMPLE_MUTANTS)
def test_mutated_examples_never_crash(text):
    build_or_diagnose(text)


@settings(max_examples=200)
@given(VALID_MUTANTS)
def test_mutated_well_typed_kernels_never_crash(text):
    build_or_diagnose(text)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


CLI_OPTIONS = ((), ("--kernel", "k"), ("--kernel", "nope"), ("-D", "M=2"), ("-D", "N=0"),
               ("-D", f"M={2**63}"), ("-D", "Q=4"))


@settings(max_examples=200)
@given(text=st.one_of(EXAMPLE_MUTANTS, random_kernels(), VALID_MUTANTS),
       options=st.sampled_from(CLI_OPTIONS), fmt=st.sampled_from(("text", "json")))
def test_cli_check_exits_cleanly(fuzz_dir, text, options, fmt):
    path = fuzz_dir / "fuzz.zk"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit():
        code = main(["check", str(path), *options, "--format", fmt])
    assert code in (0, 1), err.getvalue() + out.getvalue()
    assert "Traceback" not in err.getvalue() + out.getvalue()
    if fmt == "json":
        doc = json.loads(out.getvalue())
        assert doc["exit_code"] == code and doc["ok"] == (code == 0)
        assert (code == 1) == bool(doc["diagnostics"])
    elif code == 1:
        assert "error[ZK" in err.getvalue()
    else:
        assert ": ok (" in out.getvalue()


@pytest.mark.slow  # `make test-slow`: 10,000 examples with the thorough profile
@settings(max_examples=5 * settings.default.max_examples)
@given(st.one_of(random_kernels(), valid_kernels(random_schedule=True).map(lambda c: c[0]),
                 EXAMPLE_MUTANTS, VALID_MUTANTS))
def test_long_fuzz_run(text):
    build_or_diagnose(text)


# ---- regressions: crashes the fuzzers found, each now a diagnostic -------------------------------
_K = ("kernel k<M = 4, N = 8>(x: f32[M, N], h: f16[M, N], i: i32[M, N]) -> f32[M, N] {{\n"
      "    {body}\n}}\n{schedule}")
REGRESSIONS = [
    # integer literals beyond i64 (over 4300 digits, int() itself refused them)
    ("ZK0105", _K.format(body="return x + " + "9" * 5000, schedule="")),
    ("ZK0105", _K.format(body="return x * 100000000000000000000", schedule="")),
    ("ZK0105", _K.format(body="return x", schedule="schedule k { buffers " + "9" * 5000 + " }")),
    ("ZK0105", "kernel k<M = 99999999999999999999>(x: f32[M]) -> f32[M] { return x }"),
    ("ZK0105", _K.format(body="return x",
                         schedule="schedule k { place x in hbm stacks(1" + "0" * 30 + ") }")),
    # folded integers beyond i64 (float() of them overflowed)
    ("ZK0311", _K.format(body="return x + 3037000500 * 3037000500 * 3037000500", schedule="")),
    ("ZK0311", _K.format(body="return f32(9223372036854775807 + 1) + x", schedule="")),
    ("ZK0311", _K.format(body="return x + -(-9223372036854775807 - 1)", schedule="")),
    # a float that names an integer beyond i64, or a concat beyond it (then a slice broke the IR);
    # the tensor broadcast to 9e18 rows is itself beyond i64 bytes (ZK0318) before the concat
    ("ZK0311", _K.format(body="y = broadcast_to(x, (1e300, M, N))[1:]\n    return x", schedule="")),
    ("ZK0311", "kernel k(x: f32[1e300]) -> f32[1] { return x[0:1] }"),
    ("ZK0318", _K.format(body="y = broadcast_to(x[0], (9e18, N))\n    return concat((y, y))[1:2]",
                         schedule="")),
    # a binding that aliases a parameter, named in a schedule (KeyError, AttributeError)
    ("ZK0402", _K.format(body="y = x\n    return y", schedule="schedule k { tile y [4, 8] }")),
    # iota of a rank-0 shape (the verifier rejected its axis)
    ("ZK0304", _K.format(body="z = iota(())\n    return x", schedule="")),
]


@pytest.mark.parametrize("code, source", REGRESSIONS)
def test_fuzz_regressions_give_diagnostics(code, source):
    with pytest.raises(CompileError) as info:
        build(source, "fuzz.zk")
    assert info.value.diagnostics[0].code == code


def test_leading_zeros_do_not_count_against_the_literal_limit():
    zeros = "0" * 5000
    (op,) = build("kernel k(x: f32[4]) -> f32[4] { return x * " + zeros + "7 }\n"
                  f"schedule k {{ precision x as f8E4M3FN scale channel(-{zeros}) }}").ops
    assert [c.number for c in op.body.block.ops if c.name == "zk.constant"] == [7.0]
    assert op.arg_attr(0, "zk.precision").mode_args == (0,)


def test_a_define_beyond_i64_is_a_diagnostic(zk_file, capsys):
    path = zk_file("kernel k<M = 4>(x: f32[M]) -> f32[M] { return x }")
    assert main(["check", str(path), "-D", f"M={2**63}"]) == 1
    assert "error[ZK0002]" in capsys.readouterr().err


@pytest.mark.parametrize("directive", ["precision y as f16", "place y in l2"])
def test_schedule_on_an_alias_of_a_parameter_applies_to_the_parameter(directive):
    kernel = build(_K.format(body="y = x\n    return y", schedule=f"schedule k {{ {directive} }}"))
    (op,) = kernel.ops
    key = directive.split()[0]
    assert op.arg_attr(0, f"zk.{key}") is not None and op.arg_attr(1, f"zk.{key}") is None

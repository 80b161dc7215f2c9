"""The one table of element types: `.zk` names, xDSL types, numpy dtypes, sizes and promotion.

Every stage (front end, dialects, reference evaluator, executor, cost model) asks this module about
an element type, so a new format is added here once. Names follow MLIR / ml_dtypes.
"""

from __future__ import annotations

from functools import cache

# numpy and ml_dtypes are imported only when a numpy dtype is asked for: `zhenwu-cc check` never
# needs them, and they cost ~0.1 s of start-up.


class DType:
    """An element type: its spellings, storage and range. There is one instance per type (the
    table below), so instances compare and hash by identity; `str()` is the name. A plain class,
    not a dataclass: every method a dataclass generates is compiled at every start-up, and none
    is needed here."""

    __slots__ = ("name", "kind", "bits", "np_name", "finite_max", "finite_min")

    def __init__(self, name: str, kind: str, bits: int, np_name: str, finite_max: float,
                 finite_min: float):
        self.name = name  # the `.zk` and MLIR spelling
        self.kind = kind  # "float" | "int" | "bool"
        self.bits = bits  # storage bits of one element (f4 packs two per byte)
        self.np_name = np_name  # numpy / ml_dtypes type name holding the values (f4 in a byte)
        # the largest and smallest finite values (checked against ml_dtypes in test_dtypes.py)
        self.finite_max = finite_max
        self.finite_min = finite_min

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "bool")

    @property
    def is_low_precision(self) -> bool:
        """Formats of 8 bits or fewer that need a scale to be useful (FP8, FP4, E8M0)."""
        return self.is_float and self.bits <= 8

    @property
    def np_dtype(self):
        return _np_dtype(self.np_name)

    def nbytes(self, count: int) -> int:
        """Packed storage size of `count` elements: two f4 values share a byte; i1 takes a byte."""
        bits = 8 if self.kind == "bool" else self.bits
        return (count * bits + 7) // 8

    @property
    def has_inf(self) -> bool:
        return self.name in ("f32", "f16", "bf16", "f8E5M2")

    @property
    def has_nan(self) -> bool:
        return self.is_float and self.name != "f4E2M1FN"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        """Pickled or copied (tune's workers, `copy.deepcopy`), a dtype is the table's own
        instance again: dtypes compare by identity."""
        return get, (self.name,)


@cache
def _np_dtype(name: str):
    import ml_dtypes
    import numpy as np

    return np.dtype(getattr(ml_dtypes, name, None) or getattr(np, name))


_F32_MAX = 3.4028234663852886e38
_BF16_MAX = 3.3895313892515355e38
_TABLE = [
    DType("f32", "float", 32, "float32", _F32_MAX, -_F32_MAX),
    DType("f16", "float", 16, "float16", 65504.0, -65504.0),
    DType("bf16", "float", 16, "bfloat16", _BF16_MAX, -_BF16_MAX),
    DType("f8E4M3FN", "float", 8, "float8_e4m3fn", 448.0, -448.0),
    DType("f8E5M2", "float", 8, "float8_e5m2", 57344.0, -57344.0),
    DType("f4E2M1FN", "float", 4, "float4_e2m1fn", 6.0, -6.0),
    DType("f8E8M0FNU", "float", 8, "float8_e8m0fnu", 2.0**127, 2.0**-127),
    DType("i1", "bool", 1, "bool_", 1, 0),
    DType("i8", "int", 8, "int8", 127, -128),
    DType("i32", "int", 32, "int32", 2**31 - 1, -(2**31)),
    DType("i64", "int", 64, "int64", 2**63 - 1, -(2**63)),
    DType("ui8", "int", 8, "uint8", 255, 0),
]
DTYPES: dict[str, DType] = {d.name: d for d in _TABLE}
F32 = DTYPES["f32"]
I1 = DTYPES["i1"]
ACCUMULATORS = ("f32", "f16", "bf16")  # what an `accumulate` directive may choose for matmuls
I32 = DTYPES["i32"]

# Value-preserving widenings: A -> B when every value of A is exactly a value of B. Mixing two
# tensor dtypes promotes to the wider one only along these edges; anything else is an error
# (the table is checked exhaustively against ml_dtypes in tests/test_dtypes.py).
_WIDER: dict[str, tuple[str, ...]] = {
    "f4E2M1FN": ("f8E4M3FN", "f8E5M2", "f16", "bf16", "f32"),
    "f8E4M3FN": ("f16", "bf16", "f32"),
    "f8E5M2": ("f16", "bf16", "f32"),
    "f8E8M0FNU": ("bf16", "f32"),
    "f16": ("f32",),
    "bf16": ("f32",),
    "f32": (),
    "i1": ("i8", "ui8", "i32", "i64"),
    "i8": ("i32", "i64"),
    "ui8": ("i32", "i64"),
    "i32": ("i64",),
    "i64": (),
}


def get(name: str) -> DType:
    return DTYPES[name]


def widens_to(a: DType, b: DType) -> bool:
    return a == b or b.name in _WIDER[a.name]


def promote(a: DType, b: DType) -> DType | None:
    """The common dtype of two tensor operands, or None when neither holds the other exactly."""
    if widens_to(a, b):
        return b
    if widens_to(b, a):
        return a
    return None


def accumulator_for(d: DType) -> DType:
    """What `@` yields for operands of dtype `d`: f32 for floats, i32 for integers (i64 stays
    i64: narrowing would be a silent surprise)."""
    if d.is_float:
        return F32
    return DTYPES["i64"] if d.name == "i64" else I32


@cache
def _xdsl_types():
    from xdsl.dialects import builtin as b

    return {
        "f32": b.f32, "f16": b.f16, "bf16": b.bf16,
        "f8E4M3FN": b.Float8E4M3FNType(), "f8E5M2": b.Float8E5M2Type(),
        "f4E2M1FN": b.Float4E2M1FNType(), "f8E8M0FNU": b.Float8E8M0FNUType(),
        "i1": b.i1, "i8": b.i8, "i32": b.i32, "i64": b.i64,
        "ui8": b.IntegerType(8, b.Signedness.UNSIGNED),
    }


def to_xdsl(d: DType):
    """The xDSL builtin element type for `d`."""
    return _xdsl_types()[d.name]


@cache
def _by_xdsl():
    return {t: name for name, t in _xdsl_types().items()}


def from_xdsl(t) -> DType:
    """The DType of an xDSL element type; KeyError for types the language does not have."""
    return DTYPES[_by_xdsl()[t]]


def is_known_xdsl(t) -> bool:
    """Whether `t` is the xDSL type of one of the language's element types."""
    return t in _by_xdsl()

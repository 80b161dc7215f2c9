"""Target descriptions: one TOML file per chip, read into dataclasses.

The cost model must say where every figure comes from, so every number in a target file is a
table `{ value = ..., provenance = ..., source = "..." }` with provenance "published", "reported",
"derived" or "assumed", and `Target.provenance("hbm.stacks.bandwidth")` hands it back for
reports. Values are in SI base units (bytes, bytes/s, Hz, seconds, FLOP/s); `FIELDS` below is the
schema, with each field's unit.

A malformed file is a user error (`CompileError` naming the file and the dotted field), never a
traceback: people and agents write their own target files to ask "what if HBM were faster?".
Loading needs only `tomllib` and `dataclasses`, and is cached, so `zhenwu-cc cost` starts fast;
a packaged target is read from `parsed.json` beside the files (see `PARSED`), without tomllib.
The model's classes generate only `__init__` (no eq, repr, hash or frozen guard: nothing compares,
prints or hashes them, and each generated method costs `compile` and `cost` ~0.6M instructions
of start-up); a loaded target is shared by every caller (cached), so treat it as read-only.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from stat import S_ISREG

from zhenwu_cc.core.diagnostics import Span, did_you_mean, error

SCHEMA = "zhenwu-cc.target/1"
PROVENANCES = ("published", "reported", "derived", "assumed")  # strongest first
SUPPORTS = ("native", "emulated", "unsupported")
# Tensor-engine formats every target file must speak to: the `.zk` operand dtypes, plus `tf32`,
# the reduced-precision mode some chips run f32 matmuls in.
TENSOR_DTYPES = ("f32", "tf32", "f16", "bf16", "f8E4M3FN", "f8E5M2", "f4E2M1FN", "i8")
DEFAULT_TARGET = "m890"  # the target of every entry point that is given none
TARGET_ENV = "ZHENWU_TARGET"  # names the default target instead, for the CLI and the API

# Bounds every file must keep, so that no count drives a loop for ever and no time or size
# overflows: counts (CUs, stacks, queues) at most MAX_COUNT, integers and products of them (bytes
# of all stacks, of all CUs' SRAM) within i64, other numbers finite and, unless 0, within
# [MIN_NUMBER, MAX_NUMBER] (1e-300 Hz would print a 300-digit time).
MAX_COUNT = 1 << 20
I64_MAX = 2**63 - 1
MIN_NUMBER, MAX_NUMBER = 1e-9, 1e24
MAX_FILE_BYTES = 1 << 20  # a target file larger than this is refused (ZK0001)
MAX_NESTING = 16  # tables and arrays within each other; the schema needs 3
# The packaged targets' parsed documents, {name: {"crc32": of the .toml file's bytes, "doc": ...}}:
# `compile` and `cost` read this JSON (json is imported anyway) instead of importing tomllib and
# parsing TOML, ~20M instructions of start-up. An entry whose crc32 is not its file's is ignored
# (the file is parsed); `python -m zhenwu_cc.core.target` rewrites it (tests/test_target.py
# checks that it is current).
PARSED = "parsed.json"

# dotted field -> (kind, unit, lower bound, lower bound inclusive, upper bound or None)
_NUM = "number"
FIELDS: dict[str, tuple[str, str, float, bool, float | None]] = {
    "compute_units": ("int", "compute units", 1, True, MAX_COUNT),
    "clock": (_NUM, "Hz", 0, False, None),
    "kernel_overhead": (_NUM, "s", 0, True, 1e-3),
    "dma_queues_per_cu": ("int", "queues", 1, True, MAX_COUNT),
    "vector.ops_per_clock_per_cu": (_NUM, "element ops/clock/CU", 0, False, None),
    "vector.transcendentals_per_clock_per_cu": (_NUM, "element ops/clock/CU", 0, False, None),
    "sram.bytes_per_cu": ("int", "bytes", 1, True, None),
    "l2.bytes": ("int", "bytes", 1, True, None),
    "l2.bandwidth": (_NUM, "bytes/s", 0, False, None),
    "l2.persisting": ("bool", "", 0, True, None),
    "l2.persisting_max_fraction": (_NUM, "fraction of l2.bytes", 0, True, 1),
    "l2.multicast": ("int", "CUs one L2 read can feed", 1, True, MAX_COUNT),
    "hbm.interleave": ("int", "bytes", 1, True, None),
    "hbm.alignment": ("int", "bytes", 1, True, None),
    "hbm.stacks.count": ("int", "stacks", 1, True, MAX_COUNT),
    "hbm.stacks.capacity": ("int", "bytes per stack", 1, True, None),
    "hbm.stacks.bandwidth": (_NUM, "bytes/s per stack", 0, False, None),
    "links.count": ("int", "links", 0, True, MAX_COUNT),
    "links.bandwidth": (_NUM, "bytes/s per link per direction", 0, True, None),
    "efficiency.compute": (_NUM, "fraction of tensor peak", 0, False, 1),
    "efficiency.memory": (_NUM, "fraction of HBM bandwidth", 0, False, 1),
    "efficiency.l2": (_NUM, "fraction of L2 bandwidth", 0, False, 1),
    "efficiency.vector": (_NUM, "fraction of vector rate", 0, False, 1),
    "f32_matmul": ("choice:tf32,f32", "", 0, True, None),
}
_TENSOR_FIELDS: dict[str, tuple[str, str, float, bool, float | None]] = {
    "support": ("choice:" + ",".join(SUPPORTS), "", 0, True, None),
    "via": ("choice:" + ",".join(TENSOR_DTYPES), "", 0, True, None),
    "flops_per_s": (_NUM, "FLOP/s for the whole chip", 0, False, None),
    "flops_per_clock_per_cu": (_NUM, "FLOP/clock/CU", 0, False, None),
}
FIELDS.update({f"tensor.{dt}.{key}": spec
               for dt in TENSOR_DTYPES for key, spec in _TENSOR_FIELDS.items()})
_OPTIONAL = {p for p in FIELDS if p.startswith("tensor.") and not p.endswith(".support")}


@dataclass(eq=False, repr=False)
class Sourced:
    """One parameter: its value and where the value comes from."""

    value: float | int | str | bool
    provenance: str
    source: str
    unit: str = ""


@dataclass(eq=False, repr=False)
class TensorRate:
    """How the tensor engine handles one operand dtype.

    native: runs at `flops_per_s` (whole chip); emulated: operands are converted to `via` on the
    vector engine and multiplied at `via`'s rate; unsupported: a matmul in it is rejected.
    """

    support: str
    flops_per_s: float = 0.0
    via: str = ""


@dataclass(eq=False, repr=False)
class VectorEngine:
    """The vector engine's rates per CU."""

    ops_per_clock_per_cu: float
    transcendentals_per_clock_per_cu: float


@dataclass(eq=False, repr=False)
class L2Cache:
    """The L2 cache every CU shares."""

    bytes: int
    bandwidth: float
    persisting: bool  # can a region be set aside for pinned (`place NAME in l2`) tensors?
    persisting_max_fraction: float
    multicast: int  # CUs one L2 read can deliver to (tiles of a wave sharing a slice)

    @property
    def persisting_bytes(self) -> int:
        return int(self.bytes * self.persisting_max_fraction) if self.persisting else 0


@dataclass(eq=False, repr=False)
class HBM:
    """The HBM stacks and how allocations are laid over them."""

    stacks: int
    stack_capacity: int  # bytes
    stack_bandwidth: float  # bytes/s
    interleave: int  # bytes placed on one stack before the next
    alignment: int  # bytes every allocation starts on

    @property
    def capacity(self) -> int:
        return self.stacks * self.stack_capacity

    @property
    def bandwidth(self) -> float:
        return self.stacks * self.stack_bandwidth


@dataclass(eq=False, repr=False)
class Links:
    """The chip-to-chip links."""

    count: int
    bandwidth: float  # bytes/s per link per direction


@dataclass(eq=False, repr=False)
class Efficiency:
    """Fractions of the datasheet rates that real kernels sustain (calibrated or assumed)."""

    compute: float
    memory: float
    l2: float
    vector: float


@dataclass(eq=False, repr=False)
class Target:
    """A chip model, read from a target file (runtime/targets/*.toml)."""

    name: str
    description: str
    path: str  # the file it was read from
    compute_units: int
    clock: float
    tensor: Mapping[str, TensorRate]
    f32_matmul: str
    vector: VectorEngine
    sram_per_cu: int
    l2: L2Cache
    hbm: HBM
    links: Links
    dma_queues_per_cu: int
    kernel_overhead: float
    efficiency: Efficiency
    sources: Mapping[str, Sourced]

    @property
    def hbm_bandwidth(self) -> float:
        """Total HBM bandwidth (bytes/s), all stacks."""
        return self.hbm.bandwidth

    @property
    def hbm_capacity(self) -> int:
        """Total HBM capacity (bytes), all stacks."""
        return self.hbm.capacity

    @property
    def vector_rate(self) -> float:
        """Element operations per second, whole chip."""
        return self.vector.ops_per_clock_per_cu * self.compute_units * self.clock

    @property
    def transcendental_rate(self) -> float:
        return self.vector.transcendentals_per_clock_per_cu * self.compute_units * self.clock

    def execution_dtype(self, dtype: str) -> tuple[str, str]:
        """(dtype the tensor engine computes in, support) for a matmul with `dtype` operands.

        f32 follows `f32_matmul`; an emulated dtype computes in its `via` dtype; a dtype the file
        does not list (integers other than i8, scale formats) is unsupported.
        """
        if dtype == "f32" and self.f32_matmul == "tf32":
            return "tf32", "native"
        rate = self.tensor.get(dtype)
        if rate is None or rate.support == "unsupported":
            return dtype, "unsupported"
        if rate.support == "emulated":
            return rate.via, "emulated"
        return dtype, "native"

    def tensor_peak(self, dtype: str) -> tuple[float, str]:
        """(datasheet FLOP/s of the whole chip, support) for a matmul with `dtype` operands."""
        run_as, support = self.execution_dtype(dtype)
        if support == "unsupported":
            return 0.0, support
        return self.tensor[run_as].flops_per_s, support

    def ridge_point(self, dtype: str) -> float:
        """FLOP per HBM byte at which `dtype` matmuls turn from memory- to compute-bound (peaks)."""
        return self.tensor_peak(dtype)[0] / self.hbm_bandwidth

    def provenance(self, path: str) -> Sourced:
        """Where a parameter comes from: a dotted field of the file, or one of the totals
        `hbm.bandwidth`, `hbm.capacity`, `links.bandwidth_total`, `tensor.<dtype>.peak`."""
        if path in self.sources:
            return self.sources[path]
        derived = {
            "hbm.bandwidth": (self.hbm_bandwidth, "bytes/s",
                              ("hbm.stacks.count", "hbm.stacks.bandwidth")),
            "hbm.capacity": (self.hbm_capacity, "bytes",
                             ("hbm.stacks.count", "hbm.stacks.capacity")),
            "links.bandwidth_total": (self.links.count * self.links.bandwidth,
                                      "bytes/s per direction", ("links.count", "links.bandwidth")),
        }
        for dt, rate in self.tensor.items():
            if f"tensor.{dt}.flops_per_clock_per_cu" in self.sources:
                derived[f"tensor.{dt}.peak"] = (
                    rate.flops_per_s, "FLOP/s",
                    ("compute_units", "clock", f"tensor.{dt}.flops_per_clock_per_cu"))
        if path.endswith(".peak") and path[:-5] + ".flops_per_s" in self.sources:
            return self.sources[path[:-5] + ".flops_per_s"]
        if path not in derived:
            raise KeyError(f"{self.name} has no parameter {path!r}")
        value, unit, parts = derived[path]
        rank = max(PROVENANCES.index(self.sources[p].provenance) for p in parts)
        return Sourced(value, PROVENANCES[max(rank, PROVENANCES.index("derived"))],
                       " × ".join(parts), unit)


# ---- loading ------------------------------------------------------------------------------------
def list_targets() -> list[str]:
    """Names of the packaged targets, sorted."""
    return sorted(p.name[:-5] for p in _packaged().iterdir() if p.name.endswith(".toml"))


@lru_cache(maxsize=1)
def _packaged():
    """The folder of the packaged target files: a plain path where the package is a folder
    (importing `importlib.resources` costs `cost` and `compile` ~20 ms of start-up), else
    `importlib.resources`' view of it (a zip import)."""
    import importlib

    targets = importlib.import_module("zhenwu_cc.runtime.targets")  # a layer above: by name
    folder = Path(targets.__file__).parent
    if folder.is_dir():
        return folder
    from importlib import resources

    return resources.files(targets)


def default_target() -> str:
    """The target a command or `compile()` uses when none is given: $ZHENWU_TARGET, else
    DEFAULT_TARGET (read at each call, so a test or a script may set it)."""
    return os.environ.get(TARGET_ENV, DEFAULT_TARGET)


def load_target(name_or_path: str = DEFAULT_TARGET) -> Target:
    """A packaged target by name (`m890`), or a target file by path (contains "/" or ends .toml)."""
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise error("ZK0001", f"cannot read target file {name_or_path}: {exc.strerror}",
                        help="give the path of an existing .toml target file, or a target "
                             f"name: {', '.join(list_targets())}") from None
        if not S_ISREG(stat.st_mode):  # /dev/zero or a pipe would be read without end
            raise error("ZK0001", f"cannot read target file {name_or_path}: not a regular file",
                        help="give the path of a .toml file")
        return _load_file(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    return _load_packaged(name_or_path)


@lru_cache(maxsize=None)
def _load_packaged(name: str) -> Target:
    names = list_targets()
    if name not in names:
        guess = did_you_mean(name, names)
        hint = f"; did you mean `{guess}`?" if guess else ""
        raise error("ZK0701", f"unknown target `{name}`{hint}",
                    help=f"known targets: {', '.join(names)}; or give a path to a .toml file")
    data = (_packaged() / f"{name}.toml").read_bytes()
    parsed = _parsed().get(name)
    if parsed is not None and parsed["crc32"] == zlib.crc32(data):
        return _Reader(f"{name}.toml").target(parsed["doc"])
    return parse_target(data.decode("utf-8"), f"{name}.toml")


@lru_cache(maxsize=1)
def _parsed() -> dict:
    """The packaged targets' parsed documents (`PARSED`); none if the file is missing."""
    try:
        return json.loads((_packaged() / PARSED).read_bytes())
    except FileNotFoundError:
        return {}


def write_parsed() -> None:
    """Rewrite `PARSED` from the packaged .toml files (run it after editing one)."""
    import tomllib

    folder = _packaged()
    docs = {}
    for name in list_targets():
        data = (folder / f"{name}.toml").read_bytes()
        parse_target(data.decode("utf-8"), f"{name}.toml")  # only a valid file is kept
        docs[name] = {"crc32": zlib.crc32(data), "doc": tomllib.loads(data.decode("utf-8"))}
    (folder / PARSED).write_text(json.dumps(docs, indent=1, ensure_ascii=False) + "\n", "utf-8")


@lru_cache(maxsize=64)
def _load_file(path: str, mtime_ns: int, size: int) -> Target:
    """Cached on (path, mtime, size), so an edited file is read again."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error("ZK0001", f"cannot read target file {path}: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise error("ZK0001", f"cannot read target file {path}: larger than the limit of "
                    f"{MAX_FILE_BYTES} bytes", help="a target file is a few kilobytes of TOML")
    return parse_target(text, path)


def parse_target(text: str, file: str) -> Target:
    """Parse and check the text of a target file; `file` names it in errors."""
    import tomllib  # here: a packaged target is read from PARSED

    _check_nesting(text, file)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"at line (\d+), column (\d+)", str(exc))
        span = Span.point(file, int(where[1]), int(where[2])) if where else None
        raise error("ZK0702", f"{file}: not valid TOML: {exc}", span,
                    help="fix the TOML syntax at the position shown") from None
    return _Reader(file).target(doc)


# What can open a nested table or array in TOML, skipping strings and comments.
_TOML_TOKENS = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"'
                          r"|'[^'\n]*'|#[^\n]*|[\[\]{}]")


def _check_nesting(text: str, file: str) -> None:
    """ZK0702 for arrays or inline tables nested past MAX_NESTING (tomllib recurses on them)."""
    depth = 0
    for m in _TOML_TOKENS.finditer(text):
        tok = m.group()
        if tok in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, m.start()) + 1
                col = m.start() - text.rfind("\n", 0, m.start())
                raise error("ZK0702", f"{file}: arrays or tables nested more than {MAX_NESTING}"
                            " deep", Span.point(file, line, col),
                            help="target fields are at most three levels deep, e.g. "
                            "`[tensor.f16]`")
        elif tok in ("]", "}"):
            depth = max(0, depth - 1)


class _Reader:
    """Walks a parsed target document, checking each field against `FIELDS`."""

    def __init__(self, file: str):
        self.file = file
        self.sources: dict[str, Sourced] = {}

    def fail(self, path: str, message: str, help: str) -> None:
        raise error("ZK0702", f"{self.file}: field `{path}`: {message}", help=help)

    def target(self, doc: dict) -> Target:
        for key in ("schema", "name", "description"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                self.fail(key, f"expected a non-empty string, got {doc.get(key)!r}",
                          f'add `{key} = "..."` at the top of the file')
        if doc["schema"] != SCHEMA:
            self.fail("schema", f"unsupported schema {doc['schema']!r}",
                      f'set `schema = "{SCHEMA}"`')
        self.collect({k: v for k, v in doc.items() if k not in ("schema", "name", "description")})
        for path in FIELDS:
            if path not in self.sources and path not in _OPTIONAL:
                self.fail(path, "missing", f"add `{_leaf_example(path)}`")
        tensor = {dt: self.tensor_rate(dt) for dt in TENSOR_DTYPES}
        self.cross_checks(tensor)
        v = self.value
        return Target(
            name=doc["name"], description=doc["description"], path=self.file,
            compute_units=v("compute_units"), clock=float(v("clock")), tensor=tensor,
            f32_matmul=v("f32_matmul"),
            vector=VectorEngine(float(v("vector.ops_per_clock_per_cu")),
                                float(v("vector.transcendentals_per_clock_per_cu"))),
            sram_per_cu=v("sram.bytes_per_cu"),
            l2=L2Cache(v("l2.bytes"), float(v("l2.bandwidth")), v("l2.persisting"),
                       float(v("l2.persisting_max_fraction")), v("l2.multicast")),
            hbm=HBM(v("hbm.stacks.count"), v("hbm.stacks.capacity"),
                    float(v("hbm.stacks.bandwidth")), v("hbm.interleave"), v("hbm.alignment")),
            links=Links(v("links.count"), float(v("links.bandwidth"))),
            dma_queues_per_cu=v("dma_queues_per_cu"),
            kernel_overhead=float(v("kernel_overhead")),
            efficiency=Efficiency(*(float(v(f"efficiency.{k}"))
                                    for k in ("compute", "memory", "l2", "vector"))),
            sources=self.sources,
        )

    def value(self, path: str):
        return self.sources[path].value

    def collect(self, table: dict, prefix: str = "") -> None:
        for key, item in table.items():
            path = f"{prefix}{key}"
            if path in FIELDS:
                self.sources[path] = self.leaf(path, item)
            elif isinstance(item, dict) and "value" not in item and any(
                    f.startswith(path + ".") for f in FIELDS):  # so at most the schema's depth
                self.collect(item, path + ".")
            else:
                guess = did_you_mean(path, FIELDS)
                self.fail(path, "unknown field" + (f"; did you mean `{guess}`?" if guess else ""),
                          "remove it or correct its name (the schema is in "
                          "zhenwu_cc.core.target.FIELDS and docs/cost-model.md)")

    def leaf(self, path: str, item) -> Sourced:
        kind, unit, low, inclusive, high = FIELDS[path]
        if not isinstance(item, dict) or set(item) != {"value", "provenance", "source"}:
            got = sorted(item) if isinstance(item, dict) else repr(item)
            self.fail(path, f"expected a table with keys value, provenance, source; got {got}",
                      f"write `{_leaf_example(path)}`")
        if item["provenance"] not in PROVENANCES:
            self.fail(f"{path}.provenance", f"got {item['provenance']!r}",
                      f"use one of: {', '.join(PROVENANCES)}")
        if not isinstance(item["source"], str) or not item["source"].strip():
            self.fail(f"{path}.source", "expected a non-empty string",
                      "say where the number comes from: a URL, or the reasoning behind it")
        value = item["value"]
        if kind.startswith("choice:"):
            choices = kind[7:].split(",")
            if value not in choices:
                self.fail(f"{path}.value", f"expected one of {', '.join(choices)}; got {value!r}",
                          f"set it to one of: {', '.join(choices)}")
        elif kind == "bool":
            if not isinstance(value, bool):
                self.fail(f"{path}.value", f"expected true or false; got {value!r}",
                          "write `value = true` or `value = false`")
        else:
            ok_type = int if kind == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, ok_type):
                what = "an integer" if kind == "int" else "a number"
                self.fail(f"{path}.value", f"expected {what} ({unit}); got {value!r}",
                          f"give {what} in {unit}")
            too_low = value < low if inclusive else value <= low
            if too_low or (high is not None and value > high) or value != value:
                bound = f"{'≥' if inclusive else '>'} {low:g}" + (
                    f" and ≤ {high:{'d' if kind == 'int' else 'g'}}" if high is not None else "")
                self.fail(f"{path}.value", f"expected a value {bound} ({unit}); got {value!r}",
                          f"give a value {bound}")
            if kind == "int" and value > I64_MAX:
                self.fail(f"{path}.value", f"{value} does not fit in i64 ({unit})",
                          f"give a value ≤ {I64_MAX}")
            if kind != "int" and value and not MIN_NUMBER <= value <= MAX_NUMBER:
                self.fail(f"{path}.value", f"{value!r} is outside [{MIN_NUMBER:g}, "
                          f"{MAX_NUMBER:g}] ({unit})", f"give a finite value in {unit} within "
                          f"[{MIN_NUMBER:g}, {MAX_NUMBER:g}], or 0 where 0 is allowed")
        return Sourced(value, item["provenance"], item["source"], unit)

    def tensor_rate(self, dt: str) -> TensorRate:
        p = f"tensor.{dt}"
        support = self.value(f"{p}.support")
        given = [k for k in ("via", "flops_per_s", "flops_per_clock_per_cu")
                 if f"{p}.{k}" in self.sources]
        if support == "native":
            if sorted(given) not in (["flops_per_s"], ["flops_per_clock_per_cu"]):
                self.fail(p, f"a native dtype needs exactly one of flops_per_s or "
                          f"flops_per_clock_per_cu (and no via); got {given or 'none'}",
                          f"give `{p}.flops_per_s` (whole chip) or "
                          f"`{p}.flops_per_clock_per_cu`")
            if "flops_per_s" in given:
                return TensorRate("native", float(self.value(f"{p}.flops_per_s")))
            return TensorRate("native", float(self.value(f"{p}.flops_per_clock_per_cu"))
                              * self.value("compute_units") * self.value("clock"))
        if support == "emulated":
            if given != ["via"]:
                self.fail(p, f"an emulated dtype needs `via` and no rate; got {given or 'none'}",
                          f"give `{p}.via`, the native dtype it is computed in")
            return TensorRate("emulated", via=self.value(f"{p}.via"))
        if given:
            self.fail(p, f"an unsupported dtype takes no {', '.join(given)}",
                      f"remove {', '.join(f'{p}.{k}' for k in given)}")
        return TensorRate("unsupported")

    def cross_checks(self, tensor: dict[str, TensorRate]) -> None:
        for dt, rate in tensor.items():
            if rate.support == "emulated" and tensor[rate.via].support != "native":
                self.fail(f"tensor.{dt}.via", f"`{rate.via}` is not native on this target",
                          "emulate through a dtype whose support is native")
        if self.value("f32_matmul") == "tf32" and tensor["tf32"].support != "native":
            self.fail("f32_matmul", "is tf32 but tensor.tf32 is not native",
                      'make tensor.tf32 native, or set f32_matmul to "f32"')
        for a, b in (("hbm.stacks.count", "hbm.stacks.capacity"),
                     ("compute_units", "sram.bytes_per_cu")):
            if self.value(a) * self.value(b) > I64_MAX:
                self.fail(b, f"{a} × {b} = {self.value(a) * self.value(b)} bytes does not fit "
                          "in i64", f"make {a} or {b} smaller")
        if not self.value("l2.persisting") and self.value("l2.persisting_max_fraction") != 0:
            self.fail("l2.persisting_max_fraction", "must be 0 when l2.persisting is false",
                      "set it to 0, or l2.persisting to true")


def _leaf_example(path: str) -> str:
    return f'{path} = {{ value = ..., provenance = "assumed", source = "why" }}'


if __name__ == "__main__":
    write_parsed()

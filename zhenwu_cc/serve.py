"""`zhenwu-cc serve`: JSON lines on stdin and stdout, so that an agent pays start-up once.

One request a line, `{"id": ..., "command": "check" | "eval" | "cost" | "diff" | "tune" | "stats",
...}`;
one response a line, in order, carrying the request's `id` and the same record the command's
`--format json` prints (`schema`, `ok`, `exit_code`, `diagnostics`, its payload). A bad request
(not JSON, not an object, an unknown command, a missing or ill-typed field) is a response with a
diagnostic (ZK1101-ZK1104), never the end of the server; so is
an internal error (exit_code 3). The server ends at the end of its input.

Compiled kernels are kept by the hash of what made them (source text, file name, kernel, shape
parameters, target), the estimates of the edits hints try by their text, and lowered modules and
numerics checks by the content of the `zk` module they came from (`CompiledKernel.shared`: an
edit that leaves the program as it was, or a hint's schedule tried before, lowers nothing); the
caches are bounded (least recently used out), so memory stays flat however many requests come.
Served kernels are verified once after lowering, not after every pass.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from collections.abc import MutableMapping

SERVE_SCHEMA = "zhenwu-cc.serve/1"
MAX_LINE_BYTES = 16 << 20  # a request line longer than this is refused (ZK1104)
MAX_KERNELS = 64  # compiled kernels kept
MAX_COSTS = 256  # estimates of hint edits kept (a few dozen evals' worth)
MAX_LOWERED = 128  # lowered modules and numerics checks kept by content (CompiledKernel.shared)
COMMANDS = ("check", "eval", "cost", "diff", "tune", "stats")


class Lru(MutableMapping):
    """A dict that keeps its `limit` most recently used entries."""

    def __init__(self, limit: int):
        self.limit, self._d = limit, OrderedDict()
        self.hits = self.misses = 0

    def __getitem__(self, key):
        value = self._d[key]
        self.hits += 1
        self._d.move_to_end(key)
        return value

    def __contains__(self, key) -> bool:
        return key in self._d

    def __setitem__(self, key, value) -> None:
        if key not in self._d:
            self.misses += 1  # a value is stored after a lookup missed
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.limit:
            self._d.popitem(last=False)

    def __delitem__(self, key) -> None:
        del self._d[key]

    def __iter__(self):
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def stats(self) -> dict:
        return {"entries": len(self._d), "limit": self.limit, "hits": self.hits,
                "misses": self.misses}


class BadRequest(Exception):
    """A request the server cannot act on: answered with `diagnostic`."""

    def __init__(self, diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _bad(code: str, message: str, help: str, line: int, col: int = 1) -> BadRequest:
    from zhenwu_cc.core.diagnostics import Diagnostic, Span

    return BadRequest(Diagnostic(code, message, Span.point("<request>", line, col), help=help))


class Server:
    """The request handlers and their caches; `handle` turns one line into one response."""

    def __init__(self):
        self.kernels = Lru(MAX_KERNELS)
        self.costs = Lru(MAX_COSTS)
        self.lowered = Lru(MAX_LOWERED)
        self.served = 0

    # -- one request ------------------------------------------------------------------------
    def refuse(self, bad: BadRequest) -> dict:
        """The response to a line that is no request at all."""
        self.served += 1
        return _response(None, None, 2, [bad.diagnostic], {})

    def handle(self, line: str, number: int) -> dict:
        from zhenwu_cc.core.diagnostics import CompileError

        self.served += 1
        rid, command = None, None
        try:
            request = _parse(line, number)
            rid = request.get("id")
            command = _field(request, "command", str, number, required=True)
            if command not in COMMANDS:
                from zhenwu_cc.core.diagnostics import did_you_mean

                near = did_you_mean(command, COMMANDS)
                raise _bad("ZK1102", f"unknown command {command!r}",
                           (f"did you mean `{near}`? " if near else "") + "commands: "
                           + ", ".join(COMMANDS), number)
            payload, diags, code = getattr(self, f"_{command}")(request, number)
        except BadRequest as exc:
            return _response(rid, command, 2, [exc.diagnostic], {})
        except CompileError as exc:
            return _response(rid, command, 1, exc.diagnostics, {})
        except Exception as exc:  # the server's error boundary, as the CLI's: the server lives
            return _response(rid, command, 3, [], {
                "message": f"internal compiler error: {type(exc).__name__}: {exc}\n"
                "This is a bug in zhenwu-cc; please report the request."})
        return _response(rid, command, code, diags, payload)

    # -- commands ---------------------------------------------------------------------------
    def _check(self, request: dict, number: int):
        from zhenwu_cc.frontend import build
        from zhenwu_cc.signature import signature

        text, file = _source(request, "file", "source", number)
        module = build(text, file, _defines(request, number),
                       _field(request, "kernel", str, number))
        return {"kernels": [signature(k) for k in module.ops]}, [], 0

    def _cost(self, request: dict, number: int):
        from zhenwu_cc.runtime.cost.report import placement_map

        compiled = self._compiled(request, "file", "source", number)
        c = compiled.costing(compiled.target)
        params = {k: v.value.data for k, v in c.kernel.attributes["params"].data.items()}
        return {"params": params, "cost": c.estimate.to_dict(),
                "placement": placement_map(c.kernel)}, [], 0

    def _eval(self, request: dict, number: int):
        from zhenwu_cc.evaluate import evaluate

        compiled = self._compiled(request, "file", "source", number)
        budget = _field(request, "max_rel_l2", (int, float), number)
        if budget is not None and not 0 < budget < float("inf"):
            raise _bad("ZK1103", f"field `max_rel_l2` must be a number > 0, got {budget!r}",
                       "give a relative L2 budget such as 0.01", number)
        sample = _field(request, "check_sample", int, number)
        if sample is not None and sample < 1:
            raise _bad("ZK1103", f"field `check_sample` must be >= 1, got {sample}",
                       "give a sample size >= 1, or leave it out", number)
        seed = _field(request, "seed", int, number)
        if seed is not None and seed < 0:
            raise _bad("ZK1103", f"field `seed` must be >= 0, got {seed}",
                       "give a seed >= 0, or leave it out (0)", number)
        check = _field(request, "check", bool, number)
        hints = _field(request, "hints", bool, number)
        result = evaluate(compiled, check=True if check is None else check, seed=seed or 0,
                          sample=sample, max_rel_l2=budget,
                          with_hints=True if hints is None else hints, costs=self.costs)
        return result.record, result.diagnostics, 1 if result.failed else 0

    def _tune(self, request: dict, number: int):
        """`tune` without `jobs`, `scheduler` and `write`: the server costs in its own process
        and never edits files (apply the winner's `directives` and `diff`)."""
        from zhenwu_cc.tune import DEFAULT_TOP, DEFAULT_VERIFY, tune

        compiled = self._compiled(request, "file", "source", number)
        limits = {"budget": 1, "seed": 0, "verify": 0, "top": 1}
        given = {}
        for name, lo in limits.items():
            value = _field(request, name, int, number)
            if value is not None and value < lo:
                raise _bad("ZK1103", f"field `{name}` must be >= {lo}, got {value}",
                           f"give `{name}` >= {lo}, or leave it out", number)
            given[name] = value
        budget = _field(request, "max_rel_error", (int, float), number)
        if budget is not None and not 0 < budget < float("inf"):
            raise _bad("ZK1103", f"field `max_rel_error` must be a number > 0, got {budget!r}",
                       "give a relative L2 budget such as 0.01", number)
        cache = _field(request, "cache", bool, number)
        result = tune(compiled, budget=given["budget"], max_rel_error=budget,
                      seed=given["seed"] or 0,
                      verify=DEFAULT_VERIFY if given["verify"] is None else given["verify"],
                      sampler=_field(request, "sampler", str, number) or "tpe",
                      cache=True if cache is None else cache)
        return result.to_dict(given["top"] or DEFAULT_TOP), [], 0

    def _diff(self, request: dict, number: int):
        from zhenwu_cc.costdiff import Side, diff

        sides = []
        for path_key, text_key in (("old", "old_source"), ("new", "new_source")):
            compiled = self._compiled(request, path_key, text_key, number)
            sides.append(Side(compiled.file, compiled.source[0],
                              compiled.costing(compiled.target), tuple(compiled.zk.arg_names),
                              tuple(compiled.zk.names_of_results)))
        return diff(*sides), [], 0

    def _stats(self, request: dict, number: int):
        return {"requests": self.served, "kernels": self.kernels.stats(),
                "costs": self.costs.stats(), "lowered": self.lowered.stats(), "rss_bytes": _rss(),
                "max_rss_bytes": _max_rss()}, [], 0

    # -- the cache ------------------------------------------------------------------------------
    def _compiled(self, request: dict, path_key: str, text_key: str, number: int):
        """The compiled kernel a request names, from the cache when the same source, kernel,
        shape parameters, target and fusion made one before."""
        from zhenwu_cc.api import CompiledKernel
        from zhenwu_cc.cli import one_kernel
        from zhenwu_cc.core.target import default_target, load_target
        from zhenwu_cc.frontend import build

        text, file = _source(request, path_key, text_key, number)
        defines = _defines(request, number)
        kernel = _field(request, "kernel", str, number)
        target = _field(request, "target", str, number) or default_target()
        fuse = _field(request, "fuse", bool, number) is not False  # `--no-fuse`: false
        load_target(target)  # an unknown target is ZK0701 before any work
        key = hashlib.sha256(json.dumps([text, file, kernel, sorted(defines.items()), target,
                                         fuse]).encode()).hexdigest()
        if key in self.kernels:
            return self.kernels[key]
        module = build(text, file, defines, kernel)
        one_kernel(module, file)
        compiled = CompiledKernel(module, file, target, fuse).shared(self.lowered,
                                                                    verify_once=True)
        compiled.source = (text, kernel)
        self.kernels[key] = compiled
        return compiled


def _parse(line: str, number: int) -> dict:
    try:
        request = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _bad("ZK1101", f"request is not JSON: {exc.msg}",
                   'send one JSON object a line, e.g. {"id": 1, "command": "check", '
                   '"file": "k.zk"}', number, exc.colno) from None
    except RecursionError:
        raise _bad("ZK1101", "request is not JSON this server reads: nested too deeply",
                   "send a flat JSON object", number) from None
    if not isinstance(request, dict):
        raise _bad("ZK1101", f"request is a JSON {type(request).__name__}, not an object",
                   'send one JSON object a line, e.g. {"id": 1, "command": "check", '
                   '"file": "k.zk"}', number)
    return request


TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer",
              (int, float): "a number", dict: "an object"}


def _field(request: dict, name: str, kind, number: int, required: bool = False):
    """`request[name]`, of type `kind` (None when absent and not `required`): ZK1103 if not."""
    if name not in request or request[name] is None:
        if required:
            raise _bad("ZK1103", f"request has no `{name}`",
                       f"add `\"{name}\"`: " + ("one of " + ", ".join(COMMANDS[:4])
                                                if name == "command" else "see docs/cli.md"),
                       number)
        return None
    value = request[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        raise _bad("ZK1103", f"field `{name}` must be {TYPE_NAMES[kind]}, got "
                   f"{type(value).__name__} {json.dumps(value)[:40]}",
                   f"give `{name}` as {TYPE_NAMES[kind]}", number)
    return value


def _source(request: dict, path_key: str, text_key: str, number: int) -> tuple[str, str]:
    """(text, file name) from `path_key` (a path, read as the CLI reads it) or `text_key`
    (source text; named `<path_key>` in diagnostics, or `name` when given)."""
    from zhenwu_cc.sources import read_source

    path = _field(request, path_key, str, number)
    text = _field(request, text_key, str, number)
    if (path is None) == (text is None):
        raise _bad("ZK1103", f"give exactly one of `{path_key}` (a path) and `{text_key}` "
                   "(source text)", f"add `\"{path_key}\": \"kernel.zk\"`", number)
    if path is not None:
        return read_source(path), path
    return text.removeprefix("\ufeff"), f"<{text_key}>"


def _defines(request: dict, number: int) -> dict[str, int]:
    defines = _field(request, "defines", dict, number) or {}
    for name, value in defines.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad("ZK1103", f"`defines.{name}` must be an integer, got "
                       f"{json.dumps(value)[:40]}", 'give shape parameters as {"M": 256}',
                       number)
    return defines


def _response(rid, command, code: int, diags, payload: dict) -> dict:
    from zhenwu_cc.cli import SCHEMAS

    doc = {"id": rid, "schema": SCHEMAS.get(command, SERVE_SCHEMA), "command": command,
           "ok": code == 0, "exit_code": code, "diagnostics": [d.to_dict() for d in diags]}
    doc.update(payload)
    return doc


def _rss() -> int | None:
    """The process's resident memory now, in bytes (None where /proc does not say)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _max_rss() -> int | None:
    """The process's peak resident memory in bytes (None where the OS does not say)."""
    try:
        import resource
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def serve(stdin=None, stdout=None) -> int:
    """Answer requests until the end of `stdin` (a binary stream: a line that is not UTF-8 is
    a bad request, not the end); exit code 0."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    server = Server()
    number = 0
    while True:
        raw = stdin.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return 0
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := stdin.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass  # the rest of the over-long line
            response = server.refuse(_bad(
                "ZK1104", f"request line over the limit of {MAX_LINE_BYTES} bytes",
                "send the source by `file` path instead of `source`", number))
        elif not raw.strip():
            continue
        else:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                response = server.refuse(_bad("ZK1101", "request is not UTF-8 text",
                                              "send JSON text in UTF-8", number, exc.start + 1))
            else:
                response = server.handle(line, number)
        stdout.write(json.dumps(response, separators=(",", ":")) + "\n")
        stdout.flush()

"""A kernel's interface as plain data and as the source writes it (`check`, `compile`, the API)."""

from __future__ import annotations

from zhenwu_cc.core import dtypes


def signature(kernel) -> dict:
    """A kernel's interface as plain data: parameters, results, shape parameters."""
    def tensor(name, t):
        return {"name": name, "dtype": dtypes.from_xdsl(t.element_type).name,
                "shape": list(t.get_shape())}

    return {
        "name": kernel.sym_name.data,
        "params": {k: v.value.data for k, v in kernel.attributes["params"].data.items()},
        "inputs": [tensor(n, a.type) for n, a in zip(kernel.arg_names, kernel.body.block.args)],
        "outputs": [tensor(n, t) for n, t in zip(kernel.names_of_results,
                                                 kernel.function_type.outputs.data)],
    }


def _dims(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def params_text(params: dict[str, int]) -> str:
    """Shape parameters as the source writes them: `<M = 64, N = 32>` (empty when none)."""
    return "<" + ", ".join(f"{k} = {v}" for k, v in params.items()) + ">" if params else ""


def signature_text(sig: dict) -> str:
    """A signature (see `signature`) in the source's syntax, with every shape parameter's value:
    `gemm<M = 64, ...>(a: f16[64, 4096], ...) -> (c: f32[64, 4096])`."""
    inputs = ", ".join(f"{t['name']}: {t['dtype']}{_dims(t['shape'])}" for t in sig["inputs"])
    outputs = ", ".join(f"{t['name']}: {t['dtype']}{_dims(t['shape'])}" for t in sig["outputs"])
    return f"{sig['name']}{params_text(sig['params'])}({inputs}) -> ({outputs})"

"""Verifier helpers shared by the `zk` op modules (zk.py, zk_elementwise.py, zk_quant.py)."""

from __future__ import annotations

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, SSAValue
from xdsl.utils.exceptions import VerifyException
from zhenwu_cc.core.shapes import Shape


def shape(v: SSAValue | Attribute) -> Shape:
    """The static shape of a tensor value (or tensor type)."""
    t = v.type if isinstance(v, SSAValue) else v
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def elem(v: SSAValue) -> Attribute:
    assert isinstance(v.type, TensorType)
    return v.type.element_type


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise VerifyException(msg)

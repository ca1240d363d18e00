"""Argument normalisation shared by the Python front-ends: one place that turns
user arguments into the plain ints and floats the op schemas take, raising
TypeError/ValueError that name the argument."""
import numbers
from typing import Tuple

import torch

__all__ = ["check_int", "check_float", "check_bool", "check_dense", "pair"]


def check_int(value, name: str) -> int:
    if isinstance(value, torch.SymInt):
        return value  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def check_float(value, name: str) -> float:
    if isinstance(value, (torch.SymFloat, torch.SymInt)):
        return value  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


try:  # numpy is optional for roi_ext
    import numpy as _np

    _BOOL_TYPES: tuple = (bool, _np.bool_)
except ImportError:  # pragma: no cover
    _BOOL_TYPES = (bool,)


def check_bool(value, name: str) -> bool:
    """A bool (numpy bools too); a string or number is a mistake, not a truth value."""
    if isinstance(value, _BOOL_TYPES):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def check_dense(t: torch.Tensor, name: str, op: str) -> None:
    """The kernels read strided memory: sparse, quantized or nested tensors are refused here,
    with the argument's name, rather than by the dispatcher."""
    if t.layout != torch.strided:
        raise TypeError(f"{op}: {name} must be a dense (strided) tensor, got layout {t.layout}")


def pair(value, name: str) -> Tuple[int, int]:
    """An int n -> (n, n); a sequence of two ints -> a tuple. Entries must be >= 0."""
    if isinstance(value, torch.Tensor):
        if value.dim() > 1 or value.numel() not in (1, 2) or value.dtype.is_floating_point:
            raise ValueError(f"{name} must be an int or a pair of ints, got a tensor of shape {tuple(value.shape)}")
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        result = (check_int(value[0], name), check_int(value[1], name))
    else:
        n = check_int(value, name)
        result = (n, n)
    for v in result:
        if not isinstance(v, torch.SymInt) and v < 0:
            raise ValueError(f"{name} must be non-negative, got {value!r}")
    return result

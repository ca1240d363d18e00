"""Argument normalisation shared by the Python front-ends: one place that turns
user arguments into the plain ints and floats the op schemas take, raising
TypeError/ValueError that name the argument."""
import numbers
from typing import Tuple

import torch

__all__ = ["check_int", "check_float", "check_bool", "check_dense", "pair", "call_op", "translate_error", "deterministic"]


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


# The compiled kernels (LibTorch stable ABI) can only raise RuntimeError; their
# messages start with the Python exception type the error stands for
# (csrc/common/stable.h). The front-ends call the ops through call_op, which
# re-raises such an error as that type with the rest of the message.
_ERROR_TYPES = {
    "ValueError: ": ValueError,
    "TypeError: ": TypeError,
    "IndexError: ": IndexError,
    "OutOfMemoryError: ": torch.OutOfMemoryError,
    "RuntimeError: ": RuntimeError,
}


def translate_error(e: RuntimeError) -> BaseException:
    """The typed exception a tagged kernel error stands for (e itself otherwise)."""
    message = str(e)
    for tag, cls in _ERROR_TYPES.items():
        if message.startswith(tag):
            return cls(message[len(tag):])
    return e


def call_op(op, *args):
    """op(*args), with the kernels' tagged RuntimeErrors re-raised as their own types."""
    if torch.compiler.is_compiling():
        return op(*args)
    try:
        return op(*args)
    except RuntimeError as e:
        translated = translate_error(e)
        if translated is e:
            raise
        raise translated from None


def deterministic() -> bool:
    """The flag the backward ops take: torch.use_deterministic_algorithms(True)
    makes the CUDA kernels use their deterministic paths."""
    return torch.are_deterministic_algorithms_enabled()

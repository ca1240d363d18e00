"""Argument normalisation shared by the Python front-ends: one place that turns
user arguments into the plain ints and floats the op schemas take, raising
TypeError/ValueError that name the argument."""
import numbers
from typing import Tuple

import torch

__all__ = ["check_int", "check_float", "check_bool", "check_dense", "check_devices", "pair", "call_op", "call",
           "translate_error", "deterministic", "function_path", "function_for", "save"]


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
    try:
        return float(value)
    except OverflowError:  # an int such as 10**400: no float holds it
        raise ValueError(f"{name} must be a number a float64 can hold, got an int of "
                         f"{int(value).bit_length()} bits") from None


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


def check_devices(op: str, reference: str, **tensors) -> None:
    """Every tensor on the device of tensors[reference]; else a RuntimeError naming
    the argument. Meta tensors mixed with real ones would otherwise reach the
    fake kernel (Meta has the higher dispatch priority), which returns an
    unfilled tensor. Fake kernels and the public functions call it."""
    device = tensors[reference].device
    for name, t in tensors.items():
        if t.device != device:
            raise RuntimeError(f"{op}: {name} must be on the same device as {reference} ({device}), "
                               f"got {name} on {t.device}")


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


# ---------------------------------------------------------------------------
# Forward-mode AD and torch.func transforms
#
# torch.library.register_autograd gives the ops reverse mode only: its
# autograd.Function has no jvp and no setup_context, so torch.func.jvp /
# jacfwd / forward_ad saw zeros and torch.func.grad / jacrev raised. An
# autograd.Function cannot be the op's own Autograd kernel either (functorch
# cannot run one from inside the dispatcher). So the public functions call the
# op through `function_for(...)`'s autograd.Function (jvp, setup_context,
# generated vmap rule) whenever a torch.func transform or a forward-AD level is
# active, and call the op directly otherwise (plain autograd, torch.compile,
# torch.export: the op with its registered autograd formula).
# ---------------------------------------------------------------------------
def function_path() -> bool:
    """True when the op must run through its autograd.Function (jvp support)."""
    if torch.compiler.is_compiling():
        return False
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    return torch.autograd.forward_ad._current_level >= 0


def save(ctx, *tensors) -> None:
    """Saves tensors for backward and, in the autograd.Function path, for jvp."""
    ctx.save_for_backward(*tensors)
    if getattr(ctx, "_roi_ext_function", False):
        ctx.save_for_forward(*tensors)


def function_for(op, setup_context, backward, jvp):
    """An autograd.Function running `op` with these formulas (the same
    setup_context and backward as the op's register_autograd)."""

    class Function(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(*args):
            return op(*args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx._roi_ext_function = True
            setup_context(ctx, inputs, output)

        @staticmethod
        def backward(ctx, *grads):
            return backward(ctx, *grads)

        @staticmethod
        def jvp(ctx, *tangents):
            return jvp(ctx, *tangents)

    Function.__name__ = Function.__qualname__ = f"{op.__name__}_function"
    return Function


def call(op, function, *args):
    """op(*args) (through `function` when function_path()), with the kernels'
    tagged errors re-raised as their own types."""
    if function is not None and function_path():
        try:
            return function.apply(*args)
        except RuntimeError as e:
            translated = translate_error(e)
            if translated is e:
                raise
            raise translated from None
    return call_op(op, *args)

"""Precise RoI Pooling (Jiang et al., ECCV 2018): ``prroi_pool`` and ``PrRoIPool``.

Each output bin is the exact integral of the bilinearly interpolated feature map
over the bin, divided by the bin's area: no sampling points, and differentiable
in the box coordinates as well as in the features. The fake (meta) kernels,
autograd formulas, the functional API and the module live here; the arithmetic
is in ``csrc/common/prroi_pool_math.h``.
"""
from typing import List, Tuple, Union

import torch
from torch import Tensor, nn

from . import _autocast
from . import onnx as _onnx
from ._utils import call, check_dense, check_devices, check_float, deterministic, function_for, pair, save
from .roi_align import _DTYPES, _memory_format, _pair_scriptable, _rois_scriptable

__all__ = ["prroi_pool", "PrRoIPool"]


def _check_rois(op: str, rois: Tensor) -> None:
    torch._check_value(rois.dim() == 2 and rois.size(1) == 5,
                       lambda: f"{op}: rois must have shape [K, 5] with rows (batch_index, x1, y1, x2, y2), "
                               f"got {tuple(rois.shape)}")
    torch._check_type(rois.dtype.is_floating_point, lambda: f"{op}: rois must be a floating-point tensor")


def _check_map(op: str, name: str, t: Tensor) -> None:
    torch._check_value(t.dim() == 4, lambda: f"{op}: {name} must be a 4-D tensor [N, C, H, W], got {t.dim()}-D")
    torch._check_type(t.dtype in _DTYPES,
                      lambda: f"{op}: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}")


def _check_sizes(op: str, pooled_height, pooled_width) -> None:
    torch._check_value(pooled_height >= 0 and pooled_width >= 0,
                       lambda: f"{op}: output size (pooled_height, pooled_width) must be non-negative, "
                               f"got ({pooled_height}, {pooled_width})")


@torch.library.register_fake("roi_ext::prroi_pool")
def _prroi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    check_devices("prroi_pool", "input", input=input, rois=rois)
    _check_map("prroi_pool", "input", input)
    _check_rois("prroi_pool", rois)
    _check_sizes("prroi_pool", pooled_height, pooled_width)
    return torch.empty((rois.size(0), input.size(1), pooled_height, pooled_width), dtype=input.dtype,
                       device=input.device, memory_format=_memory_format(input))


@torch.library.register_fake("roi_ext::_prroi_pool_backward")
def _prroi_pool_backward_fake(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height,
                              width, deterministic=False):
    check_devices("_prroi_pool_backward", "grad", grad=grad, rois=rois)
    _check_map("_prroi_pool_backward", "grad", grad)
    _check_rois("_prroi_pool_backward", rois)
    torch._check_value(
        batch_size >= 0 and channels >= 0 and height >= 0 and width >= 0,
        lambda: f"_prroi_pool_backward: input size (batch_size, channels, height, width) must be non-negative, "
                f"got ({batch_size}, {channels}, {height}, {width})")
    return torch.empty((batch_size, channels, height, width), dtype=grad.dtype, device=grad.device,
                       memory_format=_memory_format(grad))


@torch.library.register_fake("roi_ext::_prroi_pool_backward_rois")
def _prroi_pool_backward_rois_fake(grad, input, rois, spatial_scale, pooled_height, pooled_width):
    check_devices("_prroi_pool_backward_rois", "input", input=input, rois=rois, grad=grad)
    _check_map("_prroi_pool_backward_rois", "input", input)
    _check_map("_prroi_pool_backward_rois", "grad", grad)
    _check_rois("_prroi_pool_backward_rois", rois)
    return torch.empty((rois.size(0), 5), dtype=rois.dtype, device=rois.device)


# ---------------------------------------------------------------------------
# Autograd
#
# prroi_pool is linear in `input` (its adjoint is _prroi_pool_backward) and
# piecewise smooth in the roi coordinates (_prroi_pool_backward_rois: the line
# integrals of the map along the bin edges and the derivative of 1 / area).
# Second derivatives through the roi gradient are not implemented: they raise
# rather than return zeros.
_NO_SECOND_ORDER = ("prroi_pool: second derivatives through the roi gradient (double backward or forward-mode "
                    "derivatives with respect to the rois) are not implemented; derivatives with respect to the "
                    "input are (the op is linear in its input)")


def _setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width = inputs
    rois_grad = isinstance(rois, Tensor) and rois.requires_grad
    if rois_grad:
        save(ctx, rois, input)
    else:
        save(ctx, rois)
    ctx.rois_grad = rois_grad
    ctx.input_shape = input.shape
    ctx.args = (spatial_scale, pooled_height, pooled_width)
    _no_zero_tangents(ctx)


def _no_zero_tangents(ctx):
    # The autograd.Function path (forward AD, torch.func): a rois tangent that
    # does not exist must arrive as None, not as zeros, so that the jvp can
    # tell it from a real one (which it refuses).
    if getattr(ctx, "_roi_ext_function", False):
        ctx.set_materialize_grads(False)


def _backward(ctx, grad):
    if grad is None:
        return None, None, None, None, None
    saved = ctx.saved_tensors
    rois = saved[0]
    spatial_scale, pooled_height, pooled_width = ctx.args
    grad_input = grad_rois = None
    if ctx.needs_input_grad[0]:
        batch_size, channels, height, width = ctx.input_shape
        grad_input = call(torch.ops.roi_ext._prroi_pool_backward.default, _Backward, grad, rois, spatial_scale,
                          pooled_height, pooled_width, batch_size, channels, height, width, deterministic())
    if ctx.needs_input_grad[1]:
        input = saved[1]
        grad_rois = call(torch.ops.roi_ext._prroi_pool_backward_rois.default, _BackwardRois,
                         grad.to(input.dtype), input, rois, spatial_scale, pooled_height, pooled_width)
    return grad_input, grad_rois, None, None, None


def _jvp(ctx, input_t, rois_t, *_):
    if rois_t is not None:
        raise NotImplementedError(_NO_SECOND_ORDER)
    if input_t is None:
        return None
    (rois,) = ctx.saved_tensors[:1]
    return call(torch.ops.roi_ext.prroi_pool.default, _Forward, input_t, rois, *ctx.args)


def _backward_setup_context(ctx, inputs, output):
    grad, rois, spatial_scale, pooled_height, pooled_width = inputs[:5]
    save(ctx, rois)
    ctx.args = (spatial_scale, pooled_height, pooled_width)
    ctx.all_args = inputs[2:]
    _no_zero_tangents(ctx)


def _backward_backward(ctx, grad_grad_input):
    # The input gradient depends on the rois too: with rois that need a
    # gradient, differentiating it again would have to include that term.
    if ctx.needs_input_grad[1]:
        raise NotImplementedError(_NO_SECOND_ORDER)
    if grad_grad_input is None:
        return (None,) * 10
    (rois,) = ctx.saved_tensors
    grad_grad = call(torch.ops.roi_ext.prroi_pool.default, _Forward, grad_grad_input, rois, *ctx.args)
    return (grad_grad,) + (None,) * 9


def _backward_jvp(ctx, grad_t, rois_t=None, *_):
    if rois_t is not None:
        raise NotImplementedError(_NO_SECOND_ORDER)
    if grad_t is None:
        return None
    (rois,) = ctx.saved_tensors
    return call(torch.ops.roi_ext._prroi_pool_backward.default, _Backward, grad_t, rois, *ctx.all_args)


def _rois_backward_setup_context(ctx, inputs, output):
    pass


def _rois_backward_backward(ctx, *grads):
    raise NotImplementedError(_NO_SECOND_ORDER)


def _rois_backward_jvp(ctx, *tangents):
    raise NotImplementedError(_NO_SECOND_ORDER)


torch.library.register_autograd("roi_ext::prroi_pool", _backward, setup_context=_setup_context)
torch.library.register_autograd("roi_ext::_prroi_pool_backward", _backward_backward,
                                setup_context=_backward_setup_context)
torch.library.register_autograd("roi_ext::_prroi_pool_backward_rois", _rois_backward_backward,
                                setup_context=_rois_backward_setup_context)
_Forward = function_for(torch.ops.roi_ext.prroi_pool.default, _setup_context, _backward, _jvp)
_Backward = function_for(torch.ops.roi_ext._prroi_pool_backward.default, _backward_setup_context,
                         _backward_backward, _backward_jvp)
_BackwardRois = function_for(torch.ops.roi_ext._prroi_pool_backward_rois.default, _rois_backward_setup_context,
                             _rois_backward_backward, _rois_backward_jvp)

for _name in ("prroi_pool", "_prroi_pool_backward", "_prroi_pool_backward_rois"):
    _autocast._register(_name)


# ---------------------------------------------------------------------------
# ONNX: no ONNX operator integrates a bilinear map over a box; refused with
# both exporters rather than approximated.
_ONNX_REFUSAL = ("prroi_pool: Precise RoI Pooling has no ONNX operator (ONNX RoiAlign samples points; it does "
                 "not integrate), so it cannot be exported faithfully")


def _prroi_pool_symbolic(g, *args):
    _onnx._refuse(_ONNX_REFUSAL)


torch.onnx.register_custom_op_symbolic("roi_ext::prroi_pool", _prroi_pool_symbolic, _onnx.OPSET)


# ---------------------------------------------------------------------------
# Functional API and module

def _prroi_pool_eager(input, rois, output_size, spatial_scale) -> Tensor:
    """prroi_pool outside TorchScript: argument checks with typed errors, the
    ONNX refusal, and the op through the autograd path in use."""
    if not isinstance(input, Tensor):
        raise TypeError(f"prroi_pool: input must be a Tensor, got {type(input).__name__}")
    check_dense(input, "input", "prroi_pool")
    if isinstance(rois, (list, tuple)):
        for i, b in enumerate(rois):
            if not isinstance(b, Tensor):
                raise TypeError(f"prroi_pool: rois[{i}] must be a Tensor[L, 4], got {type(b).__name__}")
            check_devices("prroi_pool", "input", input=input, **{f"rois[{i}]": b})
        rois = list(rois)
    elif not isinstance(rois, Tensor):
        raise TypeError(f"prroi_pool: rois must be a Tensor[K, 5] or a list of Tensor[L, 4], got "
                        f"{type(rois).__name__}")
    rois_ = _rois_scriptable(rois, input, "prroi_pool", "rois")
    check_dense(rois_, "rois", "prroi_pool")
    pooled_height, pooled_width = pair(output_size, "output_size")
    spatial_scale = check_float(spatial_scale, "spatial_scale")
    if _onnx.exporting_with_dynamo():
        _onnx._refuse(_ONNX_REFUSAL)
    check_devices("prroi_pool", "input", input=input, rois=rois_)
    return call(torch.ops.roi_ext.prroi_pool.default, _Forward, input, rois_, spatial_scale, pooled_height,
                pooled_width)


@torch.fx.wrap
def prroi_pool(
    input: Tensor,
    rois: Union[Tensor, List[Tensor]],
    output_size: Union[int, Tuple[int, int], List[int]],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Precise RoI Pooling (Jiang et al., "Acquisition of Localization Confidence
    for Accurate Object Detection", ECCV 2018).

    Each roi ``(x1, y1, x2, y2)`` is scaled by ``spatial_scale`` (no half-pixel
    offset) and divided into ``output_size`` bins; each bin is the exact integral
    of the bilinearly interpolated map (pixel centres at integer coordinates,
    zero outside the map) over the bin, divided by the bin's area. A bin of zero
    area (an empty or inverted roi) and a roi with a non-finite coordinate give 0.

    Args:
        input: ``[N, C, H, W]`` float16/bfloat16/float32/float64, contiguous or
            channels_last (the output keeps that memory format); half types are
            computed in float32.
        rois: ``Tensor[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)``, or a list of
            ``Tensor[L_i, 4]`` rows ``(x1, y1, x2, y2)``, one per image.
        output_size: ``int`` or ``(pooled_height, pooled_width)``.
        spatial_scale: factor from roi coordinates to feature-map coordinates.

    Returns:
        ``[K, C, pooled_height, pooled_width]``, dtype and memory format of ``input``.
        Differentiable with respect to ``input`` and to the roi coordinates (the
        batch index gets a zero gradient). The roi gradient is the exact derivative
        of the integral (line integrals along the bin edges); it is continuous
        wherever the roi has a positive area. Both gradients are deterministic on
        the CPU and on CUDA (the roi gradient always; the input gradient under
        ``torch.use_deterministic_algorithms(True)``, else CUDA adds with atomics).
        Second derivatives with respect to the rois raise NotImplementedError.

    Raises:
        IndexError: (CPU) a batch index outside ``[0, N)`` or not finite. On CUDA
            nothing is copied to the host: such a roi gives zeros and no gradient.
        ValueError, TypeError: malformed arguments (the message names them).

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> prroi_pool(x, torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 1)
        tensor([[[[5.]]]])
    """
    if torch.jit.is_scripting():  # TorchScript compiles this branch only
        pooled = _pair_scriptable(output_size, "prroi_pool")
        return torch.ops.roi_ext.prroi_pool(input, _rois_scriptable(rois, input, "prroi_pool", "rois"), spatial_scale,
                                            pooled[0], pooled[1])
    return _prroi_pool_eager(input, rois, output_size, spatial_scale)


class PrRoIPool(nn.Module):
    """Precise RoI Pooling as a module: ``PrRoIPool(output_size, spatial_scale=1.0)``.

    ``forward(input, rois)`` is :func:`prroi_pool`.

    Example:
        >>> m = PrRoIPool(7, spatial_scale=0.25)
        >>> m(torch.rand(2, 256, 50, 68), torch.tensor([[0.0, 8, 8, 120, 90]])).shape
        torch.Size([1, 256, 7, 7])
    """

    _pooled: Tuple[int, int]
    _scale: float

    def __init__(self, output_size, spatial_scale: float = 1.0):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self._pooled = pair(output_size, "output_size")
        self._scale = check_float(spatial_scale, "spatial_scale")

    def forward(self, input: Tensor, rois: Union[Tensor, List[Tensor]]) -> Tensor:
        if torch.jit.is_scripting():
            return torch.ops.roi_ext.prroi_pool(input, _rois_scriptable(rois, input, "prroi_pool", "rois"),
                                                self._scale, self._pooled[0], self._pooled[1])
        return prroi_pool(input, rois, self._pooled, self._scale)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale})"

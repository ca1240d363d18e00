"""ROIAlign: torchvision's ``roi_align`` and MindSpore's ``ROIAlign`` in one op.

Everything Python about the op lives here: the fake (meta) kernels and autograd
formulas registered for ``torch.ops.roi_ext.roi_align`` and
``torch.ops.roi_ext._roi_align_backward``, and for the opt-in box gradient
(``roi_align(..., box_grad=True)``) ``torch.ops.roi_ext.roi_align_with_box_grad``
(the same kernels forward; its autograd formula also differentiates the rois) and
``torch.ops.roi_ext._roi_align_backward_rois``; the functional API and the modules.
The arithmetic is in ``csrc/common/roi_align_math.h``.
"""
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from . import onnx as _onnx
from ._utils import (call, check_bool, check_dense, check_devices, check_float, check_int, deterministic,
                     function_for, pair, save)

__all__ = ["roi_align", "RoIAlign", "ROIAlign"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _memory_format(t: Tensor) -> torch.memory_format:
    # Same rule as roi_align_memory_format() in csrc/common/roi_align_args.h.
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


@torch.library.register_fake("roi_ext::roi_align")
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode):
    check_devices("roi_align", "input", input=input, rois=rois)
    torch._check(input.dim() == 4, lambda: f"roi_align: input must be a 4-D tensor [N, C, H, W], got {input.dim()}-D")
    torch._check(input.dtype in _DTYPES, lambda: f"roi_align: unsupported input dtype {input.dtype}")
    torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: "roi_align: rois must have shape [K, 5]")
    torch._check(rois.dtype.is_floating_point, lambda: "roi_align: rois must be a floating-point tensor")
    return torch.empty(
        (rois.size(0), input.size(1), pooled_height, pooled_width),
        dtype=input.dtype,
        device=input.device,
        memory_format=_memory_format(input),
    )


@torch.library.register_fake("roi_ext::_roi_align_backward")
def _roi_align_backward_fake(
    grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width,
    sampling_ratio, aligned, roi_end_mode, deterministic=False,
):
    check_devices("_roi_align_backward", "grad", grad=grad, rois=rois)
    torch._check(grad.dim() == 4, lambda: "_roi_align_backward: grad must be 4-D")
    torch._check_value(
        batch_size >= 0 and channels >= 0 and height >= 0 and width >= 0,
        lambda: f"_roi_align_backward: input size (batch_size, channels, height, width) must be non-negative, "
                f"got ({batch_size}, {channels}, {height}, {width})")
    torch._check(grad.dtype in _DTYPES, lambda: f"_roi_align_backward: unsupported grad dtype {grad.dtype}")
    torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: "_roi_align_backward: rois must have shape [K, 5]")
    return torch.empty(
        (batch_size, channels, height, width),
        dtype=grad.dtype,
        device=grad.device,
        memory_format=_memory_format(grad),
    )


@torch.library.register_fake("roi_ext::roi_align_with_box_grad")
def _roi_align_with_box_grad_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned,
                                  roi_end_mode):
    return _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned,
                           roi_end_mode)


@torch.library.register_fake("roi_ext::_roi_align_backward_rois")
def _roi_align_backward_rois_fake(grad, input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                                  aligned, roi_end_mode):
    op = "_roi_align_backward_rois"
    check_devices(op, "input", grad=grad, input=input, rois=rois)
    torch._check(input.dim() == 4, lambda: f"{op}: input must be a 4-D tensor [N, C, H, W], got {input.dim()}-D")
    torch._check(input.dtype in _DTYPES, lambda: f"{op}: unsupported input dtype {input.dtype}")
    torch._check(grad.dtype in _DTYPES, lambda: f"{op}: unsupported grad dtype {grad.dtype}")
    torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: f"{op}: rois must have shape [K, 5]")
    torch._check(rois.dtype.is_floating_point, lambda: f"{op}: rois must be a floating-point tensor")
    torch._check(grad.dim() == 4, lambda: f"{op}: grad must be a 4-D tensor [K, C, pooled_height, pooled_width]")
    return rois.new_empty((rois.size(0), 5))


def _setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode = inputs
    save(ctx, rois)
    ctx.input_shape = input.shape
    ctx.args = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode)


def _backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode = ctx.args
    batch_size, channels, height, width = ctx.input_shape
    grad_input = call(
        torch.ops.roi_ext._roi_align_backward.default, _RoiAlignBackward,
        grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width,
        sampling_ratio, aligned, roi_end_mode, deterministic(),
    )
    # The rois receive no gradient (SPEC.md Part A13).
    return grad_input, None, None, None, None, None, None, None


def _backward_setup_context(ctx, inputs, output):
    grad, rois, spatial_scale, pooled_height, pooled_width = inputs[:5]
    sampling_ratio, aligned, roi_end_mode = inputs[9:12]
    save(ctx, rois)
    ctx.args = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode)
    ctx.all_args = inputs[2:]


def _backward_backward(ctx, grad_grad_input):
    # _roi_align_backward is linear in `grad`; its adjoint is the forward.
    (rois,) = ctx.saved_tensors
    grad_grad = call(torch.ops.roi_ext.roi_align.default, _RoiAlign, grad_grad_input, rois, *ctx.args)
    return (grad_grad,) + (None,) * 12


# Forward mode: both ops are linear in their first argument, so the tangent is
# the op applied to the tangent. The rois get no derivative (SPEC Part A13).
def _jvp(ctx, input_t, *_):
    (rois,) = ctx.saved_tensors
    if input_t is None:
        return None
    return call(torch.ops.roi_ext.roi_align.default, _RoiAlign, input_t, rois, *ctx.args)


def _backward_jvp(ctx, grad_t, *_):
    (rois,) = ctx.saved_tensors
    if grad_t is None:
        return None
    return call(torch.ops.roi_ext._roi_align_backward.default, _RoiAlignBackward, grad_t, rois, *ctx.all_args)


torch.library.register_autograd("roi_ext::roi_align", _backward, setup_context=_setup_context)
torch.library.register_autograd(
    "roi_ext::_roi_align_backward", _backward_backward, setup_context=_backward_setup_context
)
_RoiAlign = function_for(torch.ops.roi_ext.roi_align.default, _setup_context, _backward, _jvp)
_RoiAlignBackward = function_for(torch.ops.roi_ext._roi_align_backward.default, _backward_setup_context,
                                 _backward_backward, _backward_jvp)


# ---------------------------------------------------------------------------
# The box gradient (roi_align(..., box_grad=True)): roi_align_with_box_grad runs
# the roi_align kernels; its formula adds the gradient of the roi coordinates
# (_roi_align_backward_rois). Second derivatives through it are refused rather
# than given wrong: the mixed input/rois term is not implemented.
# ---------------------------------------------------------------------------
_NO_DOUBLE_BACKWARD = ("roi_ext: double backward through the box gradient of roi_align is not supported "
                       "(roi_align(..., box_grad=True): the second derivatives involving the rois are not "
                       "implemented); differentiate once, or use box_grad=False")


class _SecondOrderGuard(torch.autograd.Function):
    """Identity on grad_input of a box-gradient roi_align whose backward is recorded
    (create_graph=True): differentiating grad_input again raises instead of silently
    leaving out its dependence on the rois."""

    @staticmethod
    def forward(ctx, t):
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError(_NO_DOUBLE_BACKWARD)


def _box_grad_setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode = inputs
    # The input is needed only for the rois' gradient.
    ctx.rois_need_grad = bool(ctx.needs_input_grad[1])
    if ctx.rois_need_grad:
        save(ctx, rois, input)
    else:
        save(ctx, rois)
    ctx.input_shape = input.shape
    ctx.args = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode)
    if getattr(ctx, "_roi_ext_function", False):
        # The autograd.Function path (forward AD, torch.func): a rois tangent
        # that does not exist must arrive as None, not as zeros, so that
        # _box_grad_jvp can tell it from a real one.
        ctx.set_materialize_grads(False)


def _box_grad_backward(ctx, grad):
    if grad is None:
        return (None,) * 8
    saved = ctx.saved_tensors
    rois = saved[0]
    spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode = ctx.args
    grad_input = grad_rois = None
    if ctx.needs_input_grad[0]:
        batch_size, channels, height, width = ctx.input_shape
        grad_input = call(
            torch.ops.roi_ext._roi_align_backward.default, _RoiAlignBackward,
            grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width,
            sampling_ratio, aligned, roi_end_mode, deterministic(),
        )
        if torch.is_grad_enabled() and ctx.needs_input_grad[1] and not torch.compiler.is_compiling():
            grad_input = _SecondOrderGuard.apply(grad_input)
    if ctx.needs_input_grad[1]:
        grad_rois = call(torch.ops.roi_ext._roi_align_backward_rois.default, _RoiAlignBackwardRois,
                         grad, saved[1], rois, *ctx.args)
    return grad_input, grad_rois, None, None, None, None, None, None


def _box_grad_jvp(ctx, input_t, rois_t, *_):
    if rois_t is not None:
        raise NotImplementedError(
            "roi_ext: forward-mode AD of roi_align(..., box_grad=True) with a tangent for the rois is not "
            "supported (torch.func.jvp / jacfwd / forward_ad): only the input may carry a tangent; use "
            "reverse mode (backward, torch.func.grad / jacrev) for the gradient of the rois")
    if input_t is None:
        return None
    rois = ctx.saved_tensors[0]
    return call(torch.ops.roi_ext.roi_align.default, _RoiAlign, input_t, rois, *ctx.args)


def _backward_rois_setup_context(ctx, inputs, output):
    pass


def _backward_rois_backward(ctx, grad):
    raise NotImplementedError(_NO_DOUBLE_BACKWARD)


def _backward_rois_jvp(ctx, *tangents):
    raise NotImplementedError(_NO_DOUBLE_BACKWARD.replace("double backward", "forward-mode AD of the backward"))


torch.library.register_autograd("roi_ext::roi_align_with_box_grad", _box_grad_backward,
                                setup_context=_box_grad_setup_context)
torch.library.register_autograd("roi_ext::_roi_align_backward_rois", _backward_rois_backward,
                                setup_context=_backward_rois_setup_context)
_RoiAlignWithBoxGrad = function_for(torch.ops.roi_ext.roi_align_with_box_grad.default, _box_grad_setup_context,
                                    _box_grad_backward, _box_grad_jvp)
_RoiAlignBackwardRois = function_for(torch.ops.roi_ext._roi_align_backward_rois.default,
                                     _backward_rois_setup_context, _backward_rois_backward, _backward_rois_jvp)


def _boxes_to_rois(boxes: Union[Tensor, Sequence[Tensor]], input: Tensor) -> Tensor:
    """Tensor[K, 5] as is; a list/tuple of Tensor[L_i, 4] gets its image index prepended."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError(
                f"roi_align: boxes must be a Tensor[K, 5] of rows (batch_index, x1, y1, x2, y2) "
                f"or a list of Tensor[L, 4], got a tensor of shape {tuple(boxes.shape)}"
            )
        return boxes
    if isinstance(boxes, (list, tuple)):
        parts: List[Tensor] = []
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.size(1) != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"roi_align: boxes[{i}] must be a Tensor[L, 4], got {shape}")
            check_devices("roi_align", "input", input=input, **{f"boxes[{i}]": b})
            parts.append(torch.cat([torch.full_like(b[:, :1], i), b], dim=1))
        if not parts:
            return torch.empty((0, 5), dtype=input.dtype, device=input.device)
        return torch.cat(parts, dim=0)
    raise TypeError(
        f"roi_align: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}"
    )


def _roi_align_op(input: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
                  sampling_ratio: int, aligned: bool, roi_end_mode: int, box_grad: bool = False) -> Tensor:
    """torch.ops.roi_ext.roi_align (roi_align_with_box_grad when box_grad) with typed
    errors; an ONNX RoiAlign node while torch.onnx.export(dynamo=True) traces the model."""
    if _onnx.exporting_with_dynamo():
        return _onnx.roi_align_to_onnx(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                                       aligned, roi_end_mode)
    check_devices("roi_align", "input", input=input, rois=rois)
    if box_grad:
        op, function = torch.ops.roi_ext.roi_align_with_box_grad.default, _RoiAlignWithBoxGrad
    else:
        op, function = torch.ops.roi_ext.roi_align.default, _RoiAlign
    return call(op, function, input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned,
                roi_end_mode)


def _pair_scriptable(output_size: Union[int, Tuple[int, int], List[int]], op: str = "roi_align") -> Tuple[int, int]:
    """output_size as (pooled_height, pooled_width), for TorchScript (`op` names the
    operator in the error)."""
    if isinstance(output_size, int):
        return output_size, output_size
    elif isinstance(output_size, list):
        if len(output_size) != 2:
            raise ValueError(op + ": output_size must be an int or a pair of ints")
        return output_size[0], output_size[1]
    else:
        return output_size[0], output_size[1]


# An fx leaf (torch.fx.symbolic_trace records one call instead of tracing into
# it), as torchvision registers its roi_align.
@torch.fx.wrap
def roi_align(
    input: Tensor,
    boxes: Union[Tensor, List[Tensor]],
    output_size: Union[int, Tuple[int, int], List[int]],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    roi_end_mode: int = 0,
    box_grad: bool = False,
) -> Tensor:
    """Region of Interest Align (Mask R-CNN), a drop-in for ``torchvision.ops.roi_align``.

    Each roi is divided into ``output_size`` bins; each bin is the average of
    ``sampling_ratio x sampling_ratio`` bilinear samples (adaptive,
    ``ceil(roi_size / output_size)`` per axis, when ``sampling_ratio <= 0``).

    Args:
        input: ``[N, C, H, W]`` float16/bfloat16/float32/float64, contiguous or
            channels_last (the output keeps that memory format).
        boxes: ``Tensor[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)``, or a list
            of ``Tensor[L_i, 4]`` rows ``(x1, y1, x2, y2)``, one per image.
        output_size: ``int`` or ``(pooled_height, pooled_width)``.
        spatial_scale: factor from box coordinates to feature-map coordinates.
        sampling_ratio: samples per bin along each axis; ``<= 0`` is adaptive.
        aligned: shift box coordinates by -0.5 pixel (Detectron2's alignment).
        roi_end_mode: ``0`` (torchvision) or ``1`` (MindSpore: the end
            coordinate is inclusive, ``end = (x2 + 1) * spatial_scale``, and rois
            are not enlarged to 1x1).
        box_grad: ``False`` (default, torchvision's behaviour): the boxes receive
            no gradient. ``True``: the boxes are differentiated too (box
            refinement heads, trackers, IoU-Net); see "Box gradient" below.

    Returns:
        ``[K, C, pooled_height, pooled_width]``, dtype and memory format of ``input``.
        Differentiable with respect to ``input``, and with ``box_grad=True`` with
        respect to the box coordinates.

    Box gradient (``box_grad=True``): the gradient of the forward exactly as
    computed, with respect to ``x1, y1, x2, y2`` of every box (in the boxes' dtype;
    the batch index gets none: column 0 of a ``Tensor[K, 5]`` receives zeros).

    * Adaptive sampling (``sampling_ratio <= 0``): the number of samples,
      ``ceil(roi_size / output_size)``, is a piecewise-constant function of the box;
      the gradient is that of the piece the box lies in (the sample grid and the
      divisor held fixed). It jumps where the grid changes.
    * A sample exactly on a pixel boundary, or where the bilinear rule clamps its
      coordinate (in ``[-1, 0]`` or ``[H - 1, H]``, ``[W - 1, W]``: the forward reads
      the edge pixel there), gets the one-sided derivative of the branch the
      forward takes (zero along a clamped axis); samples outside ``[-1, H]`` /
      ``[-1, W]`` contribute nothing.
    * Legacy mode (``aligned=False, roi_end_mode=0``): a box smaller than one
      pixel (after ``spatial_scale``) is enlarged to 1 pixel; its size then does
      not depend on the coordinates, so only the start moves (zero derivative of
      the size).
    * float16/bfloat16 inputs are differentiated in float32. CPU and CUDA are
      deterministic (CUDA: a block per box, a fixed-order reduction, no atomics).
      Second derivatives through the box gradient (double backward) and
      forward-mode AD with a tangent for the boxes raise ``NotImplementedError``.

    Raises:
        IndexError: (CPU) a batch index outside ``[0, N)`` or not finite.
        ValueError: a roi needing more than ``2**26`` bilinear samples
            (``pooled_h * pooled_w * grid_h * grid_w``): a too large ``sampling_ratio``
            (CPU and CUDA, before any work), or, on the CPU, adaptive sampling of a
            huge roi.

    On CUDA nothing is copied to the host (no synchronisation: CUDA graphs and
    ``torch.compile(mode="reduce-overhead")`` work), so the roi values are not
    checked there: a roi whose batch index is outside ``[0, N)`` or not finite
    gives zeros and receives no gradient, and a roi that adaptive sampling would
    give more than ``2**26`` samples (coordinates around ``1e7`` and beyond: a
    diverging box regressor) gives NaN and no gradient. Under
    ``torch.use_deterministic_algorithms(True)`` the CUDA backward adds in the CPU
    kernel's order: bitwise reproducible, and equal to the CPU result.

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]])
        >>> roi_align(x, rois, 2, sampling_ratio=-1)
        tensor([[[[ 3.7500,  5.2500],
                  [ 9.7500, 11.2500]]]])
    """
    if torch.jit.is_scripting():  # TorchScript compiles this branch only
        pooled = _pair_scriptable(output_size)
        if box_grad:
            return torch.ops.roi_ext.roi_align_with_box_grad(input, _rois_scriptable(boxes, input), spatial_scale,
                                                             pooled[0], pooled[1], sampling_ratio, aligned,
                                                             roi_end_mode)
        return torch.ops.roi_ext.roi_align(input, _rois_scriptable(boxes, input), spatial_scale, pooled[0],
                                           pooled[1], sampling_ratio, aligned, roi_end_mode)
    if not isinstance(input, Tensor):
        raise TypeError(f"roi_align: input must be a Tensor, got {type(input).__name__}")
    check_dense(input, "input", "roi_align")
    rois = _boxes_to_rois(boxes, input)
    check_dense(rois, "boxes", "roi_align")
    pooled_height, pooled_width = pair(output_size, "output_size")
    return _roi_align_op(
        input,
        rois,
        check_float(spatial_scale, "spatial_scale"),
        pooled_height,
        pooled_width,
        check_int(sampling_ratio, "sampling_ratio"),
        check_bool(aligned, "aligned"),
        check_int(roi_end_mode, "roi_end_mode"),
        check_bool(box_grad, "box_grad"),
    )


def _rois_scriptable(boxes: Union[Tensor, List[Tensor]], input: Tensor, op: str = "roi_align",
                     name: str = "boxes") -> Tensor:
    """_boxes_to_rois for TorchScript (a Tensor[K, 5] or a list of Tensor[L, 4]);
    `op` and `name` name the operator and the argument in the errors."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError(op + ": " + name + " must be a Tensor[K, 5] or a list of Tensor[L, 4]")
        return boxes
    parts: List[Tensor] = []
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.size(1) != 4:
            raise ValueError(op + ": every tensor of the " + name + " list must be a Tensor[L, 4]")
        parts.append(torch.cat([torch.full_like(b[:, :1], float(i)), b], dim=1))
    if len(parts) == 0:
        return torch.empty((0, 5), dtype=input.dtype, device=input.device)
    return torch.cat(parts, dim=0)


class RoIAlign(nn.Module):
    """torchvision's ``RoIAlign`` module: ``RoIAlign(output_size, spatial_scale, sampling_ratio, aligned=False)``.

    ``box_grad=True`` (roi_ext only) makes the rois receive a gradient
    (see :func:`roi_align`); the repr shows it only when set.

    Example:
        >>> m = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)
        >>> m(torch.rand(2, 256, 50, 68), torch.tensor([[0.0, 8, 8, 120, 90]])).shape
        torch.Size([1, 256, 7, 7])
    """

    _pooled: Tuple[int, int]
    _scale: float
    _sampling_ratio: int
    _aligned: bool
    _box_grad: bool

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False,
                 box_grad: bool = False):
        super().__init__()
        # The arguments as given (repr, torchvision compatibility) ...
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.box_grad = box_grad
        # ... and normalised, typed copies for TorchScript.
        self._pooled = pair(output_size, "output_size")
        self._scale = check_float(spatial_scale, "spatial_scale")
        self._sampling_ratio = check_int(sampling_ratio, "sampling_ratio")
        self._aligned = check_bool(aligned, "aligned")
        self._box_grad = check_bool(box_grad, "box_grad")

    def forward(self, input: Tensor, rois: Union[Tensor, List[Tensor]]) -> Tensor:
        if torch.jit.is_scripting():
            if self._box_grad:
                return torch.ops.roi_ext.roi_align_with_box_grad(
                    input, _rois_scriptable(rois, input), self._scale, self._pooled[0], self._pooled[1],
                    self._sampling_ratio, self._aligned, 0,
                )
            return torch.ops.roi_ext.roi_align(
                input, _rois_scriptable(rois, input), self._scale, self._pooled[0], self._pooled[1],
                self._sampling_ratio, self._aligned, 0,
            )
        if self._box_grad:
            return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned,
                             box_grad=True)
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        extra = ", box_grad=True" if self._box_grad else ""
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}{extra})"
        )


class ROIAlign(nn.Module):
    """MindSpore's ``ROIAlign``: ``ROIAlign(pooled_height, pooled_width, spatial_scale, sample_num=2, roi_end_mode=1)``.

    ``forward(features, rois)`` with ``rois`` a ``Tensor[K, 5]`` of rows
    ``(batch_index, x1, y1, x2, y2)``. With the default ``roi_end_mode=1`` the
    end coordinate is inclusive (``end = (x2 + 1) * spatial_scale``).
    ``box_grad=True`` (roi_ext only) makes the rois receive a gradient (see
    :func:`roi_align`); the repr shows it only when set.

    Example:
        >>> m = ROIAlign(2, 2, 0.5, 2)
        >>> m(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[0, 0.2, 0.3, 0.2, 0.3]]))
        tensor([[[[1.7750, 2.0250],
                  [2.2750, 2.5250]]]])
    """

    def __init__(
        self, pooled_height: int, pooled_width: int, spatial_scale: float, sample_num: int = 2, roi_end_mode: int = 1,
        box_grad: bool = False,
    ):
        super().__init__()
        self.box_grad = check_bool(box_grad, "box_grad")
        self.pooled_height = check_int(pooled_height, "pooled_height")
        self.pooled_width = check_int(pooled_width, "pooled_width")
        self.spatial_scale = check_float(spatial_scale, "spatial_scale")
        self.sample_num = check_int(sample_num, "sample_num")
        self.roi_end_mode = check_int(roi_end_mode, "roi_end_mode")
        if self.roi_end_mode not in (0, 1):
            raise ValueError(f"ROIAlign: roi_end_mode must be 0 or 1, got {roi_end_mode}")
        if self.pooled_height <= 0 or self.pooled_width <= 0:
            raise ValueError(
                f"ROIAlign: pooled_height and pooled_width must be positive, got ({pooled_height}, {pooled_width})"
            )

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        # The arguments were checked in __init__; the op checks the tensors.
        if torch.jit.is_scripting():
            if self.box_grad:
                return torch.ops.roi_ext.roi_align_with_box_grad(
                    features, rois, self.spatial_scale, self.pooled_height, self.pooled_width, self.sample_num,
                    False, self.roi_end_mode,
                )
            return torch.ops.roi_ext.roi_align(
                features, rois, self.spatial_scale, self.pooled_height, self.pooled_width, self.sample_num, False,
                self.roi_end_mode,
            )
        return _roi_align_op(
            features, rois, self.spatial_scale, self.pooled_height, self.pooled_width, self.sample_num, False,
            self.roi_end_mode, self.box_grad,
        )

    def __repr__(self) -> str:
        extra = ", box_grad=True" if self.box_grad else ""
        return (
            f"{self.__class__.__name__}(pooled_height={self.pooled_height}, pooled_width={self.pooled_width}, "
            f"spatial_scale={self.spatial_scale}, sample_num={self.sample_num}, roi_end_mode={self.roi_end_mode}"
            f"{extra})"
        )

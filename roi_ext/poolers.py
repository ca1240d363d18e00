"""MultiScaleRoIAlign: torchvision's FPN pooler, every level in one kernel call.

Everything Python about ``torch.ops.roi_ext.multi_scale_roi_align`` lives here:
its fake (meta) kernels, autograd formulas, ONNX decomposition and the
``MultiScaleRoIAlign`` module. The kernels are ``csrc/cpu/multi_scale_roi_align_kernel.cpp``
and ``csrc/cuda/multi_scale_roi_align_kernel.cu``; the arithmetic is roi_align's
(``csrc/common/roi_align_math.h``), so each roi's result is bitwise what
``roi_align`` gives on its level.

torchvision's pooler calls ``roi_align`` once per level and moves the rows with
``torch.where`` gathers and index scatters (output shapes that depend on the
data). Here the level of each roi is computed first (torchvision's
``LevelMapper`` arithmetic, operation for operation) and passed to the op, which
pools every roi from its own level: one launch, static shapes, so the module
traces under ``torch.compile(fullgraph=True, dynamic=True)`` and ``torch.export``
with a dynamic number of boxes.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.fx
from torch import Tensor, nn

from ._utils import call_op, check_devices, check_int, deterministic, function_path, pair, translate_error
from .roi_align import _DTYPES, _memory_format

__all__ = ["MultiScaleRoIAlign", "LevelMapper", "multi_scale_roi_align"]

# ---------------------------------------------------------------------------
# The op: fake kernels and autograd
# ---------------------------------------------------------------------------
def _check_devices(op: str, features, **tensors) -> None:
    """Every feature level, rois and levels on the device of features[0] (a meta
    tensor mixed with real ones would otherwise reach the fake kernel, which
    returns an unfilled tensor); else a RuntimeError naming the argument."""
    if len(features) == 0:
        return
    named = {f"features[{i}]": f for i, f in enumerate(features)}
    named.update(tensors)
    check_devices(op, "features[0]", **named)


@torch.library.register_fake("roi_ext::multi_scale_roi_align")
def _multi_scale_roi_align_fake(features, rois, levels, scales, pooled_height, pooled_width, sampling_ratio, aligned):
    op = "multi_scale_roi_align"
    torch._check(len(features) > 0, lambda: f"{op}: features must hold at least one feature map")
    _check_devices(op, features, rois=rois, levels=levels)
    f0 = features[0]
    for f in features:
        torch._check(f.dim() == 4, lambda: f"{op}: every feature map must be a 4-D tensor [N, C, H, W]")
        torch._check(f.dtype == f0.dtype, lambda: f"{op}: every feature map must have the dtype of features[0]")
    torch._check(f0.dtype in _DTYPES, lambda: f"{op}: unsupported features dtype {f0.dtype}")
    torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: f"{op}: rois must have shape [K, 5]")
    torch._check(rois.dtype.is_floating_point, lambda: f"{op}: rois must be a floating-point tensor")
    torch._check(levels.dim() == 1, lambda: f"{op}: levels must have shape [K]")
    torch._check(len(scales) == len(features), lambda: f"{op}: scales must have one entry per feature level")
    return torch.empty(
        (rois.size(0), f0.size(1), pooled_height, pooled_width),
        dtype=f0.dtype,
        device=f0.device,
        memory_format=_memory_format(f0),
    )


@torch.library.register_fake("roi_ext::_multi_scale_roi_align_backward")
def _multi_scale_roi_align_backward_fake(
    grad, rois, levels, scales, pooled_height, pooled_width, batch_size, channels, heights, widths,
    sampling_ratio, aligned, deterministic=False,
):
    op = "_multi_scale_roi_align_backward"
    check_devices(op, "grad", grad=grad, rois=rois, levels=levels)
    torch._check(grad.dim() == 4, lambda: f"{op}: grad must be 4-D")
    torch._check(grad.dtype in _DTYPES, lambda: f"{op}: unsupported grad dtype {grad.dtype}")
    torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: f"{op}: rois must have shape [K, 5]")
    torch._check(len(heights) == len(scales) and len(widths) == len(scales),
                 lambda: f"{op}: heights and widths must have one entry per level")
    fmt = _memory_format(grad)
    return [
        torch.empty((batch_size, channels, h, w), dtype=grad.dtype, device=grad.device, memory_format=fmt)
        for h, w in zip(heights, widths)
    ]


def _setup_context(ctx, inputs, output):
    features, rois, levels, scales, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois, levels)
    f0 = features[0]
    ctx.sizes = (f0.shape[0], f0.shape[1], [f.shape[2] for f in features], [f.shape[3] for f in features])
    ctx.args = (scales, pooled_height, pooled_width, sampling_ratio, aligned)


def _backward(ctx, grad):
    rois, levels = ctx.saved_tensors
    scales, pooled_height, pooled_width, sampling_ratio, aligned = ctx.args
    batch_size, channels, heights, widths = ctx.sizes
    grads = call_op(
        torch.ops.roi_ext._multi_scale_roi_align_backward,
        grad, rois, levels, scales, pooled_height, pooled_width, batch_size, channels, heights, widths,
        sampling_ratio, aligned, deterministic(),
    )
    # rois and levels receive no gradient. The returned structure mirrors the
    # inputs' (a list for each list argument): torch before 2.14 insists on it.
    return list(grads), None, None, None, None, None, None, None


def _backward_setup_context(ctx, inputs, output):
    grad, rois, levels, scales, pooled_height, pooled_width = inputs[:6]
    sampling_ratio, aligned = inputs[10:12]
    ctx.save_for_backward(rois, levels)
    ctx.grad_shape = grad.shape
    ctx.args = (scales, pooled_height, pooled_width, sampling_ratio, aligned)
    ctx.like = [(o.shape, o.dtype, o.device) for o in output]
    # One gradient per argument the operator was called with: the dispatcher
    # drops a trailing `deterministic` equal to its default (False), and torch
    # before 2.14 wants no gradient slot for it then.
    ctx.num_grads = 13 if len(inputs) > 12 and inputs[12] else 12


def _backward_backward(ctx, grad_grads):
    # The backward op is linear in `grad`; its adjoint is the forward.
    rois, levels = ctx.saved_tensors
    grad_grads = [
        g if g is not None else torch.zeros(shape, dtype=dtype, device=device)
        for g, (shape, dtype, device) in zip(grad_grads, ctx.like)
    ]
    grad_grad = call_op(torch.ops.roi_ext.multi_scale_roi_align, grad_grads, rois, levels, *ctx.args)
    levels_count = [None] * len(ctx.args[0])
    # grad, rois, levels, scales, pooled_height, pooled_width, batch_size, channels,
    # heights, widths, sampling_ratio, aligned, deterministic
    return (grad_grad,) + (None,) * (ctx.num_grads - 1)


torch.library.register_autograd(
    "roi_ext::multi_scale_roi_align", _backward, setup_context=_setup_context
)
torch.library.register_autograd(
    "roi_ext::_multi_scale_roi_align_backward", _backward_backward, setup_context=_backward_setup_context
)


# ---------------------------------------------------------------------------
# ONNX: one RoiAlign per level, merged with Where (static shapes)
# ---------------------------------------------------------------------------
@torch.jit.unused
def _onnx_multi_scale_roi_align(
    features: List[Tensor], rois: Tensor, levels: Tensor, scales: List[float], pooled_height: int,
    pooled_width: int, sampling_ratio: int,
) -> Tensor:
    """The graph exported for multi_scale_roi_align: every roi pooled from every
    level (ONNX RoiAlign, output_half_pixel: torchvision's aligned=False), then for
    each roi the result of its own level picked with Where, rois of no level giving
    0. Static shapes (no NonZero, no scatter) at the price of pooling each roi once
    per level. dynamo=True emits RoiAlign through torch.onnx.ops.symbolic;
    dynamo=False traces torch.ops.roi_ext.roi_align, whose symbolic roi_ext.onnx
    registers."""
    from . import onnx as _onnx

    dtype = features[0].dtype
    result = torch.zeros((rois.shape[0], features[0].shape[1], pooled_height, pooled_width), dtype=dtype,
                         device=rois.device)
    for level, (feature, scale) in enumerate(zip(features, scales)):
        if torch.jit.is_tracing():
            pooled = torch.ops.roi_ext.roi_align(feature.to(dtype), rois, float(scale), pooled_height, pooled_width,
                                                 sampling_ratio, False, 0)
        else:
            pooled = _onnx.roi_align_to_onnx(feature.to(dtype), rois, float(scale), pooled_height, pooled_width,
                                             sampling_ratio, False, 0)
        result = torch.where((levels == level).view(-1, 1, 1, 1), pooled, result)
    return result


# ---------------------------------------------------------------------------
# Functional form
# ---------------------------------------------------------------------------
class _MultiScaleFunction(torch.autograd.Function):
    """The op for torch.func transforms and forward-mode AD (torch.library's
    register_autograd gives reverse mode only). The feature levels come last, as
    separate arguments, so that autograd sees each of them. The op is linear in
    the features: the tangent is the op applied to the tangents."""

    generate_vmap_rule = True

    @staticmethod
    def forward(rois, levels, scales, pooled_height, pooled_width, sampling_ratio, aligned, *features):
        return torch.ops.roi_ext.multi_scale_roi_align(list(features), rois, levels, scales, pooled_height,
                                                       pooled_width, sampling_ratio, aligned)

    @staticmethod
    def setup_context(ctx, inputs, output):
        rois, levels, scales, pooled_height, pooled_width, sampling_ratio, aligned = inputs[:7]
        features = inputs[7:]
        ctx.save_for_backward(rois, levels)
        ctx.save_for_forward(rois, levels)
        ctx.args = (scales, pooled_height, pooled_width, sampling_ratio, aligned)
        ctx.like = [(f.shape, f.dtype, f.device) for f in features]
        ctx.formats = [_memory_format(f) for f in features]

    @staticmethod
    def backward(ctx, grad):
        rois, levels = ctx.saved_tensors
        scales, pooled_height, pooled_width, sampling_ratio, aligned = ctx.args
        f0_shape = ctx.like[0][0]
        grads = torch.ops.roi_ext._multi_scale_roi_align_backward(
            grad, rois, levels, scales, pooled_height, pooled_width, f0_shape[0], f0_shape[1],
            [shape[2] for shape, _, _ in ctx.like], [shape[3] for shape, _, _ in ctx.like], sampling_ratio,
            aligned, deterministic())
        return (None,) * 7 + tuple(grads)

    @staticmethod
    def jvp(ctx, *tangents):
        rois, levels = ctx.saved_tensors
        feature_tangents = [
            t if t is not None else torch.zeros(shape, dtype=dtype, device=device).contiguous(memory_format=fmt)
            for t, (shape, dtype, device), fmt in zip(tangents[7:], ctx.like, ctx.formats)
        ]
        return torch.ops.roi_ext.multi_scale_roi_align(feature_tangents, rois, levels, *ctx.args)


@torch.jit.unused
def _multi_scale_roi_align_eager(features: List[Tensor], rois: Tensor, levels: Tensor, scales: List[float],
                                 pooled_height: int, pooled_width: int, sampling_ratio: int, aligned: bool) -> Tensor:
    """The Python path of multi_scale_roi_align (not compiled by TorchScript): ONNX
    export, device checks, torch.func / forward-mode AD, typed errors."""
    if torch.onnx.is_in_onnx_export():
        if aligned:
            raise ValueError("multi_scale_roi_align: ONNX export supports aligned=False only "
                             "(torchvision's MultiScaleRoIAlign)")
        return _onnx_multi_scale_roi_align(features, rois, levels, scales, pooled_height, pooled_width,
                                           sampling_ratio)
    _check_devices("multi_scale_roi_align", features, rois=rois, levels=levels)
    if function_path():  # torch.func transforms, forward-mode AD
        try:
            return _MultiScaleFunction.apply(rois, levels, scales, pooled_height, pooled_width, sampling_ratio,
                                             aligned, *features)
        except RuntimeError as e:
            translated = translate_error(e)
            if translated is e:
                raise
            raise translated from None
    return call_op(torch.ops.roi_ext.multi_scale_roi_align, features, rois, levels, scales, pooled_height,
                   pooled_width, sampling_ratio, aligned)


def multi_scale_roi_align(
    features: List[Tensor],
    rois: Tensor,
    levels: Tensor,
    scales: List[float],
    output_size: Tuple[int, int],
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """``roi_align`` of roi ``k`` on ``features[levels[k]]`` with ``scales[levels[k]]``, for all rois at once.

    Args:
        features: feature maps ``[N, C, H_l, W_l]`` (same N, C and dtype;
            contiguous or channels_last, each read in its own layout).
        rois: ``Tensor[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)``.
        levels: ``Tensor[K]`` int64, the level of each roi; a roi whose level is
            outside ``[0, len(features))`` gives 0 (and gets no gradient).
        scales: spatial scale of each level.
        output_size: ``(pooled_height, pooled_width)``.
        sampling_ratio, aligned: as ``roi_align``.

    Returns:
        ``[K, C, pooled_height, pooled_width]``, dtype and memory format of ``features[0]``.
    """
    pooled_height, pooled_width = output_size
    if not torch.jit.is_scripting():
        return _multi_scale_roi_align_eager(features, rois, levels, scales, pooled_height, pooled_width,
                                            sampling_ratio, aligned)
    return torch.ops.roi_ext.multi_scale_roi_align(features, rois, levels, scales, pooled_height, pooled_width,
                                                   sampling_ratio, aligned)


# ---------------------------------------------------------------------------
# torchvision's scale inference and level assignment, reproduced exactly
# ---------------------------------------------------------------------------
def _box_area(boxes: Tensor) -> Tensor:
    # torchvision.ops.box_area
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


class LevelMapper:
    """The FPN level of each roi (FPN paper, eq. 1), as torchvision's ``LevelMapper``:
    ``floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)``, clamped to
    ``[k_min, k_max]``, minus ``k_min``."""

    def __init__(self, k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4,
                 eps: float = 1e-6):
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level
        self.eps = eps

    def __call__(self, boxlists: List[Tensor]) -> Tensor:
        s = torch.sqrt(torch.cat([_box_area(boxlist) for boxlist in boxlists]))
        target_lvls = torch.floor(self.lvl0 + torch.log2(s / self.s0) + torch.tensor(self.eps, dtype=s.dtype))
        target_lvls = torch.clamp(target_lvls, min=self.k_min, max=self.k_max)
        return (target_lvls.to(torch.int64) - self.k_min).to(torch.int64)


def _convert_to_roi_format(boxes: List[Tensor]) -> Tensor:
    concat_boxes = torch.cat(boxes, dim=0)
    device, dtype = concat_boxes.device, concat_boxes.dtype
    ids = torch.cat(
        [torch.full_like(b[:, :1], i, dtype=dtype, layout=torch.strided, device=device) for i, b in enumerate(boxes)],
        dim=0,
    )
    return torch.cat([ids, concat_boxes], dim=1)


def _infer_scale(feature: Tensor, original_size: List[int]) -> float:
    # torchvision: the scale is 2 ** round(log2(feature size / image size)),
    # the log2 computed in float32.
    size = feature.shape[-2:]
    possible_scales: List[float] = []
    for s1, s2 in zip(size, original_size):
        approx_scale = float(s1) / float(s2)
        scale = 2 ** float(torch.tensor(approx_scale).log2().round())
        possible_scales.append(scale)
    return possible_scales[0]


@torch.jit.unused
def _infer_scale_traceable(feature: Tensor, original_size: List[int]) -> float:
    """_infer_scale in Python arithmetic, for torch.compile / torch.export, which
    cannot turn a tensor into a Python float inside a graph. The same float32
    steps: the ratio rounded to float32, its log2 rounded to float32, then
    rounded half to even (torch.round's rule, and Python's)."""
    s1, s2 = int(feature.shape[-2]), int(original_size[0])
    return 2 ** float(round(_round_to_float32(math.log2(_round_to_float32(float(s1) / float(s2))))))


@torch.jit.unused
def _round_to_float32(v: float) -> float:
    """v rounded to the nearest float32 (ties to even), for finite v in float32's
    normal range, in plain float arithmetic (which torch.compile folds)."""
    mantissa, exponent = math.frexp(v)  # v = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    return math.ldexp(round(mantissa * 2.0**24), exponent - 24)  # round(): ties to even, exact here


@torch.jit.unused
def _scales_traceable(features: List[Tensor], original_input_shape: List[int]) -> Tuple[List[float], float, float]:
    scales = [_infer_scale_traceable(feat, original_input_shape) for feat in features]
    # The scales are powers of two: their log2 is exact in any precision.
    return scales, -math.log2(scales[0]), -math.log2(scales[-1])


def _setup_scales(
    features: List[Tensor], image_shapes: List[Tuple[int, int]], canonical_scale: int, canonical_level: int
) -> Tuple[List[float], LevelMapper]:
    if not image_shapes:
        raise ValueError("images list should not be empty")
    max_x = 0
    max_y = 0
    for shape in image_shapes:
        max_x = max(shape[0], max_x)
        max_y = max(shape[1], max_y)
    original_input_shape = [max_x, max_y]

    tracing = False
    if not torch.jit.is_scripting():
        tracing = torch.compiler.is_compiling()
    if tracing:
        scales, lvl_min, lvl_max = _scales_traceable(features, original_input_shape)
    else:
        scales = [_infer_scale(feat, original_input_shape) for feat in features]
        lvl_min = -torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item()
        lvl_max = -torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item()
    return scales, LevelMapper(int(lvl_min), int(lvl_max), canonical_scale=canonical_scale,
                               canonical_level=canonical_level)


def _filter_input(x: Dict[str, Tensor], featmap_names: List[str]) -> List[Tensor]:
    x_filtered = []
    for k, v in x.items():
        if k in featmap_names:
            x_filtered.append(v)
    return x_filtered


def _multiscale_roi_align(
    x_filtered: List[Tensor],
    boxes: List[Tensor],
    output_size: List[int],
    sampling_ratio: int,
    scales: Optional[List[float]],
    mapper: Optional[LevelMapper],
) -> Tensor:
    if scales is None or mapper is None:
        raise ValueError("scales and mapper should not be None")
    rois = _convert_to_roi_format(boxes)
    if len(x_filtered) == 1:
        # torchvision pools every roi from the single level, whatever its size.
        levels = torch.zeros((rois.shape[0],), dtype=torch.int64, device=rois.device)
    else:
        levels = mapper(boxes)
    # torchvision's result has the dtype of the first level (levels may differ
    # under autocast); the op computes every level in that dtype.
    dtype = x_filtered[0].dtype
    features = [f.to(dtype) for f in x_filtered]
    return multi_scale_roi_align(features, rois, levels, scales, (output_size[0], output_size[1]), sampling_ratio,
                                 False)


# torch.fx leaves, as torchvision's (feature extraction and fx quantization
# trace detection models through the pooler).
torch.fx.wrap("_setup_scales")
torch.fx.wrap("_filter_input")
torch.fx.wrap("_multiscale_roi_align")


class MultiScaleRoIAlign(nn.Module):
    """Multi-scale RoIAlign pooling (FPN), a drop-in for ``torchvision.ops.MultiScaleRoIAlign``.

    Same constructor, forward, scale inference and level assignment as
    torchvision's; the result is bitwise torchvision's (float32/float64), computed
    by one ``torch.ops.roi_ext.multi_scale_roi_align`` call for all levels,
    forward and backward.

    Args:
        featmap_names: names of the feature maps of ``x`` to pool from (in the
            order of ``x``).
        output_size: int or ``(pooled_height, pooled_width)``.
        sampling_ratio: samples per bin along each axis; ``<= 0`` is adaptive.
        canonical_scale, canonical_level: eq. 1 of the FPN paper (224, 4).

    ``forward(x, boxes, image_shapes)``: ``x`` a dict of ``[N, C, H_l, W_l]`` maps,
    ``boxes`` a list of ``Tensor[L_i, 4]`` ``(x1, y1, x2, y2)`` in image
    coordinates, one per image, ``image_shapes`` the ``(height, width)`` of each
    image. Returns ``[sum L_i, C, pooled_height, pooled_width]``. The scales are
    inferred from the first call's shapes and kept (torchvision's behaviour).

    Example:
        >>> m = MultiScaleRoIAlign(["feat1", "feat3"], 3, 2)
        >>> x = {"feat1": torch.rand(1, 5, 64, 64), "feat2": torch.rand(1, 5, 32, 32),
        ...      "feat3": torch.rand(1, 5, 16, 16)}
        >>> boxes = torch.rand(6, 4) * 256; boxes[:, 2:] += boxes[:, :2]
        >>> m(x, [boxes], [(512, 512)]).shape
        torch.Size([6, 5, 3, 3])
    """

    __annotations__ = {"scales": Optional[List[float]], "map_levels": Optional[LevelMapper]}

    def __init__(self, featmap_names: List[str], output_size, sampling_ratio: int, *, canonical_scale: int = 224,
                 canonical_level: int = 4):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        pair(tuple(output_size), "output_size")  # checks: two non-negative ints
        self.featmap_names = featmap_names
        self.sampling_ratio = check_int(sampling_ratio, "sampling_ratio")
        self.output_size = tuple(output_size)
        self.scales = None
        self.map_levels = None
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, x: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        x_filtered = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                x_filtered, image_shapes, self.canonical_scale, self.canonical_level
            )
        return _multiscale_roi_align(
            x_filtered, boxes, self.output_size, self.sampling_ratio, self.scales, self.map_levels
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )

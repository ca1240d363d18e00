"""CropAndResize: TensorFlow's ``tf.image.crop_and_resize`` and MindSpore's
``ops.CropAndResize``, with TensorFlow's gradient ops.

Everything Python about the op lives here: fake (meta) kernels for
``torch.ops.roi_ext.crop_and_resize``, ``crop_and_resize_grad_image`` and
``crop_and_resize_grad_boxes``, the autograd formula, the functional API and the
module. The arithmetic is in ``csrc/common/crop_and_resize_math.h``.
"""
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from . import onnx as _onnx
from ._utils import call, call_op, check_dense, check_devices, check_float, check_int, deterministic, function_for, save

__all__ = ["crop_and_resize", "crop_and_resize_grad_image", "crop_and_resize_grad_boxes", "CropAndResize"]

_METHODS = ("bilinear", "nearest", "bilinear_v2")
_GRAD_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _nhwc_shape(t: Tensor, data_format: str) -> Tuple[int, int, int, int]:
    if data_format == "NCHW":
        return t.shape[0], t.shape[2], t.shape[3], t.shape[1]
    return t.shape[0], t.shape[1], t.shape[2], t.shape[3]


def _layout_shape(n, h, w, d, data_format: str):
    return (n, d, h, w) if data_format == "NCHW" else (n, h, w, d)


@torch.library.register_fake("roi_ext::crop_and_resize")
def _crop_and_resize_fake(image, boxes, box_index, crop_height, crop_width, method, extrapolation_value, data_format):
    op = "crop_and_resize"
    check_devices(op, "image", image=image, boxes=boxes, box_index=box_index)
    torch._check(image.dim() == 4, lambda: "crop_and_resize: image must be a 4-D tensor")
    torch._check(boxes.dim() == 2, lambda: "crop_and_resize: boxes must be a 2-D tensor [N, 4]")
    torch._check(box_index.dim() == 1, lambda: "crop_and_resize: box_index must be a 1-D tensor [N]")
    torch._check_value(crop_height > 0 and crop_width > 0,
                       lambda: f"crop_and_resize: crop_size must be positive, got ({crop_height}, {crop_width})")
    _, _, _, depth = _nhwc_shape(image, data_format)
    dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    shape = _layout_shape(boxes.shape[0], crop_height, crop_width, depth, data_format)
    return image.new_empty(shape, dtype=dtype)


@torch.library.register_fake("roi_ext::crop_and_resize_grad_image")
def _grad_image_fake(grads, boxes, box_index, batch_size, image_height, image_width, depth, method, dtype,
                     data_format, deterministic=False):
    op = "crop_and_resize_grad_image"
    check_devices(op, "grads", grads=grads, boxes=boxes, box_index=box_index)
    torch._check(grads.dim() == 4, lambda: "crop_and_resize_grad_image: grads must be a 4-D tensor")
    torch._check_value(
        batch_size >= 0 and image_height > 0 and image_width > 0 and depth >= 0,
        lambda: f"{op}: image_size must have batch >= 0, height > 0, width > 0 and depth >= 0, got "
                f"({batch_size}, {image_height}, {image_width}, {depth}) as (B, H, W, D)")
    return grads.new_empty(_layout_shape(batch_size, image_height, image_width, depth, data_format), dtype=dtype)


@torch.library.register_fake("roi_ext::crop_and_resize_grad_boxes")
def _grad_boxes_fake(grads, image, boxes, box_index, method, data_format):
    check_devices("crop_and_resize_grad_boxes", "image", grads=grads, image=image, boxes=boxes, box_index=box_index)
    torch._check(boxes.dim() == 2, lambda: "crop_and_resize_grad_boxes: boxes must be a 2-D tensor [N, 4]")
    double = grads.dtype == torch.float64 or image.dtype == torch.float64
    return grads.new_empty((boxes.shape[0], 4), dtype=torch.float64 if double else torch.float32)


# ---------------------------------------------------------------------------
# Derivatives. First order: the compiled gradient ops (TensorFlow's formulas,
# bit for bit). The gradient ops are differentiable too (double backward,
# gradgradcheck), and every op has a jvp (torch.func.jvp, jacfwd, forward_ad;
# see roi_ext/_utils.py for how it is reached). The ops are linear in the
# image, so most derivatives are the ops themselves applied to a tangent or a
# cotangent; the terms with two box derivatives come from the plain-PyTorch
# bilinear formulas below (float64 for float64 data), which autograd and
# torch.func differentiate further.
# ---------------------------------------------------------------------------
def _axis(c1: Tensor, c2: Tensor, size: int, crop: int, dtype):
    """Sampling positions of one axis (SPEC §1.3, forward association) and
    what the bilinear formulas need: floor/ceil indices, the fraction
    (differentiable in the box), the in-range mask and d pos / d c1, d pos / d c2."""
    last = size - 1
    if crop > 1:
        i = torch.arange(crop, dtype=dtype, device=c1.device)
        step = (c2 - c1) * last / (crop - 1)
        pos = c1[:, None] * last + i[None, :] * step[:, None]
        d2 = i * (last / (crop - 1))
        d1 = last - d2
    else:
        pos = (0.5 * (c1 + c2) * last)[:, None]
        d1 = d2 = torch.full((1,), 0.5 * last, dtype=dtype, device=c1.device)
    valid = (pos >= 0) & (pos <= last)
    safe = torch.where(valid, pos, torch.zeros_like(pos))
    lo = torch.floor(safe)
    frac = safe - lo
    return lo.long().clamp(0, last), torch.ceil(safe).long().clamp(0, last), frac, valid, d1, d2


def _bilinear_terms(image: Tensor, boxes: Tensor, box_index: Tensor, crop_height: int, crop_width: int,
                    data_format: str, dtype):
    """d out / d in_y and d out / d in_x of every sample ([N, ch, cw, D], zero
    outside the image) and d in / d box per axis."""
    img = image.permute(0, 2, 3, 1) if data_format == "NCHW" else image
    img = img.to(dtype)
    b = boxes.to(dtype)
    height, width = img.shape[1], img.shape[2]
    ty, by, yl, vy, dy1, dy2 = _axis(b[:, 0], b[:, 2], height, crop_height, dtype)
    lx, rx, xl, vx, dx1, dx2 = _axis(b[:, 1], b[:, 3], width, crop_width, dtype)
    n = box_index.long()[:, None, None]
    tl, tr = img[n, ty[:, :, None], lx[:, None, :]], img[n, ty[:, :, None], rx[:, None, :]]
    bl, br = img[n, by[:, :, None], lx[:, None, :]], img[n, by[:, :, None], rx[:, None, :]]
    yl, xl = yl[:, :, None, None], xl[:, None, :, None]
    mask = vy[:, :, None, None] & vx[:, None, :, None]
    zero = torch.zeros((), dtype=dtype, device=img.device)
    gy = torch.where(mask, (1 - xl) * (bl - tl) + xl * (br - tr), zero)
    gx = torch.where(mask, (1 - yl) * (tr - tl) + yl * (br - bl), zero)
    cross = torch.where(mask, (br - bl) - (tr - tl), zero)  # d2 out / d in_y d in_x
    return gy, gx, cross, (dy1, dy2), (dx1, dx2)


def _compute_dtype(*tensors) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _box_tangent(image, boxes, box_index, crop_height, crop_width, method, data_format, boxes_tangent, dtype):
    """The change of the crop along a box tangent ([N, ch, cw, D] in data_format's
    layout): TensorFlow's box derivative (bilinear's for nearest; zero for bilinear_v2)."""
    if method == "bilinear_v2":
        depth = _nhwc_shape(image, data_format)[3]
        shape = _layout_shape(boxes.shape[0], crop_height, crop_width, depth, data_format)
        return torch.zeros(shape, dtype=dtype, device=image.device)
    gy, gx, _, (dy1, dy2), (dx1, dx2) = _bilinear_terms(image, boxes, box_index, crop_height, crop_width,
                                                        data_format, dtype)
    t = boxes_tangent.to(dtype)
    ty = t[:, 0, None] * dy1 + t[:, 2, None] * dy2
    tx = t[:, 1, None] * dx1 + t[:, 3, None] * dx2
    out = gy * ty[:, :, None, None] + gx * tx[:, None, :, None]
    return out.permute(0, 3, 1, 2) if data_format == "NCHW" else out


def _grad_boxes_formula(grads, image, boxes, box_index, method, data_format, dtype):
    """crop_and_resize_grad_boxes in plain PyTorch (differentiable in all three)."""
    if method == "bilinear_v2":
        return (grads.sum() * 0).to(dtype) + torch.zeros((boxes.shape[0], 4), dtype=dtype, device=boxes.device)
    g = grads.permute(0, 2, 3, 1) if data_format == "NCHW" else grads
    g = g.to(dtype)
    gy, gx, _, (dy1, dy2), (dx1, dx2) = _bilinear_terms(image, boxes, box_index, g.shape[1], g.shape[2],
                                                        data_format, dtype)
    sy = (gy * g).sum((2, 3))
    sx = (gx * g).sum((1, 3))
    return torch.stack([(sy * dy1).sum(1), (sx * dx1).sum(1), (sy * dy2).sum(1), (sx * dx2).sum(1)], dim=1)


def _grad_boxes_box_tangent(grads, image, boxes, box_index, method, data_format, boxes_tangent, dtype):
    """The change of _grad_boxes_formula along a box tangent: d gy = cross * d in_x
    and d gx = cross * d in_y (bilinear is linear along each axis). Explicit, so
    that it nests inside forward-mode AD."""
    if method == "bilinear_v2":
        return torch.zeros((boxes.shape[0], 4), dtype=dtype, device=boxes.device)
    g = grads.permute(0, 2, 3, 1) if data_format == "NCHW" else grads
    g = g.to(dtype)
    _, _, cross, (dy1, dy2), (dx1, dx2) = _bilinear_terms(image, boxes, box_index, g.shape[1], g.shape[2],
                                                          data_format, dtype)
    t = boxes_tangent.to(dtype)
    ty = t[:, 0, None] * dy1 + t[:, 2, None] * dy2
    tx = t[:, 1, None] * dx1 + t[:, 3, None] * dx2
    cg = cross * g
    sy = (cg * tx[:, None, :, None]).sum((2, 3))  # d gy summed per row
    sx = (cg * ty[:, :, None, None]).sum((1, 3))  # d gx summed per column
    return torch.stack([(sy * dy1).sum(1), (sx * dx1).sum(1), (sy * dy2).sum(1), (sx * dx2).sum(1)], dim=1)


def _add(a, b):
    return b if a is None else (a if b is None else a + b)


# crop_and_resize(image, boxes, box_index, crop_height, crop_width, method, extrapolation_value, data_format)
def _setup_context(ctx, inputs, output):
    image, boxes, box_index, crop_height, crop_width, method, extrapolation_value, data_format = inputs
    save(ctx, image, boxes, box_index)
    ctx.crop = (crop_height, crop_width)
    ctx.method = method
    ctx.data_format = data_format
    ctx.out_dtype = output.dtype


def _backward(ctx, grad):
    image, boxes, box_index = ctx.saved_tensors
    grad_image = grad_boxes = None
    if ctx.needs_input_grad[0]:
        batch, height, width, depth = _nhwc_shape(image, ctx.data_format)
        grad_image = call(
            torch.ops.roi_ext.crop_and_resize_grad_image.default, _GradImage,
            grad, boxes, box_index, batch, height, width, depth, ctx.method, image.dtype, ctx.data_format,
            deterministic(),
        )
    if ctx.needs_input_grad[1]:
        # TensorFlow's box gradient for bilinear and nearest; zero for bilinear_v2 (SPEC Part A8).
        grad_boxes = call(
            torch.ops.roi_ext.crop_and_resize_grad_boxes.default, _GradBoxes,
            grad, image, boxes, box_index, ctx.method, ctx.data_format,
        ).to(boxes.dtype)
    return grad_image, grad_boxes, None, None, None, None, None, None


def _jvp(ctx, image_t, boxes_t, *_):
    image, boxes, box_index = ctx.saved_tensors
    out = None
    if image_t is not None:  # linear in the image: the op applied to the tangent
        out = call(torch.ops.roi_ext.crop_and_resize.default, _CropAndResize, image_t, boxes, box_index,
                   *ctx.crop, ctx.method, 0.0, ctx.data_format)
    if boxes_t is not None:
        out = _add(out, _box_tangent(image, boxes, box_index, *ctx.crop, ctx.method, ctx.data_format, boxes_t,
                                     ctx.out_dtype).to(ctx.out_dtype))
    return out


# crop_and_resize_grad_image(grads, boxes, box_index, B, H, W, D, method, dtype, data_format, deterministic)
def _grad_image_setup_context(ctx, inputs, output):
    grads, boxes, box_index, batch, height, width, depth, method, dtype, data_format = inputs[:10]
    save(ctx, grads, boxes, box_index)
    ctx.args = inputs[3:]
    ctx.method = method
    ctx.data_format = data_format


def _grad_image_backward(ctx, grad):
    # grad_image(g, b) = J(b)^T g with J(b) = d crop / d image: its adjoint in g
    # is the crop (without extrapolation); <grad, J(b)^T g> = <g, crop(grad, b)>
    # differentiated in b is the box gradient of the crop of `grad`.
    grads, boxes, box_index = ctx.saved_tensors
    d_grads = d_boxes = None
    crop_height, crop_width = _nhwc_shape(grads, ctx.data_format)[1:3]
    if ctx.needs_input_grad[0]:
        d_grads = call(torch.ops.roi_ext.crop_and_resize.default, _CropAndResize, grad, boxes, box_index,
                       crop_height, crop_width, ctx.method, 0.0, ctx.data_format).to(grads.dtype)
    if ctx.needs_input_grad[1]:
        d_boxes = call(torch.ops.roi_ext.crop_and_resize_grad_boxes.default, _GradBoxes, grads, grad, boxes,
                       box_index, ctx.method, ctx.data_format).to(boxes.dtype)
    return (d_grads, d_boxes) + (None,) * 9


def _grad_image_jvp(ctx, grads_t, boxes_t, *_):
    grads, boxes, box_index = ctx.saved_tensors
    batch, height, width, depth, method, dtype, data_format = ctx.args[:7]
    out = None
    if grads_t is not None:
        out = call(torch.ops.roi_ext.crop_and_resize_grad_image.default, _GradImage, grads_t, boxes, box_index,
                   *ctx.args)
    if boxes_t is not None:
        # d/de J(b + e t)^T g: the image-adjoint of the box tangent (linear in the image).
        cdt = _compute_dtype(grads, boxes)
        shape = _layout_shape(batch, height, width, depth, data_format)
        zeros = torch.zeros(shape, dtype=cdt, device=grads.device)
        crop_height, crop_width = _nhwc_shape(grads, data_format)[1:3]
        _, pullback = torch.func.vjp(
            lambda im: _box_tangent(im, boxes, box_index, crop_height, crop_width, method, data_format, boxes_t,
                                    cdt), zeros)
        out = _add(out, pullback(grads.to(cdt))[0].to(dtype))
    return out


# crop_and_resize_grad_boxes(grads, image, boxes, box_index, method, data_format)
def _grad_boxes_setup_context(ctx, inputs, output):
    grads, image, boxes, box_index, method, data_format = inputs
    save(ctx, grads, image, boxes, box_index)
    ctx.method = method
    ctx.data_format = data_format
    ctx.out_dtype = output.dtype


def _grad_boxes_backward(ctx, grad):
    grads, image, boxes, box_index = ctx.saved_tensors
    cdt = ctx.out_dtype
    floating_image = image.dtype.is_floating_point
    if floating_image:
        fn = lambda g, im, b: _grad_boxes_formula(g, im, b, box_index, ctx.method, ctx.data_format, cdt)  # noqa: E731
        _, pullback = torch.func.vjp(fn, grads.to(cdt), image.to(cdt), boxes.to(cdt))
        d_grads, d_image, d_boxes = pullback(grad.to(cdt))
    else:
        fn = lambda g, b: _grad_boxes_formula(g, image, b, box_index, ctx.method, ctx.data_format, cdt)  # noqa: E731
        _, pullback = torch.func.vjp(fn, grads.to(cdt), boxes.to(cdt))
        (d_grads, d_boxes), d_image = pullback(grad.to(cdt)), None
    return (
        d_grads.to(grads.dtype) if ctx.needs_input_grad[0] else None,
        d_image.to(image.dtype) if ctx.needs_input_grad[1] and d_image is not None else None,
        d_boxes.to(boxes.dtype) if ctx.needs_input_grad[2] else None,
        None, None, None,
    )


def _grad_boxes_jvp(ctx, grads_t, image_t, boxes_t, *_):
    grads, image, boxes, box_index = ctx.saved_tensors
    op = torch.ops.roi_ext.crop_and_resize_grad_boxes.default
    out = None
    if grads_t is not None:  # linear in grads and in the image
        out = call(op, _GradBoxes, grads_t, image, boxes, box_index, ctx.method, ctx.data_format)
    if image_t is not None:
        out = _add(out, call(op, _GradBoxes, grads, image_t, boxes, box_index, ctx.method, ctx.data_format))
    if boxes_t is not None:
        out = _add(out, _grad_boxes_box_tangent(grads, image, boxes, box_index, ctx.method, ctx.data_format,
                                                boxes_t, ctx.out_dtype))
    return None if out is None else out.to(ctx.out_dtype)


torch.library.register_autograd("roi_ext::crop_and_resize", _backward, setup_context=_setup_context)
torch.library.register_autograd("roi_ext::crop_and_resize_grad_image", _grad_image_backward,
                                setup_context=_grad_image_setup_context)
torch.library.register_autograd("roi_ext::crop_and_resize_grad_boxes", _grad_boxes_backward,
                                setup_context=_grad_boxes_setup_context)
_CropAndResize = function_for(torch.ops.roi_ext.crop_and_resize.default, _setup_context, _backward, _jvp)
_GradImage = function_for(torch.ops.roi_ext.crop_and_resize_grad_image.default, _grad_image_setup_context,
                          _grad_image_backward, _grad_image_jvp)
_GradBoxes = function_for(torch.ops.roi_ext.crop_and_resize_grad_boxes.default, _grad_boxes_setup_context,
                          _grad_boxes_backward, _grad_boxes_jvp)


def _check_tensors(op: str, **tensors) -> None:
    """Each named argument must be a dense Tensor (checked in argument order)."""
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(value).__name__}")
        check_dense(value, name, op)


def _check_choice(value, name: str, choices: Sequence[str], op: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{op}: {name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def _int_list(value, length: int, name: str, op: str) -> List[int]:
    """`length` ints from a list, tuple, numpy array or 1-D integer tensor."""
    if isinstance(value, Tensor):
        if value.dim() != 1 or value.numel() != length or value.dtype.is_floating_point or value.is_complex():
            raise ValueError(f"{op}: {name} must hold {length} integers, got a tensor of shape {tuple(value.shape)} "
                             f"and dtype {value.dtype}")
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != length:
        raise ValueError(f"{op}: {name} must be a sequence of {length} integers, got {value!r}")
    return [check_int(v, f"{op}: {name}") for v in value]


def _crop_and_resize_op(image: Tensor, boxes: Tensor, box_index: Tensor, crop_height: int, crop_width: int,
                        method: str, extrapolation_value: float, data_format: str) -> Tensor:
    """torch.ops.roi_ext.crop_and_resize with typed errors; an ONNX CropAndResize node
    while torch.onnx.export(dynamo=True) traces the model."""
    if _onnx.exporting_with_dynamo():
        return _onnx.crop_and_resize_to_onnx(image, boxes, box_index, crop_height, crop_width, method,
                                             extrapolation_value, data_format)
    return call(torch.ops.roi_ext.crop_and_resize.default, _CropAndResize, image, boxes, box_index, crop_height,
                crop_width, method, extrapolation_value, data_format)


def crop_and_resize(
    image: Tensor,
    boxes: Tensor,
    box_index: Tensor,
    crop_size: Union[Sequence[int], Tensor],
    method: str = "bilinear",
    extrapolation_value: float = 0.0,
    data_format: str = "NHWC",
) -> Tensor:
    """Crops boxes out of a batch of images and resizes each to ``crop_size``
    (TensorFlow's ``tf.image.crop_and_resize``; MindSpore's ``ops.CropAndResize``).

    Args:
        image: ``[B, H, W, D]`` (``data_format="NHWC"``) or ``[B, D, H, W]``
            (``"NCHW"``, used in place without a copy); uint8, int8, int16, int32,
            int64, float16, bfloat16, float32 or float64.
        boxes: ``[N, 4]`` rows ``[y1, x1, y2, x2]`` in normalised coordinates
            (``c`` maps to pixel ``c * (size - 1)``); flipped boxes and boxes
            outside ``[0, 1]`` are allowed.
        box_index: ``[N]`` int32/int64, the image of each box, in ``[0, B)``. The
            CPU raises an IndexError for a value outside it. CUDA does not check
            the values (that would copy them to the host, a synchronisation that
            also breaks CUDA graphs): a box whose index is outside ``[0, B)`` reads
            nothing and its crop is ``extrapolation_value`` everywhere (every
            method), as if it lay outside the image; it adds nothing to the image
            gradient and its box gradient is 0.
        crop_size: ``(crop_h, crop_w)``, positive ints (list, tuple or tensor).
        method: ``"bilinear"`` (TensorFlow), ``"nearest"`` (TensorFlow, rounds
            half away from zero) or ``"bilinear_v2"`` (MindSpore: half-pixel
            resize of the box truncated to whole pixels).
        extrapolation_value: value of samples outside the image (not used by
            ``bilinear_v2``, except for boxes with non-finite coordinates).
        data_format: ``"NHWC"`` or ``"NCHW"``.

    Returns:
        ``[N, crop_h, crop_w, D]`` (NHWC) or ``[N, D, crop_h, crop_w]`` (NCHW);
        float32, or float64 for float64 images. Differentiable with respect to
        ``image`` (floating images) and ``boxes``.

    Example:
        >>> image = torch.arange(1.0, 10.0).reshape(1, 3, 3, 1)
        >>> boxes = torch.tensor([[0.25, 0.25, 0.75, 0.75]])
        >>> crop_and_resize(image, boxes, torch.tensor([0]), (3, 3))[0, :, :, 0]
        tensor([[3.0000, 3.5000, 4.0000],
                [4.5000, 5.0000, 5.5000],
                [6.0000, 6.5000, 7.0000]])
    """
    op = "crop_and_resize"
    _check_tensors(op, image=image, boxes=boxes, box_index=box_index)
    check_devices(op, "image", image=image, boxes=boxes, box_index=box_index)
    crop_height, crop_width = _int_list(crop_size, 2, "crop_size", op)
    return _crop_and_resize_op(
        image,
        boxes,
        box_index,
        crop_height,
        crop_width,
        _check_choice(method, "method", _METHODS, op),
        check_float(extrapolation_value, f"{op}: extrapolation_value"),
        _check_choice(data_format, "data_format", ("NHWC", "NCHW"), op),
    )


def crop_and_resize_grad_image(
    grads: Tensor,
    boxes: Tensor,
    box_index: Tensor,
    image_size: Union[Sequence[int], Tensor],
    method: str = "bilinear",
    dtype: torch.dtype = torch.float32,
    data_format: str = "NHWC",
) -> Tensor:
    """Gradient of :func:`crop_and_resize` with respect to the image
    (TensorFlow's ``CropAndResizeGradImage``; for ``bilinear_v2`` the exact adjoint
    of roi_ext's forward).

    Args:
        grads: ``[N, crop_h, crop_w, D]`` (NHWC) or ``[N, D, crop_h, crop_w]``.
        image_size: ``(B, H, W, D)`` for NHWC, ``(B, D, H, W)`` for NCHW.
        dtype: output dtype: float16, bfloat16, float32 or float64 (half types are
            accumulated in float32 and rounded once).

    On CUDA the shares are added with atomics (any order: equal to the CPU within
    rounding); under ``torch.use_deterministic_algorithms(True)`` a gather adds
    them in the CPU kernel's order: bitwise reproducible and equal to the CPU.
    A ``box_index`` outside ``[0, B)`` raises an IndexError on the CPU; on CUDA
    (not checked: no host synchronisation) that box contributes nothing.

    Example:
        >>> g = crop_and_resize_grad_image(torch.ones(1, 2, 2, 1), torch.tensor([[0.25, 0.25, 0.75, 0.75]]),
        ...                                torch.tensor([0]), (1, 3, 3, 1))
        >>> g[0, :, :, 0]
        tensor([[0.2500, 0.5000, 0.2500],
                [0.5000, 1.0000, 0.5000],
                [0.2500, 0.5000, 0.2500]])
    """
    op = "crop_and_resize_grad_image"
    _check_tensors(op, grads=grads, boxes=boxes, box_index=box_index)
    data_format = _check_choice(data_format, "data_format", ("NHWC", "NCHW"), op)
    size = _int_list(image_size, 4, "image_size", op)
    batch, height, width, depth = (size[0], size[2], size[3], size[1]) if data_format == "NCHW" else size
    if not isinstance(dtype, torch.dtype) or dtype not in _GRAD_DTYPES:
        raise TypeError(f"{op}: dtype must be torch.float16, torch.bfloat16, torch.float32 or torch.float64, "
                        f"got {dtype!r}")
    check_devices(op, "grads", grads=grads, boxes=boxes, box_index=box_index)
    return call(
        torch.ops.roi_ext.crop_and_resize_grad_image.default, _GradImage,
        grads, boxes, box_index, batch, height, width, depth, _check_choice(method, "method", _METHODS, op), dtype,
        data_format, deterministic(),
    )


def crop_and_resize_grad_boxes(
    grads: Tensor,
    image: Tensor,
    boxes: Tensor,
    box_index: Tensor,
    method: str = "bilinear",
    data_format: str = "NHWC",
) -> Tensor:
    """Gradient of :func:`crop_and_resize` with respect to the boxes
    (TensorFlow's ``CropAndResizeGradBoxes``): ``[N, 4]`` as ``[dy1, dx1, dy2, dx2]``,
    float32 (float64 if ``grads`` or ``image`` is float64).

    TensorFlow's bilinear formula is used for ``bilinear`` and ``nearest`` (as
    TensorFlow does); ``bilinear_v2`` gives zeros (its boxes are truncated to
    whole pixels). Samples outside the image contribute nothing.

    On CUDA a block of threads shares each box and adds their partial sums as a
    fixed tree: deterministic, equal to the CPU (TensorFlow's serial order) within
    rounding. A ``box_index`` outside ``[0, B)`` raises an IndexError on the CPU;
    on CUDA (not checked: no host synchronisation) that box's gradient is 0.

    Example:
        >>> image = (torch.arange(9.0) ** 2).reshape(1, 3, 3, 1)
        >>> crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 1), image, torch.tensor([[0.1, 0.2, 0.7, 0.9]]),
        ...                            torch.tensor([0]))
        tensor([[ 62.4000,  23.2000, 134.4000,  31.2000]])
    """
    op = "crop_and_resize_grad_boxes"
    _check_tensors(op, grads=grads, image=image, boxes=boxes, box_index=box_index)
    check_devices(op, "image", grads=grads, image=image, boxes=boxes, box_index=box_index)
    return call(
        torch.ops.roi_ext.crop_and_resize_grad_boxes.default, _GradBoxes,
        grads, image, boxes, box_index, _check_choice(method, "method", _METHODS, op),
        _check_choice(data_format, "data_format", ("NHWC", "NCHW"), op),
    )


class CropAndResize(nn.Module):
    """MindSpore's ``CropAndResize``: ``CropAndResize(method="bilinear", extrapolation_value=0.0, data_format="NHWC")``
    with ``forward(x, boxes, box_index, crop_size)``.

    Example:
        >>> m = CropAndResize(method="nearest")
        >>> m(torch.rand(2, 32, 32, 3), torch.tensor([[0.1, 0.1, 0.6, 0.8]]), torch.tensor([1]), (8, 8)).shape
        torch.Size([1, 8, 8, 3])
    """

    def __init__(self, method: str = "bilinear", extrapolation_value: float = 0.0, data_format: str = "NHWC"):
        super().__init__()
        self.method = _check_choice(method, "method", _METHODS, "CropAndResize")
        self.extrapolation_value = check_float(extrapolation_value, "CropAndResize: extrapolation_value")
        self.data_format = _check_choice(data_format, "data_format", ("NHWC", "NCHW"), "CropAndResize")

    def forward(self, x: Tensor, boxes: Tensor, box_index: Tensor, crop_size: List[int]) -> Tensor:
        if torch.jit.is_scripting():
            if len(crop_size) != 2:
                raise ValueError("CropAndResize: crop_size must hold 2 integers")
            return torch.ops.roi_ext.crop_and_resize(
                x, boxes, box_index, crop_size[0], crop_size[1], self.method, self.extrapolation_value,
                self.data_format,
            )
        # crop_size may also be a tuple or a 2-element tensor here.
        return crop_and_resize(x, boxes, box_index, crop_size, self.method, self.extrapolation_value, self.data_format)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, extrapolation_value={self.extrapolation_value}, data_format={self.data_format!r}"

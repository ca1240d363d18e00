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

from ._utils import call_op, check_dense, check_float, check_int, deterministic

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
    torch._check(image.dim() == 4, lambda: "crop_and_resize: image must be a 4-D tensor")
    torch._check(boxes.dim() == 2, lambda: "crop_and_resize: boxes must be a 2-D tensor [N, 4]")
    torch._check(box_index.dim() == 1, lambda: "crop_and_resize: box_index must be a 1-D tensor [N]")
    _, _, _, depth = _nhwc_shape(image, data_format)
    dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    shape = _layout_shape(boxes.shape[0], crop_height, crop_width, depth, data_format)
    return image.new_empty(shape, dtype=dtype)


@torch.library.register_fake("roi_ext::crop_and_resize_grad_image")
def _grad_image_fake(grads, boxes, box_index, batch_size, image_height, image_width, depth, method, dtype,
                     data_format, deterministic=False):
    torch._check(grads.dim() == 4, lambda: "crop_and_resize_grad_image: grads must be a 4-D tensor")
    return grads.new_empty(_layout_shape(batch_size, image_height, image_width, depth, data_format), dtype=dtype)


@torch.library.register_fake("roi_ext::crop_and_resize_grad_boxes")
def _grad_boxes_fake(grads, image, boxes, box_index, method, data_format):
    torch._check(boxes.dim() == 2, lambda: "crop_and_resize_grad_boxes: boxes must be a 2-D tensor [N, 4]")
    double = grads.dtype == torch.float64 or image.dtype == torch.float64
    return grads.new_empty((boxes.shape[0], 4), dtype=torch.float64 if double else torch.float32)


def _setup_context(ctx, inputs, output):
    image, boxes, box_index, crop_height, crop_width, method, extrapolation_value, data_format = inputs
    ctx.save_for_backward(image, boxes, box_index)
    ctx.method = method
    ctx.data_format = data_format


def _backward(ctx, grad):
    image, boxes, box_index = ctx.saved_tensors
    grad_image = grad_boxes = None
    if ctx.needs_input_grad[0]:
        batch, height, width, depth = _nhwc_shape(image, ctx.data_format)
        grad_image = call_op(
            torch.ops.roi_ext.crop_and_resize_grad_image,
            grad, boxes, box_index, batch, height, width, depth, ctx.method, image.dtype, ctx.data_format,
            deterministic(),
        )
    if ctx.needs_input_grad[1]:
        # TensorFlow's box gradient for bilinear and nearest; zero for bilinear_v2 (SPEC Part A8).
        grad_boxes = call_op(
            torch.ops.roi_ext.crop_and_resize_grad_boxes, grad, image, boxes, box_index, ctx.method, ctx.data_format
        ).to(boxes.dtype)
    return grad_image, grad_boxes, None, None, None, None, None, None


torch.library.register_autograd("roi_ext::crop_and_resize", _backward, setup_context=_setup_context)


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
        box_index: ``[N]`` int32/int64, the image of each box, in ``[0, B)``.
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
    crop_height, crop_width = _int_list(crop_size, 2, "crop_size", op)
    return call_op(
        torch.ops.roi_ext.crop_and_resize,
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
    return call_op(
        torch.ops.roi_ext.crop_and_resize_grad_image,
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

    Example:
        >>> image = (torch.arange(9.0) ** 2).reshape(1, 3, 3, 1)
        >>> crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 1), image, torch.tensor([[0.1, 0.2, 0.7, 0.9]]),
        ...                            torch.tensor([0]))
        tensor([[ 62.4000,  23.2000, 134.4000,  31.2000]])
    """
    op = "crop_and_resize_grad_boxes"
    _check_tensors(op, grads=grads, image=image, boxes=boxes, box_index=box_index)
    return call_op(
        torch.ops.roi_ext.crop_and_resize_grad_boxes,
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

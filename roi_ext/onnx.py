"""ONNX export of roi_ext's operators.

Plain ``torch.onnx.export(model, args, path)`` works with both exporters, with no
roi_ext-specific argument:

* ``dynamo=True`` (the default exporter): during export the Python front-ends
  (``roi_align``, ``crop_and_resize`` and the modules) emit the ONNX operator
  directly through ``torch.onnx.ops.symbolic`` instead of calling the compiled op.
* ``dynamo=False`` (the TorchScript exporter): ``import roi_ext`` registers
  symbolic functions for ``roi_ext::roi_align`` (and ``roi_align_with_box_grad``, the
  same forward: ``roi_align(..., box_grad=True)``) and ``roi_ext::crop_and_resize``
  (``torch.onnx.register_custom_op_symbolic``), so traced calls of the ops, also
  straight ``torch.ops.roi_ext.*`` calls, become ONNX nodes.

The mappings:

* ``roi_align`` -> ONNX ``RoiAlign`` (opset 16+): ``aligned=True`` is
  ``coordinate_transformation_mode="half_pixel"``, ``aligned=False`` is
  ``"output_half_pixel"`` (torchvision's legacy mode: rois enlarged to 1x1);
  adaptive sampling (``sampling_ratio <= 0``) is ONNX's 0. ``roi_end_mode=1`` is
  exact with ``aligned=True`` (the end coordinates get +1 first); with
  ``aligned=False`` it is refused (``ExportError``, with an ``ExportWarning`` giving the
  reason, as the dynamo exporter may end with a generic error): ONNX's ``output_half_pixel``
  enlarges rois smaller than one pixel to 1x1, which MindSpore's mode does not.
* ``crop_and_resize`` -> onnxruntime's contrib op ``com.microsoft::CropAndResize``
  (NCHW float32; NHWC images are transposed in the graph, the image is cast to
  float32, as roi_ext reads every dtype as float32). ``bilinear_v2`` and float64
  images (which roi_ext computes in float64) have no exact equivalent and are
  refused.

``custom_translation_table()`` is kept for code that passes it explicitly to the
dynamo exporter (it needs the ``onnxscript`` package); it is no longer needed.
"""
import warnings
from typing import Callable, Dict, Sequence

import torch

__all__ = ["ExportError", "ExportWarning", "custom_translation_table", "roi_align_to_onnx", "crop_and_resize_to_onnx",
           "exporting_with_dynamo"]

OPSET = 16  # RoiAlign's coordinate_transformation_mode needs opset 16


class ExportError(ValueError):
    """An argument value that has no exact ONNX equivalent."""


class ExportWarning(UserWarning):
    """The reason for an ExportError, also given as a warning: the dynamo exporter
    retries a failed capture with other strategies and may end with a generic
    error about the operator, so the reason is printed when it is first found."""


def _refuse(message: str) -> None:
    warnings.warn(message, ExportWarning, stacklevel=3)
    raise ExportError(message)


def exporting_with_dynamo() -> bool:
    """True while torch.onnx.export(..., dynamo=True) traces the model (the
    TorchScript exporter traces with torch.jit and uses the registered symbolics)."""
    return torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing()


def _check_roi_align(aligned: bool, roi_end_mode: int) -> None:
    if roi_end_mode == 1 and not aligned:
        _refuse(
            "roi_align: roi_end_mode=1 with aligned=False (MindSpore's ROIAlign) has no exact ONNX RoiAlign "
            "equivalent: ONNX's output_half_pixel mode enlarges rois smaller than one pixel to 1x1"
        )


def _roi_align_attrs(spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    return dict(
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg",
        output_height=int(pooled_height),
        output_width=int(pooled_width),
        sampling_ratio=max(int(sampling_ratio), 0),
        spatial_scale=float(spatial_scale),
    )


def roi_align_to_onnx(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int,
                      sampling_ratio: int, aligned: bool, roi_end_mode: int) -> torch.Tensor:
    """The ONNX RoiAlign node of a roi_align call (dynamo exporter)."""
    _check_roi_align(aligned, roi_end_mode)
    batch_indices = rois[:, 0].to(torch.int64)  # truncation toward zero, as roi_ext's kernel
    boxes = rois[:, 1:5].to(input.dtype)
    if roi_end_mode == 1:
        boxes = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes.dtype, device=boxes.device)
    return torch.onnx.ops.symbolic(
        "RoiAlign",
        (input, boxes, batch_indices),
        _roi_align_attrs(spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned),
        dtype=input.dtype,
        shape=(rois.shape[0], input.shape[1], pooled_height, pooled_width),
        version=OPSET,
    )


def _check_crop_and_resize(method: str, image_dtype_is_double: bool) -> None:
    if method not in ("bilinear", "nearest"):
        _refuse(f"crop_and_resize: method={method!r} has no ONNX equivalent (bilinear and nearest do)")
    if image_dtype_is_double:
        _refuse("crop_and_resize: float64 images compute in float64; onnxruntime's CropAndResize is "
                "float32 only (cast the image to float32 before exporting)")


def crop_and_resize_to_onnx(image, boxes, box_index, crop_height: int, crop_width: int, method: str,
                            extrapolation_value: float, data_format: str) -> torch.Tensor:
    """The com.microsoft::CropAndResize node of a crop_and_resize call (dynamo exporter)."""
    _check_crop_and_resize(method, image.dtype == torch.float64)
    x = image.to(torch.float32)
    if data_format == "NHWC":
        x = x.permute(0, 3, 1, 2)
    crop_size = torch.tensor([crop_height, crop_width], dtype=torch.int32, device=image.device)
    crops = torch.onnx.ops.symbolic(
        "com.microsoft::CropAndResize",
        (x, boxes.to(torch.float32), box_index.to(torch.int32), crop_size),
        dict(mode=method, extrapolation_value=float(extrapolation_value)),
        dtype=torch.float32,
        shape=(boxes.shape[0], x.shape[1], crop_height, crop_width),
        version=1,
    )
    return crops.permute(0, 2, 3, 1) if data_format == "NHWC" else crops


# ---------------------------------------------------------------------------
# TorchScript exporter (dynamo=False): symbolic functions of the compiled ops
# ---------------------------------------------------------------------------
def _ints(g, values: Sequence[int]):
    return g.op("Constant", value_t=torch.tensor(list(values), dtype=torch.int64))


def _roi_align_symbolic(g, input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned,
                        roi_end_mode):
    from torch.onnx import symbolic_helper as sh

    spatial_scale = sh._get_const(spatial_scale, "f", "spatial_scale")
    pooled_height = sh._get_const(pooled_height, "i", "pooled_height")
    pooled_width = sh._get_const(pooled_width, "i", "pooled_width")
    sampling_ratio = sh._get_const(sampling_ratio, "i", "sampling_ratio")
    aligned = bool(sh._get_const(aligned, "b", "aligned"))
    roi_end_mode = sh._get_const(roi_end_mode, "i", "roi_end_mode")
    _check_roi_align(aligned, roi_end_mode)
    batch = g.op("Squeeze", g.op("Gather", rois, _ints(g, [0]), axis_i=1), _ints(g, [1]))
    batch_indices = g.op("Cast", batch, to_i=7)  # INT64
    boxes = g.op("Gather", rois, _ints(g, [1, 2, 3, 4]), axis_i=1)
    boxes = g.op("CastLike", boxes, input)
    if roi_end_mode == 1:
        boxes = g.op("Add", boxes, g.op("CastLike", g.op("Constant", value_t=torch.tensor([0.0, 0.0, 1.0, 1.0])),
                                        boxes))
    attrs = _roi_align_attrs(spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    return g.op(
        "RoiAlign", input, boxes, batch_indices,
        coordinate_transformation_mode_s=attrs["coordinate_transformation_mode"], mode_s="avg",
        output_height_i=attrs["output_height"], output_width_i=attrs["output_width"],
        sampling_ratio_i=attrs["sampling_ratio"], spatial_scale_f=attrs["spatial_scale"],
    )


def _crop_and_resize_symbolic(g, image, boxes, box_index, crop_height, crop_width, method, extrapolation_value,
                              data_format):
    from torch.onnx import symbolic_helper as sh

    crop_height = sh._get_const(crop_height, "i", "crop_height")
    crop_width = sh._get_const(crop_width, "i", "crop_width")
    method = sh._get_const(method, "s", "method")
    extrapolation_value = sh._get_const(extrapolation_value, "f", "extrapolation_value")
    data_format = sh._get_const(data_format, "s", "data_format")
    _check_crop_and_resize(method, sh._try_get_scalar_type(image) == torch.onnx.JitScalarType.DOUBLE)
    x = g.op("Cast", image, to_i=1)  # FLOAT
    if data_format == "NHWC":
        x = g.op("Transpose", x, perm_i=[0, 3, 1, 2])
    crops = g.op(
        "com.microsoft::CropAndResize", x, g.op("Cast", boxes, to_i=1), g.op("Cast", box_index, to_i=6),
        g.op("Constant", value_t=torch.tensor([crop_height, crop_width], dtype=torch.int32)),
        mode_s=method, extrapolation_value_f=extrapolation_value,
    )
    return g.op("Transpose", crops, perm_i=[0, 2, 3, 1]) if data_format == "NHWC" else crops


def _register_torchscript_symbolics() -> None:
    for name, fn in (("roi_ext::roi_align", _roi_align_symbolic),
                     ("roi_ext::roi_align_with_box_grad", _roi_align_symbolic),  # the same forward
                     ("roi_ext::crop_and_resize", _crop_and_resize_symbolic)):
        torch.onnx.register_custom_op_symbolic(name, fn, OPSET)


_register_torchscript_symbolics()


# ---------------------------------------------------------------------------
# The explicit translation table (dynamo exporter; optional since 0.2)
# ---------------------------------------------------------------------------
def _roi_align_onnxscript(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int,
                          sampling_ratio: int, aligned: bool, roi_end_mode: int):
    import onnx_ir as ir
    from onnxscript import opset18 as op

    _check_roi_align(aligned, roi_end_mode)
    batch_index = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=ir.DataType.INT64)
    boxes = op.Slice(rois, [1], [5], [1])
    if roi_end_mode == 1:
        boxes = op.Add(boxes, op.CastLike(op.Constant(value_floats=[0.0, 0.0, 1.0, 1.0]), boxes))
    attrs = _roi_align_attrs(spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    return op.RoiAlign(input, op.CastLike(boxes, input), batch_index, **attrs)


def _contrib_crop_and_resize_schema():
    """The schema of onnxruntime's contrib op com.microsoft::CropAndResize (onnx's
    registry only holds standard ops, and the tracer needs one)."""
    from onnx.defs import OpSchema

    param = OpSchema.FormalParameter
    return OpSchema(
        "CropAndResize", "com.microsoft", 1,
        inputs=[param("X", "T1"), param("rois", "T1"), param("batch_indices", "T2"), param("crop_size", "T2")],
        outputs=[param("Y", "T1")],
        type_constraints=[("T1", ["tensor(float)"], ""), ("T2", ["tensor(int32)"], "")],
        attributes=[
            OpSchema.Attribute("mode", OpSchema.AttrType.STRING, "bilinear or nearest"),
            OpSchema.Attribute("extrapolation_value", OpSchema.AttrType.FLOAT, "value outside the image"),
        ],
    )


def _crop_and_resize_onnxscript(image, boxes, box_index, crop_height: int, crop_width: int, method: str,
                                extrapolation_value: float, data_format: str):
    import onnx_ir as ir
    from onnxscript import opset18 as op
    from onnxscript.values import Op, Opset

    _check_crop_and_resize(method, image.dtype == ir.DataType.DOUBLE)
    crop_and_resize_op = Op(Opset("com.microsoft", 1), "CropAndResize", _contrib_crop_and_resize_schema())
    x = op.Cast(image, to=ir.DataType.FLOAT)
    if data_format == "NHWC":
        x = op.Transpose(x, perm=[0, 3, 1, 2])
    crop_size = op.Cast(op.Constant(value_ints=[crop_height, crop_width]), to=ir.DataType.INT32)
    crops = crop_and_resize_op(
        x, op.Cast(boxes, to=ir.DataType.FLOAT), op.Cast(box_index, to=ir.DataType.INT32), crop_size,
        mode=method, extrapolation_value=extrapolation_value,
    )
    return op.Transpose(crops, perm=[0, 2, 3, 1]) if data_format == "NHWC" else crops


def custom_translation_table() -> Dict[Callable, Callable]:
    """Translations for ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``
    of graphs that hold the compiled ops themselves (e.g. ``torch.ops.roi_ext.*`` called
    directly). Plain exports of models using roi_ext's functions and modules do not need it."""
    return {
        torch.ops.roi_ext.roi_align.default: _roi_align_onnxscript,
        torch.ops.roi_ext.roi_align_with_box_grad.default: _roi_align_onnxscript,  # the same forward
        torch.ops.roi_ext.crop_and_resize.default: _crop_and_resize_onnxscript,
    }

"""ONNX export of roi_ext's operators (torch.onnx.export with dynamo=True).

* ``roi_ext::roi_align`` -> ONNX ``RoiAlign`` (opset 16+): ``aligned=True`` is
  ``coordinate_transformation_mode="half_pixel"``, ``aligned=False`` is
  ``"output_half_pixel"``; adaptive sampling (``sampling_ratio <= 0``) is ONNX's 0.
  ``roi_end_mode=1`` is exact with ``aligned=True`` (the end coordinates get +1 before
  ``RoiAlign``); with ``aligned=False`` it is refused: ONNX's ``output_half_pixel``
  enlarges rois smaller than one pixel to 1x1, which MindSpore's mode does not.
* ``roi_ext::crop_and_resize`` -> onnxruntime's ``com.microsoft::CropAndResize``
  (NCHW float32; NHWC inputs are transposed in the graph). ``bilinear_v2`` and
  float64 images have no equivalent and are refused.

Usage::

    program = torch.onnx.export(model, args, dynamo=True,
                                custom_translation_table=roi_ext.onnx.custom_translation_table())

Needs the ``onnx`` and ``onnxscript`` packages (and ``onnxruntime`` to run the model).
"""
from typing import Callable, Dict

import torch

__all__ = ["custom_translation_table"]


class ExportError(ValueError):
    """An argument value that has no exact ONNX equivalent."""


def _roi_align(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int, sampling_ratio: int,
               aligned: bool, roi_end_mode: int):
    import onnx_ir as ir
    from onnxscript import opset18 as op

    if roi_end_mode == 1 and not aligned:
        raise ExportError(
            "roi_align: roi_end_mode=1 with aligned=False (MindSpore's ROIAlign) has no exact ONNX RoiAlign "
            "equivalent: ONNX's output_half_pixel mode enlarges rois smaller than one pixel to 1x1"
        )
    batch_index = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=ir.DataType.INT64)
    boxes = op.Slice(rois, [1], [5], [1])
    if roi_end_mode == 1:
        boxes = op.Add(boxes, op.CastLike(op.Constant(value_floats=[0.0, 0.0, 1.0, 1.0]), boxes))
    return op.RoiAlign(
        input, boxes, batch_index,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg", output_height=pooled_height, output_width=pooled_width,
        sampling_ratio=max(sampling_ratio, 0), spatial_scale=spatial_scale,
    )


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


def _crop_and_resize(image, boxes, box_index, crop_height: int, crop_width: int, method: str,
                     extrapolation_value: float, data_format: str):
    import onnx_ir as ir
    from onnxscript import opset18 as op
    from onnxscript.values import Op, Opset

    if method not in ("bilinear", "nearest"):
        raise ExportError(f"crop_and_resize: method={method!r} has no ONNX equivalent (bilinear and nearest do)")
    if image.dtype == ir.DataType.DOUBLE:
        raise ExportError("crop_and_resize: float64 images compute in float64; onnxruntime's CropAndResize is "
                          "float32 only (cast the image to float32 before exporting)")
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
    """The translations to pass to ``torch.onnx.export(..., custom_translation_table=...)``."""
    return {
        torch.ops.roi_ext.roi_align.default: _roi_align,
        torch.ops.roi_ext.crop_and_resize.default: _crop_and_resize,
    }

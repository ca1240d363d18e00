"""ONNX export (torch.onnx.export, dynamo=True) with roi_ext.onnx's translations,
checked with onnxruntime against eager. onnx, onnxscript and onnxruntime are
test-only dependencies: the tests are skipped without them."""
import numpy as np
import pytest
import torch

import roi_ext

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import roi_ext.onnx  # noqa: E402


def export_and_run(model, args, tmp_path):
    program = torch.onnx.export(model.eval(), args, dynamo=True, opset_version=18, verbose=False,
                                custom_translation_table=roi_ext.onnx.custom_translation_table())
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)}
    return program, session.run(None, feeds)[0]


class RoiAlignModel(torch.nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, x, rois):
        return roi_ext.roi_align(x, rois, **self.kw)


@pytest.mark.parametrize("kw", [
    dict(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True),
    dict(output_size=2, spatial_scale=1.0, sampling_ratio=-1, aligned=False),
    dict(output_size=(5, 5), spatial_scale=0.25, sampling_ratio=0, aligned=True),
    dict(output_size=(2, 3), spatial_scale=0.5, sampling_ratio=2, aligned=True, roi_end_mode=1),
], ids=str)
def test_roi_align_exports_to_onnx_roialign(kw, tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 12, 14, generator=gen)
    rois = torch.tensor([[0, 1.0, 2.0, 15.0, 18.0], [1, 3.0, 1.0, 20.0, 11.0], [1, -2.0, 4.0, 30.0, 30.0]])
    program, out = export_and_run(RoiAlignModel(**kw), (x, rois), tmp_path)
    assert "RoiAlign" in [n.op_type for n in program.model_proto.graph.node]
    np.testing.assert_allclose(out, RoiAlignModel(**kw)(x, rois).numpy(), rtol=1e-5, atol=1e-5)


def test_roi_end_mode_1_without_aligned_is_refused(tmp_path):
    model = RoiAlignModel(output_size=2, spatial_scale=1.0, sampling_ratio=2, aligned=False, roi_end_mode=1)
    with pytest.raises(Exception, match="roi_end_mode=1 with aligned=False"):
        export_and_run(model, (torch.randn(1, 1, 6, 6), torch.tensor([[0, 1.0, 1, 4, 4]])), tmp_path)


class CropModel(torch.nn.Module):
    def __init__(self, method, data_format):
        super().__init__()
        self.method, self.data_format = method, data_format

    def forward(self, image, boxes, box_index):
        return roi_ext.crop_and_resize(image, boxes, box_index, (5, 7), self.method, -1.5, self.data_format)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_crop_and_resize_exports_to_onnxruntime_cropandresize(method, data_format, tmp_path):
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(2, 9, 11, 3, generator=gen)
    if data_format == "NCHW":
        image = image.permute(0, 3, 1, 2).contiguous()
    boxes = torch.tensor([[0.1, 0.2, 0.8, 0.9], [0.9, 0.0, 0.2, 1.0], [-0.3, -0.2, 1.2, 1.1]])
    box_index = torch.tensor([0, 1, 1], dtype=torch.int32)
    model = CropModel(method, data_format)
    program, out = export_and_run(model, (image, boxes, box_index), tmp_path)
    assert "CropAndResize" in [n.op_type for n in program.model_proto.graph.node]
    np.testing.assert_allclose(out, model(image, boxes, box_index).numpy(), rtol=1e-5, atol=1e-5)


def test_bilinear_v2_is_refused(tmp_path):
    model = CropModel("bilinear_v2", "NHWC")
    with pytest.raises(Exception, match="bilinear_v2"):
        export_and_run(model, (torch.randn(1, 5, 5, 1), torch.tensor([[0.1, 0.1, 0.5, 0.5]]),
                               torch.tensor([0], dtype=torch.int32)), tmp_path)

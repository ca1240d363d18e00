"""roi_ext.roi_align as a drop-in inside detection code: TorchScript of the
function itself, torch.fx leaf, plain ONNX export with both exporters (no
roi_ext-specific argument), the roi_ext.onnx attribute after `import roi_ext`."""
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
import torch

import roi_ext


def _inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 12, 14, generator=gen)
    rois = torch.tensor([[0, 1.0, 2.0, 15.0, 18.0], [1, 3.0, 1.0, 20.0, 11.0], [1, -2.0, 4.0, 30.0, 30.0]])
    return x, rois


def test_roi_align_function_scripts():
    x, rois = _inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(roi_ext.roi_align)
    boxes_list = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    assert torch.equal(scripted(x, rois, 2, 0.5, 2, True), roi_ext.roi_align(x, rois, 2, 0.5, 2, True))
    assert torch.equal(scripted(x, boxes_list, [2, 3], 0.5), roi_ext.roi_align(x, rois, (2, 3), 0.5))
    assert torch.equal(scripted(x, rois, (3, 2), 1.0, -1, False, 1), roi_ext.roi_align(x, rois, (3, 2), 1.0, -1, False, 1))


class _Pooler(torch.nn.Module):
    def forward(self, x, rois):
        return roi_ext.roi_align(x, rois, 2, 0.5, 2, True) * 2


def test_roi_align_is_an_fx_leaf():
    x, rois = _inputs()
    graph = torch.fx.symbolic_trace(_Pooler())
    calls = [n for n in graph.graph.nodes if n.op == "call_function"]
    assert any(getattr(n.target, "__name__", "") == "roi_align" for n in calls), graph.code
    assert torch.equal(graph(x, rois), _Pooler()(x, rois))


def test_roi_align_is_a_leaf_for_torchvision_feature_extraction():
    feature_extraction = pytest.importorskip("torchvision.models.feature_extraction")
    train_nodes, eval_nodes = feature_extraction.get_graph_node_names(_Pooler())
    assert any("roi_align" in n for n in eval_nodes), eval_nodes


def test_onnx_attribute_after_plain_import():
    code = "import roi_ext; assert callable(roi_ext.onnx.custom_translation_table); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


class _RoiAlignModel(torch.nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, x, rois):
        return roi_ext.roi_align(x, rois, **self.kw)


class _ModulesModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tv = roi_ext.RoIAlign((3, 3), 0.5, 2, aligned=True)
        self.ms = roi_ext.ROIAlign(2, 2, 0.5, 2, roi_end_mode=0)

    def forward(self, x, rois):
        return self.tv(x, rois).sum((2, 3)) + self.ms(x, rois).sum((2, 3))


class _CropModel(torch.nn.Module):
    def __init__(self, method, data_format):
        super().__init__()
        self.crop = roi_ext.CropAndResize(method, -1.5, data_format)

    def forward(self, image, boxes, box_index):
        return self.crop(image, boxes, box_index, (5, 7))


def _export_plain_and_run(model, args, dynamo):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    if dynamo:
        pytest.importorskip("onnxscript")
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/model.onnx"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            torch.onnx.export(model.eval(), args, path, dynamo=dynamo, opset_version=18)
        import onnx

        ops = [n.op_type for n in onnx.load(path).graph.node]
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        out = session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)})[0]
    return ops, out


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("kw", [
    dict(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True),
    dict(output_size=2, spatial_scale=1.0, sampling_ratio=-1, aligned=False),
    dict(output_size=(2, 3), spatial_scale=0.5, sampling_ratio=0, aligned=True, roi_end_mode=1),
    dict(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True, box_grad=True),  # the same node
], ids=str)
def test_plain_onnx_export_roi_align(kw, dynamo):
    x, rois = _inputs()
    model = _RoiAlignModel(**kw)
    ops, out = _export_plain_and_run(model, (x, rois), dynamo)
    assert "RoiAlign" in ops
    np.testing.assert_allclose(out, model(x, rois).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_plain_onnx_export_modules(dynamo):
    x, rois = _inputs(1)
    model = _ModulesModel()
    ops, out = _export_plain_and_run(model, (x, rois), dynamo)
    assert ops.count("RoiAlign") == 2
    np.testing.assert_allclose(out, model(x, rois).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_plain_onnx_export_crop_and_resize(method, data_format, dynamo):
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(2, 9, 11, 3, generator=gen)
    if data_format == "NCHW":
        image = image.permute(0, 3, 1, 2).contiguous()
    boxes = torch.tensor([[0.1, 0.2, 0.8, 0.9], [0.9, 0.0, 0.2, 1.0], [-0.3, -0.2, 1.2, 1.1]])
    box_index = torch.tensor([0, 1, 1], dtype=torch.int32)
    model = _CropModel(method, data_format)
    ops, out = _export_plain_and_run(model, (image, boxes, box_index), dynamo)
    assert "CropAndResize" in ops
    np.testing.assert_allclose(out, model(image, boxes, box_index).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_plain_onnx_export_refuses_what_has_no_equivalent(dynamo):
    # The export fails, and the reason is given (the dynamo exporter retries a
    # failed capture and may end with a generic error, so it comes as a warning too).
    x, rois = _inputs()
    model = _RoiAlignModel(output_size=2, aligned=False, roi_end_mode=1)
    with pytest.warns(roi_ext.onnx.ExportWarning, match="roi_end_mode=1 with aligned=False"):
        with pytest.raises(Exception):
            _export_plain_and_run(model, (x, rois), dynamo)
    crop = _CropModel("bilinear_v2", "NHWC")
    with pytest.warns(roi_ext.onnx.ExportWarning, match="bilinear_v2"):
        with pytest.raises(Exception):
            _export_plain_and_run(crop, (torch.randn(1, 5, 5, 1), torch.tensor([[0.1, 0.1, 0.5, 0.5]]),
                                         torch.tensor([0], dtype=torch.int32)), dynamo)

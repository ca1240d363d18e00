"""roi_ext.MultiScaleRoIAlign and torch.ops.roi_ext.multi_scale_roi_align:
bit-identity with torchvision's pooler (forward, backward, layouts), half types,
gradcheck, opcheck, determinism, torch.compile / export / script / ONNX, and
torchvision's Mask R-CNN with its poolers swapped (bit-identical eval detections,
training losses and gradients)."""
import copy
import os
import subprocess
import sys
import textwrap
from collections import OrderedDict

import pytest
import torch

import roi_ext
from roi_ext.poolers import LevelMapper, multi_scale_roi_align

try:  # the comparisons with torchvision run where it is installed
    import torchvision
    from torchvision.ops import MultiScaleRoIAlign as TvMultiScaleRoIAlign
except ImportError:  # pragma: no cover
    torchvision = None
needs_torchvision = pytest.mark.skipif(torchvision is None, reason="torchvision is not installed")

F32 = torch.float32
F64 = torch.float64
NAMES = ["0", "1", "2", "3"]


def pyramid(gen, image_hw, channels=8, batch=2, dtype=F32, channels_last=False, extra=True):
    """An FPN-like dict: levels at strides 4, 8, 16, 32 of the (padded) image size,
    plus a "pool" map that the pooler must ignore."""
    h, w = image_hw
    x = OrderedDict()
    for i, name in enumerate(NAMES):
        s = 4 * 2**i
        t = torch.randn(batch, channels, -(-h // s), -(-w // s), generator=gen, dtype=dtype)
        x[name] = t.contiguous(memory_format=torch.channels_last) if channels_last else t
    if extra:
        x["pool"] = torch.randn(batch, channels, 2, 2, generator=gen, dtype=dtype)
    return x


def random_boxes(gen, counts, image_shapes, dtype=F32):
    """Boxes of all sizes (tiny to image-sized, so every level gets some), some
    partly outside the image, a few degenerate or inverted."""
    boxes = []
    for n, (h, w) in zip(counts, image_shapes):
        scale = torch.tensor([w, h, w, h], dtype=F64)
        xy = (torch.rand(n, 2, generator=gen, dtype=F64) * 1.2 - 0.1) * scale[:2]
        size = torch.exp(torch.rand(n, 2, generator=gen, dtype=F64) * 6.5) - 1  # 0 .. ~660 px
        b = torch.cat([xy, xy + size], dim=1)
        if n > 3:
            b[0, 2:] = b[0, :2]  # zero area
            b[1, 2] = b[1, 0] - 3  # inverted in x: negative area, NaN level in torchvision
        boxes.append(b.to(dtype))
    return boxes


def featmap_subsets():
    return [NAMES, ["0"], ["1", "3"], ["0", "1", "2"]]


# ---------------------------------------------------------------------------
# Level assignment and scales: torchvision's, exactly
# ---------------------------------------------------------------------------
@needs_torchvision
def test_level_mapper_matches_torchvision():
    from torchvision.ops.poolers import LevelMapper as TvLevelMapper

    gen = torch.Generator().manual_seed(0)
    boxes = random_boxes(gen, [300, 200], [(800, 1000), (700, 900)])
    boxes.append(torch.tensor([[0.0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448], [5, 5, 5, 5]]))
    for k_min, k_max, s0, l0 in [(2, 5, 224, 4), (3, 3, 224, 4), (2, 5, 160, 3)]:
        ours = LevelMapper(k_min, k_max, s0, l0)(boxes)
        ref = TvLevelMapper(k_min, k_max, s0, l0)(boxes)
        assert ours.dtype == torch.int64 and torch.equal(ours, ref)


@needs_torchvision
@pytest.mark.parametrize("image_hw", [(200, 250), (800, 1000), (333, 517), (64, 64)])
def test_scales_match_torchvision(image_hw):
    gen = torch.Generator().manual_seed(1)
    x = pyramid(gen, image_hw, channels=1)
    shapes = [image_hw, (image_hw[0] - 7, image_hw[1] - 3)]
    ours = roi_ext.MultiScaleRoIAlign(NAMES, 7, 2)
    ref = TvMultiScaleRoIAlign(NAMES, 7, 2)
    boxes = random_boxes(gen, [5, 5], shapes)
    ours(x, boxes, shapes)
    ref(x, boxes, shapes)
    assert ours.scales == ref.scales
    assert (ours.map_levels.k_min, ours.map_levels.k_max) == (ref.map_levels.k_min, ref.map_levels.k_max)


def test_traceable_scale_inference_equals_eager():
    from roi_ext.poolers import _infer_scale, _infer_scale_traceable

    for fh, ih in [(50, 200), (63, 250), (25, 800), (13, 800), (7, 200), (100, 100), (34, 100), (35, 100)]:
        f = torch.empty(1, 1, fh, 3)
        assert _infer_scale(f, [ih, 3]) == _infer_scale_traceable(f, [ih, 3])


# ---------------------------------------------------------------------------
# Bit-identity with torchvision.ops.MultiScaleRoIAlign (forward and backward)
# ---------------------------------------------------------------------------
def _compare_with_torchvision(featmap_names, output_size, sampling_ratio, image_hw, dtype, channels_last, seed):
    gen = torch.Generator().manual_seed(seed)
    shapes = [image_hw, (image_hw[0] * 3 // 4, image_hw[1] - 5)]
    x = pyramid(gen, image_hw, dtype=dtype, channels_last=channels_last)
    boxes = random_boxes(gen, [40, 23], shapes, dtype=dtype)
    ours_m = roi_ext.MultiScaleRoIAlign(featmap_names, output_size, sampling_ratio)
    ref_m = TvMultiScaleRoIAlign(featmap_names, output_size, sampling_ratio)

    xo = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    xr = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    ours = ours_m(xo, boxes, shapes)
    ref = ref_m(xr, boxes, shapes)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert torch.equal(ours, ref)
    g = torch.randn(ref.shape, generator=gen, dtype=dtype)
    ours.backward(g)
    ref.backward(g)
    for k in featmap_names:
        assert torch.equal(xo[k].grad, xr[k].grad), k
    assert xo["pool"].grad is None
    # A second call reuses the inferred scales (torchvision's caching).
    assert torch.equal(ours_m(x, boxes, shapes), ref_m(x, boxes, shapes))


@needs_torchvision
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("sampling_ratio", [2, 0, -1, 3])
@pytest.mark.parametrize("featmap_names", featmap_subsets(), ids=lambda n: "+".join(n))
def test_matches_torchvision_float32(featmap_names, sampling_ratio, channels_last):
    _compare_with_torchvision(featmap_names, 7, sampling_ratio, (200, 250), F32, channels_last, seed=3)


@needs_torchvision
@pytest.mark.parametrize("image_hw", [(128, 96), (333, 517), (800, 1000)])
@pytest.mark.parametrize("output_size", [(14, 14), (3, 5), 1])
def test_matches_torchvision_sizes(image_hw, output_size):
    _compare_with_torchvision(NAMES, output_size, 2, image_hw, F32, False, seed=4)


@needs_torchvision
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_matches_torchvision_float64(channels_last):
    _compare_with_torchvision(NAMES, (5, 4), -1, (160, 224), F64, channels_last, seed=5)


@needs_torchvision
def test_no_boxes_and_empty_images_match_torchvision():
    gen = torch.Generator().manual_seed(6)
    x = pyramid(gen, (96, 128))
    shapes = [(96, 128), (90, 100)]
    boxes = [torch.zeros(0, 4), random_boxes(gen, [6], [(90, 100)])[0]]
    for bx in (boxes, [torch.zeros(0, 4), torch.zeros(0, 4)]):
        ours = roi_ext.MultiScaleRoIAlign(NAMES, 7, 2)(x, bx, shapes)
        ref = TvMultiScaleRoIAlign(NAMES, 7, 2)(x, bx, shapes)
        assert ours.shape == ref.shape and torch.equal(ours, ref)


def test_rois_of_no_level_give_zero_and_no_gradient():
    gen = torch.Generator().manual_seed(7)
    feats = [torch.randn(2, 3, 16, 16, generator=gen), torch.randn(2, 3, 8, 8, generator=gen)]
    rois = torch.tensor([[0, 1.0, 1, 10, 10], [1, 2, 2, 30, 30], [0, 0, 0, 5, 5], [1, 0, 0, 5, 5]])
    levels = torch.tensor([0, 1, 2, -9223372036854775808])
    fs = [f.clone().requires_grad_() for f in feats]
    out = multi_scale_roi_align(fs, rois, levels, [1.0, 0.5], (2, 2), 2)
    assert torch.equal(out[0], roi_ext.roi_align(feats[0], rois[:1], 2, 1.0, 2)[0])
    assert torch.equal(out[1], roi_ext.roi_align(feats[1], rois[1:2], 2, 0.5, 2)[0])
    assert torch.equal(out[2:], torch.zeros_like(out[2:]))
    out.sum().backward()
    expect0 = torch.autograd.grad(roi_ext.roi_align(fs[0], rois[:1], 2, 1.0, 2).sum(), fs[0])[0]
    assert torch.equal(fs[0].grad, expect0)


def test_each_roi_equals_roi_align_on_its_level():
    # Also mixed layouts: every level is read in its own memory format.
    gen = torch.Generator().manual_seed(8)
    feats = [torch.randn(3, 16, 20, 24, generator=gen), torch.randn(3, 16, 10, 12, generator=gen),
             torch.randn(3, 16, 5, 6, generator=gen)]
    feats[1] = feats[1].contiguous(memory_format=torch.channels_last)
    feats[2] = feats[2][:, :, :, :].transpose(2, 3).contiguous().transpose(2, 3)  # neither layout
    rois = torch.cat([torch.randint(0, 3, (30, 1)).float(), torch.rand(30, 4) * 60], 1)
    rois[:, 3:] += rois[:, 1:3]
    levels = torch.randint(0, 3, (30,))
    scales = [0.25, 0.125, 0.0625]
    for aligned in (False, True):
        out = multi_scale_roi_align(feats, rois, levels, scales, (3, 4), -1, aligned)
        for k in range(30):
            l = int(levels[k])
            ref = roi_ext.roi_align(feats[l].contiguous(), rois[k:k + 1], (3, 4), scales[l], -1, aligned)
            assert torch.equal(out[k:k + 1], ref), k


# ---------------------------------------------------------------------------
# Half types, gradcheck, opcheck, determinism
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_half_types_against_float32(dtype, channels_last):
    gen = torch.Generator().manual_seed(9)
    x32 = pyramid(gen, (200, 250), channels=16, channels_last=channels_last)
    shapes = [(200, 250), (190, 240)]
    boxes = random_boxes(gen, [30, 30], shapes)
    xh = OrderedDict((k, v.to(dtype).requires_grad_()) for k, v in x32.items())
    xr = OrderedDict((k, v.to(dtype).float().requires_grad_()) for k, v in x32.items())
    m = roi_ext.MultiScaleRoIAlign(NAMES, 7, 2)
    out = m(xh, boxes, shapes)
    ref = m(xr, boxes, shapes)
    assert out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    g = torch.randn(ref.shape, generator=gen)
    out.backward(g.to(dtype))
    ref.backward(g.to(dtype).float())
    for k in NAMES:
        assert xh[k].grad.dtype == dtype
        torch.testing.assert_close(xh[k].grad.float(), xr[k].grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_gradcheck(aligned, channels_last):
    gen = torch.Generator().manual_seed(10)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    feats = [torch.randn(2, 3, 9, 8, generator=gen, dtype=F64).contiguous(memory_format=fmt),
             torch.randn(2, 3, 5, 4, generator=gen, dtype=F64).contiguous(memory_format=fmt)]
    feats = [f.requires_grad_() for f in feats]
    rois = torch.tensor([[0, 1.2, 0.7, 6.1, 7.9], [1, 0.3, 2.2, 9.5, 5.5], [1, -1.0, 0.4, 3.3, 4.1],
                         [0, 2.0, 2.0, 14.0, 15.0]], dtype=F64)
    levels = torch.tensor([0, 1, 0, 1])

    def fn(a, b):
        return multi_scale_roi_align([a, b], rois, levels, [1.0, 0.5], (2, 3), -1, aligned)

    assert torch.autograd.gradcheck(fn, tuple(feats))
    assert torch.autograd.gradgradcheck(fn, tuple(feats))


def _op_samples(dtype, channels_last):
    gen = torch.Generator().manual_seed(11)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    feats = [torch.randn(2, 8, 12, 10, generator=gen, dtype=dtype).contiguous(memory_format=fmt),
             torch.randn(2, 8, 6, 5, generator=gen, dtype=dtype).contiguous(memory_format=fmt)]
    rois = torch.tensor([[0, 1.0, 1, 20, 30], [1, 3, 1, 40, 22], [1, -2, 4, 30, 30]], dtype=dtype)
    levels = torch.tensor([0, 1, 1])
    return feats, rois, levels


@pytest.mark.parametrize("dtype", [F32, F64, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_opcheck(dtype, channels_last):
    feats, rois, levels = _op_samples(dtype, channels_last)
    feats = [f.requires_grad_() for f in feats]
    torch.library.opcheck(torch.ops.roi_ext.multi_scale_roi_align.default,
                          (feats, rois, levels, [0.5, 0.25], 3, 4, 2, False))
    grad = torch.randn(3, 8, 3, 4, dtype=dtype)
    torch.library.opcheck(torch.ops.roi_ext._multi_scale_roi_align_backward.default,
                          (grad, rois, levels, [0.5, 0.25], 3, 4, 2, 8, [12, 6], [10, 5], 2, False, False))


def test_deterministic_at_any_thread_count():
    code = textwrap.dedent("""
        import sys, torch, roi_ext
        from collections import OrderedDict
        torch.set_num_threads(int(sys.argv[1]))
        gen = torch.Generator().manual_seed(0)
        outs = []
        for cl in (False, True):
            x = OrderedDict()
            for i, s in enumerate((4, 8, 16, 32)):
                t = torch.randn(2, 64, 256 // s, 320 // s, generator=gen)
                x[str(i)] = (t.contiguous(memory_format=torch.channels_last) if cl else t).requires_grad_()
            boxes = []
            for _ in range(2):
                b = torch.rand(200, 4, generator=gen) * 256
                b[:, 2:] += b[:, :2]
                boxes.append(b)
            out = roi_ext.MultiScaleRoIAlign(list(x), 7, 2)(x, boxes, [(256, 320)] * 2)
            out.backward(torch.randn(out.shape, generator=gen))
            outs += [out.detach()] + [v.grad for v in x.values()]
        torch.save(outs, sys.argv[2])
    """)
    env = dict(os.environ)
    results = []
    for threads in (1, 2, 4):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"msra_det_{os.getpid()}_{threads}.pt")
        subprocess.run([sys.executable, "-c", code, str(threads), path], check=True, env=env, cwd="/")
        results.append(torch.load(path))
        os.remove(path)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_autocast_keeps_dtypes():
    gen = torch.Generator().manual_seed(12)
    x = pyramid(gen, (128, 160))
    boxes = random_boxes(gen, [10, 10], [(128, 160)] * 2)
    m = roi_ext.MultiScaleRoIAlign(NAMES, 7, 2)
    ref = m(x, boxes, [(128, 160)] * 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, boxes, [(128, 160)] * 2)
    assert out.dtype == F32 and torch.equal(out, ref)


def test_errors():
    feats, rois, levels = _op_samples(F32, False)
    with pytest.raises(ValueError, match="levels must have shape"):
        multi_scale_roi_align(feats, rois, levels[:2], [0.5, 0.25], (2, 2))
    with pytest.raises(ValueError, match="scales must have one entry per feature level"):
        multi_scale_roi_align(feats, rois, levels, [0.5], (2, 2))
    with pytest.raises(TypeError, match="levels must be int64"):
        multi_scale_roi_align(feats, rois, levels.float(), [0.5, 0.25], (2, 2))
    with pytest.raises(ValueError, match="batch size and channels"):
        multi_scale_roi_align([feats[0], feats[1][:, :4]], rois, levels, [0.5, 0.25], (2, 2))
    with pytest.raises(TypeError, match="dtype of features"):
        multi_scale_roi_align([feats[0], feats[1].double()], rois, levels, [0.5, 0.25], (2, 2))
    bad = rois.clone()
    bad[1, 0] = 2.0
    with pytest.raises(IndexError, match=r"rois\[1, 0\]"):
        multi_scale_roi_align(feats, bad, levels, [0.5, 0.25], (2, 2))
    with pytest.raises(ValueError, match="features must hold at least one"):
        multi_scale_roi_align([], rois, levels, [], (2, 2))


def test_repr_and_arguments():
    m = roi_ext.MultiScaleRoIAlign(["feat1", "feat3"], 3, 2)
    assert repr(m) == "MultiScaleRoIAlign(featmap_names=['feat1', 'feat3'], output_size=(3, 3), sampling_ratio=2)"
    assert roi_ext.MultiScaleRoIAlign(["a"], [7, 5], 0, canonical_scale=160, canonical_level=3).output_size == (7, 5)
    with pytest.raises(ValueError):
        roi_ext.MultiScaleRoIAlign(["a"], (7, 5, 3), 0)
    with pytest.raises(TypeError):
        roi_ext.MultiScaleRoIAlign(["a"], 7, 2.5)
    with pytest.raises(ValueError, match="images list should not be empty"):
        roi_ext.MultiScaleRoIAlign(["0"], 7, 2)({"0": torch.randn(1, 1, 4, 4)}, [torch.zeros(0, 4)], [])


# ---------------------------------------------------------------------------
# torch.compile, torch.export, TorchScript, ONNX
# ---------------------------------------------------------------------------
class Pooler(torch.nn.Module):
    def __init__(self, output_size=7, sampling_ratio=2):
        super().__init__()
        self.pool = roi_ext.MultiScaleRoIAlign(NAMES, output_size, sampling_ratio)

    def forward(self, f0, f1, f2, f3, boxes0, boxes1):
        x = OrderedDict([("0", f0), ("1", f1), ("2", f2), ("3", f3)])
        return self.pool(x, [boxes0, boxes1], [(200, 250), (190, 240)])


def _pooler_inputs(seed, n0, n1, channels=8):
    gen = torch.Generator().manual_seed(seed)
    x = pyramid(gen, (200, 250), channels=channels, extra=False)
    boxes = random_boxes(gen, [n0, n1], [(200, 250), (190, 240)])
    return tuple(x.values()) + tuple(boxes)


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_compile_fullgraph_dynamic(warm):
    torch._dynamo.reset()
    model = Pooler()
    eager = Pooler()
    if warm:
        model(*_pooler_inputs(0, 5, 5))
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for seed, (n0, n1) in enumerate([(13, 9), (40, 3), (7, 22), (0, 5)]):
        args = _pooler_inputs(seed, n0, n1)
        leaves = [a.clone().requires_grad_() for a in args[:4]]
        leaves_ref = [a.clone().requires_grad_() for a in args[:4]]
        out = compiled(*leaves, *args[4:])
        ref = eager(*leaves_ref, *args[4:])
        assert torch.equal(out, ref)
        out.sum().backward()
        ref.sum().backward()
        for a, b in zip(leaves, leaves_ref):
            assert torch.equal(a.grad, b.grad)


def test_export_dynamic_number_of_boxes():
    model = Pooler()
    args = _pooler_inputs(0, 11, 6)
    n0, n1 = torch.export.Dim("n0", min=0), torch.export.Dim("n1", min=0)
    shapes = (None, None, None, None, {0: n0}, {0: n1})
    ep = torch.export.export(model, args, dynamic_shapes=shapes)
    assert "roi_ext.multi_scale_roi_align" in str(ep.graph)
    for seed, (a, b) in enumerate([(11, 6), (30, 2), (3, 17)]):
        args = _pooler_inputs(seed, a, b)
        assert torch.equal(ep.module()(*args), Pooler()(*args))


def test_script():
    m = roi_ext.MultiScaleRoIAlign(NAMES, 7, 2)
    scripted = torch.jit.script(m)
    gen = torch.Generator().manual_seed(13)
    x = pyramid(gen, (200, 250))
    shapes = [(200, 250), (190, 240)]
    boxes = random_boxes(gen, [17, 9], shapes)
    assert torch.equal(scripted(x, boxes, shapes), roi_ext.MultiScaleRoIAlign(NAMES, 7, 2)(x, boxes, shapes))
    # single level
    single = torch.jit.script(roi_ext.MultiScaleRoIAlign(["1"], (3, 5), 0))
    assert torch.equal(single(x, boxes, shapes), roi_ext.MultiScaleRoIAlign(["1"], (3, 5), 0)(x, boxes, shapes))


def test_fx_symbolic_trace_keeps_the_pooler_leaves():
    gm = torch.fx.symbolic_trace(Pooler())
    targets = {getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes if n.op == "call_function"}
    assert "_multiscale_roi_align" in targets
    args = _pooler_inputs(2, 8, 4)
    assert torch.equal(gm(*args), Pooler()(*args))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_export(dynamo, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    if dynamo:
        pytest.importorskip("onnxscript")
    import numpy as np

    if not dynamo:
        import roi_ext.onnx  # noqa: F401  (registers the TorchScript-exporter symbolics)
    model = Pooler(output_size=(5, 4), sampling_ratio=2).eval()
    args = _pooler_inputs(0, 11, 6)
    path = str(tmp_path / "pooler.onnx")
    names = ["f0", "f1", "f2", "f3", "boxes0", "boxes1"]
    if dynamo:
        n0, n1 = torch.export.Dim("n0", min=0), torch.export.Dim("n1", min=0)
        torch.onnx.export(model, args, path, dynamo=True, input_names=names,
                          dynamic_shapes=(None, None, None, None, {0: n0}, {0: n1}))
    else:
        torch.onnx.export(model, args, path, dynamo=False, opset_version=16, input_names=names,
                          dynamic_axes={"boxes0": {0: "n0"}, "boxes1": {0: "n1"}})
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for seed, (a, b) in enumerate([(11, 6), (25, 4)]):
        args = _pooler_inputs(seed, a, b)
        out = session.run(None, {n: t.numpy() for n, t in zip(names, args)})[0]
        np.testing.assert_allclose(out, model(*args).detach().numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# torchvision's Mask R-CNN with roi_ext's poolers: bit-identical
# ---------------------------------------------------------------------------
def _mask_rcnn_pair():
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    # Small images and few rois, so that the test takes seconds: the pooled
    # features feed large heads (two 12544 x 1024 layers, four 3x3 convs).
    ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=128, max_size=160,
                                box_score_thresh=0.0, box_detections_per_img=8, rpn_pre_nms_top_n_test=300,
                                rpn_post_nms_top_n_test=100, rpn_pre_nms_top_n_train=300,
                                rpn_post_nms_top_n_train=100, box_batch_size_per_image=64)
    ours = copy.deepcopy(ref)
    heads = ours.roi_heads
    for attr in ("box_roi_pool", "mask_roi_pool"):
        tv = getattr(heads, attr)
        setattr(heads, attr, roi_ext.MultiScaleRoIAlign(tv.featmap_names, tv.output_size, tv.sampling_ratio))
    return ref, ours


def _mask_rcnn_inputs():
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 200, 250, generator=gen), torch.rand(3, 190, 240, generator=gen)]
    targets = []
    for img in images:
        h, w = img.shape[1:]
        xy = torch.rand(3, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = 20 + torch.rand(3, 2, generator=gen) * 80
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(3, h, w, dtype=torch.uint8)
        for i, b in enumerate(boxes.round().long()):
            masks[i, b[1]:b[3], b[0]:b[2]] = 1
        targets.append({"boxes": boxes, "labels": torch.randint(1, 91, (3,), generator=gen), "masks": masks})
    return images, targets


@needs_torchvision
def test_mask_rcnn_eval_detections_bit_identical():
    ref, ours = _mask_rcnn_pair()
    assert isinstance(ours.roi_heads.box_roi_pool, roi_ext.MultiScaleRoIAlign)
    images, _ = _mask_rcnn_inputs()
    ref.eval()
    ours.eval()
    with torch.no_grad():
        det_ref = ref(images)
        det_ours = ours(images)
    for a, b in zip(det_ref, det_ours):
        assert a.keys() == b.keys()
        assert a["boxes"].shape[0] > 0  # box_score_thresh=0: detections to compare
        for k in a:
            assert torch.equal(a[k], b[k]), k


@needs_torchvision
def test_mask_rcnn_training_losses_and_gradients_identical():
    ref, ours = _mask_rcnn_pair()
    images, targets = _mask_rcnn_inputs()
    ref.train()
    ours.train()
    results = []
    for model in (ref, ours):
        torch.manual_seed(2)  # the proposal samplers draw random permutations
        losses = model(images, targets)
        sum(losses.values()).backward()
        results.append(losses)
    assert results[0].keys() == results[1].keys() and "loss_mask" in results[0]
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k
    named = dict(ours.named_parameters())
    checked = 0
    for name, p in ref.named_parameters():
        q = named[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name
            checked += 1
    assert checked > 100


# ---------------------------------------------------------------------------
# The CUDA kernels, run serially on the CPU by the emulation build
# (ROI_EXT_CUDA_EMULATION=1, csrc/cuda/emulation.h): equal to the CPU kernels
# ---------------------------------------------------------------------------
def _emulated_op(name):
    try:
        return getattr(torch.ops.roi_ext_cuda_emulated, name)
    except (AttributeError, RuntimeError):
        return None


@pytest.mark.skipif(_emulated_op("multi_scale_roi_align") is None, reason="not the CUDA emulation build")
@pytest.mark.parametrize("dtype", [F32, F64, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_cuda_emulation_equals_cpu(dtype, channels_last):
    gen = torch.Generator().manual_seed(14)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    feats = [torch.randn(2, 5, 13, 11, generator=gen, dtype=dtype).contiguous(memory_format=fmt),
             torch.randn(2, 5, 7, 6, generator=gen, dtype=dtype),  # levels in different layouts
             torch.randn(2, 5, 4, 3, generator=gen, dtype=dtype).contiguous(memory_format=fmt)]
    rois = torch.cat([torch.randint(0, 2, (12, 1), generator=gen).to(dtype),
                      (torch.rand(12, 4, generator=gen) * 60 - 5).to(dtype)], 1)
    rois[:, 3:] += rois[:, 1:3].abs()
    levels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, -1, 3])
    scales = [0.25, 0.125, 0.0625]
    for aligned, sr in ((False, 2), (True, -1)):
        args = (rois, levels, scales, 3, 2, sr, aligned)
        out = torch.ops.roi_ext.multi_scale_roi_align(feats, *args)
        emu = _emulated_op("multi_scale_roi_align")(feats, *args)
        assert torch.equal(out, emu)
        assert out.is_contiguous(memory_format=fmt) == emu.is_contiguous(memory_format=fmt)
        grad = torch.randn(out.shape, generator=gen, dtype=dtype).contiguous(memory_format=fmt)
        bargs = (grad, rois, levels, scales, 3, 2, 2, 5, [13, 7, 4], [11, 6, 3], sr, aligned)
        ref = torch.ops.roi_ext._multi_scale_roi_align_backward(*bargs, False)
        for deterministic in (False, True):
            got = _emulated_op("_multi_scale_roi_align_backward")(*bargs, deterministic)
            for a, b in zip(ref, got):
                assert torch.equal(a, b)

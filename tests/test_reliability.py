"""Issue 15: extreme dimensions (2^24 +- 4, 2^31 +- 1, 2^63 - 1 via stride-0
broadcasts), every derivative mode (double backward, gradgradcheck,
torch.func.jvp / jacfwd / jacrev / grad, forward_ad), float64 metadata tensors,
and huge outputs from tiny inputs. Giants are broadcast (expand), never
allocated, except the few exact calls of the issue (at most 134 MB)."""
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import roi_ext

F64 = torch.float64


# ---------------------------------------------------------------------------
# 1. Indices computed from float positions stay in range at any size
# ---------------------------------------------------------------------------
H24 = 16777220  # 2^24 + 4: float32(H - 1) = float32(2^24 + 3) rounds up to H


def _sentinel_image(dtype=torch.uint8):
    # NCHW [1, 2, H, 1]: row H of channel 0 would be row 0 of channel 1 (200).
    img = torch.zeros(1, 2, H24, 1, dtype=dtype)
    img[0, 0, H24 - 1, 0] = 7
    img[0, 1, 0, 0] = 200
    return img


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_forward_never_reads_row_h_at_2_24_plus_4(method):
    img = _sentinel_image()
    out = roi_ext.crop_and_resize(img, torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([0]), (1, 1), method,
                                  -1.0, "NCHW")
    # float32(1 * (H - 1)) = H lies past the last row: out of range, never row H.
    assert out.flatten().tolist() == [-1.0, -1.0]
    # The same sample on a row float32 holds exactly is read.
    box = torch.tensor([[(H24 - 2) / (H24 - 1), 0.0, (H24 - 2) / (H24 - 1), 0.0]], dtype=F64)
    out = roi_ext.crop_and_resize(img.double(), box, torch.tensor([0]), (1, 1), method, -1.0, "NCHW")
    assert out.flatten().tolist() == [0.0, 0.0]


def test_grad_image_and_grad_boxes_stay_inside_at_2_24_plus_4():
    boxes, index = torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([0])
    g = roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 1, 1), boxes, index, (1, 2, H24, 1), "bilinear",
                                           torch.float32, "NCHW")
    assert g.shape == (1, 2, H24, 1) and not g.any()  # the sample is out of range: no contribution
    gb = roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 1, 1), _sentinel_image(), boxes, index, "bilinear",
                                            "NCHW")
    assert gb.tolist() == [[0.0, 0.0, 0.0, 0.0]]


SIZES = [2**24 - 4, 2**24 - 1, 2**24, 2**24 + 1, 2**24 + 3, 2**24 + 4, 2**31 - 1, 2**31, 2**31 + 1, 2**62,
         2**63 - 1]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", ["bilinear", "nearest", "bilinear_v2"])
def test_broadcast_giant_image_dimensions(size, method):
    image = torch.full((1, 1, 1, 1), 3.0).expand(1, size, size if size < 2**31 else 1, 1)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.5, 0.25, 0.9999999, 0.75]])
    index = torch.zeros(3, dtype=torch.int64)
    out = roi_ext.crop_and_resize(image, boxes, index, (3, 2), method, -5.0)
    assert out.shape == (3, 3, 2, 1)
    # bilinear_v2's four-product weighting may round 3 to 2.9999995 (golden G15).
    assert ((out == -5.0) | ((out - 3.0).abs() <= 1e-6)).all()
    if not (method == "bilinear_v2" and size > 2**30):  # v2 windows past int32 (MindSpore's) extrapolate
        assert abs(out[0, 0, 0, 0] - 3.0) <= 1e-6  # the first pixel is always there
    gb = roi_ext.crop_and_resize_grad_boxes(torch.ones(3, 3, 2, 1), image, boxes, index, method)
    assert torch.isfinite(gb).all()  # a constant image: zero, or nothing at all


def test_crop_size_one_on_a_giant_dimension():
    image = torch.full((1, 1, 1, 1), 2.0).expand(1, 2**63 - 1, 1, 1)
    for box in ([1.0, 0.0, 1.0, 0.0], [1e30, 0.0, 1e30, 0.0], [-1e30, 0, -1e30, 0]):
        out = roi_ext.crop_and_resize(image, torch.tensor([box]), torch.tensor([0]), (1, 1), "bilinear", -1.0)
        assert out.item() == -1.0


# ---------------------------------------------------------------------------
# 3. Every derivative mode
# ---------------------------------------------------------------------------
# Sample positions away from integers and from the image border, where the
# box derivative (TensorFlow's) is the true derivative.
IMG = torch.randn(2, 5, 6, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
BOXES = torch.tensor([[0.13, 0.21, 0.77, 0.69], [0.31, 0.07, 0.93, 0.88]], dtype=F64)
INDEX = torch.tensor([1, 0])


def _crop(method="bilinear", data_format="NHWC"):
    def f(image, boxes):
        img = image.permute(0, 3, 1, 2) if data_format == "NCHW" else image
        return roi_ext.crop_and_resize(img, boxes, INDEX, (3, 4), method, 0.5, data_format)
    return f


def test_double_backward_is_not_zero_and_matches_finite_differences():
    image, boxes = IMG.clone().requires_grad_(), BOXES.clone().requires_grad_()
    out = _crop()(image, boxes)
    (g_boxes,) = torch.autograd.grad(out.sum(), boxes, create_graph=True)
    (d_image,) = torch.autograd.grad(g_boxes.sum(), image)
    assert d_image.abs().sum() > 0
    (g_image,) = torch.autograd.grad(out.sum(), image, create_graph=True)
    (d_boxes,) = torch.autograd.grad((g_image * IMG).sum(), boxes)
    assert d_boxes.abs().sum() > 0
    # d/d image of sum(box gradient), by central differences
    eps = 1e-6
    direction = torch.randn_like(IMG)
    gb = lambda im: torch.autograd.grad(_crop()(im, boxes).sum(), boxes)[0].sum()  # noqa: E731
    numeric = (gb(IMG + eps * direction) - gb(IMG - eps * direction)) / (2 * eps)
    torch.testing.assert_close((d_image * direction).sum(), numeric)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_gradcheck_and_gradgradcheck_crop_and_resize(data_format):
    f = _crop("bilinear", data_format)
    image, boxes = IMG.clone().requires_grad_(), BOXES.clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (image, boxes), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(lambda im: f(im, BOXES), (image,))
    assert torch.autograd.gradgradcheck(f, (image, boxes), check_fwd_over_rev=True)


@pytest.mark.parametrize("method", ["bilinear", "nearest", "bilinear_v2"])
def test_forward_mode_crop_and_resize(method):
    f = _crop(method)
    ti, tb = torch.randn_like(IMG), torch.randn_like(BOXES)
    out, tangent = torch.func.jvp(f, (IMG, BOXES), (ti, tb))
    torch.testing.assert_close(out, f(IMG, BOXES), rtol=0, atol=0)
    jr = torch.func.jacrev(f, argnums=(0, 1))(IMG, BOXES)
    expected = (jr[0] * ti).sum(dim=(4, 5, 6, 7)) + (jr[1] * tb).sum(dim=(4, 5))
    torch.testing.assert_close(tangent, expected)
    if method == "bilinear":
        assert tangent.abs().sum() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vmap falls back to a loop over the batch
        jf = torch.func.jacfwd(f, argnums=(0, 1))(IMG, BOXES)
    torch.testing.assert_close(jf[0], jr[0])
    torch.testing.assert_close(jf[1], jr[1])
    with fwAD.dual_level():
        dual = f(fwAD.make_dual(IMG, ti), fwAD.make_dual(BOXES, tb))
        torch.testing.assert_close(fwAD.unpack_dual(dual).tangent, tangent)


def test_forward_mode_of_the_gradient_ops():
    g = torch.randn(2, 3, 4, 3, dtype=F64)
    gi = lambda g, b: roi_ext.crop_and_resize_grad_image(g, b, INDEX, (2, 5, 6, 3), "bilinear", F64)  # noqa: E731
    gb = lambda g, im, b: roi_ext.crop_and_resize_grad_boxes(g, im, b, INDEX)  # noqa: E731
    for fn, args in ((gi, (g, BOXES)), (gb, (g, IMG, BOXES))):
        tangents = tuple(torch.randn_like(a) for a in args)
        _, t = torch.func.jvp(fn, args, tangents)
        jr = torch.func.jacrev(fn, argnums=tuple(range(len(args))))(*args)
        out_dims = t.dim()
        expected = sum((j * ta).sum(dim=tuple(range(out_dims, j.dim()))) for j, ta in zip(jr, tangents))
        torch.testing.assert_close(t, expected)
        leaves = tuple(a.clone().requires_grad_() for a in args)
        assert torch.autograd.gradcheck(fn, leaves, check_forward_ad=True)


ROI_INPUT = torch.randn(2, 3, 6, 7, dtype=F64, generator=torch.Generator().manual_seed(1))
ROIS = torch.tensor([[0, 0.5, 0.7, 4.2, 3.9], [1, 1.1, 0.3, 5.5, 5.0]], dtype=F64)


@pytest.mark.parametrize("aligned", [False, True])
def test_every_derivative_mode_roi_align(aligned):
    f = lambda x: roi_ext.roi_align(x, ROIS, (2, 3), 1.0, 2, aligned)  # noqa: E731
    t = torch.randn_like(ROI_INPUT)
    out, tangent = torch.func.jvp(f, (ROI_INPUT,), (t,))
    torch.testing.assert_close(tangent, f(t), rtol=0, atol=0)  # linear in the input
    assert tangent.abs().sum() > 0
    jr = torch.func.jacrev(f)(ROI_INPUT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(torch.func.jacfwd(f)(ROI_INPUT), jr)
    torch.testing.assert_close(torch.func.grad(lambda x: f(x).sum())(ROI_INPUT), jr.sum(dim=(0, 1, 2, 3)))
    with fwAD.dual_level():
        torch.testing.assert_close(fwAD.unpack_dual(f(fwAD.make_dual(ROI_INPUT, t))).tangent, tangent)
    x = ROI_INPUT.clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(f, (x,), check_fwd_over_rev=True)
    assert torch.func.hessian(lambda x: f(x).pow(2).sum())(ROI_INPUT).abs().sum() > 0


# ---------------------------------------------------------------------------
# 4. float64 metadata tensors
# ---------------------------------------------------------------------------
def test_float64_rois_keep_their_batch_index():
    feat = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    rois = torch.tensor([[0.9999999999, 0, 0, 3, 3]], dtype=F64)
    out = roi_ext.roi_align(feat, rois, 2)
    assert not out.any()  # image 0 (truncation toward zero, SPEC A12), not image 1
    x = feat.clone().requires_grad_()
    roi_ext.roi_align(x, rois, 2).sum().backward()
    assert x.grad[0].sum() > 0 and not x.grad[1].any()
    with pytest.raises(IndexError, match="batch index"):
        roi_ext.roi_align(feat, torch.tensor([[1.9999999999999, 0, 0, 3, 3]], dtype=F64) + torch.tensor(
            [[0.0000000000002, 0, 0, 0, 0]], dtype=F64), 2)


def test_float64_boxes_with_float32_image_use_float64_positions():
    image = torch.arange(10.0).reshape(1, 10, 1, 1)
    boxes = torch.tensor([[0.5, 0, 0.5, 0]], dtype=F64)
    assert roi_ext.crop_and_resize(image, boxes, torch.tensor([0]), (1, 1)).item() == 4.5


# ---------------------------------------------------------------------------
# 5. Huge outputs from tiny inputs: extra memory within a small multiple
# ---------------------------------------------------------------------------
MEMORY_CHILD = textwrap.dedent(
    """
    import resource, torch, roi_ext
    x = torch.randn(1, 1, 8, 9)
    rois = torch.tensor([[0.0, 0, 0, 8, 7]])
    roi_ext.roi_align(x, rois, (4, 4), sampling_ratio=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = roi_ext.roi_align(x, rois, (4096, 8192), sampling_ratio=1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024 / (out.numel() * 4))
    """
)


@pytest.mark.skipif(os.environ.get("LD_PRELOAD", "").find("asan") >= 0, reason="ASan shadow memory skews RSS")
def test_roi_align_huge_output_from_tiny_input_memory():
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD], capture_output=True, text=True, timeout=300,
                          cwd=tempfile.gettempdir(), env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratio = float(proc.stdout.split()[-1])
    assert ratio < 1.5, f"peak memory grew by {ratio:.2f}x the output (was ~19x with whole-roi sample tables)"


def test_roi_align_bins_split_into_sample_chunks_are_bit_identical():
    # 300 x 300 samples in one bin (more than one sample table chunk) and many
    # bins (several chunks of bins): results equal the float64 reference of
    # the same arithmetic, i.e. the unsplit loop.
    x = torch.randn(1, 10, 8, 9, generator=torch.Generator().manual_seed(2))
    rois = torch.tensor([[0.0, 0.3, 0.2, 7.7, 6.1]])
    for xx in (x, x.to(memory_format=torch.channels_last)):
        big = roi_ext.roi_align(xx, rois, 1, sampling_ratio=300)
        # The same samples as 300 x 300 bins of one sample, averaged in the same order.
        assert torch.isfinite(big).all()
        torch.testing.assert_close(big, roi_ext.roi_align(x.double(), rois.double(), 1, sampling_ratio=300).float())
    try:
        import torchvision
    except ImportError:
        return
    for pooled, sr in (((1, 1), 300), ((3, 2), 300), ((130, 140), 2)):
        assert torch.equal(roi_ext.roi_align(x, rois, pooled, sampling_ratio=sr),
                           torchvision.ops.roi_align(x, rois, pooled, sampling_ratio=sr))
        xc = x.to(memory_format=torch.channels_last)
        assert torch.equal(roi_ext.roi_align(xc, rois, pooled, sampling_ratio=sr),
                           torchvision.ops.roi_align(xc, rois, pooled, sampling_ratio=sr))
        xg, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn(1, 10, *pooled)
        roi_ext.roi_align(xg, rois, pooled, sampling_ratio=sr).backward(g)
        torchvision.ops.roi_align(xt, rois, pooled, sampling_ratio=sr).backward(g)
        assert torch.equal(xg.grad, xt.grad)


# ---------------------------------------------------------------------------
# 7. The sanitizer build keeps UBSan's signed-overflow checks
# ---------------------------------------------------------------------------
def test_sanitizer_build_disables_wrapv():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    setup = open(os.path.join(root, "setup.py")).read()
    assert '"-fno-wrapv"' in setup

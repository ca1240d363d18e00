"""ROIAlign: against torchvision (bit for bit), the SPEC reference, MindSpore and
torchvision golden values, gradcheck, opcheck, layouts, dtypes and errors."""
import itertools

import numpy as np
import pytest
import torch

import roi_ext
from reference import roi_align_backward, roi_align_forward

try:  # the comparisons with torchvision run where it is installed
    import torchvision

    tv_roi_align = torchvision.ops.roi_align
except ImportError:  # pragma: no cover
    torchvision = None
needs_torchvision = pytest.mark.skipif(torchvision is None, reason="torchvision is not installed")

F32 = torch.float32
F64 = torch.float64


def random_rois(gen, num, batch, height, width, scale, dtype, inside=False):
    """Rois in input-image coordinates (feature size / scale), many partly or wholly outside."""
    img_h, img_w = height / scale, width / scale
    lo, hi = (0.0, 1.0) if inside else (-0.4, 1.3)
    x1 = (torch.rand(num, generator=gen, dtype=F64) * (hi - lo) + lo) * img_w
    y1 = (torch.rand(num, generator=gen, dtype=F64) * (hi - lo) + lo) * img_h
    w = torch.rand(num, generator=gen, dtype=F64) * 0.8 * img_w
    h = torch.rand(num, generator=gen, dtype=F64) * 0.8 * img_h
    b = torch.randint(0, batch, (num,), generator=gen).to(F64)
    return torch.stack([b, x1, y1, x1 + w, y1 + h], dim=1).to(dtype)


def rois_to_list(rois, batch):
    return [rois[rois[:, 0] == i, 1:] for i in range(batch)]


# ---------------------------------------------------------------------------
# torchvision: forward and backward, bit for bit (SPEC Part A2)
# ---------------------------------------------------------------------------
@needs_torchvision
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25, 1 / 16])
def test_matches_torchvision(dtype, aligned, sampling_ratio, spatial_scale):
    gen = torch.Generator().manual_seed(hash((str(dtype), aligned, sampling_ratio, spatial_scale)) % 2**31)
    N, C, H, W = 3, 4, 11, 14
    x = torch.randn(N, C, H, W, generator=gen, dtype=dtype)
    rois = random_rois(gen, 25, N, H, W, spatial_scale, dtype)
    out_size = (3, 4)
    for boxes in (rois, rois_to_list(rois, N)):
        ours = roi_ext.roi_align(x, boxes, out_size, spatial_scale, sampling_ratio, aligned)
        ref = tv_roi_align(x, boxes, out_size, spatial_scale, sampling_ratio, aligned)
        assert ours.dtype == dtype and ours.shape == ref.shape
        assert torch.equal(ours, ref)

    xg = x.clone().requires_grad_()
    xt = x.clone().requires_grad_()
    g = torch.randn(rois.shape[0], C, *out_size, generator=gen, dtype=dtype)
    roi_ext.roi_align(xg, rois, out_size, spatial_scale, sampling_ratio, aligned).backward(g)
    tv_roi_align(xt, rois, out_size, spatial_scale, sampling_ratio, aligned).backward(g)
    assert torch.equal(xg.grad, xt.grad)


@needs_torchvision
def test_matches_torchvision_inverted_legacy_rois():
    # aligned=False clamps inverted / tiny rois to 1x1 (legacy torchvision behaviour).
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 9, 9, generator=gen)
    rois = random_rois(gen, 30, 2, 9, 9, 1.0, F32)
    rois[:, [3, 4]] = rois[:, [1, 2]] - torch.rand(30, 2, generator=gen) * 3
    for sr in (-1, 2):
        assert torch.equal(roi_ext.roi_align(x, rois, 2, 1.0, sr), tv_roi_align(x, rois, 2, 1.0, sr))


@needs_torchvision
def test_default_arguments_match_torchvision():
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0, 1.0, 1.5, 6.0, 7.0]])
    assert torch.equal(roi_ext.roi_align(x, rois, 5), tv_roi_align(x, rois, 5))


# ---------------------------------------------------------------------------
# The SPEC reference, every convention (incl. roi_end_mode=1, no torchvision peer)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,T", [(F32, np.float32), (F64, np.float64)])
@pytest.mark.parametrize("aligned,roi_end_mode", [(False, 0), (True, 0), (False, 1), (True, 1)])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_matches_spec_reference(dtype, T, aligned, roi_end_mode, sampling_ratio):
    gen = torch.Generator().manual_seed(11 + 2 * roi_end_mode + aligned)
    N, C, H, W = 2, 2, 7, 9
    x = torch.randn(N, C, H, W, generator=gen, dtype=dtype)
    rois = random_rois(gen, 6, N, H, W, 0.5, dtype)
    rois[0, 3:] = rois[0, 1:3] - 1.5  # inverted roi: empty grid when aligned / mode 1
    ours = roi_ext.roi_align(x, rois, (2, 3), 0.5, sampling_ratio, aligned, roi_end_mode)
    ref = roi_align_forward(x.numpy(), rois.numpy(), (2, 3), 0.5, sampling_ratio, aligned, roi_end_mode, T)
    np.testing.assert_array_equal(ours.numpy(), ref)

    g = torch.randn(ours.shape, generator=gen, dtype=dtype)
    xg = x.clone().requires_grad_()
    roi_ext.roi_align(xg, rois, (2, 3), 0.5, sampling_ratio, aligned, roi_end_mode).backward(g)
    ref_g = roi_align_backward(g.numpy(), rois.numpy(), x.shape, 0.5, sampling_ratio, aligned, roi_end_mode, T)
    np.testing.assert_array_equal(xg.grad.numpy(), ref_g)


# ---------------------------------------------------------------------------
# Golden values (SPEC §7)
# ---------------------------------------------------------------------------
F_DOC = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
ROI_DOC = torch.tensor([[0, 0.2, 0.3, 0.2, 0.3]])
X16 = torch.arange(16.0).reshape(1, 1, 4, 4)
R16 = torch.tensor([[0, 0, 0, 3, 3.0], [0, 1, 1, 2, 2]])


def f32(values):
    return torch.tensor(values, dtype=F32)


def test_golden_g1_mindspore_mode1():
    out = roi_ext.ROIAlign(2, 2, 0.5, 2)(F_DOC, ROI_DOC)
    assert torch.equal(out[0, 0], f32([[1.7749998569, 2.0250000954], [2.2750000954, 2.5250000954]]))


def test_golden_g2_mindspore_mode0_equals_torchvision():
    expected = f32([[1.7000000477, 2.0333333015, 2.3666667938],
                    [2.3666667938, 2.7000000477, 3.0333335400],
                    [3.0333333015, 3.3666667938, 3.7000000477]])
    out = roi_ext.ROIAlign(3, 3, 0.25, 2, roi_end_mode=0)(F_DOC, ROI_DOC)
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(roi_ext.roi_align(F_DOC, ROI_DOC, (3, 3), 0.25, 2, False)[0, 0], expected)


def test_golden_g3_to_g7_and_g23_torchvision():
    out = roi_ext.roi_align(X16, R16, 2, 1.0, -1, aligned=False)
    assert torch.equal(out[:, 0], f32([[[3.75, 5.25], [9.75, 11.25]], [[6.25, 6.75], [8.25, 8.75]]]))
    g4 = f32([[[1.5625, 3.0], [7.3125, 8.75]], [[3.75, 4.25], [5.75, 6.25]]])
    assert torch.equal(roi_ext.roi_align(X16, R16, 2, 1.0, -1, aligned=True)[:, 0], g4)
    assert torch.equal(roi_ext.roi_align(X16, R16, 2, 1.0, 2, aligned=True)[:, 0], g4)
    assert torch.equal(roi_ext.roi_align(X16, torch.tensor([[0, -3, 1, -2.5, 1.5]]), (1, 2), 1.0, 2), torch.zeros(1, 1, 1, 2))
    x = X16.clone().requires_grad_()
    roi_ext.roi_align(x, R16, 2, 1.0, -1, False).sum().backward()
    r0 = [0.09765625, 0.21484375, 0.21484375, 0.09765625]
    r1 = [0.21484375, 1.47265625, 1.47265625, 0.21484375]
    assert torch.equal(x.grad[0, 0], f32([r0, r1, r1, r0]))
    g23 = roi_ext.roi_align(X16, torch.tensor([[0, 0.2, 0.4, 2.9, 3.7]]), (2, 2), 1.0, 0)
    assert torch.equal(g23[0, 0], f32([[5.7749996185, 7.125], [11.7999992371, 13.1499996185]]))


def test_golden_g8_mindspore_adaptive_mode1():
    out = roi_ext.ROIAlign(2, 2, 1.0, sample_num=0, roi_end_mode=1)(X16, torch.tensor([[0, 1.0, 1, 2, 2]]))
    assert torch.equal(out[0, 0], f32([[7.5, 8.5], [11.5, 12.5]]))


def test_g9_small_roi_adaptive_is_zero_not_nan():
    # MindSpore's floor rule gives NaN here (G9); roi_ext uses torchvision's ceil rule (Part A11).
    out = roi_ext.ROIAlign(4, 4, 1.0, sample_num=0, roi_end_mode=0)(X16, torch.tensor([[0, 1.0, 1, 2, 2]]))
    assert torch.isfinite(out).all()
    assert torch.equal(out, roi_ext.roi_align(X16, torch.tensor([[0, 1.0, 1, 2, 2]]), 4, 1.0, 0))


def test_golden_g24_mindspore_grad_mode1():
    x = torch.zeros(1, 1, 2, 2, requires_grad=True)
    roi_ext.ROIAlign(2, 2, 0.5, 2)(x, ROI_DOC).backward(torch.ones(1, 1, 2, 2))
    assert torch.equal(x.grad[0, 0], f32([[1.5600000620, 0.8400000334], [1.0399998426, 0.5599999428]]))


def test_g25_mode0_gradient_is_the_true_adjoint():
    # MindSpore's grad hard-codes mode 1 (G25 first value); roi_ext's is the adjoint of mode 0.
    x = torch.zeros(1, 1, 2, 2, requires_grad=True)
    roi_ext.ROIAlign(3, 3, 0.25, 2, roi_end_mode=0)(x, ROI_DOC).backward(torch.ones(1, 1, 3, 3))
    assert torch.equal(x.grad[0, 0], f32([[1.7212498188, 2.1037499905], [2.3287501335, 2.8462500572]]))


def test_golden_g26_second_roi_and_no_skip_rule():
    out = roi_ext.ROIAlign(2, 2, 1.0, 2, 1)(X16, torch.tensor([[0, 0.0, 0.0, 0.5, 3.0]]))
    assert torch.equal(out[0, 0], f32([[4.375, 5.125], [11.375, 12.125]]))
    # x1 == x2 == 0: MindSpore skips the roi and leaves garbage; roi_ext computes it (Part A12).
    out = roi_ext.ROIAlign(2, 2, 1.0, 2, 1)(X16, torch.tensor([[0, 0.0, 0.0, 0.0, 3.0]]))
    assert torch.isfinite(out).all()
    ref = roi_align_forward(X16.numpy(), [[0, 0.0, 0.0, 0.0, 3.0]], (2, 2), 1.0, 2, False, 1, np.float32)
    np.testing.assert_array_equal(out.numpy(), ref)


# ---------------------------------------------------------------------------
# Autograd: gradcheck / gradgradcheck in float64 for every mode
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("aligned,roi_end_mode", [(False, 0), (True, 0), (False, 1), (True, 1)])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcheck(aligned, roi_end_mode, sampling_ratio, channels_last):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 6, 7, generator=gen, dtype=F64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    rois = random_rois(gen, 5, 2, 6, 7, 0.5, F64)

    def fn(inp):
        return roi_ext.roi_align(inp, rois, (2, 3), 0.5, sampling_ratio, aligned, roi_end_mode)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_rois_get_no_gradient():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 0.5, 3.0, 4.0]], requires_grad=True)
    roi_ext.roi_align(x, rois, 2).sum().backward()
    assert rois.grad is None and x.grad is not None


# ---------------------------------------------------------------------------
# opcheck: schema, fake kernels, autograd registration, AOT dispatch
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(dtype, channels_last):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 8, 9, generator=gen).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    rois = random_rois(gen, 4, 2, 8, 9, 1.0, dtype)
    for aligned, mode, sr in [(False, 0, -1), (True, 0, 2), (False, 1, 0)]:
        torch.library.opcheck(
            torch.ops.roi_ext.roi_align.default, (x.requires_grad_(dtype != torch.bfloat16), rois, 1.0, 3, 2, sr, aligned, mode)
        )
        grad = torch.randn(4, 3, 3, 2, generator=gen).to(dtype)
        if channels_last:
            grad = grad.to(memory_format=torch.channels_last)
        torch.library.opcheck(
            torch.ops.roi_ext._roi_align_backward.default, (grad, rois, 1.0, 3, 2, 2, 3, 8, 9, sr, aligned, mode)
        )


# ---------------------------------------------------------------------------
# Layouts, dtypes, threads
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64, torch.float16, torch.bfloat16])
def test_channels_last_equals_contiguous(dtype):
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 5, 10, 12, generator=gen).to(dtype)
    rois = random_rois(gen, 17, 2, 10, 12, 0.5, F32)
    xc = x.to(memory_format=torch.channels_last)
    out = roi_ext.roi_align(x, rois, (3, 3), 0.5, 2, True)
    out_cl = roi_ext.roi_align(xc, rois, (3, 3), 0.5, 2, True)
    assert out_cl.is_contiguous(memory_format=torch.channels_last) and not out_cl.is_contiguous()
    assert out.is_contiguous()
    assert torch.equal(out, out_cl)

    g = torch.randn(out.shape, generator=gen).to(dtype)
    a = x.clone().requires_grad_()
    b = xc.clone().requires_grad_()
    roi_ext.roi_align(a, rois, (3, 3), 0.5, 2, True).backward(g)
    roi_ext.roi_align(b, rois, (3, 3), 0.5, 2, True).backward(g.contiguous(memory_format=torch.channels_last))
    assert b.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a.grad, b.grad)


@needs_torchvision
def test_non_contiguous_input_and_grad():
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(2, 6, 9, 20, generator=gen)
    x = base[:, ::2, :, ::2]  # neither contiguous nor channels_last
    rois = random_rois(gen, 8, 2, 9, 10, 1.0, F32)
    assert torch.equal(roi_ext.roi_align(x, rois, 2, 1.0, 2), tv_roi_align(x.contiguous(), rois, 2, 1.0, 2))
    a = x.clone().requires_grad_()
    out = roi_ext.roi_align(a, rois, 2, 1.0, 2)
    g = torch.randn(out.shape[0], out.shape[1], 4, 4, generator=gen)[:, :, ::2, ::2]
    out.backward(g)
    t = x.clone().requires_grad_()
    tv_roi_align(t, rois, 2, 1.0, 2).backward(g)
    assert torch.equal(a.grad, t.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_compute_in_float32(dtype):
    """Part A3: half inputs are computed in float32 and rounded once, so they equal
    the float32 kernel on the same (exactly converted) values, and stay close to
    the float32 result on the unrounded inputs."""
    gen = torch.Generator().manual_seed(4)
    x32 = torch.randn(2, 4, 9, 11, generator=gen)
    rois = random_rois(gen, 12, 2, 9, 11, 1.0, F32).to(dtype)
    x = x32.to(dtype)
    out = roi_ext.roi_align(x, rois, 3, 1.0, 2, True)
    assert out.dtype == dtype
    exact = roi_ext.roi_align(x.float(), rois.float(), 3, 1.0, 2, True).to(dtype)
    assert torch.equal(out, exact)
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    torch.testing.assert_close(out.float(), roi_ext.roi_align(x32, rois.float(), 3, 1.0, 2, True), atol=tol, rtol=tol)

    a = x.clone().requires_grad_()
    roi_ext.roi_align(a, rois, 3, 1.0, 2, True).backward(torch.ones_like(out))
    b = x.float().requires_grad_()
    roi_ext.roi_align(b, rois.float(), 3, 1.0, 2, True).backward(torch.ones(out.shape))
    assert a.grad.dtype == dtype
    assert torch.equal(a.grad, b.grad.to(dtype))


@needs_torchvision
def test_deterministic_at_any_thread_count():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 8, 16, 16, generator=gen)
    # Many heavily overlapping rois: every gradient element receives many contributions.
    rois = random_rois(gen, 300, 2, 16, 16, 1.0, F32, inside=True)
    g = torch.randn(300, 8, 4, 4, generator=gen)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            for fmt in (torch.contiguous_format, torch.channels_last):
                a = x.clone(memory_format=fmt).requires_grad_()
                out = roi_ext.roi_align(a, rois, 4, 1.0, -1, True)
                out.backward(g)
                results.append((out.contiguous(), a.grad.contiguous()))
    finally:
        torch.set_num_threads(before)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0])
        assert torch.equal(grad, results[0][1])
    t = x.clone().requires_grad_()
    tv_roi_align(t, rois, 4, 1.0, -1, True).backward(g)
    assert torch.equal(results[0][1], t.grad)


# ---------------------------------------------------------------------------
# Edge cases: non-finite rois, empty inputs
# ---------------------------------------------------------------------------
def test_non_finite_rois_give_zero_not_ub():
    x = torch.randn(1, 2, 6, 6)
    nan, inf = float("nan"), float("inf")
    rois = torch.tensor([[0, nan, 1, 2, 3], [0, 1, 1, inf, 3], [0, -inf, -inf, inf, inf], [0, 1, nan, 2, nan],
                         [0, 1e30, 1e30, 2e30, 2e30], [0, -1e30, 0, 1e30, 4]])
    for sr, aligned, mode in itertools.product((-1, 0, 2), (False, True), (0, 1)):
        xg = x.clone().requires_grad_()
        # Huge finite rois with adaptive sampling are refused (test below).
        r = rois if sr > 0 else rois[:4]
        out = roi_ext.roi_align(xg, r, 3, 1.0, sr, aligned, mode)
        assert out.shape == (r.shape[0], 2, 3, 3)
        assert torch.isfinite(out).all()
        out.sum().backward()
        assert torch.isfinite(xg.grad).all()
    # NaN coordinates: no sample is valid.
    assert torch.equal(roi_ext.roi_align(x, rois[:1], 3, 1.0, 2), torch.zeros(1, 2, 3, 3))


def test_huge_adaptive_roi_is_refused_not_hung():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_ext.roi_align(x, torch.tensor([[0, 0, 0, 1e9, 1e9]]), 7, 1.0, -1)


def test_empty_shapes():
    x = torch.randn(2, 3, 5, 5)
    assert roi_ext.roi_align(x, torch.zeros(0, 5), 2).shape == (0, 3, 2, 2)
    assert roi_ext.roi_align(x, [torch.zeros(0, 4), torch.zeros(0, 4)], 2).shape == (0, 3, 2, 2)
    assert roi_ext.roi_align(x, torch.tensor([[1, 0, 0, 2, 2.0]]), 0).shape == (1, 3, 0, 0)
    assert roi_ext.roi_align(torch.randn(2, 0, 5, 5), torch.tensor([[1, 0, 0, 2, 2.0]]), 2).shape == (1, 0, 2, 2)
    z = roi_ext.roi_align(torch.randn(1, 2, 0, 5), torch.tensor([[0, 0, 0, 2, 2.0]]), 2)
    assert torch.equal(z, torch.zeros(1, 2, 2, 2))
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    roi_ext.roi_align(x, torch.zeros(0, 5), 2).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_batch_index_truncation_and_validation():
    x = torch.randn(2, 1, 4, 4)
    a = roi_ext.roi_align(x, torch.tensor([[1.99, 0, 0, 3, 3]]), 2)
    b = roi_ext.roi_align(x, torch.tensor([[1.0, 0, 0, 3, 3]]), 2)
    assert torch.equal(a, b)
    for bad in (-1.0, -0.5, 2.0, 5.0, float("nan"), float("inf")):
        with pytest.raises(IndexError, match=r"rois\[0, 0\] \(batch index\)"):
            roi_ext.roi_align(x, torch.tensor([[bad, 0, 0, 3, 3]]), 2)
        with pytest.raises(RuntimeError, match="^IndexError: .*batch index"):  # the op called directly
            torch.ops.roi_ext._roi_align_backward(
                torch.ones(1, 1, 2, 2), torch.tensor([[bad, 0, 0, 3, 3]]), 1.0, 2, 2, 2, 1, 4, 4, -1, False, 0)


# ---------------------------------------------------------------------------
# Errors name the bad argument
# ---------------------------------------------------------------------------
X = torch.randn(1, 2, 5, 5)
R = torch.tensor([[0, 0, 0, 3, 3.0]])


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: roi_ext.roi_align(X[0], R, 2), ValueError, "input must be a 4-D"),
        (lambda: roi_ext.roi_align(X.long(), R, 2), TypeError, "input must be float16"),
        (lambda: roi_ext.roi_align(X.to(torch.complex64), R, 2), TypeError, "input must be float16"),
        (lambda: roi_ext.roi_align(X.numpy(), R, 2), TypeError, "input must be a Tensor"),
        (lambda: roi_ext.roi_align(X, R[:, :4], 2), ValueError, "boxes must be a Tensor"),
        (lambda: roi_ext.roi_align(X, R[0], 2), ValueError, "boxes must be a Tensor"),
        (lambda: roi_ext.roi_align(X, [R], 2), ValueError, r"boxes\[0\] must be a Tensor\[L, 4\]"),
        (lambda: roi_ext.roi_align(X, R.numpy(), 2), TypeError, "boxes must be a Tensor"),
        (lambda: roi_ext.roi_align(X, R.long(), 2), TypeError, "rois must be a floating-point"),
        (lambda: roi_ext.roi_align(X, R, -1), ValueError, "output_size must be non-negative"),
        (lambda: roi_ext.roi_align(X, R, (2, 2, 2)), ValueError, "output_size"),
        (lambda: roi_ext.roi_align(X, R, 2.5), TypeError, "output_size"),
        (lambda: roi_ext.roi_align(X, R, 2, spatial_scale="a"), TypeError, "spatial_scale"),
        (lambda: roi_ext.roi_align(X, R, 2, spatial_scale=float("nan")), ValueError, "spatial_scale"),
        (lambda: roi_ext.roi_align(X, R, 2, sampling_ratio=1.5), TypeError, "sampling_ratio"),
        (lambda: roi_ext.roi_align(X, R, 2, roi_end_mode=2), ValueError, "roi_end_mode"),
        (lambda: roi_ext.ROIAlign(2, 2, 1.0, roi_end_mode=3), ValueError, "roi_end_mode"),
        (lambda: roi_ext.ROIAlign(0, 2, 1.0), ValueError, "pooled_height"),
        # The op called directly raises RuntimeError (stable ABI), tagged with the
        # type the front-ends re-raise it as.
        (lambda: torch.ops.roi_ext._roi_align_backward(torch.ones(1, 2, 2, 2), R, 1.0, 2, 2, 1, 3, 5, 5, -1, False, 0),
         RuntimeError, "^ValueError: .*grad must have shape"),
        (lambda: torch.ops.roi_ext._roi_align_backward(torch.ones(1, 2, 2, 2), R, 1.0, 2, 2, 1, 2, -5, 5, -1, False, 0),
         RuntimeError, "^ValueError: .*non-negative"),
        (lambda: torch.ops.roi_ext._roi_align_backward(torch.ones(1, 2, 2, 2).long(), R, 1.0, 2, 2, 1, 2, 5, 5, -1, False, 0),
         RuntimeError, "^TypeError: .*grad must be float16"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@needs_torchvision
def test_module_reprs_and_forward():
    m = roi_ext.RoIAlign((7, 7), 0.25, 2)
    assert repr(m) == "RoIAlign(output_size=(7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=False)"
    assert repr(roi_ext.RoIAlign(7, spatial_scale=1 / 16, sampling_ratio=-1, aligned=True)) == (
        "RoIAlign(output_size=7, spatial_scale=0.0625, sampling_ratio=-1, aligned=True)")
    assert repr(roi_ext.RoIAlign([5, 3], 0.5, 0)) == (
        "RoIAlign(output_size=[5, 3], spatial_scale=0.5, sampling_ratio=0, aligned=False)")
    assert repr(roi_ext.ROIAlign(2, 2, 0.5)) == (
        "ROIAlign(pooled_height=2, pooled_width=2, spatial_scale=0.5, sample_num=2, roi_end_mode=1)")
    x = torch.randn(2, 3, 12, 12)
    rois = torch.tensor([[1, 2.0, 3.0, 20.0, 30.0]])
    tv = torchvision.ops.RoIAlign((7, 7), 0.25, 2, aligned=True)
    assert torch.equal(roi_ext.RoIAlign((7, 7), 0.25, 2, aligned=True)(x, rois), tv(x, rois))


# ---------------------------------------------------------------------------
# MindSpore 2.10 golden data (tests/data/generate_mindspore.py): ROIAlign and its
# gradient. MindSpore's grad kernel hard-codes roi_end_mode=1, so gradients are
# compared for mode 1 only (Part A13). Cases avoid MindSpore's quirks that roi_ext
# does not reproduce (floor-adaptive sampling, the x≈0 skip rule).
# ---------------------------------------------------------------------------
def _mindspore_cases(op):
    import json
    import pathlib

    data = pathlib.Path(__file__).parent / "data"
    meta = json.loads((data / "mindspore_golden.json").read_text())
    arrays = np.load(data / "mindspore_golden.npz")
    return [(c, {k.split("__", 1)[1]: arrays[k] for k in arrays.files if k.startswith(c["case"] + "__")})
            for c in meta["cases"] if c["op"] == op]


@pytest.mark.parametrize("case,arrays", _mindspore_cases("roi_align"), ids=lambda v: v["case"] if "case" in v else "")
def test_mindspore_golden_forward(case, arrays):
    module = roi_ext.ROIAlign(case["pooled_height"], case["pooled_width"], case["spatial_scale"], case["sample_num"],
                              case["roi_end_mode"])
    out = module(torch.from_numpy(arrays["features"]), torch.from_numpy(arrays["rois"]))
    np.testing.assert_array_equal(out.numpy(), arrays["output"])


@pytest.mark.parametrize("case,arrays", _mindspore_cases("roi_align_grad"),
                         ids=lambda v: v["case"] if "case" in v else "")
def test_mindspore_golden_gradient(case, arrays):
    assert case["roi_end_mode"] == 1
    features = torch.from_numpy(arrays["features"]).requires_grad_()
    module = roi_ext.ROIAlign(case["pooled_height"], case["pooled_width"], case["spatial_scale"], case["sample_num"], 1)
    module(features, torch.from_numpy(arrays["rois"])).backward(torch.from_numpy(arrays["dy"]))
    np.testing.assert_array_equal(features.grad.numpy(), arrays["output"])


@pytest.mark.parametrize("channels_last", [False, True])
def test_bfloat16_rounding_ties_and_nan(channels_last):
    """bfloat16 outputs are rounded once, to nearest even, NaN kept (the vectorised
    path must match c10::BFloat16 exactly): columns cycle through 1, 1 + 2^-7 and
    1 + 2^-6, so bins that average two neighbours land exactly halfway between two
    bfloat16 values; half of these ties round down (to 1) and half up (to 1 + 2^-6),
    which truncation would get wrong."""
    w = 12
    row = torch.tensor([1.0, 1.0 + 2 ** -7, 1.0 + 2 ** -6] * (w // 3))
    x = row.expand(1, 19, 8, w).clone()  # 19 channels: two vectors of 8 and a scalar tail
    x[0, 3, 1, 5] = float("nan")
    x = x.to(torch.bfloat16)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    # 4-pixel-wide rois, 4 output columns, one sample per bin: samples at x = k + 0.5.
    rois = torch.tensor([[0, 0.0, 0.0, 4.0, 3.0], [0, 2.0, 1.0, 6.0, 5.0], [0, 3.0, 0.0, 7.0, 7.0]])
    args = ((3, 4), 1.0, 1, False)
    exact = roi_ext.roi_align(x.float(), rois, *args)
    assert (exact == 1 + 2 ** -8).sum() > 50 and (exact == 1 + 3 * 2 ** -8).sum() > 50  # real ties
    out = roi_ext.roi_align(x, rois, *args)
    torch.testing.assert_close(out, exact.to(torch.bfloat16), rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(out.float()).any() and (out.float() == 1 + 2 ** -6).any()
    g = torch.randn(out.shape).to(torch.bfloat16)
    a = x.clone().requires_grad_()
    roi_ext.roi_align(a, rois, *args).backward(g)
    b = x.float().requires_grad_()
    roi_ext.roi_align(b, rois, *args).backward(g.float())
    assert torch.equal(a.grad, b.grad.to(torch.bfloat16))

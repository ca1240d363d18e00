"""Precise RoI Pooling (roi_ext.prroi_pool): the float64 references of prroi_reference.py
(closed form per pixel cell, Gauss-Legendre on the pieces between integer knots, scipy's
nquad, closed-form and finite-difference gradients) against each other and against the
kernels; golden values of the released implementations; gradcheck; layouts, dtypes,
degenerate rois, determinism, errors and the PyTorch ecosystem (compile, export,
TorchScript, opcheck, autocast, ONNX refusal).

Upstream sources compared (they all share the convention of prroi_reference.py: no
half-pixel offset, roi_w = max(x2 * s - x1 * s, 0), bin end = bin start + bin size, pixel
centres at integer coordinates, zero outside the map, a zero-area bin pools 0, the batch
index truncated with int()):

* vacancy/PreciseRoIPooling (the paper's released code):
  - pytorch/tests/test_prroi_pooling2d.py::test_forward (PrRoIPool2D(7, 7, 0.5) ==
    F.avg_pool2d(features, 2, stride=1) windows): test_golden_vacancy_avg_pool.
  - tensorflow/tests/test_binaries/2_2_0.5/{features,rois,real_outputs,gradients0,gradients1}.npy
    (outputs and gradients "from pytorch prroi_pool module", i.e. the released CUDA kernels,
    float32; loaded by tensorflow/tests/precise_roi_pooling_ops_test.py::test_backward):
    test_golden_vacancy_binaries. Only the 2 x 2 x 3 x 3 x 2 pixels that these rois can reach
    are reproduced here; the released input gradient is exactly zero everywhere else.
  - src/prroi_pooling_gpu_impl.cu (PrRoIPoolingForward / PrRoIPoolingCoorBackward): the same
    closed forms as prroi_reference.forward / backward_rois.
* open-mmlab/mmcv tests/test_ops/test_prroi_pool.py (inputs, outputs, input gradients and
  rois gradients, pool 2 x 2, spatial_scale 1, float32, rtol 1e-3 there): test_golden_mmcv.
* PaddlePaddle/Paddle python/paddle/fluid/tests/unittests/py_precise_roi_pool.py (PyPrRoIPool,
  the Python reference of test_prroi_pool_op.py): the same per-cell closed form as
  prroi_reference.forward (PrRoIPoolingMatCalculation over the cells floor(start)..ceil(end),
  zero outside, win_size == 0 -> 0, int(roi[0])); test_paddle_op_test_configuration runs that
  test's configuration (3 images with 1, 2, 3 rois as LoD / per-image lists, 12 channels, 6 x 4
  map, spatial_scale 1/4, 2 x 2) against the references.
All of these agree with the definition to float32 rounding (see the tests).
"""
import math
import time

import numpy as np
import pytest
import torch

import prroi_reference as R
import roi_ext

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
OPS = torch.ops.roi_ext


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def random_rois(gen, num, batch, height, width, scale, kind="partly_outside", dtype=F64):
    """Rois in image coordinates (feature coordinates / scale) of one kind:
    inside, partly_outside (many partly or wholly outside the map), subpixel (bins of
    0.05-1 pixel), tiny (bins of 1e-4-1e-2 pixel), large (bins larger than the map)."""
    def u(lo, hi):
        return torch.rand(num, generator=gen, dtype=F64) * (hi - lo) + lo

    if kind == "inside":
        x1, y1 = u(0, width - 1), u(0, height - 1)
        x2, y2 = x1 + u(0.2, 1) * (width - 1 - x1), y1 + u(0.2, 1) * (height - 1 - y1)
    elif kind == "partly_outside":
        x1, y1 = u(-0.4, 1.3) * width, u(-0.4, 1.3) * height
        x2, y2 = x1 + u(0, 0.8) * width, y1 + u(0, 0.8) * height
    elif kind == "subpixel":
        x1, y1 = u(-1, width), u(-1, height)
        x2, y2 = x1 + u(0.05, 1) * 3, y1 + u(0.05, 1) * 3
    elif kind == "tiny":  # not smaller: the rounding of the bin edges (ulp(x) / width) would show at 1e-9
        x1, y1 = u(-1, width), u(-1, height)
        x2, y2 = x1 + 10 ** u(-3.5, -2), y1 + 10 ** u(-3.5, -2)
    elif kind == "large":
        x1, y1 = u(-3, 0) * width - 1, u(-3, 0) * height - 1
        x2, y2 = u(1, 4) * width + 1, u(1, 4) * height + 1
    else:
        raise ValueError(kind)
    b = torch.randint(0, batch, (num,), generator=gen).to(F64)
    return (torch.stack([b, x1 / scale, y1 / scale, x2 / scale, y2 / scale], dim=1)).to(dtype)


def jitter(rois, scale, pooled, margin=1e-3):
    """Moves every roi so that no bin edge is within `margin` pixels of an integer knot
    (finite differences then see a smooth function on both sides)."""
    rois = rois.clone().to(F64)
    ph, pw = pooled
    for k in range(rois.shape[0]):
        for _ in range(200):
            sx, sy, ex, ey = (rois[k, 1:] * scale).tolist()
            xs = [sx + (ex - sx) * i / pw for i in range(pw + 1)]
            ys = [sy + (ey - sy) * i / ph for i in range(ph + 1)]
            if all(abs(t - round(t)) > margin for t in xs + ys):
                break
            rois[k, 1:] += torch.tensor([0.0123, 0.0171, 0.0137, 0.0093], dtype=F64) / scale
    return rois


def rois_to_list(rois, batch):
    return [rois[rois[:, 0].long() == i, 1:] for i in range(batch)]


def np64(t):
    return t.detach().to(F64).cpu().numpy()


def case(seed, kind=None):
    """A random float64 problem: (x, rois, output_size, spatial_scale)."""
    gen = torch.Generator().manual_seed(seed)
    kinds = ["inside", "partly_outside", "subpixel", "tiny", "large"]
    kind = kind or kinds[seed % len(kinds)]
    N = 1 + seed % 2
    C = 1 + seed % 3
    H = int(torch.randint(1, 10, (1,), generator=gen))
    W = int(torch.randint(1, 10, (1,), generator=gen))
    ph = int(torch.randint(1, 5, (1,), generator=gen))
    pw = int(torch.randint(1, 5, (1,), generator=gen))
    scale = [1.0, 0.5, 0.25, 1 / 16, 1.7][seed % 5 if seed % 7 else 0]
    x = torch.randn(N, C, H, W, generator=gen, dtype=F64)
    rois = random_rois(gen, 5, N, H, W, scale, kind)
    return x, rois, (ph, pw), scale


# ---------------------------------------------------------------------------
# The references against each other (no kernel involved)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(60))
def test_reference_closed_form_matches_numerical_integration(seed):
    x, rois, size, scale = case(seed)
    a = R.forward(x.numpy(), rois.numpy(), size, scale)
    b = R.forward_numerical(x.numpy(), rois.numpy(), size, scale)
    sep = R.forward_separable(x.numpy(), rois.numpy(), size, scale)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sep, b, rtol=1e-12, atol=1e-12)
    assert np.abs(a).max() > 0 or not np.any(np.abs(b) > 0)


@pytest.mark.parametrize("seed", range(0, 60, 6))
def test_reference_matches_scipy_nquad(seed):
    pytest.importorskip("scipy")
    x, rois, size, scale = case(seed)
    a = R.forward(x.numpy(), rois.numpy(), size, scale)
    q = R.forward_dblquad(x.numpy(), rois.numpy(), size, scale)
    np.testing.assert_allclose(a, q, rtol=1e-10, atol=1e-11)


def test_reference_pointwise_formula():
    """bilinear_point is the plain interpolation: the pixel at integer points, the mean of
    the four around a cell centre, zero at and beyond one pixel outside."""
    v = np.arange(12, dtype=np.float64).reshape(1, 3, 4)
    assert R.bilinear_point(v, np.array(2.0), np.array(1.0))[0] == v[0, 1, 2]
    assert R.bilinear_point(v, np.array(1.5), np.array(0.5))[0] == v[0, :2, 1:3].mean()
    assert R.bilinear_point(v, np.array(-0.5), np.array(0.0))[0] == 0.5 * v[0, 0, 0]
    assert R.bilinear_point(v, np.array(-1.0), np.array(1.0))[0] == 0
    assert R.bilinear_point(v, np.array(4.0), np.array(1.0))[0] == 0


@pytest.mark.parametrize("seed", range(8))
def test_reference_input_gradient_is_the_transpose(seed):
    """<forward(x), g> == <x, backward_input(g)> (the forward is linear in x)."""
    x, rois, size, scale = case(seed)
    g = np.random.default_rng(seed).standard_normal((rois.shape[0], x.shape[1]) + size)
    lhs = (R.forward(x.numpy(), rois.numpy(), size, scale) * g).sum()
    rhs = (x.numpy() * R.backward_input(g, rois.numpy(), x.shape, scale)).sum()
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("seed", range(8))
def test_reference_rois_gradient_matches_finite_differences(seed):
    x, rois, size, scale = case(seed, kind=["inside", "partly_outside", "large"][seed % 3])
    rois = jitter(rois, scale, size)
    g = np.random.default_rng(seed).standard_normal((rois.shape[0], x.shape[1]) + size)
    closed = R.backward_rois(g, x.numpy(), rois.numpy(), scale)
    fd = R.backward_rois_fd(g, x.numpy(), rois.numpy(), scale, h=1e-6 / scale)
    assert np.all(closed[:, 0] == 0)
    np.testing.assert_allclose(closed, fd, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# roi_ext against the references (float64): the done criterion, 1e-9
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("seed", range(60))
def test_forward_float64_matches_reference(seed, channels_last):
    x, rois, size, scale = case(seed)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = roi_ext.prroi_pool(x, rois, size, scale)
    assert out.dtype == F64 and out.shape == (rois.shape[0], x.shape[1]) + size
    ref = R.forward(x.numpy(), rois.numpy(), size, scale)
    num = R.forward_numerical(x.numpy(), rois.numpy(), size, scale)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out.numpy(), num, rtol=1e-9, atol=1e-9)  # "matches numerical integration to 1e-9"


@pytest.mark.parametrize("seed", range(0, 60, 4))
def test_gradients_float64_match_reference(seed):
    x, rois, size, scale = case(seed, kind=["inside", "partly_outside", "subpixel", "large"][seed % 4])
    rois = jitter(rois, scale, size)
    g = torch.randn((rois.shape[0], x.shape[1]) + size, generator=torch.Generator().manual_seed(seed), dtype=F64)
    xg, rg = x.clone().requires_grad_(), rois.clone().requires_grad_()
    roi_ext.prroi_pool(xg, rg, size, scale).backward(g)
    gx = R.backward_input(g.numpy(), rois.numpy(), x.shape, scale)
    gr = R.backward_rois(g.numpy(), x.numpy(), rois.numpy(), scale)
    np.testing.assert_allclose(xg.grad.numpy(), gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(rg.grad.numpy(), gr, rtol=1e-8, atol=1e-8)
    assert torch.all(rg.grad[:, 0] == 0)


def test_rois_gradient_matches_finite_differences_of_the_kernel():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=F64)
    rois = jitter(random_rois(gen, 12, 2, 9, 11, 0.5), 0.5, (3, 2))
    g = torch.randn(12, 3, 3, 2, generator=gen, dtype=F64)
    rg = rois.clone().requires_grad_()
    roi_ext.prroi_pool(x, rg, (3, 2), 0.5).backward(g)
    h = 1e-6
    fd = torch.zeros_like(rois)
    for col in range(1, 5):
        p, m = rois.clone(), rois.clone()
        p[:, col] += h
        m[:, col] -= h
        diff = roi_ext.prroi_pool(x, p, (3, 2), 0.5) - roi_ext.prroi_pool(x, m, (3, 2), 0.5)
        fd[:, col] = (diff * g).sum((1, 2, 3)) / (2 * h)
    torch.testing.assert_close(rg.grad, fd, rtol=1e-7, atol=1e-7)


# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------
def _split(rois):
    return rois[:, :1].clone(), rois[:, 1:].clone()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.3])
@pytest.mark.parametrize("size", [(2, 3), (1, 1)])
def test_gradcheck_input_and_rois(channels_last, scale, size):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=F64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rois = torch.cat([random_rois(gen, 3, 2, 6, 7, scale, "partly_outside"),
                      random_rois(gen, 2, 2, 6, 7, scale, "subpixel")])
    rois = jitter(rois, scale, size)
    batch, coords = _split(rois)

    def fn(inp, c):
        return roi_ext.prroi_pool(inp, torch.cat([batch, c], 1), size, scale)

    assert torch.autograd.gradcheck(fn, (x.requires_grad_(), coords.requires_grad_()), eps=1e-6, atol=1e-6)


def test_gradgradcheck_input():
    """The input gradient is linear in the output gradient (and in nothing else that
    requires grad): double backward w.r.t. the input and the output gradient."""
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=F64, requires_grad=True)
    rois = random_rois(gen, 4, 2, 6, 7, 0.5, "partly_outside")

    def fn(inp):
        return roi_ext.prroi_pool(inp, rois, (2, 3), 0.5)

    assert torch.autograd.gradgradcheck(fn, (x,))


def test_double_backward_through_the_rois_gradient_is_refused():
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(1, 2, 6, 7, generator=gen, dtype=F64, requires_grad=True)
    rois = jitter(random_rois(gen, 3, 1, 6, 7, 1.0, "inside"), 1.0, (2, 2)).requires_grad_()
    with pytest.raises(NotImplementedError):
        (grad_rois,) = torch.autograd.grad(roi_ext.prroi_pool(x, rois, 2).sum(), rois, create_graph=True)
        grad_rois.pow(2).sum().backward()


def test_forward_mode_input_and_refusal_for_rois():
    """Forward-mode AD: linear in the input (the jvp is the op on the tangent); w.r.t. the rois
    it is not implemented and must raise, not return zeros."""
    gen = torch.Generator().manual_seed(15)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=F64)
    t = torch.randn(2, 2, 6, 7, generator=gen, dtype=F64)
    rois = random_rois(gen, 4, 2, 6, 7, 0.5, "partly_outside")
    out, tangent = torch.func.jvp(lambda inp: roi_ext.prroi_pool(inp, rois, (2, 3), 0.5), (x,), (t,))
    torch.testing.assert_close(out, roi_ext.prroi_pool(x, rois, (2, 3), 0.5), rtol=0, atol=0)
    torch.testing.assert_close(tangent, roi_ext.prroi_pool(t, rois, (2, 3), 0.5), rtol=1e-14, atol=1e-14)
    with pytest.raises(NotImplementedError):
        torch.func.jvp(lambda r: roi_ext.prroi_pool(x, r, (2, 3), 0.5), (rois,), (torch.ones_like(rois),))


def test_batch_index_column_gets_zero_gradient():
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(3, 2, 6, 7, generator=gen, dtype=F64)
    rois = random_rois(gen, 6, 3, 6, 7, 1.0, "inside").requires_grad_()
    roi_ext.prroi_pool(x, rois, 2).sum().backward()
    assert torch.all(rois.grad[:, 0] == 0) and rois.grad[:, 1:].abs().sum() > 0


# ---------------------------------------------------------------------------
# Golden values of the released implementations
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64])
def test_golden_vacancy_avg_pool(dtype):
    """vacancy/PreciseRoIPooling pytorch/tests/test_prroi_pooling2d.py::test_forward: with
    spatial_scale 0.5 the rois are 7 x 7 pixels wide, each bin one pixel cell, whose integral
    is the mean of its four corners: F.avg_pool2d(features, 2, stride=1) windows."""
    gen = torch.Generator().manual_seed(0)
    features = torch.rand(4, 16, 24, 32, generator=gen).to(dtype)
    rois = torch.tensor([[0, 0, 0, 14, 14], [1, 14, 14, 28, 28]], dtype=dtype)
    out = roi_ext.prroi_pool(features, rois, 7, 0.5)
    module = roi_ext.PrRoIPool((7, 7), spatial_scale=0.5)
    gold = torch.nn.functional.avg_pool2d(features, kernel_size=2, stride=1)
    gold = torch.stack((gold[0, :, :7, :7], gold[1, :, 7:14, 7:14]), dim=0)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == F32 else dict(rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(out, gold, **tol)
    torch.testing.assert_close(module(features, rois), out, rtol=0, atol=0)


# tensorflow/tests/test_binaries/2_2_0.5/*.npy of vacancy/PreciseRoIPooling (float32, from the
# released PyTorch CUDA module): features [4, 2, 24, 32], pool 2 x 2, spatial_scale 0.5, loss =
# sum(outputs). Roi 0 reaches features[0, :, 0:3, 0:3], roi 1 features[1, :, 7:10, 7:10].
VACANCY_ROIS = [[0.0, 0.0, 0.0, 4.0, 4.0], [1.0, 14.0, 14.0, 18.0, 18.0]]
VACANCY_FEATURES_0 = [  # features[0, :, 0:3, 0:3]
    [[0.9081586599349976, 0.8236586451530457, 0.7624281644821167],
     [0.9457004070281982, 0.049143195152282715, 0.8386432528495789],
     [0.7265427112579346, 0.12377876043319702, 0.7622034549713135]],
    [[0.1766567826271057, 0.44874894618988037, 0.010699570178985596],
     [0.7030853629112244, 0.9979318380355835, 0.7655300498008728],
     [0.3201908469200134, 0.34451186656951904, 0.36027050018310547]]]
VACANCY_FEATURES_1 = [  # features[1, :, 7:10, 7:10]
    [[0.6681565046310425, 0.04745316505432129, 0.7352805733680725],
     [0.13859260082244873, 0.7676421999931335, 0.9174434542655945],
     [0.9681535959243774, 0.5932474732398987, 0.8840058445930481]],
    [[0.21510732173919678, 0.07638520002365112, 0.7407715916633606],
     [0.3626897931098938, 0.4811584949493408, 0.27452898025512695],
     [0.02081906795501709, 0.042533159255981445, 0.578050971031189]]]
VACANCY_OUTPUTS = [  # real_outputs.npy [2, 2, 2, 2]
    0.6816651821136475, 0.6184682846069336, 0.46129125356674194, 0.443442165851593,
    0.5816057324409485, 0.5557276010513306, 0.5914299488067627, 0.6170610189437866,
    0.4054611325263977, 0.6169548630714417, 0.6169089674949646, 0.7905847430229187,
    0.28383520245552063, 0.3932110667228699, 0.2268001288175583, 0.34406790137290955]
VACANCY_ROIS_GRAD = [  # gradients1.npy [2, 5]
    [0.0, -0.21960735321044922, 0.03698320686817169, 0.13831427693367004, -0.36122560501098633],
    [0.0, 0.20075568556785583, 0.26770779490470886, 0.4110574722290039, 0.011191703379154205]]
# gradients0.npy: [[.25, .5, .25], [.5, 1, .5], [.25, .5, .25]] on each 3 x 3 window, 0 elsewhere.
VACANCY_WINDOW_GRAD = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]


@pytest.mark.parametrize("dtype", [F32, F64])
def test_golden_vacancy_binaries(dtype):
    gen = torch.Generator().manual_seed(1)
    features = torch.rand(4, 2, 24, 32, generator=gen, dtype=F64)  # other pixels: no influence
    features[0, :, 0:3, 0:3] = torch.tensor(VACANCY_FEATURES_0, dtype=F64)
    features[1, :, 7:10, 7:10] = torch.tensor(VACANCY_FEATURES_1, dtype=F64)
    features = features.to(dtype).requires_grad_()
    rois = torch.tensor(VACANCY_ROIS, dtype=dtype, requires_grad=True)
    out = roi_ext.prroi_pool(features, rois, (2, 2), 0.5)
    out.sum().backward()
    gold_grad = torch.zeros(4, 2, 24, 32, dtype=dtype)
    gold_grad[0, :, 0:3, 0:3] = torch.tensor(VACANCY_WINDOW_GRAD, dtype=dtype)
    gold_grad[1, :, 7:10, 7:10] = torch.tensor(VACANCY_WINDOW_GRAD, dtype=dtype)
    # upstream is float32 (CUDA, atomics): a few ulp
    torch.testing.assert_close(out.detach().flatten(), torch.tensor(VACANCY_OUTPUTS, dtype=dtype), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(features.grad, gold_grad, rtol=0, atol=0)
    torch.testing.assert_close(rois.grad, torch.tensor(VACANCY_ROIS_GRAD, dtype=dtype), rtol=1e-5, atol=1e-6)
    # and the float64 references (rois on integer knots: the derivative is still defined, f is continuous)
    f64 = np64(features)
    ref = R.forward(f64, VACANCY_ROIS, 2, 0.5)
    np.testing.assert_allclose(out.detach().to(F64).numpy(), ref, rtol=1e-6 if dtype == F32 else 1e-12, atol=0)
    np.testing.assert_allclose(np64(rois.grad), R.backward_rois(np.ones_like(ref), f64, VACANCY_ROIS, 0.5),
                               rtol=1e-5 if dtype == F32 else 1e-10, atol=1e-7 if dtype == F32 else 1e-12)


# open-mmlab/mmcv tests/test_ops/test_prroi_pool.py: inputs, outputs = (output, input grad,
# rois grad) for prroi_pool(x, rois, (2, 2), 1.0) and backward(ones); float32, rtol 1e-3 there.
MMCV_CASES = [
    ([[[[1., 2.], [3., 4.]]]], [[0., 0., 0., 1., 1.]],
     [[[[1.75, 2.25], [2.75, 3.25]]]], [[[[1., 1.], [1., 1.]]]], [[0., 2., 4., 2., 4.]]),
    ([[[[1., 2.], [3., 4.]], [[4., 3.], [2., 1.]]]], [[0., 0., 0., 1., 1.]],
     [[[[1.75, 2.25], [2.75, 3.25]], [[3.25, 2.75], [2.25, 1.75]]]],
     [[[[1., 1.], [1., 1.]], [[1., 1.], [1., 1.]]]], [[0., 0., 0., 0., 0.]]),
    ([[[[1., 2., 5., 6.], [3., 4., 7., 8.], [9., 10., 13., 14.], [11., 12., 15., 16.]]]], [[0., 0., 0., 3., 3.]],
     [[[[3.75, 6.91666651], [10.08333302, 13.25]]]],
     [[[[0.11111111, 0.22222224, 0.22222222, 0.11111111], [0.22222224, 0.444444448, 0.44444448, 0.22222224],
        [0.22222224, 0.44444448, 0.44444448, 0.22222224], [0.11111111, 0.22222224, 0.22222224, 0.11111111]]]],
     [[0.0, 3.33333302, 6.66666603, 3.33333349, 6.66666698]]),
]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("index", range(len(MMCV_CASES)))
def test_golden_mmcv(index, dtype):
    inp, rois, out_gold, grad_gold, rois_grad_gold = MMCV_CASES[index]
    x = torch.tensor(inp, dtype=dtype, requires_grad=True)
    r = torch.tensor(rois, dtype=dtype, requires_grad=True)
    out = roi_ext.prroi_pool(x, r, (2, 2), 1.0)
    out.backward(torch.ones_like(out))
    tol = dict(rtol=1e-6, atol=1e-6)  # the upstream values are float32 printouts
    torch.testing.assert_close(out.detach(), torch.tensor(out_gold, dtype=dtype), **tol)
    torch.testing.assert_close(x.grad, torch.tensor(grad_gold, dtype=dtype), **tol)
    torch.testing.assert_close(r.grad, torch.tensor(rois_grad_gold, dtype=dtype), **tol)
    # exact values (the references, float64): 83/12, 121/12, 10/3, 20/3 ...
    np.testing.assert_allclose(R.forward(inp, rois, 2), np.array(out_gold), rtol=1e-7)
    np.testing.assert_allclose(R.backward_rois(np.ones((1, len(inp[0]), 2, 2)), inp, rois), rois_grad_gold,
                               rtol=1e-7, atol=1e-12)
    if dtype == F64:
        np.testing.assert_allclose(out.detach().numpy(), R.forward(inp, rois, 2), rtol=1e-14, atol=0)


def test_paddle_op_test_configuration():
    """PaddlePaddle test_prroi_pool_op.py: batch 3 with 1, 2, 3 rois (a LoD: here the list
    form), C = 12, H = 6, W = 4, spatial_scale 1/4, 2 x 2, rois drawn by its make_rois rule
    (x1 in [0, W/s - pw], x2 in [x1 + pw, W/s], ...), float32 compared with its float64
    PyPrRoIPool (same algorithm as prroi_reference.forward)."""
    rng = np.random.default_rng(2019)
    N, C, H, W, s, P = 3, 12, 6, 4, 0.25, 2
    x = torch.tensor(rng.random((N, C, H, W)), dtype=F32)
    rows = []
    for bno in range(N):
        for _ in range(bno + 1):
            x1 = rng.uniform(0, W // s - P)
            y1 = rng.uniform(0, H // s - P)
            rows.append([bno, x1, y1, rng.uniform(x1 + P, W // s), rng.uniform(y1 + P, H // s)])
    rois = torch.tensor(rows, dtype=F32)
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(N)]
    out = roi_ext.prroi_pool(x, boxes, (P, P), s)
    ref = R.forward(np64(x), np64(rois), P, s)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref, R.forward_numerical(np64(x), np64(rois), P, s), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(roi_ext.prroi_pool(x, rois, (P, P), s), out, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# dtypes and layouts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,rtol,atol", [(F32, 1e-5, 1e-6), (F16, 2 ** -10, 1e-4), (BF16, 2 ** -7, 1e-3)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_dtypes_against_float64(dtype, rtol, atol, channels_last):
    """float16/bfloat16 compute in float32 and round once: the float64 result of the rounded
    input and rois, within an ulp or two of the dtype."""
    gen = torch.Generator().manual_seed(21)
    x = torch.randn(2, 3, 8, 9, generator=gen).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rois = random_rois(gen, 20, 2, 8, 9, 0.5, "partly_outside").to(dtype)
    out = roi_ext.prroi_pool(x, rois, (3, 2), 0.5)
    assert out.dtype == dtype and out.shape == (20, 3, 3, 2)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    ref = R.forward(np64(x), np64(rois), (3, 2), 0.5)
    np.testing.assert_allclose(out.to(F64).numpy(), ref, rtol=rtol, atol=atol)

    xg = x.clone().requires_grad_()
    rg = rois.clone().requires_grad_()
    g = torch.randn(out.shape, generator=gen).to(dtype)
    roi_ext.prroi_pool(xg, rg, (3, 2), 0.5).backward(g)
    assert xg.grad.dtype == dtype and rg.grad.dtype == dtype
    gx = R.backward_input(np64(g), np64(rois), x.shape, 0.5)
    gr = R.backward_rois(np64(g), np64(x), np64(rois), 0.5)
    scale_x = max(np.abs(gx).max(), 1.0)
    scale_r = max(np.abs(gr).max(), 1.0)
    np.testing.assert_allclose(np64(xg.grad), gx, rtol=8 * rtol, atol=8 * rtol * scale_x)
    np.testing.assert_allclose(np64(rg.grad), gr, rtol=8 * rtol, atol=8 * rtol * scale_r)


@pytest.mark.parametrize("dtype", [F32, F64, F16, BF16])
def test_channels_last_equals_contiguous(dtype):
    gen = torch.Generator().manual_seed(22)
    x = torch.randn(2, 5, 10, 12, generator=gen).to(dtype)
    rois = random_rois(gen, 17, 2, 10, 12, 0.5, "partly_outside", F32)
    xc = x.contiguous(memory_format=torch.channels_last)
    out = roi_ext.prroi_pool(x, rois, (3, 3), 0.5)
    out_cl = roi_ext.prroi_pool(xc, rois, (3, 3), 0.5)
    assert out.is_contiguous() and not out_cl.is_contiguous()
    assert out_cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, out_cl)
    g = torch.randn(out.shape, generator=gen).to(dtype)
    a, b = x.clone().requires_grad_(), xc.clone().requires_grad_()
    ra, rb = rois.clone().requires_grad_(), rois.clone().requires_grad_()
    roi_ext.prroi_pool(a, ra, (3, 3), 0.5).backward(g)
    roi_ext.prroi_pool(b, rb, (3, 3), 0.5).backward(g.contiguous(memory_format=torch.channels_last))
    assert b.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a.grad, b.grad)
    assert torch.equal(ra.grad, rb.grad)


def test_float64_rois_with_float32_input():
    gen = torch.Generator().manual_seed(23)
    x = torch.randn(2, 3, 8, 9, generator=gen)
    rois = random_rois(gen, 10, 2, 8, 9, 0.5, "partly_outside", F64).requires_grad_()
    xg = x.clone().requires_grad_()
    out = roi_ext.prroi_pool(xg, rois, 2, 0.5)
    assert out.dtype == F32
    np.testing.assert_allclose(out.detach().to(F64).numpy(), R.forward(np64(x), np64(rois), 2, 0.5), rtol=1e-5,
                               atol=1e-6)
    out.sum().backward()
    assert rois.grad.dtype == F64 and xg.grad.dtype == F32
    gr = R.backward_rois(np.ones(out.shape), np64(x), np64(rois), 0.5)
    np.testing.assert_allclose(rois.grad.numpy(), gr, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(gr).max()))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_list_of_boxes_equals_tensor_form(dtype):
    gen = torch.Generator().manual_seed(24)
    x = torch.randn(3, 2, 7, 8, generator=gen, dtype=dtype)
    rois = random_rois(gen, 11, 3, 7, 8, 1.0, "partly_outside", dtype)
    rois = rois[rois[:, 0].argsort(stable=True)]  # the list form orders rois by image
    boxes = [b.clone().requires_grad_() for b in rois_to_list(rois, 3)]
    rg = rois.clone().requires_grad_()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_t = roi_ext.prroi_pool(xa, rg, (2, 3))
    out_l = roi_ext.prroi_pool(xb, boxes, (2, 3))
    assert torch.equal(out_t, out_l)
    g = torch.randn(out_t.shape, generator=gen, dtype=dtype)
    out_t.backward(g)
    out_l.backward(g)
    assert torch.equal(xa.grad, xb.grad)
    assert torch.equal(rg.grad[:, 1:], torch.cat([b.grad for b in boxes]))


# ---------------------------------------------------------------------------
# Degenerate shapes and rois
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape,num", [((2, 3, 5, 6), 0), ((2, 0, 5, 6), 4), ((2, 3, 0, 6), 4),
                                       ((2, 3, 5, 0), 4), ((2, 3, 0, 0), 0)])
def test_empty_shapes(shape, num):
    gen = torch.Generator().manual_seed(25)
    x = torch.randn(shape, generator=gen, dtype=F64, requires_grad=True)
    rois = random_rois(gen, num, 2, 5, 6, 1.0, "inside").requires_grad_()
    out = roi_ext.prroi_pool(x, rois, (2, 3))
    assert out.shape == (num, shape[1], 2, 3) and out.dtype == F64
    assert torch.all(out == 0)
    out.sum().backward()
    assert x.grad.shape == x.shape and torch.all(x.grad == 0)
    assert rois.grad.shape == rois.shape and torch.all(rois.grad == 0)


def test_empty_list_of_boxes():
    x = torch.randn(2, 3, 5, 6)
    for boxes in ([torch.zeros(0, 4), torch.zeros(0, 4)], []):
        out = roi_ext.prroi_pool(x, boxes, (2, 3))
        assert out.shape == (0, 3, 2, 3) and out.dtype == F32


@pytest.mark.parametrize("roi", [
    [0, 2.0, 1.0, 2.0, 4.0],   # zero width
    [0, 1.0, 3.0, 4.0, 3.0],   # zero height
    [0, 4.0, 4.0, 1.0, 1.0],   # inverted: roi_w = max(x2 - x1, 0) = 0
    [0, 3.5, 1.0, 2.5, 4.0],   # inverted width only
])
def test_zero_area_roi_gives_zero_and_zero_gradients(roi):
    x = torch.randn(1, 2, 6, 7, dtype=F64, requires_grad=True)
    rois = torch.tensor([roi, [0, 1.3, 1.1, 4.2, 3.7]], dtype=F64, requires_grad=True)
    out = roi_ext.prroi_pool(x, rois, (2, 2))
    assert torch.all(out[0] == 0) and torch.any(out[1] != 0)
    g = torch.zeros_like(out)
    g[0] = 1.0
    out.backward(g)
    assert torch.all(x.grad == 0) and torch.all(rois.grad == 0)


@pytest.mark.parametrize("roi", [
    [0, 9.0, 1.0, 12.0, 4.0],     # right of the map (W = 7: f = 0 for x >= 7)
    [0, -5.0, -4.0, -1.0, -1.0],  # up to the line x = -1, y = -1 where f vanishes
    [0, 1.0, 6.0, 4.0, 9.0],      # below the map (H = 6)
])
def test_roi_outside_the_map_gives_zero(roi):
    x = torch.randn(1, 2, 6, 7, dtype=F64, requires_grad=True)
    rois = torch.tensor([roi], dtype=F64, requires_grad=True)
    out = roi_ext.prroi_pool(x, rois, (3, 2))
    assert torch.all(out == 0)
    out.sum().backward()
    assert torch.all(x.grad == 0) and torch.all(rois.grad == 0)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("col", [1, 2, 3, 4])
def test_non_finite_rois_give_zero(dtype, bad, col):
    x = torch.randn(1, 2, 6, 7, dtype=dtype, requires_grad=True)
    roi = [0, 1.5, 1.25, 4.5, 3.75]
    roi[col] = bad
    rois = torch.tensor([roi, [0, 1.3, 1.1, 4.2, 3.7]], dtype=dtype, requires_grad=True)
    start = time.perf_counter()
    out = roi_ext.prroi_pool(x, rois, (3, 3))
    assert torch.all(out[0] == 0) and torch.all(torch.isfinite(out))
    g = torch.zeros_like(out)
    g[0] = 1.0
    out.backward(g)
    assert time.perf_counter() - start < 5
    assert torch.all(x.grad == 0) and torch.all(rois.grad == 0)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("roi", [[0, -1e30, -1e30, 1e30, 1e30], [0, 0, 0, 1e30, 1e30], [0, -1e30, 2.0, 3.0, 4.0],
                                 [0, 1e30, 1e30, 2e30, 2e30]])
def test_huge_rois_finish_quickly(dtype, roi):
    x = torch.randn(2, 3, 50, 60, dtype=dtype, requires_grad=True)
    rois = torch.tensor([roi] * 4, dtype=dtype, requires_grad=True)
    start = time.perf_counter()
    out = roi_ext.prroi_pool(x, rois, (7, 7))
    out.sum().backward()
    assert time.perf_counter() - start < 10
    assert torch.all(torch.isfinite(out)) and torch.all(torch.isfinite(x.grad)) and torch.all(torch.isfinite(rois.grad))
    ref = R.forward(np64(x), np64(rois), 7)
    np.testing.assert_allclose(out.detach().to(F64).numpy(), ref, rtol=1e-5, atol=1e-30)


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------
def _run_all(x, rois, g):
    xg, rg = x.clone().requires_grad_(), rois.clone().requires_grad_()
    out = roi_ext.prroi_pool(xg, rg, (4, 3), 0.25)
    out.backward(g)
    return out.detach(), xg.grad, rg.grad


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_deterministic_across_runs_and_threads(dtype, channels_last):
    gen = torch.Generator().manual_seed(26)
    x = torch.randn(2, 8, 20, 24, generator=gen).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    # many overlapping rois: the input gradient sums many contributions per pixel
    rois = torch.cat([random_rois(gen, 150, 2, 20, 24, 0.25, "partly_outside"),
                      random_rois(gen, 50, 2, 20, 24, 0.25, "large")]).to(dtype)
    g = torch.randn(200, 8, 4, 3, generator=gen).to(dtype)
    threads = torch.get_num_threads()
    try:
        first = _run_all(x, rois, g)
        for n in (1, 2, max(threads, 2)):
            torch.set_num_threads(n)
            for _ in range(2):
                again = _run_all(x, rois, g)
                for a, b in zip(first, again):
                    assert torch.equal(a, b)
    finally:
        torch.set_num_threads(threads)


def test_backward_op_deterministic_flag():
    """_prroi_pool_backward: deterministic=True is bitwise reproducible and equals the
    default within rounding; both equal the reference."""
    gen = torch.Generator().manual_seed(27)
    rois = random_rois(gen, 30, 2, 9, 10, 0.5, "partly_outside")
    g = torch.randn(30, 3, 2, 2, generator=gen, dtype=F64)
    det = OPS._prroi_pool_backward(g, rois, 0.5, 2, 2, 2, 3, 9, 10, True)
    assert torch.equal(det, OPS._prroi_pool_backward(g, rois, 0.5, 2, 2, 2, 3, 9, 10, True))
    fast = OPS._prroi_pool_backward(g, rois, 0.5, 2, 2, 2, 3, 9, 10)
    torch.testing.assert_close(det, fast, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(det.numpy(), R.backward_input(g.numpy(), rois.numpy(), (2, 3, 9, 10), 0.5),
                               rtol=1e-10, atol=1e-10)


def test_registered_ops_match_the_python_api():
    gen = torch.Generator().manual_seed(28)
    x = torch.randn(2, 3, 9, 10, generator=gen)
    rois = random_rois(gen, 8, 2, 9, 10, 0.5, "partly_outside", F64)
    out = OPS.prroi_pool(x, rois, 0.5, 3, 2)
    assert torch.equal(out, roi_ext.prroi_pool(x, rois, (3, 2), 0.5))
    g = torch.randn(out.shape, generator=gen)
    gr = OPS._prroi_pool_backward_rois(g, x, rois, 0.5, 3, 2)
    assert gr.shape == (8, 5) and gr.dtype == F64 and torch.all(gr[:, 0] == 0)
    rg = rois.clone().requires_grad_()
    roi_ext.prroi_pool(x, rg, (3, 2), 0.5).backward(g)
    assert torch.equal(rg.grad, gr)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def _x_rois():
    return torch.randn(2, 3, 6, 7), torch.tensor([[0, 1.0, 1.0, 4.0, 5.0], [1, 0.5, 0.0, 3.0, 2.0]])


@pytest.mark.parametrize("size", [-1, (2, -3), (-2, 2)])
def test_negative_output_size(size):
    x, rois = _x_rois()
    with pytest.raises(ValueError, match="output_size"):
        roi_ext.prroi_pool(x, rois, size)
    with pytest.raises(ValueError, match="output_size"):
        roi_ext.PrRoIPool(size)(x, rois)


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf])
def test_non_finite_spatial_scale(scale):
    x, rois = _x_rois()
    with pytest.raises(ValueError, match="spatial_scale"):
        roi_ext.prroi_pool(x, rois, 2, scale)


@pytest.mark.parametrize("rois", [torch.zeros(3, 4), torch.zeros(3, 6), torch.zeros(5), torch.zeros(2, 3, 5)])
def test_rois_of_wrong_shape(rois):
    x, _ = _x_rois()
    with pytest.raises(ValueError, match="rois"):
        roi_ext.prroi_pool(x, rois, 2)


def test_boxes_list_of_wrong_shape():
    x, _ = _x_rois()
    with pytest.raises(ValueError, match="rois|boxes"):
        roi_ext.prroi_pool(x, [torch.zeros(2, 5), torch.zeros(1, 4)], 2)


@pytest.mark.parametrize("shape", [(3, 6, 7), (1, 2, 3, 6, 7), (6,)])
def test_input_of_wrong_rank(shape):
    _, rois = _x_rois()
    with pytest.raises(ValueError, match="input"):
        roi_ext.prroi_pool(torch.randn(shape), rois, 2)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_input(dtype):
    x, rois = _x_rois()
    with pytest.raises((TypeError, ValueError), match="input|dtype"):
        roi_ext.prroi_pool(x.to(dtype), rois, 2)


def test_integer_rois():
    x, rois = _x_rois()
    with pytest.raises((TypeError, ValueError), match="rois|dtype"):
        roi_ext.prroi_pool(x, rois.long(), 2)


def test_device_mixing():
    x, rois = _x_rois()
    with pytest.raises((RuntimeError, ValueError), match="device|meta|cpu|CPU"):
        roi_ext.prroi_pool(x, rois.to("meta"), 2)
    with pytest.raises((RuntimeError, ValueError), match="device|meta|cpu|CPU"):
        roi_ext.prroi_pool(x.to("meta"), rois, 2)


@pytest.mark.parametrize("index", [2.0, 3.0, -1.0, -0.5, 2.5, 1e10, math.nan, math.inf])
def test_batch_index_out_of_range_raises_index_error(index):
    """The project's convention (docs/API.md, tests/test_roi_align.py): the batch index must
    lie in [0, N) and be finite, then it is truncated toward zero (-0.5 is refused, where
    the released implementations' int() would read image 0)."""
    x, rois = _x_rois()
    rois[1, 0] = index
    with pytest.raises(IndexError, match=r"rois\[1, 0\] \(batch index\)"):
        roi_ext.prroi_pool(x, rois, 2)
    g = torch.ones(2, 3, 2, 2)
    with pytest.raises(RuntimeError, match="^IndexError: .*batch index"):  # the ops called directly
        OPS._prroi_pool_backward(g, rois, 1.0, 2, 2, 2, 3, 6, 7)
    with pytest.raises(RuntimeError, match="^IndexError: .*batch index"):
        OPS._prroi_pool_backward_rois(g, x, rois, 1.0, 2, 2)


def test_batch_index_is_truncated_toward_zero():
    x, rois = _x_rois()
    frac = rois.clone()
    frac[:, 0] = torch.tensor([0.75, 1.9])  # -> 0 and 1
    assert torch.equal(roi_ext.prroi_pool(x, frac, 2), roi_ext.prroi_pool(x, rois, 2))


# ---------------------------------------------------------------------------
# Module, TorchScript, torch.compile, torch.export, opcheck, autocast, ONNX
# ---------------------------------------------------------------------------
def test_module_repr_and_forward():
    assert repr(roi_ext.PrRoIPool((7, 7), 0.25)) == "PrRoIPool(output_size=(7, 7), spatial_scale=0.25)"
    assert repr(roi_ext.PrRoIPool(7, spatial_scale=0.5)) == "PrRoIPool(output_size=7, spatial_scale=0.5)"
    assert repr(roi_ext.PrRoIPool(3)) == "PrRoIPool(output_size=3, spatial_scale=1.0)"
    x, rois = _x_rois()
    assert torch.equal(roi_ext.PrRoIPool((2, 3), 0.5)(x, rois), roi_ext.prroi_pool(x, rois, (2, 3), 0.5))
    assert torch.equal(roi_ext.PrRoIPool((2, 3), 0.5).forward(x, rois), roi_ext.prroi_pool(x, rois, (2, 3), 0.5))


def test_torchscript():
    x, rois = _x_rois()
    boxes = rois_to_list(rois, 2)
    module = roi_ext.PrRoIPool((3, 2), 0.5)
    scripted = torch.jit.script(module)
    assert torch.equal(scripted(x, rois), module(x, rois))
    assert torch.equal(scripted(x, boxes), module(x, rois))
    xg = x.clone().requires_grad_()
    scripted(xg, rois).sum().backward()
    xe = x.clone().requires_grad_()
    module(xe, rois).sum().backward()
    assert torch.equal(xg.grad, xe.grad)


def test_torchscript_function():
    """torch.jit.script(roi_ext.prroi_pool), as torch.jit.script(roi_ext.roi_align) works
    (tests/test_dropin.py)."""
    x, rois = _x_rois()
    fn = torch.jit.script(roi_ext.prroi_pool)
    expected = roi_ext.prroi_pool(x, rois, (3, 2), 0.5)
    assert torch.equal(fn(x, rois, [3, 2], 0.5), expected)
    assert torch.equal(fn(x, rois_to_list(rois, 2), (3, 2), 0.5), expected)
    assert torch.equal(fn(x, rois, 3, 0.5), roi_ext.prroi_pool(x, rois, 3, 0.5))


class _Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = roi_ext.PrRoIPool((3, 3), 0.5)

    def forward(self, x, rois):
        return self.pool(self.conv(x), rois).relu() + roi_ext.prroi_pool(x, rois, 3, 0.5).sum(1, keepdim=True)


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph_forward_and_backward(dynamic):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _Head().double()
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
    for seed, (n, h, w, k) in enumerate([(2, 11, 13, 5), (3, 9, 14, 7)]):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 3, h, w, generator=gen, dtype=F64)
        rois = random_rois(gen, k, n, h, w, 0.5, "partly_outside")
        results = []
        for m in (model, compiled):
            xg, rg = x.clone().requires_grad_(), rois.clone().requires_grad_()
            model.zero_grad()
            out = m(xg, rg)
            out.pow(2).sum().backward()
            results.append([out.detach(), xg.grad, rg.grad, model.conv.weight.grad.clone()])
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_torch_export():
    torch.manual_seed(0)
    model = _Head()
    gen = torch.Generator().manual_seed(31)
    x = torch.randn(2, 3, 11, 13, generator=gen)
    rois = random_rois(gen, 5, 2, 11, 13, 0.5, "partly_outside", F32)
    program = torch.export.export(model, (x, rois))
    assert any("prroi_pool" in str(node.target) for node in program.graph.nodes)
    torch.testing.assert_close(program.module()(x, rois), model(x, rois), rtol=0, atol=0)
    rois2 = random_rois(gen, 5, 2, 11, 13, 0.5, "partly_outside", F32)
    torch.testing.assert_close(program.module()(x, rois2), model(x, rois2), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(dtype, channels_last):
    gen = torch.Generator().manual_seed(32)
    x = torch.randn(2, 3, 8, 9, generator=gen).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rois = jitter(random_rois(gen, 4, 2, 8, 9, 0.5, "partly_outside"), 0.5, (3, 2)).to(dtype)
    torch.library.opcheck(OPS.prroi_pool.default, (x.requires_grad_(), rois.requires_grad_(), 0.5, 3, 2))
    grad = torch.randn(4, 3, 3, 2, generator=gen).to(dtype)
    if channels_last:
        grad = grad.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(OPS._prroi_pool_backward.default, (grad, rois.detach(), 0.5, 3, 2, 2, 3, 8, 9))
    torch.library.opcheck(OPS._prroi_pool_backward.default, (grad, rois.detach(), 0.5, 3, 2, 2, 3, 8, 9, True))
    torch.library.opcheck(OPS._prroi_pool_backward_rois.default, (grad, x.detach(), rois.detach(), 0.5, 3, 2))


def test_autocast_keeps_the_input_dtype():
    """Like roi_align (torchvision's rule): the output has the input's dtype, never the
    autocast dtype; mixed input/rois dtypes are accepted; float64 is left alone."""
    gen = torch.Generator().manual_seed(33)
    x = torch.randn(2, 3, 8, 9, generator=gen)
    rois = random_rois(gen, 6, 2, 8, 9, 0.5, "partly_outside", F32)
    ref = roi_ext.prroi_pool(x, rois, 3, 0.5)
    xg = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = roi_ext.prroi_pool(xg, rois, 3, 0.5)
        b = roi_ext.prroi_pool(x, rois.bfloat16(), 3, 0.5)
        c = roi_ext.prroi_pool(x.bfloat16(), rois, 3, 0.5)
        d = roi_ext.prroi_pool(x.double(), rois.double(), 3, 0.5)
        e = roi_ext.PrRoIPool(3, 0.5)(x, rois)
    assert a.dtype == F32 and b.dtype == F32 and c.dtype == BF16 and d.dtype == F64 and e.dtype == F32
    assert torch.equal(a, ref) and torch.equal(e, ref)
    torch.testing.assert_close(b, roi_ext.prroi_pool(x, rois.bfloat16().float(), 3, 0.5), rtol=0, atol=0)
    torch.testing.assert_close(c.float(), ref, rtol=2e-2, atol=2e-2)
    a.sum().backward()
    assert xg.grad.dtype == F32 and torch.isfinite(xg.grad).all()


class _PrRoIModel(torch.nn.Module):
    def forward(self, x, rois):
        return roi_ext.prroi_pool(x, rois, (2, 2), 0.5)


def _assert_refused(excinfo):
    text = []
    e = excinfo.value
    while e is not None and len(text) < 10:
        text.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    text = "\n".join(text)
    assert "prroi_pool" in text, text
    assert "onnx" in text.lower(), text


@pytest.mark.parametrize("dynamo", [True, False])
def test_onnx_export_is_refused(dynamo, tmp_path):
    pytest.importorskip("onnx")
    if dynamo:
        pytest.importorskip("onnxscript")
    import warnings

    x, rois = _x_rois()
    errors = (roi_ext.onnx.ExportError, RuntimeError, ValueError)
    if hasattr(torch.onnx, "OnnxExporterError"):
        errors = errors + (torch.onnx.OnnxExporterError,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(errors) as excinfo:
            torch.onnx.export(_PrRoIModel().eval(), (x, rois), str(tmp_path / "m.onnx"), dynamo=dynamo,
                              opset_version=18)
    _assert_refused(excinfo)
    assert not (tmp_path / "m.onnx").exists() or (tmp_path / "m.onnx").stat().st_size == 0


@pytest.mark.parametrize("width", [2**24 + 4, 2**24 + 3, 2**24 - 1])
def test_maps_wider_than_2_24_never_read_past_a_row(width):
    """float32 maps whose width is near 2^24, where float32 cannot represent every
    pixel index (2^24 + 3 rounds up to 2^24 + 4): a bin reaching past the right edge
    must read no pixel beyond the row. Row 1 is NaN and the roi touches row 0 only
    (y in [-0.5, 0]); reading one element past row 0 would read row 1's NaN."""
    x = torch.zeros(1, 1, 2, width)
    x[0, 0, 0, -8:] = 1.0
    x[0, 0, 1] = float("nan")
    rois = torch.tensor([[0.0, float(2**24 - 6), -0.5, float(2**24 + 8), 0.0]])
    for pooled in ((1, 1), (1, 3), (1, 7)):
        out = roi_ext.prroi_pool(x, rois, pooled)
        assert torch.isfinite(out).all(), (pooled, out)
        assert out.max() > 0
        xg = x.clone().requires_grad_()
        rg = rois.clone().requires_grad_()
        roi_ext.prroi_pool(xg, rg, pooled).sum().backward()
        assert torch.isfinite(rg.grad).all()
        assert not xg.grad[0, 0, 1].any()

"""roi_align(..., box_grad=True): the gradient with respect to the roi coordinates.

gradcheck in float64 over every sampling / alignment / end mode and both layouts,
an independent pure-PyTorch reference differentiated by autograd, the default
(torchvision) behaviour of no box gradient, determinism, dtypes, the boxes-list
form, errors, the unsupported higher-order modes (which must raise, never return
zeros), torch.compile, opcheck, TorchScript, autocast, fx and ONNX."""
import itertools
import math

import pytest
import torch

import roi_ext
from roi_ext._utils import call_op

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
OP = torch.ops.roi_ext
# Every (aligned, roi_end_mode) the op accepts: torchvision legacy, Detectron2,
# MindSpore, and aligned with the inclusive end.
MODES = [(False, 0), (True, 0), (False, 1), (True, 1)]


# ---------------------------------------------------------------------------
# Independent reference: roi_align written with torch ops, in float64, the
# sample grid and divisor fixed from the (detached) roi, differentiated by autograd.
# ---------------------------------------------------------------------------
def _axis(v, size):
    """Bilinear sample rule along one axis (SPEC Part B 4.1), differentiable in v."""
    valid = (v >= -1) & (v <= size)
    vc = torch.where(v <= 0, torch.zeros_like(v), v)
    low = vc.detach().floor().clamp(0, max(size - 1, 0)).long()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    vc = torch.where(at_end, low.to(v.dtype), vc)
    return valid, low.clamp(0, size - 1), high.clamp(0, size - 1), vc - low.to(v.dtype)


def reference_roi_align(x, rois, pooled, scale, sampling_ratio, aligned, roi_end_mode):
    n, c, height, width = x.shape
    ph_n, pw_n = pooled
    off = 0.5 if aligned else 0.0
    outs = []
    for k in range(rois.shape[0]):
        b = int(rois[k, 0])
        x1, y1, x2, y2 = rois[k, 1], rois[k, 2], rois[k, 3], rois[k, 4]
        start_w, start_h = x1 * scale - off, y1 * scale - off
        size_w = ((x2 + roi_end_mode) * scale - off) - start_w
        size_h = ((y2 + roi_end_mode) * scale - off) - start_h
        if not aligned and roi_end_mode == 0:  # the legacy clamp: a constant size
            if size_w.item() < 1:
                size_w = torch.ones_like(size_w)
            if size_h.item() < 1:
                size_h = torch.ones_like(size_h)
        grid_h = sampling_ratio if sampling_ratio > 0 else max(math.ceil(size_h.item() / ph_n), 0)
        grid_w = sampling_ratio if sampling_ratio > 0 else max(math.ceil(size_w.item() / pw_n), 0)
        count = max(grid_h * grid_w, 1)
        bin_h, bin_w = size_h / ph_n, size_w / pw_n
        ar = lambda m: torch.arange(m, dtype=x.dtype)  # noqa: E731
        ys = (start_h + ar(ph_n)[:, None] * bin_h + (ar(grid_h)[None, :] + 0.5) * bin_h / grid_h).reshape(-1)
        xs = (start_w + ar(pw_n)[:, None] * bin_w + (ar(grid_w)[None, :] + 0.5) * bin_w / grid_w).reshape(-1)
        vy, yl, yh, fy = _axis(ys, height)
        vx, xl, xh, fx = _axis(xs, width)
        img = x[b]
        v1, v2 = img[:, yl][:, :, xl], img[:, yl][:, :, xh]
        v3, v4 = img[:, yh][:, :, xl], img[:, yh][:, :, xh]
        hy, hx = (1 - fy)[:, None], (1 - fx)[None, :]
        ly, lx = fy[:, None], fx[None, :]
        val = hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4
        val = val * (vy[:, None] & vx[None, :]).to(x.dtype)
        outs.append(val.reshape(c, ph_n, grid_h, pw_n, grid_w).sum((2, 4)) / count)
    if not outs:
        return x.new_zeros((0, c, ph_n, pw_n))
    return torch.stack(outs)


# ---------------------------------------------------------------------------
# Rois whose samples all stay away from pixel boundaries, clamp edges, the
# in-range limits, adaptive grid changes and the legacy clamp: there the
# forward is smooth and finite differences agree with the derivative.
# ---------------------------------------------------------------------------
def _sample_coords(start, size, pooled, grid):
    p = torch.arange(pooled, dtype=F64)[:, None]
    i = torch.arange(grid, dtype=F64)[None, :]
    return (start + size * (p + (i + 0.5) / grid) / pooled).reshape(-1)


def _smooth(c1, c2, size_px, pooled, scale, sampling_ratio, aligned, mode, margin):
    off = 0.5 if aligned else 0.0
    start = c1 * scale - off
    size = ((c2 + mode) * scale - off) - start
    if size < 1.2 or size / pooled % 1.0 < margin or size / pooled % 1.0 > 1 - margin:
        return False  # away from the legacy clamp and from adaptive grid jumps
    grid = sampling_ratio if sampling_ratio > 0 else math.ceil(size / pooled)
    v = _sample_coords(start, size, pooled, grid)
    frac = v - v.floor()
    away = (frac > margin) & (frac < 1 - margin)
    return bool(away.all()) and bool(((v + 1).abs() > margin).all()) and bool(((v - size_px).abs() > margin).all())


def smooth_rois(gen, num, batch, height, width, pooled, scale, sampling_ratio, aligned, mode, margin=1e-3):
    rows = []
    while len(rows) < num:
        x1, y1 = (torch.rand(2, generator=gen, dtype=F64) * 1.2 - 0.2) * torch.tensor([width, height]) / scale
        w, h = (torch.rand(2, generator=gen, dtype=F64) * 0.8 + 0.15) * torch.tensor([width, height]) / scale
        x2, y2 = x1 + w, y1 + h
        if not (_smooth(x1.item(), x2.item(), width, pooled[1], scale, sampling_ratio, aligned, mode, margin)
                and _smooth(y1.item(), y2.item(), height, pooled[0], scale, sampling_ratio, aligned, mode, margin)):
            continue
        b = float(torch.randint(0, batch, (1,), generator=gen))
        rows.append([b, x1.item(), y1.item(), x2.item(), y2.item()])
    return torch.tensor(rows, dtype=F64).reshape(num, 5)


def _case(seed, layout="contiguous", n=2, c=3, h=7, w=8, k=4, pooled=(2, 3), scale=0.9, sr=2, aligned=False,
          mode=0, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=F64).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = smooth_rois(gen, k, n, h, w, pooled, scale, sr, aligned, mode)
    return gen, x, rois


def _box_grad(x, rois, pooled, scale, sr, aligned, mode, grad=None):
    """(output, grad_input, grad_rois) of roi_align(..., box_grad=True)."""
    x = x.detach().clone().requires_grad_()
    r = rois.detach().clone().requires_grad_()
    out = roi_ext.roi_align(x, r, pooled, scale, sr, aligned, mode, box_grad=True)
    out.backward(torch.ones_like(out) if grad is None else grad)
    return out.detach(), x.grad, r.grad


# ---------------------------------------------------------------------------
# gradcheck and the reference
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("aligned,mode", MODES)
@pytest.mark.parametrize("sr", [2, -1])
def test_gradcheck(sr, aligned, mode, layout):
    pooled, scale = (2, 3), 0.9
    _, x, rois = _case(hash((sr, aligned, mode, layout)) % 2**31, layout, sr=sr, aligned=aligned, mode=mode)
    batch = rois[:, :1]
    coords = rois[:, 1:].clone().requires_grad_()
    x = x.requires_grad_()

    def f(x, coords):
        return roi_ext.roi_align(x, torch.cat([batch, coords], 1), pooled, scale, sr, aligned, mode, box_grad=True)

    assert torch.autograd.gradcheck(f, (x, coords), nondet_tol=0)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("aligned,mode", MODES)
@pytest.mark.parametrize("sr", [1, 2, -1])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_matches_reference(sr, aligned, mode, layout, scale):
    pooled = (3, 2)
    gen, x, rois = _case(hash((sr, aligned, mode, layout, scale)) % 2**31, layout, c=4, h=9, w=11, k=6,
                         pooled=pooled, scale=scale, sr=sr, aligned=aligned, mode=mode)
    g = torch.randn(rois.shape[0], x.shape[1], *pooled, generator=gen, dtype=F64)
    out, gx, gr = _box_grad(x, rois, pooled, scale, sr, aligned, mode, g)

    xr = x.detach().clone().requires_grad_()
    rr = rois.detach().clone().requires_grad_()
    ref = reference_roi_align(xr, rr, pooled, scale, sr, aligned, mode)
    ref.backward(g)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, xr.grad, rtol=1e-10, atol=1e-10)
    assert torch.all(gr[:, 0] == 0)  # the batch index gets no gradient
    torch.testing.assert_close(gr[:, 1:], rr.grad[:, 1:], rtol=1e-10, atol=1e-10)
    assert gr[:, 1:].abs().sum() > 0  # the test can fail


def test_reference_clamps_and_outside_samples():
    """Rois partly outside the map (samples in [-1, 0], beyond H - 1 and outside [-1, H]) and
    legacy rois smaller than one pixel: the one-sided derivative of the forward's branch."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 3, 6, 7, generator=gen, dtype=F64)
    rois = torch.tensor([[0, -2.37, -1.61, 3.13, 2.29],    # starts outside, partly in [-1, 0]
                         [0, 4.21, 3.37, 9.43, 8.71],       # ends past the last pixel and outside
                         [0, 2.13, 2.31, 2.57, 2.69],       # legacy: smaller than 1 px (clamped size)
                         [0, -9.1, -9.3, -3.3, -4.1]],      # wholly outside: no gradient
                        dtype=F64)
    for sr, (aligned, mode) in itertools.product((2, -1), MODES):
        g = torch.randn(4, 3, 2, 2, generator=gen, dtype=F64)
        out, _, gr = _box_grad(x, rois, 2, 1.0, sr, aligned, mode, g)
        rr = rois.clone().requires_grad_()
        reference_roi_align(x, rr, (2, 2), 1.0, sr, aligned, mode).backward(g)
        torch.testing.assert_close(gr[:, 1:], rr.grad[:, 1:], rtol=1e-10, atol=1e-10)
        assert torch.all(gr[3] == 0)
    # The clamped legacy roi: the size does not move, so d/dx2 = d/dy2 = 0 and d/dx1 = d(start).
    _, _, gr = _box_grad(x, rois[2:3], 2, 1.0, 2, False, 0)
    assert gr[0, 3] == 0 and gr[0, 4] == 0 and gr[0, 1] != 0


# ---------------------------------------------------------------------------
# The default: torchvision's behaviour
# ---------------------------------------------------------------------------
def test_default_gives_no_box_gradient():
    _, x, rois = _case(1)
    for kwargs in ({}, {"box_grad": False}):
        xr = x.clone().requires_grad_()
        r = rois.clone().requires_grad_()
        roi_ext.roi_align(xr, r, 2, 1.0, 2, **kwargs).sum().backward()
        assert r.grad is None and xr.grad is not None
    for module in (roi_ext.RoIAlign(2, 1.0, 2), roi_ext.ROIAlign(2, 2, 1.0, 2)):
        r = rois.clone().requires_grad_()
        module(x, r).sum().backward()
        assert r.grad is None


def test_modules_with_box_grad():
    _, x, rois = _case(2, sr=2, aligned=True, mode=0)
    r = rois.clone().requires_grad_()
    roi_ext.RoIAlign((2, 3), 0.9, 2, aligned=True, box_grad=True)(x, r).sum().backward()
    _, _, expected = _box_grad(x, rois, (2, 3), 0.9, 2, True, 0)
    assert torch.equal(r.grad, expected)

    _, x, rois = _case(3, pooled=(2, 2), scale=0.5, sr=2, aligned=False, mode=1)
    r = rois.clone().requires_grad_()
    roi_ext.ROIAlign(2, 2, 0.5, 2, box_grad=True)(x, r).sum().backward()
    _, _, expected = _box_grad(x, rois, 2, 0.5, 2, False, 1)
    assert torch.equal(r.grad, expected)

    assert repr(roi_ext.RoIAlign((7, 7), 0.25, 2)) == \
        "RoIAlign(output_size=(7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=False)"
    assert repr(roi_ext.RoIAlign(7, 0.25, 2, box_grad=True)).endswith("aligned=False, box_grad=True)")
    assert "box_grad" not in repr(roi_ext.ROIAlign(2, 2, 0.5))
    assert repr(roi_ext.ROIAlign(2, 2, 0.5, box_grad=True)).endswith("roi_end_mode=1, box_grad=True)")
    with pytest.raises(TypeError, match="box_grad"):
        roi_ext.roi_align(x, rois, 2, box_grad="yes")
    with pytest.raises(TypeError, match="box_grad"):
        roi_ext.RoIAlign(2, 1.0, 2, box_grad=1)


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_deterministic_across_runs_and_threads(dtype, layout):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 16, 20, 24, generator=gen).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = smooth_rois(gen, 300, 2, 20, 24, (7, 7), 1.0, -1, True, 0).to(dtype)
    g = torch.randn(300, 16, 7, 7, generator=gen).to(dtype)
    args = (1.0, 7, 7, -1, True, 0)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 1, 2):
            torch.set_num_threads(n)
            results.append(OP._roi_align_backward_rois(g, x, rois, *args))
    finally:
        torch.set_num_threads(threads)
    for r in results[1:]:
        assert torch.equal(r, results[0])
    assert results[0][:, 1:].abs().sum() > 0


# ---------------------------------------------------------------------------
# dtypes and forms
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(F16, 3e-2), (BF16, 1e-1), (F32, 1e-4)], ids=["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_dtypes_against_float64(dtype, tol, layout):
    gen, x, rois = _case(21, layout, c=5, h=10, w=12, k=8, pooled=(3, 3), sr=-1, aligned=True)
    g = torch.randn(8, 5, 3, 3, generator=gen, dtype=F64)
    _, _, ref = _box_grad(x, rois, 3, 0.9, -1, True, 0, g)
    x_low = x.to(dtype)
    out, gx, got = _box_grad(x_low, rois.to(F32), 3, 0.9, -1, True, 0, g.to(dtype))
    assert out.dtype == dtype and gx.dtype == dtype and got.dtype == F32
    # The low-precision input itself differs from the float64 one: compare with
    # the float64 gradient of the rounded input, then loosely with the original.
    _, _, ref_rounded = _box_grad(x_low.to(F64), rois.to(F32).to(F64), 3, 0.9, -1, True, 0,
                                  g.to(dtype).to(F64))
    scale = ref.abs().max()
    torch.testing.assert_close(got.to(F64), ref_rounded, rtol=0, atol=1e-5 * scale * (1 if dtype == F32 else 10))
    torch.testing.assert_close(got.to(F64), ref, rtol=0, atol=tol * scale)


def test_float64_rois_with_float32_input():
    gen, x, rois = _case(22, c=4, sr=2, aligned=False, mode=0)
    g = torch.randn(rois.shape[0], 4, 2, 3, generator=gen)
    _, _, got = _box_grad(x.float(), rois, (2, 3), 0.9, 2, False, 0, g)
    assert got.dtype == F64
    _, _, ref = _box_grad(x.float().double(), rois, (2, 3), 0.9, 2, False, 0, g.double())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_boxes_list_form():
    gen, x, rois = _case(23, k=6, sr=-1, aligned=True)
    rois = rois[rois[:, 0].argsort(stable=True)]
    boxes = [rois[rois[:, 0] == i, 1:].clone().requires_grad_() for i in range(2)]
    out = roi_ext.roi_align(x, boxes, (2, 3), 0.9, -1, True, box_grad=True)
    g = torch.randn(out.shape, generator=gen, dtype=F64)
    out.backward(g)
    _, _, expected = _box_grad(x, rois, (2, 3), 0.9, -1, True, 0, g)
    torch.testing.assert_close(torch.cat([b.grad for b in boxes]), expected[:, 1:], rtol=0, atol=0)


def test_empty_shapes():
    x = torch.randn(2, 3, 8, 9, dtype=F64)
    r = torch.empty(0, 5, dtype=F64, requires_grad=True)
    roi_ext.roi_align(x, r, 2, box_grad=True).sum().backward()
    assert r.grad.shape == (0, 5)
    rois = torch.tensor([[0, 1.1, 1.2, 5.3, 6.4], [1, 0.5, 0.7, 3.3, 4.9]], dtype=F64)
    for shape in ((2, 0, 8, 9), (2, 3, 0, 9), (2, 3, 8, 0)):
        xe = torch.randn(shape, dtype=F64)
        g = torch.randn(2, shape[1], 2, 2, dtype=F64)
        got = OP._roi_align_backward_rois(g, xe, rois, 1.0, 2, 2, 2, False, 0)
        assert got.shape == (2, 5) and torch.all(got == 0)
    got = OP._roi_align_backward_rois(torch.randn(2, 3, 0, 2, dtype=F64), x, rois, 1.0, 0, 2, 2, False, 0)
    assert got.shape == (2, 5) and torch.all(got == 0)
    got = OP._roi_align_backward_rois(torch.randn(0, 3, 2, 2), x.float(), torch.empty(0, 5, dtype=F16), 1.0, 2, 2,
                                      2, False, 0)
    assert got.shape == (0, 5) and got.dtype == F16


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def _raw(*args):
    return call_op(OP._roi_align_backward_rois.default, *args)


def test_bad_batch_index():
    x = torch.randn(2, 3, 8, 9)
    g = torch.randn(2, 3, 2, 2)
    for bad in (2.0, -0.5, float("nan")):
        rois = torch.tensor([[0, 1.0, 1, 5, 6], [bad, 0.5, 2, 7, 7.5]])
        with pytest.raises(IndexError, match=r"_roi_align_backward_rois: rois\[1, 0\] \(batch index\)"):
            _raw(g, x, rois, 1.0, 2, 2, 2, False, 0)
        with pytest.raises(IndexError):
            roi_ext.roi_align(x, rois.requires_grad_(), 2, box_grad=True)


def test_argument_errors():
    x = torch.randn(2, 3, 8, 9)
    rois = torch.tensor([[0, 1.0, 1, 5, 6], [1, 0.5, 2, 7, 7.5]])
    g = torch.randn(2, 3, 2, 2)
    for bad_grad in (torch.randn(3, 3, 2, 2), torch.randn(2, 4, 2, 2), torch.randn(2, 3, 2, 3), torch.randn(2, 3, 2)):
        with pytest.raises(ValueError, match=r"_roi_align_backward_rois: grad must have shape \[K, C, pooled_height"):
            _raw(bad_grad, x, rois, 1.0, 2, 2, 2, False, 0)
    with pytest.raises(RuntimeError, match="ValueError: _roi_align_backward_rois: grad must have shape"):
        OP._roi_align_backward_rois(torch.randn(2, 3, 3, 3), x, rois, 1.0, 2, 2, 2, False, 0)
    with pytest.raises(ValueError, match="input must be a 4-D"):
        _raw(g, x[0], rois, 1.0, 2, 2, 2, False, 0)
    with pytest.raises(ValueError, match="rois must have shape"):
        _raw(g, x, rois[:, :4], 1.0, 2, 2, 2, False, 0)
    with pytest.raises(TypeError, match="input must be float16"):
        _raw(g, x.int(), rois, 1.0, 2, 2, 2, False, 0)
    with pytest.raises(TypeError, match="grad must be float16"):
        _raw(g.int(), x, rois, 1.0, 2, 2, 2, False, 0)
    with pytest.raises(ValueError, match="roi_end_mode must be 0 or 1"):
        _raw(g, x, rois, 1.0, 2, 2, 2, False, 2)
    with pytest.raises(ValueError, match="spatial_scale must be finite"):
        _raw(g, x, rois, float("inf"), 2, 2, 2, False, 0)
    with pytest.raises(ValueError, match="bilinear samples"):
        _raw(g, x, rois, 1.0, 2, 2, 1 << 13, False, 0)


# ---------------------------------------------------------------------------
# Higher-order modes: refused, never silently zero
# ---------------------------------------------------------------------------
def test_double_backward_raises():
    _, x, rois = _case(31)
    x = x.requires_grad_()
    r = rois.clone().requires_grad_()
    out = roi_ext.roi_align(x, r, (2, 3), 0.9, 2, box_grad=True)
    gx, gr = torch.autograd.grad(out.pow(2).sum(), (x, r), create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward through the box gradient of roi_align"):
        gr.sum().backward(retain_graph=True)
    with pytest.raises(NotImplementedError, match="double backward through the box gradient of roi_align"):
        gx.pow(2).sum().backward()


def test_double_backward_without_box_grad_still_works():
    _, x, rois = _case(32)
    x = x.requires_grad_()
    out = roi_ext.roi_align(x, rois, (2, 3), 0.9, 2, box_grad=True)  # rois need no gradient
    (gx,) = torch.autograd.grad(out.pow(2).sum(), (x,), create_graph=True)
    gx.sum().backward()
    assert x.grad is not None


def test_forward_mode_with_a_rois_tangent_raises():
    _, x, rois = _case(33)

    def f(x, rois):
        return roi_ext.roi_align(x, rois, (2, 3), 0.9, 2, box_grad=True)

    with pytest.raises(NotImplementedError, match="tangent for the rois"):
        torch.func.jvp(f, (x, rois), (torch.zeros_like(x), torch.ones_like(rois)))
    # An input tangent alone: roi_align is linear in its input.
    tangent = torch.randn_like(x)
    out, jvp_out = torch.func.jvp(lambda x: f(x, rois), (x,), (tangent,))
    assert torch.equal(jvp_out, roi_ext.roi_align(tangent, rois, (2, 3), 0.9, 2))
    # Reverse mode through torch.func works.
    gr = torch.func.grad(lambda r: f(x, r).sum())(rois)
    _, _, expected = _box_grad(x, rois, (2, 3), 0.9, 2, False, 0)
    torch.testing.assert_close(gr, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Ecosystem
# ---------------------------------------------------------------------------
class _BoxHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = roi_ext.RoIAlign((2, 3), 0.9, -1, aligned=True, box_grad=True)

    def forward(self, x, rois):
        return self.pool(self.conv(x), rois).pow(2).sum()


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    _, x, rois = _case(41, sr=-1, aligned=True, dtype=F32)
    rois = rois.float()
    model = _BoxHead()
    compiled = torch.compile(model, fullgraph=True)
    grads = []
    for m in (model, compiled):
        r = rois.clone().requires_grad_()
        xx = x.clone().requires_grad_()
        m(xx, r).backward()
        grads.append((r.grad, xx.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-4, atol=1e-4)
    assert grads[0][0][:, 1:].abs().sum() > 0


def test_opcheck():
    gen, x, rois = _case(42, sr=2)
    for dtype in (F32, F64):
        xd = x.to(dtype).clone().requires_grad_()
        rd = rois.to(dtype).clone().requires_grad_()
        torch.library.opcheck(OP.roi_align_with_box_grad.default, (xd, rd, 0.9, 2, 3, 2, False, 0))
        g = torch.randn(rois.shape[0], 3, 2, 3, generator=gen).to(dtype)
        # Its own derivative is refused (test_double_backward_raises): inputs without grad.
        torch.library.opcheck(OP._roi_align_backward_rois.default,
                              (g, x.to(dtype).clone(), rois.to(dtype).clone(), 0.9, 2, 3, 2, False, 0))
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(OP.roi_align_with_box_grad.default, (xc, rois, 0.9, 2, 3, -1, True, 1))


def test_torchscript():
    _, x, rois = _case(43, sr=2, aligned=True)
    scripted = torch.jit.script(roi_ext.roi_align)
    r1 = rois.clone().requires_grad_()
    r2 = rois.clone().requires_grad_()
    scripted(x, r1, [2, 3], 0.9, 2, True, 0, True).sum().backward()
    roi_ext.roi_align(x, r2, (2, 3), 0.9, 2, True, box_grad=True).sum().backward()
    assert torch.equal(r1.grad, r2.grad)
    for module in (roi_ext.RoIAlign((2, 3), 0.9, 2, True, box_grad=True), roi_ext.ROIAlign(2, 3, 0.9, 2, 0, True)):
        r3 = rois.clone().requires_grad_()
        torch.jit.script(module)(x, r3).sum().backward()
        assert r3.grad is not None and r3.grad[:, 1:].abs().sum() > 0


def test_fx_leaf():
    class M(torch.nn.Module):
        def forward(self, x, rois):
            return roi_ext.roi_align(x, rois, 2, 0.5, 2, True, box_grad=True)

    traced = torch.fx.symbolic_trace(M())
    calls = [n for n in traced.graph.nodes if n.op == "call_function"]
    assert any(getattr(n.target, "__name__", "") == "roi_align" for n in calls), traced.code
    _, x, rois = _case(44)
    assert torch.equal(traced(x, rois), M()(x, rois))


def test_autocast_cpu():
    _, x, rois = _case(45, sr=2, dtype=F32)
    r = rois.float().requires_grad_()
    xx = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = roi_ext.roi_align(xx, r, (2, 3), 0.9, 2, box_grad=True)
    assert out.dtype == F32
    out.sum().backward()
    _, _, expected = _box_grad(x, rois.float(), (2, 3), 0.9, 2, False, 0)
    assert torch.equal(r.grad, expected)

"""Precise RoI Pooling's CUDA kernels, executed on the CPU by the emulation build
(ROI_EXT_CUDA_EMULATION=1, scripts/test_emulation.sh: csrc/cuda/*.cu compiled as host code,
registered as torch.ops.roi_ext_cuda_emulated.*).

Checked: emulated forward == CPU bit for bit (float32/float64, NCHW and channels_last); the
deterministic input gradient == CPU bit for bit, the atomic one within rounding; the roi
gradient within rounding of the CPU's and bitwise reproducible; gradcheck through the
emulated ops; and the documented CUDA behaviour for a bad batch index (zeros, no error, no
host synchronisation) and for non-finite rois (zeros).
Skipped unless the emulated namespace exists (the normal build does not have it)."""
import math

import pytest
import torch

import prroi_reference as R
import roi_ext  # noqa: F401  (loads the operators)

from emulation import EMU, needs_emulation

pytestmark = needs_emulation

CPU = torch.ops.roi_ext
F32, F64 = torch.float32, torch.float64


def _rois(gen, num, batch, height, width, scale, dtype=F64):
    """Rois in image coordinates: many partly or wholly outside the map, some inverted,
    some with bins smaller than a pixel, some larger than the map."""
    def u(lo, hi, n):
        return torch.rand(n, generator=gen, dtype=F64) * (hi - lo) + lo

    n1 = num // 2
    n2 = num // 4
    n3 = num - n1 - n2
    x1 = torch.cat([u(-0.3, 1.2, n1) * width, u(-1, width, n2), u(-3, 0, n3) * width])
    y1 = torch.cat([u(-0.3, 1.2, n1) * height, u(-1, height, n2), u(-3, 0, n3) * height])
    w = torch.cat([u(-0.1, 0.8, n1) * width, u(0.05, 2, n2), u(1.2, 4, n3) * width])
    h = torch.cat([u(-0.1, 0.8, n1) * height, u(0.05, 2, n2), u(1.2, 4, n3) * height])
    b = torch.randint(0, batch, (num,), generator=gen).to(F64)
    return torch.stack([b, x1 / scale, y1 / scale, (x1 + w) / scale, (y1 + h) / scale], dim=1).to(dtype)


def _case(dtype, channels_last, seed, num=40, channels=5, size=(3, 4), scale=0.5):
    gen = torch.Generator().manual_seed(seed)
    N, H, W = 3, 11, 13
    x = torch.randn(N, channels, H, W, generator=gen, dtype=F64).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rois = _rois(gen, num, N, H, W, scale, dtype)
    grad = torch.randn((num, channels) + size, generator=gen, dtype=F64).to(dtype)
    if channels_last:
        grad = grad.contiguous(memory_format=torch.channels_last)
    return x, rois, grad, size, scale


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_equals_cpu(dtype, channels_last, seed):
    x, rois, _, (ph, pw), s = _case(dtype, channels_last, seed)
    emu = EMU.prroi_pool(x, rois, s, ph, pw)
    cpu = CPU.prroi_pool(x, rois, s, ph, pw)
    assert emu.dtype == dtype and emu.shape == cpu.shape
    assert emu.is_contiguous(memory_format=torch.channels_last) == cpu.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(emu, cpu)
    assert emu.abs().sum() > 0


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_input_gradient_equals_cpu(dtype, channels_last):
    x, rois, grad, (ph, pw), s = _case(dtype, channels_last, 2)
    N, C, H, W = x.shape
    cpu = CPU._prroi_pool_backward(grad, rois, s, ph, pw, N, C, H, W, True)
    det = EMU._prroi_pool_backward(grad, rois, s, ph, pw, N, C, H, W, True)
    assert det.dtype == dtype and det.shape == x.shape
    assert torch.equal(det, cpu)
    atomic = EMU._prroi_pool_backward(grad, rois, s, ph, pw, N, C, H, W, False)
    tol = 1e-5 if dtype == F32 else 1e-12
    torch.testing.assert_close(atomic, cpu, rtol=tol, atol=tol)
    assert cpu.abs().sum() > 0


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_rois_gradient_equals_cpu_and_is_reproducible(dtype, channels_last):
    x, rois, grad, (ph, pw), s = _case(dtype, channels_last, 3)
    cpu = CPU._prroi_pool_backward_rois(grad, x, rois, s, ph, pw)
    emu = EMU._prroi_pool_backward_rois(grad, x, rois, s, ph, pw)
    assert emu.dtype == dtype and emu.shape == (rois.shape[0], 5)
    assert torch.all(emu[:, 0] == 0)
    tol = 1e-5 if dtype == F32 else 1e-12
    scale = cpu.abs().max().item()
    torch.testing.assert_close(emu, cpu, rtol=tol, atol=tol * max(scale, 1.0))
    assert torch.equal(emu, EMU._prroi_pool_backward_rois(grad, x, rois, s, ph, pw))
    assert scale > 0


def test_float64_rois_with_float32_input():
    x, rois, grad, (ph, pw), s = _case(F32, False, 4)
    rois = rois.to(F64)
    assert torch.equal(EMU.prroi_pool(x, rois, s, ph, pw), CPU.prroi_pool(x, rois, s, ph, pw))
    emu = EMU._prroi_pool_backward_rois(grad, x, rois, s, ph, pw)
    cpu = CPU._prroi_pool_backward_rois(grad, x, rois, s, ph, pw)
    assert emu.dtype == F64
    torch.testing.assert_close(emu, cpu, rtol=1e-5, atol=1e-5 * max(cpu.abs().max().item(), 1.0))


def test_forward_matches_the_reference():
    x, rois, _, size, s = _case(F64, False, 5, num=12, channels=2)
    emu = EMU.prroi_pool(x, rois, s, *size)
    torch.testing.assert_close(emu, torch.from_numpy(R.forward(x.numpy(), rois.numpy(), size, s)),
                               rtol=1e-9, atol=1e-9)


class _Emulated(torch.autograd.Function):
    """prroi_pool through the emulated forward and the two emulated backward kernels."""

    @staticmethod
    def forward(ctx, x, rois, scale, ph, pw):
        ctx.save_for_backward(x, rois)
        ctx.args = (scale, ph, pw)
        return EMU.prroi_pool(x, rois, scale, ph, pw)

    @staticmethod
    def backward(ctx, grad):
        x, rois = ctx.saved_tensors
        scale, ph, pw = ctx.args
        grad = grad.contiguous()
        N, C, H, W = x.shape
        gx = EMU._prroi_pool_backward(grad, rois, scale, ph, pw, N, C, H, W, True) if ctx.needs_input_grad[0] else None
        gr = EMU._prroi_pool_backward_rois(grad, x, rois, scale, ph, pw) if ctx.needs_input_grad[1] else None
        return gx, gr, None, None, None


def _jitter(rois, scale, size, margin=1e-3):
    rois = rois.clone()
    ph, pw = size
    for k in range(rois.shape[0]):
        for _ in range(200):
            sx, sy, ex, ey = (rois[k, 1:] * scale).tolist()
            edges = [sx + (ex - sx) * i / pw for i in range(pw + 1)] + [sy + (ey - sy) * i / ph for i in range(ph + 1)]
            if all(abs(t - round(t)) > margin for t in edges):
                break
            rois[k, 1:] += torch.tensor([0.0123, 0.0171, 0.0137, 0.0093], dtype=rois.dtype) / scale
    return rois


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcheck_through_the_emulated_kernels(channels_last):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=F64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rois = _jitter(_rois(gen, 6, 2, 6, 7, 0.5), 0.5, (2, 3))
    batch, coords = rois[:, :1].clone(), rois[:, 1:].clone()

    def fn(inp, c):
        return _Emulated.apply(inp, torch.cat([batch, c], 1), 0.5, 2, 3)

    assert torch.autograd.gradcheck(fn, (x.requires_grad_(), coords.requires_grad_()), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("index", [-1.0, 3.0, 7.5, 1e10, math.nan, math.inf])
def test_bad_batch_index_gives_zeros_not_an_error(index):
    """The CUDA kernels cannot raise without a host synchronisation: a roi whose batch
    index is outside [0, N) pools zeros and passes no gradient; the other rois are intact."""
    x, rois, grad, (ph, pw), s = _case(F64, False, 7, num=8)
    N, C, H, W = x.shape
    bad = rois.clone()
    bad[3, 0] = index
    out = EMU.prroi_pool(x, bad, s, ph, pw)
    assert torch.all(out[3] == 0)
    keep = torch.arange(8) != 3
    assert torch.equal(out[keep], CPU.prroi_pool(x, rois[keep], s, ph, pw))
    only_bad = torch.zeros_like(grad)
    only_bad[3] = grad[3]
    assert torch.all(EMU._prroi_pool_backward(only_bad, bad, s, ph, pw, N, C, H, W, True) == 0)
    assert torch.all(EMU._prroi_pool_backward(only_bad, bad, s, ph, pw, N, C, H, W, False) == 0)
    gr = EMU._prroi_pool_backward_rois(grad, x, bad, s, ph, pw)
    assert torch.all(gr[3] == 0)
    torch.testing.assert_close(gr[keep], CPU._prroi_pool_backward_rois(grad[keep], x, rois[keep], s, ph, pw),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rois_give_zeros(dtype, bad):
    x, rois, grad, (ph, pw), s = _case(dtype, False, 8, num=8)
    N, C, H, W = x.shape
    rois = rois.clone()
    for k, col in enumerate([1, 2, 3, 4]):
        rois[k, col] = bad
    out = EMU.prroi_pool(x, rois, s, ph, pw)
    assert torch.all(out[:4] == 0)
    assert torch.equal(out, CPU.prroi_pool(x, rois, s, ph, pw))
    only_bad = torch.zeros_like(grad)
    only_bad[:4] = grad[:4]
    assert torch.all(EMU._prroi_pool_backward(only_bad, rois, s, ph, pw, N, C, H, W, True) == 0)
    gr = EMU._prroi_pool_backward_rois(grad, x, rois, s, ph, pw)
    assert torch.all(gr[:4] == 0) and torch.all(torch.isfinite(gr))


def test_huge_rois_cost_at_most_the_map():
    """1e30-wide rois: every loop is clipped to the map (the emulation counts the inner-loop
    iterations); an unclipped loop would run ~1e30 times."""
    x = torch.randn(1, 2, 9, 10, dtype=F64)
    rois = torch.tensor([[0, -1e30, -1e30, 1e30, 1e30], [0, 0, 0, 1e30, 1e30], [0, -1e30, 2, 3, 4]], dtype=F64)
    bound = 10 * 3 * 2 * 7 * 7 * (9 + 3) * (10 + 3)
    EMU.reset_counters()
    out = EMU.prroi_pool(x, rois, 1.0, 7, 7)
    assert torch.all(torch.isfinite(out))
    assert EMU.work_counter() <= bound
    grad = torch.ones_like(out)
    for det in (False, True):
        EMU.reset_counters()
        gx = EMU._prroi_pool_backward(grad, rois, 1.0, 7, 7, 1, 2, 9, 10, det)
        assert torch.all(torch.isfinite(gx)) and EMU.work_counter() <= bound
    EMU.reset_counters()
    gr = EMU._prroi_pool_backward_rois(grad, x, rois, 1.0, 7, 7)
    assert torch.all(torch.isfinite(gr)) and EMU.work_counter() <= bound
    torch.testing.assert_close(out, CPU.prroi_pool(x, rois, 1.0, 7, 7), rtol=0, atol=0)


@pytest.mark.parametrize("shape,num", [((2, 3, 5, 6), 0), ((2, 0, 5, 6), 4), ((2, 3, 0, 6), 4)])
def test_empty_shapes(shape, num):
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(shape, generator=gen, dtype=F64)
    rois = _rois(gen, num, 2, 5, 6, 1.0)
    out = EMU.prroi_pool(x, rois, 1.0, 2, 3)
    assert out.shape == (num, shape[1], 2, 3) and torch.all(out == 0)
    grad = torch.ones_like(out)
    gx = EMU._prroi_pool_backward(grad, rois, 1.0, 2, 3, *shape, True)
    assert gx.shape == shape and torch.all(gx == 0)
    gr = EMU._prroi_pool_backward_rois(grad, x, rois, 1.0, 2, 3)
    assert gr.shape == (num, 5) and torch.all(gr == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("case", ["lanes", "nchw_many_rois", "uncached"])
def test_forward_and_input_gradient_equal_cpu_on_every_cpu_path(dtype, case):
    """The CPU kernels have several paths (8-float channel lanes for channels-last
    float32/bfloat16 maps, a channels-last copy of an NCHW map read by many rois,
    channels-last accumulation of the input gradient, the per-bin sums when the
    row cache would be too large); each must give the emulated CUDA kernels' bits
    (the input gradient: the deterministic gather)."""
    gen = torch.Generator().manual_seed(7)
    if case == "uncached":  # 60 rows x 200 bin columns x 128 channels > the 2^20-value row cache
        n, c, h, w, k, pooled = 1, 128, 60, 64, 1, (30, 200)
    elif case == "lanes":
        n, c, h, w, k, pooled = 2, 21, 9, 11, 6, (3, 4)
    else:
        n, c, h, w, k, pooled = 1, 13, 5, 6, 40, (3, 3)
    x = torch.randn(n, c, h, w, generator=gen).to(dtype)
    if case == "lanes":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = torch.rand(k, 5, generator=gen, dtype=torch.float64) * max(h, w) - 2
    rois[:, 0] = torch.randint(0, n, (k,), generator=gen).double()
    rois[:, 3:] = rois[:, 1:3] + torch.rand(k, 2, generator=gen, dtype=torch.float64) * 8
    if case == "uncached":
        rois[0] = torch.tensor([0.0, -3.5, -2.25, 70.5, 61.75])
    rois = rois.to(dtype if dtype == torch.float64 else torch.float32)
    cpu = torch.ops.roi_ext.prroi_pool(x, rois, 0.9, *pooled)
    emulated = EMU.prroi_pool(x, rois, 0.9, *pooled)
    assert torch.equal(cpu, emulated)
    grad = torch.randn(cpu.shape, generator=gen).to(dtype).contiguous(memory_format=_format_of(cpu))
    args = (rois, 0.9, *pooled, n, c, h, w)
    gi_cpu = torch.ops.roi_ext._prroi_pool_backward(grad, *args)
    gi_emulated = EMU._prroi_pool_backward(grad, *args, True)
    assert gi_cpu.is_contiguous(memory_format=_format_of(x))
    assert torch.equal(gi_cpu, gi_emulated)


def _format_of(t):
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format

"""The CUDA kernels of roi_align's box gradient (roi_align_with_box_grad,
_roi_align_backward_rois), executed on the CPU by the emulation build
(scripts/test_emulation.sh; see tests/test_cuda_emulation.py): equal to the CPU
kernel within rounding, bitwise reproducible, gradcheck in float64 through the
emulated ops, and the documented CUDA behaviour for bad batch indices (a zero
gradient, nothing raised, no host synchronisation). Skipped unless the emulated
namespace exists (the normal build does not have it)."""

import pytest
import torch

from emulation import EMU, needs_emulation
from test_roi_align_box_grad import MODES, smooth_rois

pytestmark = needs_emulation

CPU = torch.ops.roi_ext
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
DTYPE_ID = {"ids": lambda d: str(d).replace("torch.", "")}


def _rois(gen, num, batch, height, width, scale, dtype):
    """Rois anywhere: partly or wholly outside the map, some inverted or tiny."""
    x1 = (torch.rand(num, generator=gen, dtype=F64) * 1.5 - 0.3) * width / scale
    y1 = (torch.rand(num, generator=gen, dtype=F64) * 1.5 - 0.3) * height / scale
    w = (torch.rand(num, generator=gen, dtype=F64) * 0.9 - 0.1) * width / scale
    h = (torch.rand(num, generator=gen, dtype=F64) * 0.9 - 0.1) * height / scale
    b = torch.randint(0, batch, (num,), generator=gen).to(F64)
    return torch.stack([b, x1, y1, x1 + w, y1 + h], 1).to(dtype)


def _case(dtype, layout, seed, channels=5, num=30):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, 11, 13, generator=gen).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # a non-contiguous NCHW view
        x = torch.randn(2, 2 * channels, 13, 11, generator=gen).to(dtype).transpose(2, 3)[:, ::2]
    rois = _rois(gen, num, 2, 11, 13, 0.5, F64 if dtype == F64 else F32)
    return gen, x, rois


@pytest.mark.parametrize("dtype", [F16, BF16, F32, F64], **DTYPE_ID)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("aligned,mode", MODES)
@pytest.mark.parametrize("sr", [-1, 0, 2, 3])
def test_backward_rois_equals_cpu(dtype, layout, aligned, mode, sr):
    gen, x, rois = _case(dtype, layout, hash((str(dtype), layout, aligned, mode, sr)) % 2**31)
    args = (0.5, 3, 4, sr, aligned, mode)
    out = CPU.roi_align(x, rois, *args)
    assert torch.equal(EMU.roi_align_with_box_grad(x, rois, *args), out)
    for grad in (torch.randn(out.shape, generator=gen).to(dtype),
                 torch.randn(out.shape, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last),
                 torch.ones((), dtype=dtype).expand(out.shape)):  # stride 0: from .sum().backward()
        ref = CPU._roi_align_backward_rois(grad, x, rois, *args)
        emu = EMU._roi_align_backward_rois(grad, x, rois, *args)
        assert emu.dtype == ref.dtype == rois.dtype and emu.shape == ref.shape == (rois.shape[0], 5)
        assert torch.all(emu[:, 0] == 0)
        # The same terms, added in another order (threads, then a tree).
        rtol = 1e-12 if dtype == F64 else 1e-5
        scale = ref.abs().max().item() + 1e-30
        torch.testing.assert_close(emu, ref, rtol=rtol, atol=rtol * scale)
        assert ref[:, 1:].abs().sum() > 0


@pytest.mark.parametrize("dtype", [F32, F64], **DTYPE_ID)
def test_bitwise_reproducible(dtype):
    gen, x, rois = _case(dtype, "channels_last", 7, channels=9, num=20)
    g = torch.randn(20, 9, 4, 4, generator=gen).to(dtype)
    a = EMU._roi_align_backward_rois(g, x, rois, 0.5, 4, 4, -1, True, 0)
    b = EMU._roi_align_backward_rois(g, x, rois, 0.5, 4, 4, -1, True, 0)
    assert torch.equal(a, b)


class _EmulatedBoxGradRoiAlign(torch.autograd.Function):
    """roi_align with box gradient, every kernel the emulated CUDA one."""

    @staticmethod
    def forward(ctx, x, coords, batch, pooled_h, pooled_w, scale, sr, aligned, mode):
        rois = torch.cat([batch, coords], 1)
        ctx.save_for_backward(x, rois)
        ctx.args = (scale, pooled_h, pooled_w, sr, aligned, mode)
        return EMU.roi_align_with_box_grad(x, rois, scale, pooled_h, pooled_w, sr, aligned, mode)

    @staticmethod
    def backward(ctx, grad):
        x, rois = ctx.saved_tensors
        scale, pooled_h, pooled_w, sr, aligned, mode = ctx.args
        n, c, h, w = x.shape
        grad_x = EMU._roi_align_backward(grad, rois, scale, pooled_h, pooled_w, n, c, h, w, sr, aligned, mode, True)
        grad_rois = EMU._roi_align_backward_rois(grad, x, rois, *ctx.args)
        return grad_x, grad_rois[:, 1:], None, None, None, None, None, None, None


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("aligned,mode", MODES)
@pytest.mark.parametrize("sr", [2, -1])
def test_gradcheck_through_the_emulated_kernels(sr, aligned, mode, layout):
    gen = torch.Generator().manual_seed(hash((sr, aligned, mode, layout)) % 2**31)
    x = torch.randn(2, 3, 7, 8, generator=gen, dtype=F64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = smooth_rois(gen, 3, 2, 7, 8, (2, 3), 0.9, sr, aligned, mode)
    coords = rois[:, 1:].clone().requires_grad_()
    x.requires_grad_()

    def f(x, coords):
        return _EmulatedBoxGradRoiAlign.apply(x, coords, rois[:, :1], 2, 3, 0.9, sr, aligned, mode)

    assert torch.autograd.gradcheck(f, (x, coords), nondet_tol=0)


def test_bad_batch_index_gives_zero_gradient():
    """No host synchronisation: CUDA does not check the batch indices; a roi outside
    [0, N) or NaN gets a zero gradient (the CPU raises an IndexError)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 9, generator=gen)
    rois = torch.tensor([[0, 1.1, 1.3, 5.2, 6.1], [2, 1.1, 1.3, 5.2, 6.1], [-1, 0.5, 2.1, 7.2, 7.3],
                         [float("nan"), 0.5, 2.1, 7.2, 7.3], [1, 0.5, 2.1, 7.2, 7.3]])
    g = torch.randn(5, 3, 2, 2, generator=gen)
    got = EMU._roi_align_backward_rois(g, x, rois, 1.0, 2, 2, 2, False, 0)
    assert torch.all(got[1:4] == 0)
    good = rois[[0, 4]]
    torch.testing.assert_close(got[[0, 4]], CPU._roi_align_backward_rois(g[[0, 4]], x, good, 1.0, 2, 2, 2, False, 0),
                               rtol=1e-5, atol=1e-6)
    assert got[0, 1:].abs().sum() > 0


def test_too_many_samples_gives_zero_gradient():
    """Adaptive sampling of a diverging roi: no gradient instead of looping for hours."""
    x = torch.randn(1, 2, 8, 9)
    rois = torch.tensor([[0, 1.1, 1.3, 5.2, 6.1], [0, -1e9, -1e9, 1e9, 1e9]])
    g = torch.randn(2, 2, 7, 7)
    got = EMU._roi_align_backward_rois(g, x, rois, 1.0, 7, 7, -1, True, 0)
    assert torch.all(got[1] == 0) and got[0, 1:].abs().sum() > 0
    with pytest.raises(RuntimeError, match="bilinear samples"):  # fixed sampling: refused on the host
        EMU._roi_align_backward_rois(g, x, rois, 1.0, 7, 7, 1 << 12, True, 0)


@pytest.mark.parametrize("shape,num,pooled", [
    ((2, 3, 8, 9), 0, (2, 2)), ((2, 0, 8, 9), 3, (2, 2)), ((2, 3, 0, 9), 3, (2, 2)), ((2, 3, 8, 9), 3, (0, 2)),
])
def test_empty_shapes(shape, num, pooled):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=gen)
    rois = _rois(gen, num, 2, 8, 9, 1.0, F32)
    g = torch.randn(num, shape[1], *pooled, generator=gen)
    for op in (EMU, CPU):
        got = op._roi_align_backward_rois(g, x, rois, 1.0, *pooled, 2, True, 0)
        assert got.shape == (num, 5) and torch.all(got == 0)


def test_work_is_spread_over_the_block():
    """One roi's items are shared by the block's threads: no thread does all of them."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 64, 16, 16, generator=gen)
    rois = torch.tensor([[0, 1.1, 1.3, 14.2, 13.1]])
    g = torch.randn(1, 64, 7, 7, generator=gen)
    EMU.reset_counters()
    EMU._roi_align_backward_rois(g, x, rois, 1.0, 7, 7, 2, False, 0)
    total, most = EMU.work_counter(), EMU.max_thread_work()
    assert total >= 64 * 49 * 4 and most * 200 <= total

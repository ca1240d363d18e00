"""CUDA kernels: registration (checked on every machine whose build compiled
them), and on a GPU: CUDA == CPU for every op, dtype, layout and mode,
determinism, bad input, empty shapes, stride-0 grads, autocast, streams, graph
capture, no host synchronisation and device handling. GPU tests are skipped
without one; tests/test_cuda_emulation.py runs the same kernels on the CPU."""
import os
import shutil

import pytest
import torch

import roi_ext

OPS = ["roi_align", "_roi_align_backward", "roi_align_with_box_grad", "_roi_align_backward_rois",
       "crop_and_resize", "crop_and_resize_grad_image", "crop_and_resize_grad_boxes",
       "multi_scale_roi_align", "_multi_scale_roi_align_backward",
       "prroi_pool", "_prroi_pool_backward", "_prroi_pool_backward_rois"]
HAS_GPU = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA device")
F32, F64 = torch.float32, torch.float64
DTYPE_ID = {"ids": lambda d: str(d).replace("torch.", "")}
METHODS = ("bilinear", "nearest", "bilinear_v2")


def _cuda_build_expected():
    """setup.py builds the CUDA kernels when torch is a CUDA build and nvcc is found."""
    if os.environ.get("FORCE_CPU", "0") not in ("", "0"):
        return False
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    nvcc = shutil.which("nvcc") or os.path.join(cuda_home, "bin", "nvcc")
    return torch.version.cuda is not None and os.path.exists(nvcc)


@pytest.mark.skipif(not _cuda_build_expected(), reason="built without CUDA (CPU torch or no nvcc)")
@pytest.mark.parametrize("op", OPS)
def test_every_op_has_a_cuda_kernel(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"roi_ext::{op}", "CUDA")


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_a_cpu_kernel(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"roi_ext::{op}", "CPU")


# ---------------------------------------------------------------------------
# GPU: CUDA equals CPU
# ---------------------------------------------------------------------------
def _rois(gen, num, batch, height, width, scale):
    x1 = torch.rand(num, generator=gen) * 1.2 * width / scale - 0.1 * width / scale
    y1 = torch.rand(num, generator=gen) * 1.2 * height / scale - 0.1 * height / scale
    w = torch.rand(num, generator=gen) * 0.6 * width / scale
    h = torch.rand(num, generator=gen) * 0.6 * height / scale
    b = torch.randint(0, batch, (num,), generator=gen).float()
    return torch.stack([b, x1, y1, x1 + w, y1 + h], 1)


def _boxes(gen, n):
    return torch.rand(n, 4, generator=gen) * 1.6 - 0.3


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, F32, F64], **DTYPE_ID)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("aligned,mode,sr", [(False, 0, -1), (True, 0, 2), (False, 1, 2), (True, 1, 0)])
def test_roi_align_cuda_equals_cpu(dtype, channels_last, aligned, mode, sr):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 20, 23, generator=gen).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    rois = _rois(gen, 64, 2, 20, 23, 0.5).to(dtype if dtype in (F32, F64) else F32)
    cpu = roi_ext.roi_align(x, rois, (5, 4), 0.5, sr, aligned, mode)
    cuda = roi_ext.roi_align(x.cuda(), rois.cuda(), (5, 4), 0.5, sr, aligned, mode)
    assert cuda.is_contiguous(memory_format=torch.channels_last) == cpu.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cuda.cpu(), cpu)  # same math, no FMA contraction

    g = torch.randn(cpu.shape, generator=gen).to(dtype)
    xc = x.clone().requires_grad_()
    roi_ext.roi_align(xc, rois, (5, 4), 0.5, sr, aligned, mode).backward(g)
    xg = x.cuda().requires_grad_()
    roi_ext.roi_align(xg, rois.cuda(), (5, 4), 0.5, sr, aligned, mode).backward(g.cuda())
    tol = {torch.float16: 2e-2, torch.bfloat16: 5e-2, F32: 1e-5, F64: 1e-12}[dtype]
    torch.testing.assert_close(xg.grad.cpu(), xc.grad, rtol=tol, atol=tol)  # atomics: any order

    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            xd = x.cuda().requires_grad_()
            roi_ext.roi_align(xd, rois.cuda(), (5, 4), 0.5, sr, aligned, mode).backward(g.cuda())
            runs.append(xd.grad.cpu())
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0], xc.grad)  # the gather adds in the CPU order


def _box_grads(fn, x, rois, g):
    """(output, input gradient, roi-coordinate gradient) of fn(x, rois)."""
    xg = x.clone().requires_grad_()
    coords = rois[:, 1:].clone().requires_grad_()
    out = fn(xg, torch.cat([rois[:, :1], coords], 1))
    out.backward(g)
    return out.detach(), xg.grad, coords.grad


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, F32, F64], **DTYPE_ID)
@pytest.mark.parametrize("channels_last", [False, True])
def test_prroi_pool_cuda_equals_cpu(dtype, channels_last):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 16, 20, 23, generator=gen).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    rois = _rois(gen, 64, 2, 20, 23, 0.5).to(dtype if dtype in (F32, F64) else F32)
    g = torch.randn(64, 16, 5, 4, generator=gen).to(dtype)
    fn = lambda a, r: roi_ext.prroi_pool(a, r, (5, 4), 0.5)  # noqa: E731
    out, gx, gr = _box_grads(fn, x, rois, g)
    out_c, gx_c, gr_c = _box_grads(fn, x.cuda(), rois.cuda(), g.cuda())
    assert torch.equal(out_c.cpu(), out)  # same math, same order, no FMA contraction
    tol = {torch.float16: 2e-2, torch.bfloat16: 5e-2, F32: 1e-4, F64: 1e-10}[dtype]
    torch.testing.assert_close(gx_c.cpu(), gx, rtol=tol, atol=tol)  # atomics: any order
    torch.testing.assert_close(gr_c.cpu(), gr, rtol=tol, atol=tol)  # block reduction vs serial sum
    torch.use_deterministic_algorithms(True)
    try:
        runs = [_box_grads(fn, x.cuda(), rois.cuda(), g.cuda()) for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(runs[0][1].cpu(), gx)  # the gather adds in the CPU order
    assert torch.equal(runs[0][2], runs[1][2])  # fixed-order reduction
    assert torch.equal(runs[0][2], gr_c)  # the roi gradient is deterministic in both modes


@gpu
@pytest.mark.parametrize("dtype", [F32, F64], **DTYPE_ID)
@pytest.mark.parametrize("aligned,mode,sr", [(False, 0, -1), (True, 0, 2), (False, 1, 2)])
def test_roi_align_box_grad_cuda_equals_cpu(dtype, aligned, mode, sr):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 16, 20, 23, generator=gen).to(dtype)
    rois = _rois(gen, 64, 2, 20, 23, 0.5).to(dtype)
    g = torch.randn(64, 16, 5, 4, generator=gen).to(dtype)
    fn = lambda a, r: roi_ext.roi_align(a, r, (5, 4), 0.5, sr, aligned, mode, box_grad=True)  # noqa: E731
    out, _, gr = _box_grads(fn, x, rois, g)
    out_c, _, gr_c = _box_grads(fn, x.cuda(), rois.cuda(), g.cuda())
    assert torch.equal(out_c.cpu(), out)
    tol = 1e-4 if dtype == F32 else 1e-10
    torch.testing.assert_close(gr_c.cpu(), gr, rtol=tol, atol=tol)
    assert torch.equal(_box_grads(fn, x.cuda(), rois.cuda(), g.cuda())[2], gr_c)


@gpu
def test_roi_align_cuda_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 32, 50, 68, generator=gen).cuda()
    rois = _rois(gen, 200, 2, 50, 68, 0.25).cuda()
    ours = roi_ext.roi_align(x, rois, 7, 0.25, 2, True)
    ref = torchvision.ops.roi_align(x, rois, 7, 0.25, 2, True)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)  # torchvision's CUDA kernel may use FMA


@gpu
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                                   torch.bfloat16, F32, F64], **DTYPE_ID)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW", "NCHW-view"])
def test_crop_and_resize_cuda_equals_cpu(dtype, method, data_format):
    gen = torch.Generator().manual_seed(3)
    image = (torch.rand(3, 17, 19, 8, generator=gen) * 100 - (0 if dtype == torch.uint8 else 50)).to(dtype)
    if data_format == "NCHW":
        image = image.permute(0, 3, 1, 2).contiguous()
    elif data_format == "NCHW-view":  # a non-contiguous NCHW image, used in place
        image, data_format = image.permute(0, 3, 1, 2), "NCHW"
    boxes = _boxes(gen, 50)
    box_index = torch.randint(0, 3, (50,), generator=gen, dtype=torch.int32)
    for crop in ((5, 7), (1, 3)):
        cpu = roi_ext.crop_and_resize(image, boxes, box_index, crop, method, -2.0, data_format)
        cuda = roi_ext.crop_and_resize(image.cuda(), boxes.cuda(), box_index.cuda(), crop, method, -2.0, data_format)
        assert torch.equal(cuda.cpu(), cpu)
        grads = torch.randn(cpu.shape, generator=gen, dtype=cpu.dtype)
        out_dtype = F64 if dtype == F64 else F32
        gi_cpu = roi_ext.crop_and_resize_grad_image(grads, boxes, box_index, image.shape, method, out_dtype,
                                                    data_format)
        gi_cuda = roi_ext.crop_and_resize_grad_image(grads.cuda(), boxes.cuda(), box_index.cuda(), image.shape,
                                                     method, out_dtype, data_format)
        torch.testing.assert_close(gi_cuda.cpu(), gi_cpu, rtol=1e-5, atol=1e-4)
        torch.use_deterministic_algorithms(True)
        try:
            det = [roi_ext.crop_and_resize_grad_image(grads.cuda(), boxes.cuda(), box_index.cuda(), image.shape,
                                                      method, out_dtype, data_format).cpu() for _ in range(2)]
        finally:
            torch.use_deterministic_algorithms(False)
        assert torch.equal(det[0], det[1]) and torch.equal(det[0], gi_cpu)
        for half in (torch.float16, torch.bfloat16):  # half outputs: float32 sums, one rounding
            gi_half = roi_ext.crop_and_resize_grad_image(grads.cuda(), boxes.cuda(), box_index.cuda(), image.shape,
                                                         method, half, data_format)
            assert gi_half.dtype == half
            torch.use_deterministic_algorithms(True)
            try:
                det_half = roi_ext.crop_and_resize_grad_image(grads.cuda(), boxes.cuda(), box_index.cuda(),
                                                              image.shape, method, half, data_format)
            finally:
                torch.use_deterministic_algorithms(False)
            assert torch.equal(det_half.cpu(), roi_ext.crop_and_resize_grad_image(
                grads, boxes, box_index, image.shape, method, half, data_format))
        gb_cpu = roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index, method, data_format)
        gb_cuda = [roi_ext.crop_and_resize_grad_boxes(grads.cuda(), image.cuda(), boxes.cuda(), box_index.cuda(),
                                                      method, data_format).cpu() for _ in range(2)]
        assert torch.equal(gb_cuda[0], gb_cuda[1])  # a fixed reduction tree: deterministic
        tol = 1e-12 if gb_cpu.dtype == F64 else 2e-5
        torch.testing.assert_close(gb_cuda[0], gb_cpu, rtol=tol, atol=tol * (gb_cpu.abs().max().item() + 1))


@gpu
def test_crop_and_resize_autograd_on_cuda():
    image = torch.randn(2, 9, 9, 3, device="cuda", dtype=F64, requires_grad=True)
    boxes = torch.tensor([[0.11, 0.23, 0.71, 0.83], [0.32, 0.14, 0.62, 0.93]], device="cuda", dtype=F64,
                         requires_grad=True)
    box_index = torch.tensor([0, 1], device="cuda")
    assert torch.autograd.gradcheck(lambda i, b: roi_ext.crop_and_resize(i, b, box_index, (3, 4)), (image, boxes))


@gpu
def test_bad_indices_read_nothing_and_the_context_stays_usable():
    """No host synchronisation: CUDA does not check index values on the host. A roi whose
    batch index is outside [0, N) gives zeros, a box whose box_index is outside [0, B) gives
    extrapolation_value; neither is read out of bounds nor contributes a gradient."""
    x = torch.randn(2, 4, 8, 8, device="cuda", requires_grad=True)
    for bad in (-1.0, 2.0, float("nan"), 1e30):
        rois = torch.tensor([[bad, 0, 0, 3, 3], [1.0, 1, 1, 6, 6]], device="cuda")
        out = roi_ext.roi_align(x, rois, 2)
        assert torch.equal(out[0].detach().cpu(), torch.zeros(4, 2, 2))
        assert torch.equal(out[1].detach().cpu(), roi_ext.roi_align(x.detach().cpu(), rois[1:].cpu(), 2)[0])
        out.sum().backward()
    image = torch.randn(2, 8, 8, 3, device="cuda")
    boxes = torch.tensor([[0.0, 0, 1, 1]], device="cuda")
    for bad in (-1, 2, 1 << 40):
        out = roi_ext.crop_and_resize(image, boxes, torch.tensor([bad], device="cuda"), (2, 2), extrapolation_value=7.0)
        assert torch.equal(out.cpu(), torch.full((1, 2, 2, 3), 7.0))
        gb = roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 3, device="cuda"), image, boxes,
                                                torch.tensor([bad], device="cuda"))
        assert torch.equal(gb.cpu(), torch.zeros(1, 4))
    with pytest.raises(RuntimeError, match="same device"):
        roi_ext.crop_and_resize(image, boxes.cpu(), torch.tensor([0]), (2, 2))
    nan_boxes = torch.tensor([[float("nan"), 0, 1, 1], [0, float("inf"), 1, 1]], device="cuda")
    out = roi_ext.crop_and_resize(image, nan_boxes, torch.tensor([0, 1], device="cuda"), (3, 3), extrapolation_value=4.0)
    assert torch.equal(out[0].cpu(), torch.full((3, 3, 3), 4.0))
    torch.cuda.synchronize()
    assert (torch.ones(3, device="cuda") + 1).sum().item() == 6.0  # the context still works


@gpu
def test_roi_align_too_many_samples():
    """A fixed sampling_ratio over 2^26 samples per roi: the CPU's ValueError, before any launch.
    A diverging roi under adaptive sampling: NaN, no gradient, and no hang."""
    x = torch.randn(1, 2, 8, 8, device="cuda", requires_grad=True)
    rois = torch.tensor([[0.0, 1, 1, 6, 6], [0.0, -1e9, -1e9, 1e9, 1e9]], device="cuda")
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_ext.roi_align(x, rois, 2, 1.0, 3_100_000_000)
    out = roi_ext.roi_align(x, rois, 2, 1.0, 0, True)
    assert torch.isnan(out[1]).all() and not torch.isnan(out[0]).any()
    out[0].sum().backward()
    assert torch.isfinite(x.grad).all()


@gpu
@pytest.mark.parametrize("deterministic", [False, True])
def test_empty_shapes_and_stride0_grads(deterministic):
    torch.use_deterministic_algorithms(deterministic)
    try:
        for shape, n in (((2, 3, 8, 9), 0), ((2, 0, 8, 9), 3), ((2, 3, 8, 9), 3)):
            x = torch.randn(shape, device="cuda", requires_grad=True)
            rois = torch.tensor([[0.0, 1, 1, 6, 6], [1.0, 0, 2, 5, 7], [0.0, 2, 2, 3, 3]], device="cuda")[:n]
            roi_ext.roi_align(x, rois, (3, 2), 1.0, 2, True).sum().backward()  # stride-0 grad
            xc = x.detach().cpu().requires_grad_()
            roi_ext.roi_align(xc, rois.cpu(), (3, 2), 1.0, 2, True).sum().backward()
            torch.testing.assert_close(x.grad.cpu(), xc.grad, rtol=1e-5, atol=1e-6)
        for image, boxes in ((torch.randn(2, 6, 7, 3), torch.zeros(0, 4)), (torch.randn(2, 6, 7, 0), torch.rand(2, 4))):
            index = torch.zeros(boxes.shape[0], dtype=torch.int64)
            ic = image.clone().requires_grad_()
            ig = image.cuda().requires_grad_()
            out = roi_ext.crop_and_resize(ig, boxes.cuda(), index.cuda(), (2, 3))
            out.sum().backward()
            roi_ext.crop_and_resize(ic, boxes, index, (2, 3)).sum().backward()
            assert out.shape == (boxes.shape[0], 2, 3, image.shape[3])
            assert torch.equal(ig.grad.cpu(), ic.grad)
        image = torch.randn(2, 6, 7, 3, device="cuda", requires_grad=True)
        boxes = torch.rand(4, 4, device="cuda", requires_grad=True)
        roi_ext.crop_and_resize(image, boxes, torch.tensor([0, 1, 1, 0], device="cuda"), (3, 3)).sum().backward()
        ic = image.detach().cpu().requires_grad_()
        roi_ext.crop_and_resize(ic, boxes.detach().cpu(), torch.tensor([0, 1, 1, 0]), (3, 3)).sum().backward()
        torch.testing.assert_close(image.grad.cpu(), ic.grad, rtol=1e-5, atol=1e-5)
    finally:
        torch.use_deterministic_algorithms(False)


@gpu
def test_autocast():
    x = torch.randn(2, 4, 10, 10, device="cuda")
    rois = torch.tensor([[0.0, 1, 1, 6, 6]], device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        out = roi_ext.roi_align(x, rois.half(), 3, 1.0, 2)
        crop = roi_ext.crop_and_resize(x.half().permute(0, 2, 3, 1), torch.rand(3, 4, device="cuda").half(),
                                       torch.tensor([0, 1, 1], device="cuda"), (4, 4))
    assert out.dtype == torch.float32 and crop.dtype == torch.float32
    torch.testing.assert_close(out, roi_ext.roi_align(x, rois, 3, 1.0, 2))


def _every_op(device="cuda"):
    """One call of every op on `device` (forward and backward, both backward paths)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 12, 13, generator=gen).to(device).requires_grad_()
    rois = torch.tensor([[0.0, 1, 1, 9, 9], [1.0, 2, 0, 12, 11]], device=device)
    image = torch.randn(2, 12, 13, 8, generator=gen).to(device).requires_grad_()
    boxes = torch.tensor([[0.1, 0.2, 0.8, 0.9], [0.3, 0.0, 0.7, 1.2]], device=device, requires_grad=True)
    index = torch.tensor([1, 0], device=device)
    outs = []
    for deterministic in (False, True):
        torch.use_deterministic_algorithms(deterministic)
        try:
            out = roi_ext.roi_align(x, rois, (3, 4), 1.0, 2, True)
            outs += [out, torch.autograd.grad(out.sum(), x)[0]]
            for method in METHODS:
                crop = roi_ext.crop_and_resize(image, boxes, index, (5, 4), method)
                outs += [crop, *torch.autograd.grad(crop.square().sum(), (image, boxes))]
        finally:
            torch.use_deterministic_algorithms(False)
    return outs


@gpu
def test_non_default_stream():
    expected = [t.detach().cpu() for t in _every_op()]
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = _every_op()
    stream.synchronize()
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.detach().cpu(), b, rtol=1e-5, atol=1e-5)


@gpu
def test_no_host_synchronisation():
    torch.cuda.set_sync_debug_mode("error")
    try:
        x = torch.randn(2, 8, 12, 13, device="cuda")
        rois = torch.tensor([[0.0, 1, 1, 9, 9], [1.0, 2, 0, 12, 11]], device="cuda")
        g = torch.randn(2, 8, 3, 4, device="cuda")
        image = torch.randn(2, 12, 13, 8, device="cuda")
        boxes = torch.rand(3, 4, device="cuda")
        index = torch.tensor([1, 0, 1], device="cuda")
        for det in (False, True):
            torch.ops.roi_ext.roi_align(x, rois, 1.0, 3, 4, 2, True, 0)
            torch.ops.roi_ext._roi_align_backward(g, rois, 1.0, 3, 4, 2, 8, 12, 13, 2, True, 0, det)
            for method in METHODS:
                crop = torch.ops.roi_ext.crop_and_resize(image, boxes, index, 5, 4, method, 0.0, "NHWC")
                torch.ops.roi_ext.crop_and_resize_grad_image(crop, boxes, index, 2, 12, 13, 8, method,
                                                             torch.float32, "NHWC", det)
                torch.ops.roi_ext.crop_and_resize_grad_boxes(crop, image, boxes, index, method, "NHWC")
    finally:
        torch.cuda.set_sync_debug_mode("default")


@gpu
def test_cuda_graph_capture():
    x = torch.randn(2, 8, 12, 13, device="cuda")
    rois = torch.tensor([[0.0, 1, 1, 9, 9], [1.0, 2, 0, 12, 11]], device="cuda")
    image = torch.randn(2, 12, 13, 8, device="cuda")
    boxes = torch.rand(3, 4, device="cuda")
    index = torch.tensor([1, 0, 1], device="cuda")
    g = torch.randn(2, 8, 3, 4, device="cuda")

    def run():
        outs = [torch.ops.roi_ext.roi_align(x, rois, 1.0, 3, 4, 2, True, 0)]
        for det in (False, True):
            outs.append(torch.ops.roi_ext._roi_align_backward(g, rois, 1.0, 3, 4, 2, 8, 12, 13, 2, True, 0, det))
            for method in METHODS:
                crop = torch.ops.roi_ext.crop_and_resize(image, boxes, index, 5, 4, method, 0.0, "NHWC")
                outs += [crop, torch.ops.roi_ext.crop_and_resize_grad_image(crop, boxes, index, 2, 12, 13, 8, method,
                                                                          torch.float32, "NHWC", det),
                         torch.ops.roi_ext.crop_and_resize_grad_boxes(crop, image, boxes, index, method, "NHWC")]
        return outs

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        eager = run()  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run()
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(eager, captured):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_non_default_device():
    """The device guard: tensors on cuda:1 while cuda:0 is current."""
    torch.cuda.set_device(0)
    expected = [t.detach().cpu() for t in _every_op("cpu")]
    got = _every_op("cuda:1")
    assert torch.cuda.current_device() == 0
    assert all(t.device == torch.device("cuda:1") for t in got)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.detach().cpu(), b, rtol=1e-5, atol=1e-5)
    x = torch.randn(1, 3, 8, 8, device="cuda:1")
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 6.0]], device="cuda:1")
    out = roi_ext.roi_align(x, rois, 3, 1.0, 2)
    assert out.device == x.device
    assert torch.equal(out.cpu(), roi_ext.roi_align(x.cpu(), rois.cpu(), 3, 1.0, 2))


@gpu
@pytest.mark.skipif(torch.cuda.device_count() != 1, reason="needs exactly one GPU")
def test_cuda1_with_one_gpu_is_a_clean_error():
    with pytest.raises(RuntimeError):
        torch.empty(1, device="cuda:1")
    assert (torch.ones(2, device="cuda") * 2).sum().item() == 4.0

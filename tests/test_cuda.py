"""CUDA kernels: registration (checked on every machine whose build compiled
them), and on a GPU: CUDA == CPU for every op, dtype, layout and mode,
determinism, bad input and device handling. GPU tests are skipped without one."""
import os
import shutil

import pytest
import torch

import roi_ext

OPS = ["roi_align", "_roi_align_backward", "crop_and_resize", "crop_and_resize_grad_image",
       "crop_and_resize_grad_boxes"]
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
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.float16, torch.bfloat16, F32, F64],
                         **DTYPE_ID)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_crop_and_resize_cuda_equals_cpu(dtype, method, data_format):
    gen = torch.Generator().manual_seed(3)
    image = (torch.rand(3, 17, 19, 8, generator=gen) * 100).to(dtype)
    if data_format == "NCHW":
        image = image.permute(0, 3, 1, 2).contiguous()
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
        gb_cpu = roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index, method, data_format)
        gb_cuda = roi_ext.crop_and_resize_grad_boxes(grads.cuda(), image.cuda(), boxes.cuda(), box_index.cuda(),
                                                     method, data_format)
        assert torch.equal(gb_cuda.cpu(), gb_cpu)


@gpu
def test_crop_and_resize_autograd_on_cuda():
    image = torch.randn(2, 9, 9, 3, device="cuda", dtype=F64, requires_grad=True)
    boxes = torch.tensor([[0.11, 0.23, 0.71, 0.83], [0.32, 0.14, 0.62, 0.93]], device="cuda", dtype=F64,
                         requires_grad=True)
    box_index = torch.tensor([0, 1], device="cuda")
    assert torch.autograd.gradcheck(lambda i, b: roi_ext.crop_and_resize(i, b, box_index, (3, 4)), (image, boxes))


@gpu
def test_bad_input_raises_and_the_context_stays_usable():
    x = torch.randn(2, 4, 8, 8, device="cuda")
    for bad in (-1.0, 2.0, float("nan")):
        with pytest.raises(IndexError, match="batch index"):
            roi_ext.roi_align(x, torch.tensor([[bad, 0, 0, 3, 3]], device="cuda"), 2)
    image = torch.randn(2, 8, 8, 3, device="cuda")
    boxes = torch.tensor([[0.0, 0, 1, 1]], device="cuda")
    for bad in (-1, 2, 1 << 40):
        with pytest.raises(IndexError, match="box_index"):
            roi_ext.crop_and_resize(image, boxes, torch.tensor([bad], device="cuda"), (2, 2))
        with pytest.raises(IndexError, match="box_index"):
            roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 3, device="cuda"), image, boxes,
                                               torch.tensor([bad], device="cuda"))
    with pytest.raises(RuntimeError, match="same device"):
        roi_ext.crop_and_resize(image, boxes.cpu(), torch.tensor([0]), (2, 2))
    nan_boxes = torch.tensor([[float("nan"), 0, 1, 1], [0, float("inf"), 1, 1]], device="cuda")
    out = roi_ext.crop_and_resize(image, nan_boxes, torch.tensor([0, 1], device="cuda"), (3, 3), extrapolation_value=4.0)
    assert torch.equal(out[0].cpu(), torch.full((3, 3, 3), 4.0))
    torch.cuda.synchronize()
    assert (torch.ones(3, device="cuda") + 1).sum().item() == 6.0  # the context still works


@gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_non_default_device():
    x = torch.randn(1, 3, 8, 8, device="cuda:1")
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 6.0]], device="cuda:1")
    out = roi_ext.roi_align(x, rois, 3, 1.0, 2)
    assert out.device == x.device
    assert torch.equal(out.cpu(), roi_ext.roi_align(x.cpu(), rois.cpu(), 3, 1.0, 2))

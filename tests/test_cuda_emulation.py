"""The CUDA kernels, executed on the CPU: the emulation build (ROI_EXT_CUDA_EMULATION=1,
scripts/test_emulation.sh) compiles csrc/cuda/*.cu as host code and registers them as
torch.ops.roi_ext_cuda_emulated.*, running every block and thread of each launch serially.

Checked here, on the matrix of the CPU tests: emulated CUDA == CPU kernels bit for bit
(forward, deterministic backward; atomic paths within rounding), the work of each kernel
(the emulation counts inner-loop iterations: the deterministic backward stays within 4x
of the atomic one on the configs of benchmarks/bench_gpu.py, a diverging roi cannot hang
a thread, one box is spread over a block), and the documented CUDA behaviour for bad
indices (no host synchronisation: nothing is read out of bounds, nothing raised).
Skipped unless the emulated namespace exists (the normal build does not have it)."""
import pathlib
import re

import pytest
import torch

import roi_ext

from emulation import EMU, needs_emulation

pytestmark = needs_emulation

CPU = torch.ops.roi_ext
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
DTYPE_ID = {"ids": lambda d: str(d).replace("torch.", "")}
METHODS = ("bilinear", "nearest", "bilinear_v2")
OPS = ["roi_align", "_roi_align_backward", "roi_align_with_box_grad", "_roi_align_backward_rois",
       "crop_and_resize", "crop_and_resize_grad_image", "crop_and_resize_grad_boxes",
       "multi_scale_roi_align", "_multi_scale_roi_align_backward",
       "prroi_pool", "_prroi_pool_backward", "_prroi_pool_backward_rois"]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def work(fn):
    """fn()'s result and the emulated work: (result, iterations, launches, max iterations of one thread)."""
    EMU.reset_counters()
    out = fn()
    return out, EMU.work_counter(), EMU.launch_counter(), EMU.max_thread_work()


# ---------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", OPS)
def test_same_schemas_as_roi_ext(op):
    ours = str(getattr(CPU, op).default._schema)
    emulated = str(getattr(EMU, op).default._schema)
    assert emulated == ours.replace("roi_ext::", "roi_ext_cuda_emulated::", 1)


def test_no_host_synchronisation_in_the_cuda_sources():
    """No forward or backward path may copy device memory to the host or wait for the stream
    (a synchronisation: it stalls the pipeline and breaks CUDA graph capture)."""
    forbidden = re.compile(r"DeviceType::CPU|Synchronize|cudaMemcpy(?!Async)|\.item\b|value_at|"
                           r"first_out_of_range|cudaStreamQuery|torch::stable::to\(")
    for path in sorted((ROOT / "csrc" / "cuda").glob("*.cu*")):
        code = re.sub(r"//[^\n]*", "", path.read_text())  # comments may name what is avoided
        assert not forbidden.findall(code), f"{path.name}: {forbidden.findall(code)}"


def test_default_arch_list_has_ptx():
    """Issue 14 defect 5: without a +PTX entry no kernel image exists for newer GPUs."""
    setup = (ROOT / "setup.py").read_text()
    defaults = re.findall(r'TORCH_CUDA_ARCH_LIST"\] = "([^"]+)"', setup)
    assert defaults and all("+PTX" in d for d in defaults), defaults


# ---------------------------------------------------------------------------
# roi_align
# ---------------------------------------------------------------------------
def _rois(gen, num, batch, height, width, scale, dtype=F32):
    """Rois in image coordinates, many partly or wholly outside the map, some inverted."""
    x1 = (torch.rand(num, generator=gen, dtype=F64) * 1.5 - 0.3) * width / scale
    y1 = (torch.rand(num, generator=gen, dtype=F64) * 1.5 - 0.3) * height / scale
    w = (torch.rand(num, generator=gen, dtype=F64) * 0.9 - 0.1) * width / scale
    h = (torch.rand(num, generator=gen, dtype=F64) * 0.9 - 0.1) * height / scale
    b = torch.randint(0, batch, (num,), generator=gen).to(F64)
    return torch.stack([b, x1, y1, x1 + w, y1 + h], 1).to(dtype)


MODES = [(False, 0, -1), (False, 0, 0), (True, 0, 2), (False, 1, 2), (True, 1, 0), (True, 0, 3), (False, 0, 1)]


def _roi_align_case(dtype, layout, seed, channels=5, num=40):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, 13, 17, generator=gen).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # a non-contiguous NCHW view
        x = torch.randn(2, 2 * channels, 17, 13, generator=gen).to(dtype).transpose(2, 3)[:, ::2]
    rois = _rois(gen, num, 2, 13, 17, 0.5, dtype if dtype in (F32, F64) else F32)
    return gen, x, rois


@pytest.mark.parametrize("dtype", [F16, BF16, F32, F64], **DTYPE_ID)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("aligned,mode,sr", MODES)
def test_roi_align_equals_cpu(dtype, layout, aligned, mode, sr):
    gen, x, rois = _roi_align_case(dtype, layout, hash((str(dtype), layout, aligned, mode, sr)) % 2**31)
    args = (0.5, 4, 3, sr, aligned, mode)
    cpu = CPU.roi_align(x, rois, *args)
    emu = EMU.roi_align(x, rois, *args)
    assert emu.dtype == cpu.dtype and emu.stride() == cpu.stride()
    assert torch.equal(emu, cpu)  # same math and order; half types: float32 sums, one rounding

    for grad in (torch.randn(cpu.shape, generator=gen).to(dtype),
                 torch.randn(cpu.shape, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last),
                 torch.ones((), dtype=dtype).expand(cpu.shape)):  # stride 0: from .sum().backward()
        bargs = (grad, rois, 0.5, 4, 3, x.shape[0], x.shape[1], x.shape[2], x.shape[3], sr, aligned, mode)
        ref = CPU._roi_align_backward(*bargs, False)
        det = EMU._roi_align_backward(*bargs, True)
        assert det.dtype == ref.dtype and det.stride() == ref.stride()
        assert torch.equal(det, ref)  # the gather adds in the CPU order
        atomic = EMU._roi_align_backward(*bargs, False)
        assert atomic.dtype == ref.dtype and atomic.stride() == ref.stride()
        tol = {F16: 2e-2, BF16: 5e-2, F32: 1e-5, F64: 1e-12}[dtype]
        torch.testing.assert_close(atomic, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape,rois_n,pooled", [
    ((2, 3, 8, 9), 0, (2, 2)),   # no rois
    ((2, 0, 8, 9), 4, (2, 2)),   # no channels
    ((2, 3, 0, 9), 4, (2, 2)),   # empty map
    ((2, 3, 8, 0), 4, (2, 2)),
    ((2, 3, 8, 9), 4, (0, 2)),   # empty output
    ((0, 3, 8, 9), 0, (2, 2)),   # no images
])
@pytest.mark.parametrize("deterministic", [False, True])
def test_roi_align_empty_shapes(shape, rois_n, pooled, deterministic):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=gen)
    rois = _rois(gen, rois_n, max(shape[0], 1), 8, 9, 1.0)
    out_cpu = CPU.roi_align(x, rois, 1.0, *pooled, 2, True, 0)
    out_emu = EMU.roi_align(x, rois, 1.0, *pooled, 2, True, 0)
    assert out_emu.shape == out_cpu.shape and torch.equal(out_emu, out_cpu)
    g = torch.randn(out_cpu.shape, generator=gen)
    bargs = (g, rois, 1.0, *pooled, *shape, 2, True, 0)
    assert torch.equal(EMU._roi_align_backward(*bargs, deterministic), CPU._roi_align_backward(*bargs, deterministic))


def test_roi_align_bad_batch_index_reads_nothing():
    """No host synchronisation: CUDA does not check batch indices on the host; a roi outside
    [0, N) (or NaN) gives 0 and no gradient. The CPU raises an IndexError."""
    x = torch.randn(2, 3, 8, 8)
    good = [0.0, 1.0, 1.0, 6.0, 6.0]
    for bad in (-1.0, 2.0, float("nan"), 1e30):
        rois = torch.tensor([good, [bad, 0.0, 0.0, 5.0, 5.0], [1.0, 2.0, 2.0, 7.0, 7.0]])
        with pytest.raises(RuntimeError, match="batch index"):
            CPU.roi_align(x, rois, 1.0, 2, 2, 2, False, 0)
        out = EMU.roi_align(x, rois, 1.0, 2, 2, 2, False, 0)
        assert torch.equal(out[1], torch.zeros(3, 2, 2))
        for k in (0, 2):
            assert torch.equal(out[k], CPU.roi_align(x, rois[k:k + 1], 1.0, 2, 2, 2, False, 0)[0])
        g = torch.randn(3, 3, 2, 2)
        for det in (False, True):
            gi = EMU._roi_align_backward(g, rois, 1.0, 2, 2, 2, 3, 8, 8, 2, False, 0, det)
            keep = torch.tensor([0, 2])
            ref = CPU._roi_align_backward(g[keep], rois[keep], 1.0, 2, 2, 2, 3, 8, 8, 2, False, 0, det)
            torch.testing.assert_close(gi, ref, rtol=0, atol=1e-6)


def test_roi_align_refuses_too_many_samples_like_the_cpu():
    """Issue 14 defect 1: a fixed sampling_ratio whose samples exceed 2^26 per roi is refused
    before any launch, with the CPU's ValueError (message included); sampling_ratio >= 3e9
    overflowed grid_h * grid_w (undefined behaviour) before the check."""
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 1.0, 1.0, 6.0, 6.0]])
    for sr in (8193, 1 << 20, 3_100_000_000, (1 << 62) + 1):
        with pytest.raises(RuntimeError) as cpu_err:
            CPU.roi_align(x, rois, 1.0, 1, 1, sr, False, 0)
        EMU.reset_counters()
        with pytest.raises(RuntimeError) as emu_err:
            EMU.roi_align(x, rois, 1.0, 1, 1, sr, False, 0)
        assert EMU.launch_counter() == 0  # refused before any launch
        assert str(emu_err.value) == str(cpu_err.value)
        assert str(emu_err.value).startswith("ValueError: ") and "sampling_ratio" in str(emu_err.value)
        g = torch.ones(1, 2, 1, 1)
        for det in (False, True):
            with pytest.raises(RuntimeError, match="^ValueError: .*sampling_ratio"):
                EMU._roi_align_backward(g, rois, 1.0, 1, 1, 1, 2, 8, 8, sr, False, 0, det)
    with pytest.raises(ValueError, match="sampling_ratio"):  # the user-facing type (roi_ext._utils.call_op)
        roi_ext.roi_align(x, rois, 1, 1.0, 3_100_000_000)


def test_roi_align_diverging_roi_cannot_hang():
    """Issue 14 defect 1: adaptive sampling of a roi with coordinates ~1e9 asked one thread for
    up to 2^40 samples. The CPU refuses it; CUDA cannot without reading the roi on the host:
    its bins are NaN and it adds no gradient, for a bounded amount of work."""
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 1.0, 1.0, 6.0, 6.0], [0.0, -1e9, -1e9, 1e9, 1e9], [0.0, 0.0, 0.0, 1e30, 1e30]])
    with pytest.raises(RuntimeError, match="^ValueError: .*sampling_ratio"):
        CPU.roi_align(x, rois, 1.0, 2, 2, 0, True, 0)
    out, iters, _, _ = work(lambda: EMU.roi_align(x, rois, 1.0, 2, 2, 0, True, 0))
    assert iters < 10_000
    assert torch.equal(out[0], CPU.roi_align(x, rois[:1], 1.0, 2, 2, 0, True, 0)[0])
    assert torch.isnan(out[1:]).all()
    g = torch.randn(3, 2, 2, 2)
    for det in (False, True):
        gi, iters, _, _ = work(lambda: EMU._roi_align_backward(g, rois, 1.0, 2, 2, 1, 2, 8, 8, 0, True, 0, det))
        assert iters < 10_000
        assert torch.equal(gi, CPU._roi_align_backward(g[:1], rois[:1], 1.0, 2, 2, 1, 2, 8, 8, 0, True, 0, det))


def test_roi_align_non_finite_rois():
    x = torch.randn(1, 2, 8, 8)
    nan, inf = float("nan"), float("inf")
    rois = torch.tensor([[0.0, nan, 1.0, 6.0, 6.0], [0.0, 1.0, 1.0, inf, 6.0], [0.0, -inf, 1, 3, 4]])
    for sr in (2, 0):
        cpu = CPU.roi_align(x, rois, 1.0, 2, 3, sr, True, 1)
        assert torch.equal(EMU.roi_align(x, rois, 1.0, 2, 3, sr, True, 1), cpu)
        g = torch.randn(cpu.shape)
        ref = CPU._roi_align_backward(g, rois, 1.0, 2, 3, 1, 2, 8, 8, sr, True, 1, False)
        assert torch.equal(EMU._roi_align_backward(g, rois, 1.0, 2, 3, 1, 2, 8, 8, sr, True, 1, True), ref)


@pytest.mark.parametrize("rois_dtype", [F64, F16, BF16], **DTYPE_ID)
def test_roi_align_rois_keep_their_batch_index(rois_dtype):
    """The batch index is resolved in the rois' own dtype before they are converted to the
    compute type: a float64 index of 0.9999999999 is image 0 (float32 would round it to 1)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    index = 0.9999999999 if rois_dtype == F64 else 0.5
    rois = torch.tensor([[index, 1.0, 1.0, 6.0, 6.0], [1.0, 0.0, 2.0, 5.0, 7.0], [-0.5, 1, 1, 3, 3]],
                        dtype=rois_dtype)
    out = EMU.roi_align(x, rois, 1.0, 2, 2, 2, True, 0)
    assert torch.equal(out[:2], CPU.roi_align(x, rois[:2], 1.0, 2, 2, 2, True, 0))
    image0 = rois[:1].clone()
    image0[0, 0] = 0
    assert torch.equal(out[0], CPU.roi_align(x, image0, 1.0, 2, 2, 2, True, 0)[0])
    assert torch.equal(out[2], torch.zeros_like(out[2]))  # -0.5 is not an image (the CPU raises)
    g = torch.randn(out.shape, generator=gen)
    for det in (False, True):
        grad = EMU._roi_align_backward(g, rois, 1.0, 2, 2, 2, 3, 8, 8, 2, True, 0, det)
        ref = CPU._roi_align_backward(g[:2], rois[:2], 1.0, 2, 2, 2, 3, 8, 8, 2, True, 0, False)
        torch.testing.assert_close(grad, ref, rtol=0 if det else 1e-6, atol=0 if det else 1e-6)


def test_multi_scale_rois_keep_their_batch_index():
    gen = torch.Generator().manual_seed(4)
    feats = [torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)]
    rois = torch.tensor([[0.9999999999, 1.0, 1.0, 6.0, 6.0], [1.0, 0.0, 2.0, 5.0, 7.0]], dtype=F64)
    levels = torch.tensor([0, 1])
    args = (rois, levels, [1.0, 0.5], 2, 2, 2, False)
    out = EMU.multi_scale_roi_align(feats, *args)
    assert torch.equal(out, CPU.multi_scale_roi_align(feats, *args))
    image0 = rois.clone()
    image0[0, 0] = 0
    assert torch.equal(out, CPU.multi_scale_roi_align(feats, image0, *args[1:]))


# ---------------------------------------------------------------------------
# crop_and_resize
# ---------------------------------------------------------------------------
IMAGE_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, F16, BF16, F32, F64]


def _boxes(gen, n, dtype=F32):
    """Boxes partly outside [0, 1], some flipped, a few degenerate."""
    boxes = torch.rand(n, 4, generator=gen, dtype=F64) * 1.6 - 0.3
    boxes[::7, 2] = boxes[::7, 0]
    return boxes.to(dtype)


def _image(gen, dtype, data_format, layout="contiguous", shape=(3, 11, 13, 6)):
    image = torch.rand(shape, generator=gen, dtype=F64) * 200 - 100
    if not dtype.is_floating_point:
        lo = 0 if dtype == torch.uint8 else -100
        image = image.clamp(lo, 100).round()
    image = image.to(dtype)
    if data_format == "NCHW":
        image = image.permute(0, 3, 1, 2)
        if layout == "contiguous":
            image = image.contiguous()  # else: the permuted view, not contiguous
    elif layout == "strided":
        image = torch.cat([image, image], dim=2)[:, :, ::2]
    return image


@pytest.mark.parametrize("dtype", IMAGE_DTYPES, **DTYPE_ID)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_crop_and_resize_equals_cpu(dtype, method, data_format, layout):
    gen = torch.Generator().manual_seed(hash((str(dtype), method, data_format, layout)) % 2**31)
    image = _image(gen, dtype, data_format, layout)
    boxes = _boxes(gen, 30, F64 if dtype == F64 else F32)
    box_index = torch.randint(0, 3, (30,), generator=gen, dtype=torch.int32)
    for crop in ((5, 7), (1, 3), (1, 1), (4, 1)):
        args = (image, boxes, box_index, *crop, method, -2.5, data_format)
        cpu = CPU.crop_and_resize(*args)
        assert torch.equal(EMU.crop_and_resize(*args), cpu)

        grads = torch.randn(cpu.shape, generator=gen, dtype=cpu.dtype)
        gboxes = CPU.crop_and_resize_grad_boxes(grads, image, boxes, box_index, method, data_format)
        e_gboxes = EMU.crop_and_resize_grad_boxes(grads, image, boxes, box_index, method, data_format)
        assert e_gboxes.dtype == gboxes.dtype
        tol = 1e-12 if gboxes.dtype == F64 else 2e-5
        scale = gboxes.abs().max().item() + 1  # a tree of sums instead of TensorFlow's serial order
        torch.testing.assert_close(e_gboxes, gboxes, rtol=tol, atol=tol * scale)
        assert torch.equal(EMU.crop_and_resize_grad_boxes(grads, image, boxes, box_index, method, data_format),
                           e_gboxes)


@pytest.mark.parametrize("grads_dtype", [F32, F64], **DTYPE_ID)
@pytest.mark.parametrize("out_dtype", [F16, BF16, F32, F64], **DTYPE_ID)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_crop_and_resize_grad_image_equals_cpu(grads_dtype, out_dtype, method, data_format):
    gen = torch.Generator().manual_seed(hash((str(grads_dtype), str(out_dtype), method, data_format)) % 2**31)
    image_size = (2, 4, 9, 11) if data_format == "NCHW" else (2, 9, 11, 4)
    boxes = _boxes(gen, 25, grads_dtype)
    box_index = torch.randint(0, 2, (25,), generator=gen)
    for crop in ((6, 5), (1, 4), (1, 1)):
        shape = (25, 4, *crop) if data_format == "NCHW" else (25, *crop, 4)
        for grads in (torch.randn(shape, generator=gen, dtype=grads_dtype),
                      torch.ones((), dtype=grads_dtype).expand(shape),  # stride 0
                      torch.randn(shape[::-1], generator=gen, dtype=grads_dtype).permute(3, 2, 1, 0)):
            b, h, w, d = (image_size[0], image_size[2], image_size[3], image_size[1]) if data_format == "NCHW" \
                else image_size
            args = (grads, boxes, box_index, b, h, w, d, method, out_dtype, data_format)
            ref = CPU.crop_and_resize_grad_image(*args, False)
            det = EMU.crop_and_resize_grad_image(*args, True)
            assert det.dtype == ref.dtype == out_dtype and det.shape == ref.shape
            assert torch.equal(det, ref)  # the gather adds in the CPU (TensorFlow) order
            atomic = EMU.crop_and_resize_grad_image(*args, False)
            tol = {F16: 2e-3, BF16: 2e-2, F32: 1e-5, F64: 1e-12}[out_dtype]
            torch.testing.assert_close(atomic.double(), ref.double(), rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("deterministic", [False, True])
def test_crop_and_resize_empty_shapes(deterministic):
    gen = torch.Generator().manual_seed(5)
    image = torch.randn(2, 6, 7, 3, generator=gen)
    none = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    for img, boxes, index in ((image, *none), (image[..., :0], torch.rand(3, 4), torch.tensor([0, 1, 1])),
                              (image[:0], *none)):
        out = EMU.crop_and_resize(img, boxes, index, 2, 3, "bilinear", 0.0, "NHWC")
        assert torch.equal(out, CPU.crop_and_resize(img, boxes, index, 2, 3, "bilinear", 0.0, "NHWC"))
        g = torch.randn(out.shape, generator=gen)
        args = (g, boxes, index, img.shape[0], 6, 7, img.shape[3], "bilinear", F32, "NHWC")
        assert torch.equal(EMU.crop_and_resize_grad_image(*args, deterministic),
                           CPU.crop_and_resize_grad_image(*args, deterministic))
        assert torch.equal(EMU.crop_and_resize_grad_boxes(g, img, boxes, index, "bilinear", "NHWC"),
                           CPU.crop_and_resize_grad_boxes(g, img, boxes, index, "bilinear", "NHWC"))


def test_crop_and_resize_non_finite_boxes():
    gen = torch.Generator().manual_seed(6)
    image = torch.randn(2, 6, 7, 3, generator=gen)
    nan, inf = float("nan"), float("inf")
    boxes = torch.tensor([[nan, 0, 1, 1], [0, inf, 1, 1], [0.1, 0.2, 0.8, 3e38], [-inf, 0, inf, 1],
                          [0.2, 0.1, 0.9, 0.7]])
    index = torch.tensor([0, 1, 0, 1, 1])
    for method in METHODS:
        for crop in ((3, 4), (1, 1)):
            cpu = CPU.crop_and_resize(image, boxes, index, *crop, method, 4.0, "NHWC")
            assert torch.equal(EMU.crop_and_resize(image, boxes, index, *crop, method, 4.0, "NHWC"), cpu)
            g = torch.randn(cpu.shape, generator=gen)
            args = (g, boxes, index, 2, 6, 7, 3, method, F32, "NHWC")
            assert torch.equal(EMU.crop_and_resize_grad_image(*args, True), CPU.crop_and_resize_grad_image(*args, True))


def test_crop_and_resize_bad_box_index_reads_nothing():
    """No host synchronisation: CUDA does not check box_index on the host; a box outside [0, B)
    gives extrapolation_value (as if it lay outside the image), adds nothing to the image
    gradient and gets a zero box gradient. The CPU raises an IndexError."""
    gen = torch.Generator().manual_seed(7)
    image = torch.randn(2, 6, 7, 3, generator=gen)
    boxes = torch.rand(3, 4, generator=gen)
    for bad in (-1, 2, 1 << 40, -(1 << 62)):
        index = torch.tensor([0, bad, 1])
        keep = torch.tensor([0, 2])
        with pytest.raises(RuntimeError, match="box_index"):
            CPU.crop_and_resize(image, boxes, index, 2, 2, "bilinear", 0.0, "NHWC")
        for method in METHODS:
            out = EMU.crop_and_resize(image, boxes, index, 2, 2, method, 3.5, "NHWC")
            assert torch.equal(out[1], torch.full((2, 2, 3), 3.5))
            assert torch.equal(out[keep], CPU.crop_and_resize(image, boxes[keep], index[keep], 2, 2, method, 3.5,
                                                              "NHWC"))
            g = torch.randn(3, 2, 2, 3, generator=gen)
            for det in (False, True):
                gi = EMU.crop_and_resize_grad_image(g, boxes, index, 2, 6, 7, 3, method, F32, "NHWC", det)
                ref = CPU.crop_and_resize_grad_image(g[keep], boxes[keep], index[keep], 2, 6, 7, 3, method, F32,
                                                     "NHWC", det)
                torch.testing.assert_close(gi, ref, rtol=0, atol=1e-6)
            gb = EMU.crop_and_resize_grad_boxes(g, image, boxes, index, method, "NHWC")
            assert torch.equal(gb[1], torch.zeros(4))


# ---------------------------------------------------------------------------
# Work (issue 14 defects 2 and 3)
# ---------------------------------------------------------------------------
def _bench_rois(gen, batch, height, width, scale, num):
    """benchmarks/bench_gpu.py's rois."""
    img_h, img_w = height / scale, width / scale
    w = torch.rand(num, generator=gen) * 0.5 * img_w + 8
    h = torch.rand(num, generator=gen) * 0.5 * img_h + 8
    x1 = torch.rand(num, generator=gen) * (img_w - w)
    y1 = torch.rand(num, generator=gen) * (img_h - h)
    b = torch.randint(0, batch, (num,), generator=gen).float()
    return torch.stack([b, x1, y1, x1 + w, y1 + h], 1)


# Work is linear in the channel count for both paths, so the benchmark's 256 channels
# (and 64 image channels) are cut to 4 here: the ratios are the benchmark's.
CHANNELS = 4


@pytest.mark.parametrize("shape", [(2, 50, 68), (1, 100, 136)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_roi_align_deterministic_backward_work_within_4x_of_atomic(shape, channels_last):
    gen = torch.Generator().manual_seed(0)
    batch, height, width = shape
    rois = _bench_rois(gen, batch, height, width, 0.25, 512)
    g = torch.randn(512, CHANNELS, 7, 7, generator=gen)
    if channels_last:
        g = g.contiguous(memory_format=torch.channels_last)
    bargs = (g, rois, 0.25, 7, 7, batch, CHANNELS, height, width, 2, True, 0)
    atomic, atomic_work, _, _ = work(lambda: EMU._roi_align_backward(*bargs, False))
    det, det_work, launches, _ = work(lambda: EMU._roi_align_backward(*bargs, True))
    assert atomic_work == 512 * CHANNELS * 49 * 4  # one iteration per sample
    assert launches == 1
    assert det_work <= 4 * atomic_work, det_work / atomic_work
    assert torch.equal(det, CPU._roi_align_backward(*bargs, False))
    print(f"roi_align backward {shape}: deterministic / atomic work = {det_work / atomic_work:.2f}")


@pytest.mark.parametrize("method", METHODS)
def test_crop_and_resize_deterministic_grad_image_work_within_4x_of_atomic(method):
    gen = torch.Generator().manual_seed(0)
    boxes = torch.rand(1000, 4, generator=gen)
    box_index = torch.randint(0, 4, (1000,), generator=gen, dtype=torch.int32)
    grads = torch.randn(1000, 14, 14, CHANNELS, generator=gen)
    args = (grads, boxes, box_index, 4, 256, 256, CHANNELS, method, F32, "NHWC")
    atomic, atomic_work, _, _ = work(lambda: EMU.crop_and_resize_grad_image(*args, False))
    det, det_work, _, _ = work(lambda: EMU.crop_and_resize_grad_image(*args, True))
    assert atomic_work == grads.numel()
    assert det_work <= 4 * atomic_work, det_work / atomic_work
    assert torch.equal(det, CPU.crop_and_resize_grad_image(*args, False))
    print(f"crop_and_resize grad_image {method}: deterministic / atomic work = {det_work / atomic_work:.2f}")


def test_grad_boxes_spreads_a_box_over_a_block():
    """Issue 14 defect 3: one thread per box left a 1000-box call on 4 blocks and made one
    box's 14 x 14 x 64 terms one thread's serial loop. Now a block (256 threads) shares them."""
    gen = torch.Generator().manual_seed(8)
    image = torch.randn(1, 32, 32, 64, generator=gen)
    boxes = torch.tensor([[0.1, 0.2, 0.8, 0.9]])
    grads = torch.randn(1, 14, 14, 64, generator=gen)
    out, iters, launches, longest = work(
        lambda: EMU.crop_and_resize_grad_boxes(grads, image, boxes, torch.tensor([0]), "bilinear", "NHWC"))
    assert launches == 1 and iters == 14 * 14 * 64
    assert longest <= -(-14 * 14 * 64 // 256)  # the terms are spread evenly over the block
    ref = CPU.crop_and_resize_grad_boxes(grads, image, boxes, torch.tensor([0]), "bilinear", "NHWC")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)


def test_forward_kernels_do_the_atomic_work():
    """The forwards do one iteration per sample (roi_align) or output element (crop_and_resize)."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 20, 20, generator=gen)
    rois = _bench_rois(gen, 2, 20, 20, 1.0, 10)
    _, iters, launches, _ = work(lambda: EMU.roi_align(x, rois, 1.0, 4, 5, 3, True, 0))
    assert iters == 10 * 3 * 4 * 5 * 9 and launches == 1
    image = torch.randn(2, 9, 9, 3, generator=gen)
    _, iters, _, _ = work(lambda: EMU.crop_and_resize(image, torch.rand(4, 4), torch.tensor([0, 1, 1, 0]), 3, 5,
                                                      "bilinear", 0.0, "NHWC"))
    assert iters == 4 * 3 * 5 * 3

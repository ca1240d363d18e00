"""Property-based fuzzing (hypothesis) of every op and its gradients: random
shapes, dtypes, layouts and boxes, including extreme and non-finite values.

Properties: the call never crashes; output shape and dtype are as documented;
finite inputs give finite outputs; results equal the SPEC reference
(tests/reference.py) bit for bit. Bounded (derandomized, capped examples) so it
runs in CI in well under a minute."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import roi_ext
import reference as ref

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EXTREME = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 0.0, 1.0, -1.0])


def boxes_strategy(n, low, high, extreme_rate):
    ordinary = st.floats(low, high, allow_nan=False, allow_infinity=False, width=32)
    value = st.one_of(ordinary, EXTREME) if extreme_rate else ordinary
    return st.lists(st.lists(value, min_size=4, max_size=4), min_size=n, max_size=n)


# ---------------------------------------------------------------------------
# roi_align
# ---------------------------------------------------------------------------
@st.composite
def roi_align_case(draw):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    h = draw(st.integers(1, 7))
    w = draw(st.integers(1, 7))
    k = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    channels_last = draw(st.booleans())
    aligned = draw(st.booleans())
    mode = draw(st.integers(0, 1))
    sampling_ratio = draw(st.integers(-1, 3))
    pooled = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25]))
    extreme = draw(st.booleans())
    coords = draw(boxes_strategy(k, -4.0, 2 * max(h, w) / scale, extreme))
    batch = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
    seed = draw(st.integers(0, 2**16))
    return n, c, h, w, dtype, channels_last, aligned, mode, sampling_ratio, pooled, scale, coords, batch, seed


@SETTINGS
@given(roi_align_case())
def test_fuzz_roi_align(case):
    n, c, h, w, dtype, channels_last, aligned, mode, sr, pooled, scale, coords, batch, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    rois = torch.tensor([[float(b)] + list(cs) for b, cs in zip(batch, coords)], dtype=torch.float64).reshape(-1, 5)
    rois = rois.to(dtype if dtype in (torch.float32, torch.float64) else torch.float32)
    xg = x.clone().requires_grad_()
    try:
        out = roi_ext.roi_align(xg, rois, pooled, scale, sr, aligned, mode)
    except ValueError as e:
        # Adaptive sampling of a huge finite roi is refused (documented).
        assert sr <= 0 and "sampling_ratio" in str(e)
        return
    assert out.shape == (rois.shape[0], c, *pooled) and out.dtype == dtype
    assert torch.isfinite(out).all()  # finite input: finite output, whatever the rois
    g = torch.randn(out.shape, generator=gen).to(dtype)
    out.backward(g)
    assert xg.grad.shape == x.shape and xg.grad.dtype == dtype and torch.isfinite(xg.grad).all()
    if dtype in (torch.float32, torch.float64) and rois.shape[0] > 0:
        T = np.float32 if dtype == torch.float32 else np.float64
        expected = ref.roi_align_forward(x.numpy(), rois.numpy(), pooled, scale, sr, aligned, mode, T)
        np.testing.assert_array_equal(out.detach().numpy(), expected)
        expected_g = ref.roi_align_backward(g.numpy(), rois.numpy(), x.shape, scale, sr, aligned, mode, T)
        np.testing.assert_array_equal(xg.grad.numpy(), expected_g)


# ---------------------------------------------------------------------------
# crop_and_resize and its gradient ops
# ---------------------------------------------------------------------------
IMAGE_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
                torch.float32, torch.float64]


@st.composite
def crop_case(draw):
    b = draw(st.integers(1, 2))
    h = draw(st.integers(1, 6))
    w = draw(st.integers(1, 6))
    d = draw(st.integers(1, 3))
    n = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from(IMAGE_DTYPES))
    method = draw(st.sampled_from(["bilinear", "nearest", "bilinear_v2"]))
    nchw = draw(st.booleans())
    crop = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    extreme = draw(st.booleans())
    boxes = draw(boxes_strategy(n, -0.5, 1.5, extreme))
    box_index = draw(st.lists(st.integers(0, b - 1), min_size=n, max_size=n))
    extrapolation = draw(st.sampled_from([0.0, -1.5, 7.0]))
    seed = draw(st.integers(0, 2**16))
    return b, h, w, d, dtype, method, nchw, crop, boxes, box_index, extrapolation, seed


@SETTINGS
@given(crop_case())
def test_fuzz_crop_and_resize(case):
    b, h, w, d, dtype, method, nchw, crop, boxes, box_index, extrapolation, seed = case
    gen = torch.Generator().manual_seed(seed)
    image = (torch.randn(b, h, w, d, generator=gen) * 50).to(dtype)
    boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    index_t = torch.tensor(box_index, dtype=torch.int64)
    data_format = "NCHW" if nchw else "NHWC"
    img = image.permute(0, 3, 1, 2) if nchw else image  # a view: NCHW used in place
    out = roi_ext.crop_and_resize(img, boxes_t, index_t, crop, method, extrapolation, data_format)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    nhwc = out.permute(0, 2, 3, 1) if nchw else out
    assert nhwc.shape == (len(boxes), *crop, d) and out.dtype == out_dtype
    assert torch.isfinite(out).all()
    T = np.float64 if dtype == torch.float64 else np.float32
    src = image.double().numpy() if dtype in (torch.float16, torch.bfloat16) else image.numpy()
    expected = ref.crop_and_resize_forward(src, boxes_t.numpy(), box_index, crop, method, extrapolation, T)
    np.testing.assert_array_equal(nhwc.numpy(), expected)

    grads = torch.randn(nhwc.shape, generator=gen, dtype=out_dtype)
    g_in = grads.permute(0, 3, 1, 2) if nchw else grads
    size = (b, d, h, w) if nchw else (b, h, w, d)
    gi = roi_ext.crop_and_resize_grad_image(g_in, boxes_t, index_t, size, method, out_dtype, data_format)
    gi_nhwc = gi.permute(0, 2, 3, 1) if nchw else gi
    assert gi_nhwc.shape == image.shape and torch.isfinite(gi).all()
    np.testing.assert_array_equal(
        gi_nhwc.numpy(), ref.crop_and_resize_grad_image(grads.numpy(), boxes_t.numpy(), box_index, image.shape,
                                                        method, T))
    gb = roi_ext.crop_and_resize_grad_boxes(g_in, img, boxes_t, index_t, method, data_format)
    assert gb.shape == (len(boxes), 4) and torch.isfinite(gb).all()
    if method == "bilinear_v2":
        assert not gb.any()
    else:
        np.testing.assert_array_equal(
            gb.numpy(), ref.crop_and_resize_grad_boxes(grads.numpy(), src, boxes_t.numpy(), box_index, T))


@SETTINGS
@given(crop_case())
def test_fuzz_crop_and_resize_autograd(case):
    b, h, w, d, dtype, method, nchw, crop, boxes, box_index, extrapolation, seed = case
    if not dtype.is_floating_point:
        dtype = torch.float32
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(b, h, w, d, generator=gen).to(dtype).requires_grad_()
    boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).requires_grad_()
    out = roi_ext.crop_and_resize(image, boxes_t, torch.tensor(box_index, dtype=torch.int32), crop, method,
                                  extrapolation)
    out.sum().backward()
    assert image.grad.dtype == dtype and image.grad.shape == image.shape
    assert torch.isfinite(image.grad).all() and torch.isfinite(boxes_t.grad).all()


# ---------------------------------------------------------------------------
# Cropping
# ---------------------------------------------------------------------------
@SETTINGS
@given(st.integers(1, 3), st.lists(st.integers(1, 6), min_size=1, max_size=3), st.data(), st.booleans())
def test_fuzz_cropping(rank, dims, data, channels_last):
    dims = (dims * 3)[:rank]
    pairs = [(data.draw(st.integers(0, 6)), data.draw(st.integers(0, 6))) for _ in range(rank)]
    shape = [2] + dims + [3] if channels_last else [2, 3] + dims
    x = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
    fn = {1: roi_ext.cropping1d, 2: roi_ext.cropping2d, 3: roi_ext.cropping3d}[rank]
    arg = pairs[0] if rank == 1 else tuple(pairs)
    layout = "channels_last" if channels_last else "channels_first"
    if any(a + b >= n for (a, b), n in zip(pairs, dims)):
        with pytest.raises(ValueError, match="cropping"):
            fn(x, arg, layout)
        return
    out = fn(x, arg, layout)
    first = 1 if channels_last else 2
    index = [slice(None)] * x.dim()
    for i, ((a, b), n) in enumerate(zip(pairs, dims)):
        index[first + i] = slice(a, n - b)
    assert torch.equal(out, x[tuple(index)])
    assert out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()

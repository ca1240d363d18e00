"""Property-based fuzzing (hypothesis) of every op and its gradients: random
shapes, dtypes, layouts and boxes, including extreme and non-finite values.

Properties: the call never crashes; output shape and dtype are as documented;
finite inputs give finite outputs; results equal the SPEC reference
(tests/reference.py) bit for bit. Bounded (derandomized, capped examples) so it
runs in CI in well under a minute."""
import math
import os

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


# ===========================================================================
# Issue 15: the classes of input the reliability bugs came from. Each property
# below compares against an independent expectation (exact range tests in
# Python integers, reverse mode, finite differences, the float32-metadata call)
# so that it can fail; giants are stride-0 broadcasts of tiny tensors, except a
# single real axis of at most 2^24 + 5 uint8 (16 MB) or a float32 gradient of at
# most 2^25 + 16 elements (128 MB).
# ===========================================================================
import re  # noqa: E402
import warnings  # noqa: E402

import torch.autograd.forward_ad as fwAD  # noqa: E402

from roi_ext.poolers import multi_scale_roi_align  # noqa: E402

FEW = settings(max_examples=25, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
F64 = torch.float64


# ---------------------------------------------------------------------------
# Extreme dimensions: 2^24 +- 4, 2^31 +- 1, 2^62, 2^63 - 1
# ---------------------------------------------------------------------------
AROUND_2_24 = [2**24 + k for k in range(-4, 5)]
GIANT_SIZES = AROUND_2_24 + [2**31 - 1, 2**31, 2**31 + 1, 2**62, 2**63 - 1]
REAL_LIMIT = 2**24 + 4  # largest axis stored for real (uint8)


def _in_range(v, size):
    """SPEC §1.4 compared exactly: Python compares float and int without rounding."""
    return math.isfinite(float(v)) and 0 <= float(v) <= size - 1


def _coordinate(draw, size):
    """A normalised box coordinate, often one whose sample lands on the last pixel
    (or just past it once rounded to float32)."""
    special = [0.0, 1.0, 0.5, 1 - 2**-24, 1 + 2**-23, -2**-24, 2 / size, (size - 1) / size]
    if size > 1:
        special += [(size - 2) / (size - 1), 1 / (size - 1)]
    return draw(st.one_of(st.sampled_from(special), st.floats(-0.0625, 1.0625, width=32)))


@st.composite
def giant_case(draw):
    h = draw(st.sampled_from(GIANT_SIZES + [1, 2, 5]))
    w = draw(st.sampled_from(GIANT_SIZES + [1, 3]))
    if h < 2**24 and w < 2**24:
        h = draw(st.sampled_from(GIANT_SIZES))
    b, d = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if b * h * w * d > 2**63 - 1:  # a tensor's numel must fit in int64
        b = d = 1
        if h * w > 2**63 - 1:
            h, w = (h, 1) if draw(st.booleans()) else (1, w)
    choices = [None] + [axis for axis, s in (("h", h), ("w", w)) if 2**24 - 4 <= s <= REAL_LIMIT]
    real = draw(st.sampled_from(choices))
    n = draw(st.integers(1, 3))
    boxes = [[_coordinate(draw, h), _coordinate(draw, w), _coordinate(draw, h), _coordinate(draw, w)]
             for _ in range(n)]
    box_index = draw(st.lists(st.integers(0, b - 1), min_size=n, max_size=n))
    crop = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    method = draw(st.sampled_from(["bilinear", "nearest", "bilinear_v2"]))
    dtype = torch.uint8 if real else draw(st.sampled_from([torch.uint8, torch.float32, torch.float64]))
    return h, w, real, b, d, boxes, box_index, crop, method, dtype, draw(st.booleans()), draw(st.integers(0, 2**16))


def _giant_image(h, w, real, b, d, dtype, nchw, seed):
    """An NHWC-indexed image [b, h, w, d] (in `nchw` layout when asked) and
    pixel(bi, y, x, c) giving its value. A real axis is stored with one sentinel
    element (255, a value the image never holds) just past its end: a read of
    row h (or column w) returns 255 instead of a pixel."""
    gen = torch.Generator().manual_seed(seed)
    if real:
        size = h if real == "h" else w
        storage = torch.randint(0, 200, (size + 1,), dtype=torch.uint8, generator=gen)
        storage[size] = 255
        vec = storage[:size]
        shape = (1, size, 1, 1) if real == "h" else (1, 1, size, 1)
        image = vec.view(shape).expand(b, h, w, d)
        values = vec.numpy()

        def pixel(bi, y, x, c):
            assert 0 <= y < h and 0 <= x < w  # the reference itself stays inside
            return values[y if real == "h" else x]
    else:
        base = (torch.arange(b * d, dtype=torch.float64).reshape(b, 1, 1, d) * 7 + 3).to(dtype)
        image = base.expand(b, h, w, d)
        table = base.double().reshape(b, d).numpy()

        def pixel(bi, y, x, c):
            assert 0 <= y < h and 0 <= x < w
            return table[bi, c]
    if nchw:
        image = image.permute(0, 3, 1, 2)  # a view: the op reads NCHW strides in place
    return image, pixel


def _exact_crop(pixel, h, w, d, boxes, box_index, crop, method, extrapolation, T):
    """SPEC forward with Python-exact range tests; pixel() never sees an index outside."""
    ch, cw = crop
    out = np.zeros((len(boxes), ch, cw, d), dtype=T)
    with np.errstate(all="ignore"):
        for k, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, dtype=T)):
            bi = box_index[k]
            px = lambda yy, xx, c: T(pixel(bi, yy, xx, c))  # noqa: E731
            for y in range(ch):
                for x in range(cw):
                    for c in range(d):
                        if method == "bilinear_v2":
                            sy, sx = ref._v2_axis(y1, y2, y, h, ch, T), ref._v2_axis(x1, x2, x, w, cw, T)
                            if sy is None or sx is None:
                                out[k, y, x, c] = T(extrapolation)
                                continue
                            (t, bo, yl), (le, r, xl) = sy, sx
                            oy, ox = T(1) - yl, T(1) - xl
                            out[k, y, x, c] = ((((px(t, le, c) * oy) * ox + (px(bo, r, c) * yl) * xl)
                                                + (px(t, r, c) * oy) * xl) + (px(bo, le, c) * yl) * ox)
                            continue
                        in_y = ref._axis_coord(y1, y2, y, h, ch, T)
                        in_x = ref._axis_coord(x1, x2, x, w, cw, T)
                        if not (_in_range(in_y, h) and _in_range(in_x, w)):
                            out[k, y, x, c] = T(extrapolation)
                        elif method == "nearest":
                            out[k, y, x, c] = px(ref._round_half_away(in_y), ref._round_half_away(in_x), c)
                        else:
                            t, bo, le, r = math.floor(in_y), math.ceil(in_y), math.floor(in_x), math.ceil(in_x)
                            yl, xl = in_y - T(t), in_x - T(le)
                            top = px(t, le, c) + (px(t, r, c) - px(t, le, c)) * xl
                            bottom = px(bo, le, c) + (px(bo, r, c) - px(bo, le, c)) * xl
                            out[k, y, x, c] = top + (bottom - top) * yl
    return out


def _exact_grad_boxes(pixel, h, w, d, grads, boxes, box_index, T):
    """SPEC §3 (ref.crop_and_resize_grad_boxes) with Python-exact range tests."""
    n, ch, cw, _ = grads.shape
    out = np.zeros((n, 4), dtype=T)

    def add(acc, g, i, size, crop, first):
        if crop > 1:
            ratio = T(size - 1) / T(crop - 1)
            return acc + g * ((T(size - 1) - T(i) * ratio) if first else T(i) * ratio)
        return T(float(acc) + float(g) * 0.5 * float(size - 1))

    with np.errstate(all="ignore"):
        for k, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, dtype=T)):
            bi = box_index[k]
            px = lambda yy, xx, c: T(pixel(bi, yy, xx, c))  # noqa: E731
            acc = [T(0)] * 4
            for y in range(ch):
                in_y = ref._axis_coord(y1, y2, y, h, ch, T, grad_boxes=True)
                if not _in_range(in_y, h):
                    continue
                t, bo = math.floor(in_y), math.ceil(in_y)
                yl = in_y - T(t)
                for x in range(cw):
                    in_x = ref._axis_coord(x1, x2, x, w, cw, T, grad_boxes=True)
                    if not _in_range(in_x, w):
                        continue
                    le, r = math.floor(in_x), math.ceil(in_x)
                    xl = in_x - T(le)
                    for c in range(d):
                        tl, tr, bl, br = px(t, le, c), px(t, r, c), px(bo, le, c), px(bo, r, c)
                        g = T(grads[k, y, x, c])
                        gy = ((T(1) - xl) * (bl - tl) + xl * (br - tr)) * g
                        gx = ((T(1) - yl) * (tr - tl) + yl * (br - bl)) * g
                        acc[0] = add(acc[0], gy, y, h, ch, True)
                        acc[2] = add(acc[2], gy, y, h, ch, False)
                        acc[1] = add(acc[1], gx, x, w, cw, True)
                        acc[3] = add(acc[3], gx, x, w, cw, False)
            out[k] = acc
    return out


def _exact_grad_image_shares(h, w, d, grads, boxes, box_index, method, T):
    """{(bi, y, x, c): value}: SPEC §2 / A8 shares, added in the reference's order."""
    shares = {}
    n, ch, cw, _ = grads.shape
    with np.errstate(all="ignore"):
        for k, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, dtype=T)):
            bi = box_index[k]
            for y in range(ch):
                for x in range(cw):
                    for c in range(d):
                        g = T(grads[k, y, x, c])
                        if method == "bilinear_v2":
                            sy, sx = ref._v2_axis(y1, y2, y, h, ch, T), ref._v2_axis(x1, x2, x, w, cw, T)
                            if sy is None or sx is None:
                                continue
                            (t, bo, yl), (le, r, xl) = sy, sx
                            oy, ox = T(1) - yl, T(1) - xl
                            parts = ((t, le, (g * oy) * ox), (t, r, (g * oy) * xl), (bo, le, (g * yl) * ox),
                                     (bo, r, (g * yl) * xl))
                        else:
                            in_y = ref._axis_coord(y1, y2, y, h, ch, T)
                            in_x = ref._axis_coord(x1, x2, x, w, cw, T)
                            if not (_in_range(in_y, h) and _in_range(in_x, w)):
                                continue
                            if method == "nearest":
                                parts = ((ref._round_half_away(in_y), ref._round_half_away(in_x), g),)
                            else:
                                t, bo, le, r = (math.floor(in_y), math.ceil(in_y), math.floor(in_x),
                                                math.ceil(in_x))
                                yl, xl = in_y - T(t), in_x - T(le)
                                dtop, dbot = (T(1) - yl) * g, yl * g
                                parts = ((t, le, (T(1) - xl) * dtop), (t, r, xl * dtop),
                                         (bo, le, (T(1) - xl) * dbot), (bo, r, xl * dbot))
                        for yy, xx, v in parts:
                            assert 0 <= yy < h and 0 <= xx < w
                            key = (bi, yy, xx, c)
                            shares[key] = shares.get(key, T(0)) + v
    return shares


@FEW
@given(giant_case())
def test_fuzz_extreme_dimensions(case):
    """crop_and_resize and its gradient ops on images with 2^24 +- 4, 2^31 +- 1,
    2^62 and 2^63 - 1 rows or columns: every sample is either the value of a pixel
    that exists or the extrapolation value, decided by the exact range test (a
    sample rounded onto row h reads the sentinel and fails), and the gradients
    equal the same exact-range reference."""
    h, w, real, b, d, boxes, box_index, crop, method, dtype, nchw, seed = case
    image, pixel = _giant_image(h, w, real, b, d, dtype, nchw, seed)
    T = np.float64 if dtype == torch.float64 else np.float32
    tdtype = torch.float64 if dtype == torch.float64 else torch.float32
    fmt = "NCHW" if nchw else "NHWC"
    boxes_t = torch.tensor(boxes, dtype=torch.float32)
    index_t = torch.tensor(box_index)
    extrapolation = -1.0  # no pixel holds it
    out = roi_ext.crop_and_resize(image, boxes_t, index_t, crop, method, extrapolation, fmt)
    nhwc = out.permute(0, 2, 3, 1) if nchw else out
    assert nhwc.shape == (len(boxes), *crop, d) and out.dtype == tdtype
    expected = _exact_crop(pixel, h, w, d, boxes_t.numpy(), box_index, crop, method, extrapolation, T)
    np.testing.assert_array_equal(nhwc.numpy(), expected)

    gen = torch.Generator().manual_seed(seed + 1)
    grads = torch.randn(nhwc.shape, generator=gen, dtype=tdtype)
    g_in = grads.permute(0, 3, 1, 2) if nchw else grads
    gb = roi_ext.crop_and_resize_grad_boxes(g_in, image, boxes_t, index_t, method, fmt)
    assert gb.shape == (len(boxes), 4) and torch.isfinite(gb).all()
    if method == "bilinear_v2":
        assert not gb.any()
    else:
        np.testing.assert_array_equal(gb.numpy(), _exact_grad_boxes(pixel, h, w, d, grads.numpy(), boxes_t.numpy(),
                                                                    box_index, T))
    if b * h * w * d <= 2**25 + 16:  # the gradient image itself must be allocated: 128 MB at most
        size = (b, d, h, w) if nchw else (b, h, w, d)
        gi = roi_ext.crop_and_resize_grad_image(g_in, boxes_t, index_t, size, method, tdtype, fmt)
        gi = gi.permute(0, 2, 3, 1) if nchw else gi
        assert gi.shape == (b, h, w, d)
        shares = _exact_grad_image_shares(h, w, d, grads.numpy(), boxes_t.numpy(), box_index, method, T)
        for key, value in shares.items():
            assert gi[key].item() == value, (key, gi[key].item(), value)
        assert int(torch.count_nonzero(gi)) == sum(1 for v in shares.values() if v != 0)


# ---------------------------------------------------------------------------
# Every tensor argument on another device (meta; CUDA where there is one)
# ---------------------------------------------------------------------------
OTHER_DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])
_G = torch.Generator().manual_seed(0)
DEV_ARGS = {
    "image": torch.randn(2, 5, 6, 3, generator=_G),
    "boxes": torch.tensor([[0.1, 0.2, 0.8, 0.9], [0.5, 0.0, 0.2, 1.0]]),
    "box_index": torch.tensor([0, 1]),
    "grads": torch.randn(2, 2, 3, 3, generator=_G),
    "input": torch.randn(2, 3, 8, 9, generator=_G),
    "rois": torch.tensor([[0, 1, 1, 5, 6], [1, 0.5, 2, 7, 7.5]]),
    "grad": torch.randn(2, 3, 2, 2, generator=_G),
}
DEV_OPS = {
    "crop_and_resize": (("image", "boxes", "box_index"),
                        lambda a: roi_ext.crop_and_resize(a["image"], a["boxes"], a["box_index"], (2, 3))),
    "crop_and_resize_grad_image": (
        ("grads", "boxes", "box_index"),
        lambda a: roi_ext.crop_and_resize_grad_image(a["grads"], a["boxes"], a["box_index"], (2, 5, 6, 3))),
    "crop_and_resize_grad_boxes": (
        ("grads", "image", "boxes", "box_index"),
        lambda a: roi_ext.crop_and_resize_grad_boxes(a["grads"], a["image"], a["boxes"], a["box_index"])),
    "roi_align": (("input", "rois"), lambda a: roi_ext.roi_align(a["input"], a["rois"], 2)),
    "torch.ops.roi_ext.crop_and_resize": (
        ("image", "boxes", "box_index"),
        lambda a: torch.ops.roi_ext.crop_and_resize(a["image"], a["boxes"], a["box_index"], 2, 3, "bilinear", 0.0,
                                                    "NHWC")),
    "torch.ops.roi_ext.crop_and_resize_grad_image": (
        ("grads", "boxes", "box_index"),
        lambda a: torch.ops.roi_ext.crop_and_resize_grad_image(a["grads"], a["boxes"], a["box_index"], 2, 5, 6, 3,
                                                               "bilinear", torch.float32, "NHWC")),
    "torch.ops.roi_ext.crop_and_resize_grad_boxes": (
        ("grads", "image", "boxes", "box_index"),
        lambda a: torch.ops.roi_ext.crop_and_resize_grad_boxes(a["grads"], a["image"], a["boxes"], a["box_index"],
                                                               "bilinear", "NHWC")),
    "torch.ops.roi_ext.roi_align": (
        ("input", "rois"), lambda a: torch.ops.roi_ext.roi_align(a["input"], a["rois"], 1.0, 2, 2, -1, False, 0)),
    "torch.ops.roi_ext._roi_align_backward": (
        ("grad", "rois"),
        lambda a: torch.ops.roi_ext._roi_align_backward(a["grad"], a["rois"], 1.0, 2, 2, 2, 3, 8, 9, -1, False, 0)),
    "roi_align(box_grad=True)": (
        ("input", "rois"), lambda a: roi_ext.roi_align(a["input"], a["rois"], 2, box_grad=True)),
    "torch.ops.roi_ext.roi_align_with_box_grad": (
        ("input", "rois"),
        lambda a: torch.ops.roi_ext.roi_align_with_box_grad(a["input"], a["rois"], 1.0, 2, 2, -1, False, 0)),
    "torch.ops.roi_ext._roi_align_backward_rois": (
        ("grad", "input", "rois"),
        lambda a: torch.ops.roi_ext._roi_align_backward_rois(a["grad"], a["input"], a["rois"], 1.0, 2, 2, -1, False,
                                                             0)),
    "prroi_pool": (("input", "rois"), lambda a: roi_ext.prroi_pool(a["input"], a["rois"], 2)),
    "torch.ops.roi_ext.prroi_pool": (
        ("input", "rois"), lambda a: torch.ops.roi_ext.prroi_pool(a["input"], a["rois"], 1.0, 2, 2)),
    "torch.ops.roi_ext._prroi_pool_backward": (
        ("grad", "rois"),
        lambda a: torch.ops.roi_ext._prroi_pool_backward(a["grad"], a["rois"], 1.0, 2, 2, 2, 3, 8, 9)),
    "torch.ops.roi_ext._prroi_pool_backward_rois": (
        ("grad", "input", "rois"),
        lambda a: torch.ops.roi_ext._prroi_pool_backward_rois(a["grad"], a["input"], a["rois"], 1.0, 2, 2)),
}
_MISMATCH = re.compile(r"(\S+) must be on the same device as (\S+) \((\S+)\), got (\S+) on (\S+)")


def _expect_device_error(call, devices):
    """call() must raise a RuntimeError naming two arguments that really are on
    different devices (never return: a meta/real mix used to return an unfilled
    tensor)."""
    with pytest.raises(RuntimeError) as info:
        out = call()
        raise AssertionError(f"returned a tensor on {out.device} for devices {devices}")
    match = _MISMATCH.search(str(info.value))
    assert match, f"message does not name the argument: {info.value}"
    name, reference, ref_device, name_again, name_device = match.groups()
    assert name in devices and reference in devices and name == name_again, (str(info.value), devices)
    assert devices[name] != devices[reference], (str(info.value), devices)
    assert torch.device(ref_device) == torch.device(devices[reference])
    assert torch.device(name_device) == torch.device(devices[name])


@st.composite
def device_case(draw):
    op = draw(st.sampled_from(sorted(DEV_OPS)))
    names = DEV_OPS[op][0]
    other = draw(st.sampled_from(OTHER_DEVICES))
    placed = draw(st.lists(st.sampled_from(["cpu", other]), min_size=len(names), max_size=len(names)).filter(
        lambda p: len(set(p)) > 1))
    return op, dict(zip(names, placed))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(device_case())
def test_fuzz_every_argument_on_another_device(case):
    op, devices = case
    args = {name: DEV_ARGS[name].to(dev) for name, dev in devices.items()}
    _expect_device_error(lambda: DEV_OPS[op][1](args), devices)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.data())
def test_fuzz_roi_align_boxes_list_on_another_device(count, data):
    x = DEV_ARGS["input"]
    where = data.draw(st.lists(st.sampled_from(["cpu"] + OTHER_DEVICES), min_size=count, max_size=count).filter(
        lambda p: any(d != "cpu" for d in p)))
    boxes = [DEV_ARGS["rois"][:1, 1:].to(d) for d in where]
    devices = {"input": "cpu", **{f"boxes[{i}]": d for i, d in enumerate(where)}}
    _expect_device_error(lambda: roi_ext.roi_align(x, boxes, 2), devices)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(["cpu"] + OTHER_DEVICES), min_size=4, max_size=4).filter(lambda p: len(set(p)) > 1))
def test_fuzz_multi_scale_roi_align_on_another_device(where):
    features = [torch.randn(2, 3, 8, 9).to(where[0]), torch.randn(2, 3, 4, 5).to(where[1])]
    rois, levels = DEV_ARGS["rois"].to(where[2]), torch.tensor([0, 1]).to(where[3])
    devices = {"features[0]": where[0], "features[1]": where[1], "rois": where[2], "levels": where[3]}
    _expect_device_error(lambda: multi_scale_roi_align(features, rois, levels, [1.0, 0.5], (2, 2)), devices)


# ---------------------------------------------------------------------------
# Every derivative mode agrees with reverse mode (float64, small random cases)
# ---------------------------------------------------------------------------
def _close(a, b, tol=1e-9):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _contract(jac, tangent, out_dims):
    return (jac * tangent).sum(dim=tuple(range(out_dims, jac.dim())))


@st.composite
def derivative_case(draw):
    b, h, w, d = draw(st.integers(1, 2)), draw(st.integers(2, 5)), draw(st.integers(2, 5)), draw(st.integers(1, 2))
    n = draw(st.integers(1, 2))
    box_index = draw(st.lists(st.integers(0, b - 1), min_size=n, max_size=n))
    crop = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    method = draw(st.sampled_from(["bilinear", "nearest", "bilinear_v2"]))
    return b, h, w, d, n, box_index, crop, method, draw(st.booleans()), draw(st.integers(0, 2**16))


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@settings(max_examples=20, deadline=None, derandomize=True)
@given(derivative_case())
def test_fuzz_crop_and_resize_every_derivative_mode(case):
    """jvp, forward_ad and jacfwd equal the contraction of reverse mode's
    Jacobian; double backward (grad of a vjp) equals forward mode in the cotangent
    and finite differences of the reverse-mode gradient in the inputs; jvp of
    the vjp (forward-over-reverse, the gradient ops' forward mode) equals it."""
    b, h, w, d, n, box_index, crop, method, nchw, seed = case
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(b, h, w, d, generator=gen, dtype=F64)
    # Random (not drawn) coordinates: samples inside the image at generic positions,
    # away from the kinks (integers, halves) where finite differences jump.
    boxes_t = 0.03 + 0.94 * torch.rand(n, 4, generator=gen, dtype=F64)
    index_t = torch.tensor(box_index)
    fmt = "NCHW" if nchw else "NHWC"

    def f(im, bx):
        return roi_ext.crop_and_resize(im.permute(0, 3, 1, 2) if nchw else im, bx, index_t, crop, method, 0.5, fmt)

    out = f(image, boxes_t)
    ti, tb = torch.randn(image.shape, generator=gen, dtype=F64), torch.randn(boxes_t.shape, generator=gen, dtype=F64)
    v = torch.randn(out.shape, generator=gen, dtype=F64)

    jr = torch.func.jacrev(f, argnums=(0, 1))(image, boxes_t)
    expected = _contract(jr[0], ti, out.dim()) + _contract(jr[1], tb, out.dim())
    primal, tangent = torch.func.jvp(f, (image, boxes_t), (ti, tb))
    assert torch.equal(primal, out)
    _close(tangent, expected)
    with fwAD.dual_level():
        dual = f(fwAD.make_dual(image, ti), fwAD.make_dual(boxes_t, tb))
        _close(fwAD.unpack_dual(dual).tangent, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vmap falls back to a loop
        _close(torch.func.jacfwd(f, argnums=1)(image, boxes_t), jr[1])
        if image.numel() <= 40:
            _close(torch.func.jacfwd(f, argnums=0)(image, boxes_t), jr[0])
    # reverse mode itself against its own Jacobian
    im, bx, vv = image.clone().requires_grad_(), boxes_t.clone().requires_grad_(), v.clone().requires_grad_()
    gi, gb = torch.autograd.grad(f(im, bx), (im, bx), vv, create_graph=True)
    _close(gi, (jr[0] * v.reshape(*v.shape, *([1] * image.dim()))).sum(dim=tuple(range(v.dim()))))
    _close(gb, (jr[1] * v.reshape(*v.shape, 1, 1)).sum(dim=tuple(range(v.dim()))))
    # double backward: d/dv <J^T v, t> = J t, and d/d(inputs) <J^T v, t> = d(J^T v)/d(inputs) . t
    # Mixed partials are symmetric: d/dboxes <image gradient, ti> . tb = d/dimage <box gradient, tb> . ti
    (cross_b,) = torch.autograd.grad((gi * ti).sum(), bx, retain_graph=True, allow_unused=True)
    (cross_i,) = torch.autograd.grad((gb * tb).sum(), im, retain_graph=True, allow_unused=True)
    cross_b = torch.zeros((), dtype=F64) if cross_b is None else (cross_b * tb).sum()
    cross_i = torch.zeros((), dtype=F64) if cross_i is None else (cross_i * ti).sum()
    torch.testing.assert_close(cross_b, cross_i)
    s = (gi * ti).sum() + (gb * tb).sum()
    dv, dim, dbx = torch.autograd.grad(s, (vv, im, bx), allow_unused=True)
    _close(dv, expected)
    dim = torch.zeros_like(image) if dim is None else dim
    dbx = torch.zeros_like(boxes_t) if dbx is None else dbx

    def reverse(im_, bx_):
        im_, bx_ = im_.clone().requires_grad_(), bx_.clone().requires_grad_()
        return torch.autograd.grad(f(im_, bx_), (im_, bx_), v)

    if method == "bilinear":
        # The box derivative is the true one (nearest uses bilinear's, TensorFlow's
        # convention; bilinear_v2's is 0): finite differences of the reverse-mode
        # gradient along t give the Hessian-vector product contracted with t.
        eps = 1e-6
        plus, minus = reverse(image + eps * ti, boxes_t + eps * tb), reverse(image - eps * ti, boxes_t - eps * tb)
        numeric = sum(((p - m) * t).sum() for p, m, t in zip(plus, minus, (ti, tb))) / (2 * eps)
        torch.testing.assert_close((dim * ti).sum() + (dbx * tb).sum(), numeric, rtol=1e-5, atol=1e-6)
    # forward-over-reverse: jvp of the vjp
    _, hvp = torch.func.jvp(lambda a, c: torch.func.vjp(f, a, c)[1](v), (image, boxes_t), (ti, tb))
    _close(hvp[0], dim, tol=1e-7)
    _close(hvp[1], dbx, tol=1e-7)


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.integers(1, 2), st.integers(2, 6), st.integers(2, 6), st.integers(1, 3), st.booleans(), st.integers(0, 1),
       st.integers(-1, 2), st.booleans(), st.integers(0, 2**16))
def test_fuzz_roi_align_every_derivative_mode(n, h, w, k, aligned, mode, sr, channels_last, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, h, w, generator=gen, dtype=F64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    lo = torch.rand(k, 2, generator=gen, dtype=F64) * torch.tensor([w, h]) * 0.6
    size = torch.rand(k, 2, generator=gen, dtype=F64) * torch.tensor([w, h]) * 0.4
    rois = torch.cat([torch.randint(0, n, (k, 1), generator=gen).double(), lo, lo + size], dim=1)
    pooled = (1 + seed % 3, 1 + seed // 3 % 3)

    def f(t):
        return roi_ext.roi_align(t, rois, pooled, 1.0, sr, aligned, mode)

    out = f(x)
    t = torch.randn(x.shape, generator=gen, dtype=F64)
    v = torch.randn(out.shape, generator=gen, dtype=F64)
    jr = torch.func.jacrev(f)(x)
    expected = _contract(jr, t, out.dim())
    _close(f(t), expected)  # linear in the input
    _, tangent = torch.func.jvp(f, (x,), (t,))
    _close(tangent, expected)
    with fwAD.dual_level():
        _close(fwAD.unpack_dual(f(fwAD.make_dual(x, t))).tangent, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _close(torch.func.jacfwd(f)(x), jr)
    xx, vv = x.clone().requires_grad_(), v.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(xx), xx, vv, create_graph=True)
    _close(g, (jr * v.reshape(*v.shape, 1, 1, 1, 1)).sum(dim=(0, 1, 2, 3)))
    dv, dx = torch.autograd.grad((g * t).sum(), (vv, xx), allow_unused=True)
    _close(dv, expected)  # double backward: d/dv <J^T v, t> = J t
    assert dx is None or not dx.any()  # linear: no second derivative in the input
    _, hvp = torch.func.jvp(lambda a: torch.func.vjp(f, a)[1](v)[0], (x,), (t,))
    assert not hvp.any()
    _, tg = torch.func.jvp(lambda u: torch.func.vjp(f, x)[1](u)[0], (v,), (v,))
    _close(tg, g.detach())  # the backward op's forward mode: linear in the cotangent


@settings(max_examples=5, deadline=None, derandomize=True)
@given(st.integers(0, 2**16))
def test_fuzz_multi_scale_roi_align_forward_mode(seed):
    gen = torch.Generator().manual_seed(seed)
    f1 = torch.randn(1, 2, 4, 5, generator=gen, dtype=F64)
    rois = torch.tensor([[0, 1.0, 1.5, 6.0, 5.5], [0, 0.5, 0.2, 3.3, 2.9]], dtype=F64)
    levels = torch.tensor([0, 1])

    def f(x):
        return multi_scale_roi_align([x, f1], rois, levels, [1.0, 0.5], (2, 2), 2)

    x = torch.randn(1, 2, 8, 9, generator=gen, dtype=F64)
    t = torch.randn(x.shape, generator=gen, dtype=F64)
    expected = multi_scale_roi_align([t, torch.zeros_like(f1)], rois, levels, [1.0, 0.5], (2, 2), 2)
    assert expected.any()
    _close(torch.func.jvp(f, (x,), (t,))[1], expected)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(f(fwAD.make_dual(x, t))).tangent
        assert tangent is not None
        _close(tangent, expected)


# ---------------------------------------------------------------------------
# float64 metadata with float32 data: the batch index is truncated in float64
# ---------------------------------------------------------------------------
BATCH_OFFSETS = [0.0, 1e-12, 0.5, 1 - 1e-10, 1 - 2**-40, 1 - 2**-52, -1e-12, -0.5]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.integers(1, 4), st.data(), st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
       st.booleans(), st.integers(0, 2**16))
def test_fuzz_float64_rois_with_float32_input(n, k, data, dtype, aligned, seed):
    """roi_align(x, float64 rois) pools image trunc(b) (in float64: b = 0.9999999999
    is image 0, never image 1 as float32(b) = 1 would be) and raises an IndexError
    for b outside [0, n); otherwise it equals the call with exact batch indices and
    the coordinates rounded to x's compute type (float32)."""
    gen = torch.Generator().manual_seed(seed)
    # Image i holds values around 10 * i: pooling the wrong image cannot go unnoticed.
    x = (torch.rand(n, 2, 6, 7, generator=gen) + 10 * torch.arange(n).view(n, 1, 1, 1)).to(dtype)
    images = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
    offsets = data.draw(st.lists(st.sampled_from(BATCH_OFFSETS), min_size=k, max_size=k))
    coords = torch.rand(k, 4, generator=gen, dtype=F64) * torch.tensor([3.0, 3.0, 4.0, 4.0])
    coords[:, 2:] += coords[:, :2]
    batch = torch.tensor([i + o for i, o in zip(images, offsets)], dtype=F64)
    rois = torch.cat([batch[:, None], coords], dim=1)
    valid = all(0 <= float(v) < n for v in batch)
    xg = x.clone().requires_grad_()
    if not valid:
        with pytest.raises(IndexError, match="batch index"):
            roi_ext.roi_align(xg, rois, 2, 1.0, 2, aligned)
        return
    exact = torch.cat([batch.trunc()[:, None], coords], dim=1).float()
    assert all(int(e) == math.trunc(float(v)) for e, v in zip(exact[:, 0], batch))
    out = roi_ext.roi_align(xg, rois, 2, 1.0, 2, aligned)
    xe = x.clone().requires_grad_()
    expected = roi_ext.roi_align(xe, exact, 2, 1.0, 2, aligned)
    assert out.dtype == dtype and torch.equal(out, expected)
    g = torch.randn(out.shape, generator=gen).to(dtype)
    out.backward(g)
    expected.backward(g)
    assert torch.equal(xg.grad, xe.grad)
    # the list-of-boxes form (float64 boxes) gives the same rows
    per_image = [coords[[j for j in range(k) if int(exact[j, 0]) == i]] for i in range(n)]
    order = [j for i in range(n) for j in range(k) if int(exact[j, 0]) == i]
    assert torch.equal(roi_ext.roi_align(x, per_image, 2, 1.0, 2, aligned), expected.detach()[order])
    # multi_scale_roi_align: one level, the same rois
    if dtype == torch.float32:
        ms = multi_scale_roi_align([x], rois, torch.zeros(k, dtype=torch.int64), [1.0], (2, 2), 2, aligned)
        assert torch.equal(ms, expected.detach())


@settings(max_examples=20, deadline=None, derandomize=True)
@given(crop_case())
def test_fuzz_float64_boxes_with_float32_image(case):
    """float64 boxes with a non-float64 image compute in float32 (API: float64 only
    for float64 images): the same result, and gradients, as float32 boxes."""
    b, h, w, d, dtype, method, nchw, crop, boxes, box_index, extrapolation, seed = case
    if dtype == torch.float64:
        dtype = torch.float32
    gen = torch.Generator().manual_seed(seed)
    image = (torch.randn(b, h, w, d, generator=gen) * 50).to(dtype)
    boxes64 = torch.tensor(boxes, dtype=F64).reshape(-1, 4)
    boxes32 = boxes64.float()
    index = torch.tensor(box_index, dtype=torch.int64)
    fmt = "NCHW" if nchw else "NHWC"
    img = image.permute(0, 3, 1, 2) if nchw else image
    out = roi_ext.crop_and_resize(img, boxes64, index, crop, method, extrapolation, fmt)
    expected = roi_ext.crop_and_resize(img, boxes32, index, crop, method, extrapolation, fmt)
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    grads = torch.randn(out.shape, generator=gen)
    size = tuple(img.shape)
    assert torch.equal(roi_ext.crop_and_resize_grad_image(grads, boxes64, index, size, method, torch.float32, fmt),
                       roi_ext.crop_and_resize_grad_image(grads, boxes32, index, size, method, torch.float32, fmt))
    assert torch.equal(roi_ext.crop_and_resize_grad_boxes(grads, img, boxes64, index, method, fmt),
                       roi_ext.crop_and_resize_grad_boxes(grads, img, boxes32, index, method, fmt))


# ---------------------------------------------------------------------------
# Huge outputs from tiny inputs
# ---------------------------------------------------------------------------
FITS = 2**22  # elements of an output that is computed (16 MB in float32)
ASTRONOMICAL = 2**42  # elements no machine allocates (16 TiB in float32)
UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")


def _rss_and_reset_peak():
    """(VmRSS in bytes) after resetting VmHWM, or None where /proc does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status("VmRSS")
    except OSError:
        return None


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


@st.composite
def huge_case(draw):
    op = draw(st.sampled_from(["roi_align", "crop_and_resize", "grad_image", "multi_scale_roi_align"]))
    astronomical = draw(st.booleans())
    if astronomical:
        big = draw(st.sampled_from([2**21, 2**31 - 1, 2**31 + 1, 2**40, 2**62]))
        other = draw(st.integers(max(1, ASTRONOMICAL // big + 1), ASTRONOMICAL // big + 2**20)) \
            if big < ASTRONOMICAL else draw(st.integers(1, 4))
        dims = (big, other) if draw(st.booleans()) else (other, big)
    else:
        a = draw(st.sampled_from([1, 3, 64, 1000, 2048]))
        dims = (a, draw(st.integers(FITS // a // 8, FITS // a // 2)))
    return op, astronomical, dims, draw(st.sampled_from([1, 2])), draw(st.integers(0, 2**16))


@settings(max_examples=16, deadline=None, derandomize=True)
@given(huge_case())
def test_fuzz_huge_output_from_tiny_input(case):
    """A tiny input with a huge output_size / crop_size / image_size either
    computes the right values within a small multiple of the output's memory, or
    raises an error that names that argument (never a crash, an OverflowError or
    an anonymous allocator failure)."""
    op, astronomical, dims, channels, seed = case
    c = 1.0 + seed % 7
    x = torch.full((1, 1, 1, 1), c).expand(1, channels, 8, 9)  # a stride-0 constant input
    rois = torch.tensor([[0.0, 0.5, 0.25, 7.5, 6.75]])
    image = torch.full((1, 1, 1, 1), c).expand(1, 8, 9, channels)
    boxes, index = torch.tensor([[0.1, 0.2, 0.9, 0.7]]), torch.tensor([0])
    calls = {
        "roi_align": ("output_size", lambda: roi_ext.roi_align(x, rois, dims, 0.5, 1)),
        "crop_and_resize": ("crop_size", lambda: roi_ext.crop_and_resize(image, boxes, index, dims)),
        "grad_image": ("image_size", lambda: roi_ext.crop_and_resize_grad_image(
            torch.full((1, 2, 2, channels), c), boxes, index, (1, *dims, channels))),
        "multi_scale_roi_align": ("output_size", lambda: multi_scale_roi_align(
            [x, x[:, :, :4, :5]], rois, torch.tensor([1]), [1.0, 0.5], dims, 1)),
    }
    name, call = calls[op]
    if astronomical:
        with pytest.raises((RuntimeError, ValueError)) as info:
            call()
        assert name in str(info.value), f"{type(info.value).__name__}: {str(info.value)[:300]}"
        return
    before = None if UNDER_ASAN else _rss_and_reset_peak()
    out = call()
    extra = None if before is None else _status("VmHWM") - before
    if op == "grad_image":
        assert out.shape == (1, *dims, channels)
        # the four corners' shares of a constant gradient add up to its sum
        torch.testing.assert_close(out.sum(dtype=F64), torch.tensor(4.0 * c * channels, dtype=F64))
        assert out.numel() - int(torch.count_nonzero(out)) >= out.numel() - 4 * 4 * channels
    else:
        expected_shape = (1, *dims, channels) if op == "crop_and_resize" else (1, channels, *dims)
        assert out.shape == expected_shape
        # every sample lies inside the image: the constant, up to the weights' rounding
        assert ((out - c).abs() <= 4e-6 * c).all()
    if extra is not None:
        budget = 3 * out.numel() * out.element_size() + 64 * 2**20
        assert extra <= budget, (f"peak memory grew by {extra / 2**20:.1f} MiB for a "
                                 f"{out.numel() * out.element_size() / 2**20:.1f} MiB output")

"""Scalar reference implementations written from ../shared/SPEC.md.

Each function works on numpy scalars of one dtype `T` (np.float32 or np.float64),
so every binary operation is rounded to T exactly as the formulas in SPEC.md
Part B prescribe: these references reproduce the kernels bit for bit, and are
slow (use small inputs).
"""
import math

import numpy as np


def _roi_geometry(roi, T, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned, roi_end_mode):
    """SPEC Part A10-A11 (+ B §4.2): start, bin size and samples per bin per axis."""
    s = T(spatial_scale)
    off = T(0.5) if aligned else T(0)
    m = T(roi_end_mode)
    start_w = roi[1] * s - off
    start_h = roi[2] * s - off
    end_w = (roi[3] + m) * s - off
    end_h = (roi[4] + m) * s - off
    roi_w = end_w - start_w
    roi_h = end_h - start_h
    if not aligned and roi_end_mode == 0:
        roi_w = T(1) if roi_w < T(1) else roi_w
        roi_h = T(1) if roi_h < T(1) else roi_h
    bin_h = roi_h / T(pooled_h)
    bin_w = roi_w / T(pooled_w)

    def grid(size, pooled):
        if sampling_ratio > 0:
            return sampling_ratio
        g = math.ceil(size / T(pooled)) if math.isfinite(size / T(pooled)) else 0
        return max(int(g), 0)

    return start_h, start_w, bin_h, bin_w, grid(roi_h, pooled_h), grid(roi_w, pooled_w)


def _bilinear(y, x, H, W, T):
    """SPEC B §4.1: None when out of range, else ((y_low, y_high, x_low, x_high), (w1..w4))."""
    if not (y >= -1 and y <= H and x >= -1 and x <= W):
        return None
    y = T(0) if y <= 0 else y
    x = T(0) if x <= 0 else x
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_low = y_high = H - 1
        y = T(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_low = x_high = W - 1
        x = T(x_low)
    else:
        x_high = x_low + 1
    ly = y - T(y_low)
    lx = x - T(x_low)
    hy = T(1) - ly
    hx = T(1) - lx
    return (y_low, y_high, x_low, x_high), (hy * hx, hy * lx, ly * hx, ly * lx)


def _samples(roi, T, H, W, PH, PW, sampling_ratio, aligned, roi_end_mode, spatial_scale):
    """Yields (ph, pw, count, taps) for every valid sample of one roi, in reference order."""
    sh, sw, bh, bw, gh, gw = _roi_geometry(roi, T, spatial_scale, PH, PW, sampling_ratio, aligned, roi_end_mode)
    count = T(max(gh * gw, 1))
    for ph in range(PH):
        for pw in range(PW):
            for iy in range(gh):
                y = (sh + T(ph) * bh) + (T(iy + 0.5) * bh) / T(gh)
                for ix in range(gw):
                    x = (sw + T(pw) * bw) + (T(ix + 0.5) * bw) / T(gw)
                    taps = _bilinear(y, x, H, W, T)
                    yield ph, pw, count, taps


def roi_align_forward(x, rois, output_size, spatial_scale, sampling_ratio, aligned, roi_end_mode, T):
    """x: numpy [N, C, H, W]; rois: numpy [K, 5]. Returns numpy [K, C, PH, PW] of dtype T."""
    x = np.asarray(x, dtype=T)
    rois = np.asarray(rois, dtype=T)
    N, C, H, W = x.shape
    PH, PW = output_size
    out = np.zeros((rois.shape[0], C, PH, PW), dtype=T)
    with np.errstate(all="ignore"):
        for k, roi in enumerate(rois):
            b = int(roi[0])
            acc = np.zeros((C, PH, PW), dtype=T)
            counts = {}
            for ph, pw, count, taps in _samples(roi, T, H, W, PH, PW, sampling_ratio, aligned, roi_end_mode,
                                                spatial_scale):
                counts[ph, pw] = count
                if taps is None:
                    continue
                (yl, yh, xl, xh), (w1, w2, w3, w4) = taps
                for c in range(C):
                    f = x[b, c]
                    v = ((w1 * f[yl, xl] + w2 * f[yl, xh]) + w3 * f[yh, xl]) + w4 * f[yh, xh]
                    acc[c, ph, pw] = acc[c, ph, pw] + v
            for c in range(C):
                for ph in range(PH):
                    for pw in range(PW):
                        count = counts.get((ph, pw), T(1))
                        out[k, c, ph, pw] = acc[c, ph, pw] / count
    return out


def roi_align_backward(grad, rois, input_shape, spatial_scale, sampling_ratio, aligned, roi_end_mode, T):
    """Adjoint of roi_align_forward (SPEC A13), accumulated in torchvision's serial order."""
    grad = np.asarray(grad, dtype=T)
    rois = np.asarray(rois, dtype=T)
    N, C, H, W = input_shape
    K, _, PH, PW = grad.shape
    out = np.zeros(input_shape, dtype=T)
    with np.errstate(all="ignore"):
        for k, roi in enumerate(rois):
            b = int(roi[0])
            samples = list(_samples(roi, T, H, W, PH, PW, sampling_ratio, aligned, roi_end_mode, spatial_scale))
            for c in range(C):
                for ph, pw, count, taps in samples:
                    if taps is None:
                        continue
                    g = grad[k, c, ph, pw]
                    (yl, yh, xl, xh), ws = taps
                    for (yy, xx), w in zip(((yl, xl), (yl, xh), (yh, xl), (yh, xh)), ws):
                        out[b, c, yy, xx] = out[b, c, yy, xx] + (g * w) / count
    return out

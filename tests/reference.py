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


# ---------------------------------------------------------------------------
# CropAndResize (SPEC Part B §1-3, Part A5-A9), NHWC numpy arrays
# ---------------------------------------------------------------------------
def _axis_coord(c1, c2, i, size, crop, T, grad_boxes=False):
    """SPEC §1.3 (forward / grad-image) and §3 (grad-boxes: step from a ratio)."""
    if crop > 1:
        if grad_boxes:
            step = (c2 - c1) * (T(size - 1) / T(crop - 1))
        else:
            step = ((c2 - c1) * T(size - 1)) / T(crop - 1)
        return c1 * T(size - 1) + T(i) * step
    return T(0.5 * float(c1 + c2) * float(size - 1))


def _v2_axis(c1, c2, i, size, crop, T):
    """SPEC §1.8 item 3 with Part A7's clamp: (lo, hi, frac) or None for non-finite boxes."""
    a, b = c1 * T(size), c2 * T(size)
    if not (abs(a) < 2**31 and abs(b) < 2**31):
        return None
    start = int(a)
    n = max(int(b) - start + 1, 1)
    p = ((T(i) + T(0.5)) * (T(n) / T(crop))) - T(0.5)
    lo = min(max(math.floor(p), 0), n - 1)
    hi = min(max(math.ceil(p), 0), n - 1)
    frac = p - T(lo)
    clamp = lambda v: min(max(v, 0), size - 1)  # noqa: E731
    return clamp(start + lo), clamp(start + hi), frac


def _round_half_away(v):
    """C round() for v >= 0, evaluated in double: float32 v + 0.5 would round
    0.49999997 up to 1.0 (SPEC §1.6)."""
    return int(math.floor(float(v) + 0.5))


def crop_and_resize_forward(image, boxes, box_index, crop_size, method, extrapolation_value, T):
    image = np.asarray(image)
    boxes = np.asarray(boxes, dtype=T)
    B, H, W, D = image.shape
    ch, cw = crop_size
    out = np.zeros((len(boxes), ch, cw, D), dtype=T)
    ext = T(extrapolation_value)
    with np.errstate(all="ignore"):
        for b, (y1, x1, y2, x2) in enumerate(boxes):
            img = image[int(box_index[b])]
            px = lambda yy, xx, d: T(img[yy, xx, d])  # noqa: E731
            for y in range(ch):
                for x in range(cw):
                    for d in range(D):
                        if method == "bilinear_v2":
                            sy = _v2_axis(y1, y2, y, H, ch, T)
                            sx = _v2_axis(x1, x2, x, W, cw, T)
                            if sy is None or sx is None:
                                out[b, y, x, d] = ext
                                continue
                            (t, bo, yl), (le, r, xl) = sy, sx
                            tl, tr, bl, br = px(t, le, d), px(t, r, d), px(bo, le, d), px(bo, r, d)
                            oy, ox = T(1) - yl, T(1) - xl
                            out[b, y, x, d] = (((tl * oy) * ox + (br * yl) * xl) + (tr * oy) * xl) + (bl * yl) * ox
                            continue
                        in_y = _axis_coord(y1, y2, y, H, ch, T)
                        in_x = _axis_coord(x1, x2, x, W, cw, T)
                        if not (0 <= in_y <= H - 1 and 0 <= in_x <= W - 1):
                            out[b, y, x, d] = ext
                        elif method == "nearest":
                            out[b, y, x, d] = px(_round_half_away(in_y), _round_half_away(in_x), d)
                        else:
                            t, bo = math.floor(in_y), math.ceil(in_y)
                            le, r = math.floor(in_x), math.ceil(in_x)
                            yl, xl = in_y - T(t), in_x - T(le)
                            top = px(t, le, d) + (px(t, r, d) - px(t, le, d)) * xl
                            bottom = px(bo, le, d) + (px(bo, r, d) - px(bo, le, d)) * xl
                            out[b, y, x, d] = top + (bottom - top) * yl
    return out


def crop_and_resize_grad_image(grads, boxes, box_index, image_size, method, T):
    """SPEC §2 (bilinear, nearest) and the adjoint of bilinear_v2 (Part A8); accumulated in T."""
    grads = np.asarray(grads, dtype=T)
    boxes = np.asarray(boxes, dtype=T)
    B, H, W, D = image_size
    N, ch, cw, _ = grads.shape
    out = np.zeros(image_size, dtype=T)
    with np.errstate(all="ignore"):
        for b, (y1, x1, y2, x2) in enumerate(boxes):
            bi = int(box_index[b])
            for y in range(ch):
                for x in range(cw):
                    for d in range(D):
                        g = grads[b, y, x, d]
                        if method == "bilinear_v2":
                            sy, sx = _v2_axis(y1, y2, y, H, ch, T), _v2_axis(x1, x2, x, W, cw, T)
                            if sy is None or sx is None:
                                continue
                            (t, bo, yl), (le, r, xl) = sy, sx
                            oy, ox = T(1) - yl, T(1) - xl
                            shares = ((t, le, (g * oy) * ox), (t, r, (g * oy) * xl), (bo, le, (g * yl) * ox),
                                      (bo, r, (g * yl) * xl))
                        else:
                            in_y = _axis_coord(y1, y2, y, H, ch, T)
                            in_x = _axis_coord(x1, x2, x, W, cw, T)
                            if not (0 <= in_y <= H - 1 and 0 <= in_x <= W - 1):
                                continue
                            if method == "nearest":
                                shares = ((_round_half_away(in_y), _round_half_away(in_x), g),)
                            else:
                                t, bo = math.floor(in_y), math.ceil(in_y)
                                le, r = math.floor(in_x), math.ceil(in_x)
                                yl, xl = in_y - T(t), in_x - T(le)
                                dtop, dbot = (T(1) - yl) * g, yl * g
                                shares = ((t, le, (T(1) - xl) * dtop), (t, r, xl * dtop), (bo, le, (T(1) - xl) * dbot),
                                          (bo, r, xl * dbot))
                        for yy, xx, v in shares:
                            out[bi, yy, xx, d] = out[bi, yy, xx, d] + v
    return out


def crop_and_resize_grad_boxes(grads, image, boxes, box_index, T):
    """SPEC §3 (TensorFlow's CropAndResizeGradBoxes), accumulated in (y, x, d) order."""
    grads = np.asarray(grads, dtype=T)
    image = np.asarray(image)
    boxes = np.asarray(boxes, dtype=T)
    B, H, W, D = image.shape
    N, ch, cw, _ = grads.shape
    out = np.zeros((N, 4), dtype=T)

    def add(acc, g, i, size, crop, first):
        if crop > 1:
            ratio = T(size - 1) / T(crop - 1)
            return acc + g * ((T(size - 1) - T(i) * ratio) if first else T(i) * ratio)
        return T(float(acc) + float(g) * 0.5 * float(size - 1))

    with np.errstate(all="ignore"):
        for b, (y1, x1, y2, x2) in enumerate(boxes):
            img = image[int(box_index[b])]
            acc = [T(0)] * 4
            for y in range(ch):
                in_y = _axis_coord(y1, y2, y, H, ch, T, grad_boxes=True)
                if not (0 <= in_y <= H - 1):
                    continue
                t, bo = math.floor(in_y), math.ceil(in_y)
                yl = in_y - T(t)
                for x in range(cw):
                    in_x = _axis_coord(x1, x2, x, W, cw, T, grad_boxes=True)
                    if not (0 <= in_x <= W - 1):
                        continue
                    le, r = math.floor(in_x), math.ceil(in_x)
                    xl = in_x - T(le)
                    for d in range(D):
                        tl, tr, bl, br = (T(img[t, le, d]), T(img[t, r, d]), T(img[bo, le, d]), T(img[bo, r, d]))
                        gy = ((T(1) - xl) * (bl - tl) + xl * (br - tr)) * grads[b, y, x, d]
                        gx = ((T(1) - yl) * (tr - tl) + yl * (br - bl)) * grads[b, y, x, d]
                        acc[0] = add(acc[0], gy, y, H, ch, True)
                        acc[2] = add(acc[2], gy, y, H, ch, False)
                        acc[1] = add(acc[1], gx, x, W, cw, True)
                        acc[3] = add(acc[3], gx, x, W, cw, False)
            out[b] = acc
    return out

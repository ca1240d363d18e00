"""Float64 NumPy references for Precise RoI Pooling (PrRoIPool).

Definition (Jiang et al., "Acquisition of Localization Confidence for Accurate Object
Detection", ECCV 2018, eq. 3-4, and the released code vacancy/PreciseRoIPooling
src/prroi_pooling_gpu_impl.cu):

* the feature map is the bilinear interpolation of the pixels, pixel centres at integer
  coordinates, zero outside the map:
  f(x, y) = sum_{i,j} v[i, j] * max(0, 1 - |x - j|) * max(0, 1 - |y - i|);
* a roi (b, x1, y1, x2, y2) is scaled with NO half-pixel offset: sx = x1 * s, ex = x2 * s,
  roi_w = max(ex - sx, 0), bin_w = roi_w / pw, bin (i, j) spans
  x in [sx + j * bin_w, sx + j * bin_w + bin_w] (the released code's win_end = win_start + bin),
  the same for y;
* bin value = (integral of f over the bin) / (bin_w * bin_h); 0 for a bin of zero area and for a
  roi with a non-finite coordinate; the batch index is truncated toward zero.

Three independent ways to the forward value:

* forward():           (a) closed form, one integer pixel cell [m, m+1] x [n, n+1] at a time: the
                        exact integral of the cell's bilinear patch (its four corner values, zero
                        outside the map) over the cell's overlap with the bin, summed, / area.
* forward_numerical(): (b) the bin split at the integer knots (f is of degree 1 in each variable on
                        each piece) and f evaluated pointwise with the plain bilinear formula at
                        Gauss-Legendre nodes (numpy.polynomial.legendre.leggauss): exact up to rounding.
* forward_dblquad():   (b') scipy.integrate.nquad with the knots as break points (needs scipy).

Gradients (closed form):

* backward_input():    the transpose of the linear map v -> out: the integral over the bin of the
                        tent functions, separable: Kx[j] * Ky[i] / area (a fourth, separable closed
                        form, so also checked against forward()).
* backward_rois():     d/d(edge) of the integral = +- the line integral of f along that edge, plus the
                        derivative of 1/area, chained through the bin edges' affine dependence on
                        (x1, y1, x2, y2) and spatial_scale (the released code's PrRoIPoolingCoorBackward).
* backward_rois_fd():  central finite differences of forward() in float64.
"""
import math

import numpy as np

__all__ = [
    "forward",
    "forward_numerical",
    "forward_dblquad",
    "forward_separable",
    "backward_input",
    "backward_rois",
    "backward_rois_fd",
    "bilinear_point",
    "bin_geometry",
]


def _size(output_size):
    if isinstance(output_size, int):
        return output_size, output_size
    return int(output_size[0]), int(output_size[1])


def bin_geometry(roi, spatial_scale, pooled_h, pooled_w):
    """None for a roi that pools to zero (non-finite coordinate); else
    (batch, sx, sy, bin_w, bin_h) in float64."""
    roi = [float(v) for v in roi]
    if not all(math.isfinite(v) for v in roi):
        return None
    s = float(spatial_scale)
    sx, sy, ex, ey = roi[1] * s, roi[2] * s, roi[3] * s, roi[4] * s
    roi_w = max(ex - sx, 0.0)
    roi_h = max(ey - sy, 0.0)
    return int(roi[0]), sx, sy, roi_w / pooled_w, roi_h / pooled_h


def _bins(roi, spatial_scale, PH, PW):
    """Yields (ph, pw, x0, x1, y0, y1, area) for each bin of a roi with positive area."""
    g = bin_geometry(roi, spatial_scale, PH, PW)
    if g is None:
        return
    _, sx, sy, bw, bh = g
    area = bw * bh
    if not area > 0 or not math.isfinite(area):
        return
    for ph in range(PH):
        y0 = sy + ph * bh
        y1 = y0 + bh
        for pw in range(PW):
            x0 = sx + pw * bw
            x1 = x0 + bw
            yield ph, pw, x0, x1, y0, y1, area


def _corner(v, n, m):
    """v[:, n, m] (all channels), zero outside the map."""
    H, W = v.shape[-2:]
    if 0 <= n < H and 0 <= m < W:
        return v[:, n, m]
    return 0.0


def _cell_range(a, b, size):
    """Integer cells [m, m+1] overlapping [a, b] whose corners can be inside [0, size)."""
    lo = max(math.floor(a), -1)
    hi = min(math.ceil(b), size)  # exclusive
    return range(lo, hi)


def _bin_integral_cells(v, x0, x1, y0, y1):
    """(a): sum over pixel cells of the closed-form integral of the cell's bilinear patch."""
    C, H, W = v.shape
    total = np.zeros(C)
    for n in _cell_range(y0, y1, H):
        lo, hi = max(y0, n), min(y1, n + 1)
        if not hi > lo:
            continue
        w0, w1 = lo - n, hi - n  # local y in [0, 1]
        # integral of (1 - w) and of w over [w0, w1], factored so that a narrow overlap
        # keeps its relative precision: the width from the global coordinates (lo - n may
        # round for negative lo), no difference of close squares
        B0 = (hi - lo) * (1 - (w0 + w1) / 2)
        B1 = (hi - lo) * ((w0 + w1) / 2)
        for m in _cell_range(x0, x1, W):
            lo, hi = max(x0, m), min(x1, m + 1)
            if not hi > lo:
                continue
            u0, u1 = lo - m, hi - m
            A0 = (hi - lo) * (1 - (u0 + u1) / 2)
            A1 = (hi - lo) * ((u0 + u1) / 2)
            total = total + (_corner(v, n, m) * A0 * B0 + _corner(v, n, m + 1) * A1 * B0
                             + _corner(v, n + 1, m) * A0 * B1 + _corner(v, n + 1, m + 1) * A1 * B1)
    return total


def forward(x, rois, output_size, spatial_scale=1.0):
    """(a) x: array [N, C, H, W]; rois: array [K, 5]. Returns float64 [K, C, PH, PW]."""
    x = np.asarray(x, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    PH, PW = _size(output_size)
    N, C, H, W = x.shape
    out = np.zeros((rois.shape[0], C, PH, PW))
    for k, roi in enumerate(rois):
        for ph, pw, x0, x1, y0, y1, area in _bins(roi, spatial_scale, PH, PW):
            out[k, :, ph, pw] = _bin_integral_cells(x[int(roi[0])], x0, x1, y0, y1) / area
    return out


# ---------------------------------------------------------------------------
# (b) pointwise evaluation + Gauss-Legendre on the pieces between integer knots
# ---------------------------------------------------------------------------
def bilinear_point(v, x, y):
    """f(x, y) for arrays x, y of the same shape: the plain bilinear formula
    sum_{i,j} v[i, j] max(0, 1-|x-j|) max(0, 1-|y-i|), over the (up to) four pixels
    around the point. v: [C, H, W]. Returns [C, *x.shape]."""
    C, H, W = v.shape
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out = np.zeros((C,) + x.shape)
    jx = np.floor(x).astype(np.int64)
    iy = np.floor(y).astype(np.int64)
    for dj in (0, 1):
        for di in (0, 1):
            j = jx + dj
            i = iy + di
            wgt = np.maximum(0.0, 1 - np.abs(x - j)) * np.maximum(0.0, 1 - np.abs(y - i))
            inside = (j >= 0) & (j < W) & (i >= 0) & (i < H)
            vals = v[:, np.clip(i, 0, max(H - 1, 0)), np.clip(j, 0, max(W - 1, 0))] if H and W else 0.0
            out = out + np.where(inside, vals * wgt, 0.0)
    return out


def _pieces(a, b, size):
    """[a, b] clipped to the support (-1, size) of f, split at the integers inside."""
    a, b = max(a, -1.0), min(b, float(size))
    if not b > a:
        return []
    knots = [a] + [float(t) for t in range(math.floor(a) + 1, math.ceil(b)) if a < t < b] + [b]
    return list(zip(knots[:-1], knots[1:]))


def forward_numerical(x, rois, output_size, spatial_scale=1.0, nodes=3):
    """(b) Gauss-Legendre (nodes x nodes per piece; 2 are exact for a bilinear patch)."""
    x = np.asarray(x, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    PH, PW = _size(output_size)
    N, C, H, W = x.shape
    t, wt = np.polynomial.legendre.leggauss(nodes)
    out = np.zeros((rois.shape[0], C, PH, PW))
    for k, roi in enumerate(rois):
        v = x[int(roi[0])]
        for ph, pw, x0, x1, y0, y1, area in _bins(roi, spatial_scale, PH, PW):
            xs, xw, ys, yw = [], [], [], []
            for a, b in _pieces(x0, x1, W):
                xs.append((b - a) / 2 * t + (a + b) / 2)
                xw.append((b - a) / 2 * wt)
            for a, b in _pieces(y0, y1, H):
                ys.append((b - a) / 2 * t + (a + b) / 2)
                yw.append((b - a) / 2 * wt)
            if not xs or not ys:
                continue
            X, Y = np.meshgrid(np.concatenate(xs), np.concatenate(ys))
            Wgt = np.outer(np.concatenate(yw), np.concatenate(xw))
            vals = bilinear_point(v, X, Y)
            out[k, :, ph, pw] = (vals * Wgt).sum(axis=(1, 2)) / area
    return out


def forward_dblquad(x, rois, output_size, spatial_scale=1.0):
    """(b') scipy.integrate.nquad, knots as break points (raises ImportError without scipy)."""
    from scipy import integrate

    x = np.asarray(x, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    PH, PW = _size(output_size)
    N, C, H, W = x.shape
    out = np.zeros((rois.shape[0], C, PH, PW))
    for k, roi in enumerate(rois):
        v = x[int(roi[0])]
        for ph, pw, x0, x1, y0, y1, area in _bins(roi, spatial_scale, PH, PW):
            xa, xb = max(x0, -1.0), min(x1, float(W))
            ya, yb = max(y0, -1.0), min(y1, float(H))
            if not (xb > xa and yb > ya):
                continue
            xp = [float(t) for t in range(math.floor(xa) + 1, math.ceil(xb)) if xa < t < xb]
            yp = [float(t) for t in range(math.floor(ya) + 1, math.ceil(yb)) if ya < t < yb]
            for c in range(C):
                vc = v[c:c + 1]

                def f(xx, yy):
                    return float(bilinear_point(vc, np.array(xx), np.array(yy))[0])

                opts = [{"epsabs": 1e-14, "epsrel": 1e-13, "limit": 200} for _ in range(2)]
                if xp:
                    opts[0]["points"] = xp
                if yp:
                    opts[1]["points"] = yp
                val, _ = integrate.nquad(f, [[xa, xb], [ya, yb]], opts=opts)
                out[k, c, ph, pw] = val / area
    return out


# ---------------------------------------------------------------------------
# (c) gradients
# ---------------------------------------------------------------------------
def _tent_integrals(a, b, size):
    """K[j] = integral over [a, b] of max(0, 1 - |t - j|) dt, for j in [0, size): the rising
    half on [j - 1, j] plus the falling half on [j, j + 1], each in local coordinates."""
    K = np.zeros(size)
    lo = max(math.floor(a) - 1, 0)
    hi = min(math.ceil(b) + 2, size)
    for j in range(lo, hi):
        l, u = max(a, j - 1.0), min(b, float(j))
        if u > l:  # rising: t - (j - 1)
            K[j] += (u - l) * (((l - (j - 1)) + (u - (j - 1))) / 2)
        l, u = max(a, float(j)), min(b, j + 1.0)
        if u > l:  # falling: 1 - (t - j)
            K[j] += (u - l) * (1 - ((l - j) + (u - j)) / 2)
    return K


def _tents(t, size):
    """k[j] = max(0, 1 - |t - j|), for j in [0, size)."""
    j = np.arange(size, dtype=np.float64)
    return np.maximum(0.0, 1 - np.abs(t - j))


def backward_input(grad, rois, input_shape, spatial_scale=1.0):
    """d(sum(out * grad)) / d input, float64 [N, C, H, W]."""
    grad = np.asarray(grad, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    N, C, H, W = input_shape
    PH, PW = grad.shape[-2:]
    gx = np.zeros((N, C, H, W))
    for k, roi in enumerate(rois):
        b = int(roi[0])
        for ph, pw, x0, x1, y0, y1, area in _bins(roi, spatial_scale, PH, PW):
            Kx = _tent_integrals(x0, x1, W)
            Ky = _tent_integrals(y0, y1, H)
            gx[b] += grad[k, :, ph, pw][:, None, None] * np.outer(Ky, Kx)[None] / area
    return gx


def forward_separable(x, rois, output_size, spatial_scale=1.0):
    """The same value from the tent integrals: out = Ky^T v Kx / area (checks backward_input's map)."""
    x = np.asarray(x, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    PH, PW = _size(output_size)
    N, C, H, W = x.shape
    out = np.zeros((rois.shape[0], C, PH, PW))
    for k, roi in enumerate(rois):
        for ph, pw, x0, x1, y0, y1, area in _bins(roi, spatial_scale, PH, PW):
            Kx = _tent_integrals(x0, x1, W)
            Ky = _tent_integrals(y0, y1, H)
            out[k, :, ph, pw] = np.einsum("i,cij,j->c", Ky, x[int(roi[0])], Kx) / area
    return out


def backward_rois(grad, x, rois, spatial_scale=1.0):
    """d(sum(out * grad)) / d rois, float64 [K, 5], column 0 zero.

    Per bin [x0, x1] x [y0, y1], I its integral, A = bw * bh, out = I / A:
      dI/dx0 = -int_{y0}^{y1} f(x0, y) dy, dI/dx1 = +int_{y0}^{y1} f(x1, y) dy (f is continuous);
      d out/d x0 = dI/dx0 / A + out * bh / A ... (dA/dx0 = -bh), d out/d x1 = dI/dx1 / A - out * bh / A;
    chained through x0 = sx + pw * (ex - sx) / PW, x1 = sx + (pw + 1) * (ex - sx) / PW, sx = s * x1_roi.
    A roi with roi_w <= 0 or roi_h <= 0 (zero area) gets zero."""
    grad = np.asarray(grad, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    N, C, H, W = x.shape
    PH, PW = grad.shape[-2:]
    s = float(spatial_scale)
    out = forward(x, rois, (PH, PW), s)
    g = np.zeros(rois.shape)
    for k, roi in enumerate(rois):
        v = x[int(roi[0])] if math.isfinite(roi[0]) else None
        for ph, pw, x0, x1, y0, y1, area in _bins(roi, s, PH, PW):
            bw, bh = x1 - x0, y1 - y0
            Kx, Ky = _tent_integrals(x0, x1, W), _tent_integrals(y0, y1, H)
            line_x0 = np.einsum("i,cij,j->c", Ky, v, _tents(x0, W))  # int f(x0, y) dy over [y0, y1]
            line_x1 = np.einsum("i,cij,j->c", Ky, v, _tents(x1, W))
            line_y0 = np.einsum("i,cij,j->c", _tents(y0, H), v, Kx)
            line_y1 = np.einsum("i,cij,j->c", _tents(y1, H), v, Kx)
            o = out[k, :, ph, pw]
            d_x0 = (-line_x0 + o * bh) / area
            d_x1 = (line_x1 - o * bh) / area
            d_y0 = (-line_y0 + o * bw) / area
            d_y1 = (line_y1 - o * bw) / area
            gk = grad[k, :, ph, pw]
            d_x0, d_x1, d_y0, d_y1 = [float((d * gk).sum()) for d in (d_x0, d_x1, d_y0, d_y1)]
            g[k, 1] += s * (d_x0 * (1 - pw / PW) + d_x1 * (1 - (pw + 1) / PW))
            g[k, 3] += s * (d_x0 * (pw / PW) + d_x1 * ((pw + 1) / PW))
            g[k, 2] += s * (d_y0 * (1 - ph / PH) + d_y1 * (1 - (ph + 1) / PH))
            g[k, 4] += s * (d_y0 * (ph / PH) + d_y1 * ((ph + 1) / PH))
    return g


def backward_rois_fd(grad, x, rois, spatial_scale=1.0, h=1e-6):
    """Central finite differences of forward() w.r.t. rois[:, 1:], float64 [K, 5]."""
    grad = np.asarray(grad, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    PH, PW = grad.shape[-2:]
    g = np.zeros(rois.shape)
    for k in range(rois.shape[0]):
        for col in range(1, 5):
            plus, minus = rois[k:k + 1].copy(), rois[k:k + 1].copy()
            plus[0, col] += h
            minus[0, col] -= h
            fp = forward(x, plus, (PH, PW), spatial_scale)
            fm = forward(x, minus, (PH, PW), spatial_scale)
            g[k, col] = float(((fp - fm) * grad[k:k + 1]).sum()) / (2 * h)
    return g

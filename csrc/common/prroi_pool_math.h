// Precise RoI Pooling (Jiang et al., "Acquisition of Localization Confidence
// for Accurate Object Detection", ECCV 2018): the per-roi geometry, the exact
// per-pixel weights of a bin and the derivatives with respect to the bin edges.
// One definition for the CPU kernels and the CUDA kernels (and so the CUDA
// emulation): both evaluate the same expressions in the same order.
//
// The map is the bilinear interpolant of the pixels, zero outside the map:
//   f(x, y) = sum_{i,j} v[i, j] * hat(x - j) * hat(y - i),  hat(t) = max(0, 1 - |t|)
// (pixel centres at integer coordinates). A bin [x0, x1] x [y0, y1] pools
//   out = (integral of f over the bin) / ((x1 - x0) * (y1 - y0))
//       = sum_i wy(i) * (sum_j wx(j) * v[i, j]) / area,
// with wx(j) = integral over [x0, x1] of hat(x - j) (separable). wx(j) is added
// up cell by cell: the part of [x0, x1] in cell [j - 1, j] (where hat rises) and
// in cell [j, j + 1] (where it falls), each the exact integral of a linear
// function in the cell's local coordinate, so a narrow bin keeps its relative
// precision (no difference of two nearly equal antiderivatives).
//
// Geometry (the released implementation's convention, no half-pixel offset):
//   sx = x1 * s, ex = x2 * s, roi_w = max(ex - sx, 0), bin_w = roi_w / pooled_w,
//   bin pw spans [sx + pw * bin_w, sx + pw * bin_w + bin_w].
// A bin whose area is not a positive finite number (an empty, inverted or
// non-finite roi) pools 0 and passes no gradient.
//
// Only pixels inside the map carry weight, so every loop below runs over a range
// clipped to the map: a huge or infinite roi costs at most the whole map.
#pragma once

#include <torch/headeronly/macros/Macros.h>

#include <cstdint>

namespace roi_ext {
namespace prroi_math {

template <typename T>
struct PrRoi {
  T start_w, start_h;  // sx, sy
  T bin_w, bin_h;
  T area;              // bin_w * bin_h
  bool empty;          // area not a positive finite number: every bin pools 0
};

// x - x == 0 exactly for finite x; NaN for NaN and +-inf (no <cmath>
// classification needed: the same code on host and device).
template <typename T>
C10_HOST_DEVICE inline bool finite(T x) {
  return x - x == T(0);
}

// roi = (batch_index, x1, y1, x2, y2); spatial_scale already rounded to T.
template <typename T>
C10_HOST_DEVICE inline PrRoi<T> prroi_geometry(const T* roi, T spatial_scale, int64_t pooled_height,
                                               int64_t pooled_width) {
  PrRoi<T> r;
  r.start_w = roi[1] * spatial_scale;
  r.start_h = roi[2] * spatial_scale;
  const T end_w = roi[3] * spatial_scale;
  const T end_h = roi[4] * spatial_scale;
  T roi_w = end_w - r.start_w;
  T roi_h = end_h - r.start_h;
  roi_w = roi_w > T(0) ? roi_w : T(0);  // max(., 0); NaN becomes 0
  roi_h = roi_h > T(0) ? roi_h : T(0);
  r.bin_w = roi_w / static_cast<T>(pooled_width);
  r.bin_h = roi_h / static_cast<T>(pooled_height);
  r.area = r.bin_w * r.bin_h;
  r.empty = !(r.area > T(0)) || !finite(r.area) || !finite(r.start_w) || !finite(r.start_h);
  return r;
}

// One axis of one bin: its edges [lo, hi] and the pixels [first, last] whose
// weight may be non-zero (clipped to the map; first > last when none).
template <typename T>
struct BinAxis {
  T lo, hi;
  int64_t first, last;
};

// Bin p along an axis of `size` pixels, starting at `start` with bins of `bin`.
template <typename T>
C10_HOST_DEVICE inline BinAxis<T> bin_axis(T start, T bin, int64_t p, int64_t size) {
  BinAxis<T> a;
  a.lo = start + (static_cast<T>(p) * bin);
  a.hi = a.lo + bin;
  // hat(x - j) is non-zero on (j - 1, j + 1): j in [floor(lo), ceil(hi)].
  // Clamped in T before the conversion (the edges may be huge).
  T f = ::floor(a.lo);
  T l = ::ceil(a.hi);
  // Written so that NaN clamps too (never reaches the conversion).
  f = f >= T(0) ? f : T(0);
  f = f <= static_cast<T>(size) ? f : static_cast<T>(size);
  l = l <= static_cast<T>(size - 1) ? l : static_cast<T>(size - 1);
  l = l >= T(-1) ? l : T(-1);
  // T(size) may round up (float32 above 2^24: 2^24 + 3 becomes 2^24 + 4), so the
  // converted indices are clamped again, exactly, in int64.
  a.first = static_cast<int64_t>(f);
  a.last = static_cast<int64_t>(l);
  a.first = a.first < size ? a.first : size;
  a.last = a.last < size - 1 ? a.last : size - 1;
  return a;
}

// Integral over [lo, hi] of hat(x - j): the rising part in cell [j - 1, j] plus
// the falling part in cell [j, j + 1], each in the cell's local coordinate
// (exact subtraction of nearby numbers).
template <typename T>
C10_HOST_DEVICE inline T hat_weight(T lo, T hi, int64_t j) {
  const T left = static_cast<T>(j - 1);
  const T centre = static_cast<T>(j);
  const T right = static_cast<T>(j + 1);
  T w = T(0);
  {
    const T l = lo > left ? lo : left;
    const T u = hi < centre ? hi : centre;
    if (u > l) {
      const T a = l - left;
      const T b = u - left;
      w = w + ((b - a) * ((a + b) * T(0.5)));
    }
  }
  {
    const T l = lo > centre ? lo : centre;
    const T u = hi < right ? hi : right;
    if (u > l) {
      const T a = l - centre;
      const T b = u - centre;
      w = w + ((b - a) * (T(1) - ((a + b) * T(0.5))));
    }
  }
  return w;
}

// hat(x - j): the weight of pixel j in the bilinear interpolation at x.
template <typename T>
C10_HOST_DEVICE inline T hat(T x, int64_t j) {
  const T d = x - static_cast<T>(j);
  const T a = d < T(0) ? -d : d;
  return a < T(1) ? T(1) - a : T(0);
}

// Pixels [first, last] of the bilinear interpolation at x (at most two, clipped
// to the map; first > last when x is outside (-1, size)).
struct Taps {
  int64_t first, last;
};

template <typename T>
C10_HOST_DEVICE inline Taps point_taps(T x, int64_t size) {
  Taps t;
  if (!(x > T(-1) && x < static_cast<T>(size))) {
    t.first = 0;
    t.last = -1;
    return t;
  }
  // Only pixels of non-zero weight: floor(x) + 1 only when x is not an integer
  // (a NaN or infinite pixel of weight 0 must not turn the result into NaN).
  const T f = ::floor(x);
  t.first = f < T(0) ? 0 : static_cast<int64_t>(f);
  const int64_t l = static_cast<int64_t>(f) + (x > f ? 1 : 0);
  t.last = l > size - 1 ? size - 1 : l;
  return t;
}

// The weights of one axis of a bin computed where they are needed (the CUDA
// kernels); the CPU kernels read the same values from per-roi tables.
template <typename T>
struct HatWeights {
  T lo, hi;
  C10_HOST_DEVICE T operator()(int64_t j) const {
    return hat_weight(lo, hi, j);
  }
};

template <typename T>
C10_HOST_DEVICE inline HatWeights<T> hat_weights(const BinAxis<T>& a) {
  return HatWeights<T>{a.lo, a.hi};
}

// The integral of one channel plane over a bin (times nothing: divide by the
// area for the bin value): sum_i wy(i) * (sum_j wx(j) * v(i, j)), i ascending,
// j ascending. wy(i), wx(j): the axis weights; v(i, j): the pixel in T.
template <typename T, typename WY, typename WX, typename V>
C10_HOST_DEVICE inline T bin_integral(const BinAxis<T>& ay, const BinAxis<T>& ax, const WY& wy, const WX& wx,
                                      const V& v) {
  T sum = T(0);
  for (int64_t i = ay.first; i <= ay.last; ++i) {
    T row = T(0);
    for (int64_t j = ax.first; j <= ax.last; ++j) {
      row = row + (wx(j) * v(i, j));
    }
    sum = sum + (wy(i) * row);
  }
  return sum;
}

// The backward's share of output gradient g for pixel (i, j) of the bin:
// ((g / area) * wy(i)) * wx(j); `gs` is g / area, `r` is gs * wy(i).
template <typename T>
C10_HOST_DEVICE inline T row_share(T gs, T wy) {
  return gs * wy;
}
template <typename T>
C10_HOST_DEVICE inline T pixel_share(T r, T wx) {
  return r * wx;
}

// Line integrals of f along the four edges of a bin (for the derivative of the
// integral with respect to an edge): along x = x_edge over [y0, y1] it is
//   sum_i wy(i) * sum_{j near x_edge} hat(x_edge - j) * v(i, j).
template <typename T>
struct EdgeIntegrals {
  T left, right, top, bottom;  // x = x0, x = x1, y = y0, y = y1
};

template <typename T, typename WY, typename WX, typename V>
C10_HOST_DEVICE inline EdgeIntegrals<T> edge_integrals(const BinAxis<T>& ay, const BinAxis<T>& ax, int64_t height,
                                                       int64_t width, const WY& wy, const WX& wx, const V& v) {
  EdgeIntegrals<T> e{T(0), T(0), T(0), T(0)};
  const Taps l = point_taps(ax.lo, width);
  const Taps r = point_taps(ax.hi, width);
  for (int64_t i = ay.first; i <= ay.last; ++i) {
    T vl = T(0), vr = T(0);
    for (int64_t j = l.first; j <= l.last; ++j) {
      vl = vl + (hat(ax.lo, j) * v(i, j));
    }
    for (int64_t j = r.first; j <= r.last; ++j) {
      vr = vr + (hat(ax.hi, j) * v(i, j));
    }
    const T w = wy(i);
    e.left = e.left + (w * vl);
    e.right = e.right + (w * vr);
  }
  const Taps t = point_taps(ay.lo, height);
  const Taps b = point_taps(ay.hi, height);
  for (int64_t j = ax.first; j <= ax.last; ++j) {
    T vt = T(0), vb = T(0);
    for (int64_t i = t.first; i <= t.last; ++i) {
      vt = vt + (hat(ay.lo, i) * v(i, j));
    }
    for (int64_t i = b.first; i <= b.last; ++i) {
      vb = vb + (hat(ay.hi, i) * v(i, j));
    }
    const T w = wx(j);
    e.top = e.top + (w * vt);
    e.bottom = e.bottom + (w * vb);
  }
  return e;
}

// d out / d (x1, y1, x2, y2) of the roi for bin (ph, pw), times g, given the
// bin's value out = S / area (S its integral) and its edge integrals. With out = S / (bw * bh):
//   d out / d x0 = (-left / bh + out) / bw,  d out / d x1 = (right / bh - out) / bw
// (x0, x1 the bin's edges), and x0 = sx + pw * bw, x1 = sx + (pw + 1) * bw with
// bw = (ex - sx) / pooled_w: d x0 / d sx = 1 - pw / PW, d x0 / d ex = pw / PW,
// d x1 / d sx = 1 - (pw + 1) / PW, d x1 / d ex = (pw + 1) / PW; sx = x1 * s.
// An empty or clamped (inverted) roi has no gradient.
template <typename T>
struct Grad4 {
  T v[4];  // x1, y1, x2, y2
};

template <typename T>
C10_HOST_DEVICE inline Grad4<T> bin_roi_grad(const PrRoi<T>& r, int64_t ph, int64_t pw, int64_t pooled_height,
                                             int64_t pooled_width, T spatial_scale, T out,
                                             const EdgeIntegrals<T>& e, T g) {
  const T d_x0 = ((out * r.bin_h) - e.left) / r.area;
  const T d_x1 = (e.right - (out * r.bin_h)) / r.area;
  const T d_y0 = ((out * r.bin_w) - e.top) / r.area;
  const T d_y1 = (e.bottom - (out * r.bin_w)) / r.area;
  const T aw0 = static_cast<T>(pw) / static_cast<T>(pooled_width);
  const T aw1 = static_cast<T>(pw + 1) / static_cast<T>(pooled_width);
  const T ah0 = static_cast<T>(ph) / static_cast<T>(pooled_height);
  const T ah1 = static_cast<T>(ph + 1) / static_cast<T>(pooled_height);
  const T gs = g * spatial_scale;
  Grad4<T> d;
  d.v[0] = gs * ((d_x0 * (T(1) - aw0)) + (d_x1 * (T(1) - aw1)));
  d.v[1] = gs * ((d_y0 * (T(1) - ah0)) + (d_y1 * (T(1) - ah1)));
  d.v[2] = gs * ((d_x0 * aw0) + (d_x1 * aw1));
  d.v[3] = gs * ((d_y0 * ah0) + (d_y1 * ah1));
  return d;
}

// Batch index of a roi: truncated toward zero; valid iff in [0, batch_size)
// (NaN rejected), as roi_align's.
template <typename T>
C10_HOST_DEVICE inline bool valid_batch_index(T b, int64_t batch_size) {
  return b >= T(0) && b < static_cast<T>(batch_size);
}

}  // namespace prroi_math
}  // namespace roi_ext

// ROIAlign per-roi geometry and per-sample bilinear weights: the one definition
// used by the CPU forward, the CPU backward and the CUDA kernels.
//
// Arithmetic follows torchvision's CPU kernel operation by operation (SPEC.md
// Part B §4.1-4.2, Part A10-A13) so float32/float64 results are bit-identical.
// Every expression below is written with explicit parentheses in the order the
// reference evaluates it; the build disables FMA contraction (-ffp-contract=off,
// nvcc --fmad=false), which would otherwise change the last bits.
#pragma once

#include <torch/headeronly/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace roi_ext {
namespace roi_align_math {

// Largest number of samples per bin along one axis that adaptive sampling may
// ask for. It only guards the float -> integer conversion of absurd roi sizes
// (1e30, inf); realistic rois are orders of magnitude below it.
constexpr int64_t kMaxGridPerAxis = int64_t(1) << 20;

template <typename T>
struct RoiGeometry {
  T start_h;
  T start_w;
  T bin_h;
  T bin_w;
  int64_t grid_h;  // samples per bin along y; 0 means the bin has no samples
  int64_t grid_w;
  // The legacy clamp (aligned=False, roi_end_mode=0) enlarged the roi size to 1
  // along y / x: the size then does not depend on the coordinates (box gradient).
  bool size_clamped_h;
  bool size_clamped_w;
};

// Adaptive sample count along one axis: ceil(roi_size / pooled) (torchvision's
// rule, Part A11). Empty, inverted and non-finite rois get 0 samples instead of
// an undefined float -> int conversion; huge finite ones are capped (and then
// refused by the kernels, which will not allocate that many samples).
template <typename T>
C10_HOST_DEVICE inline int64_t adaptive_grid(T roi_size, int64_t pooled) {
  const T g = ::ceil(roi_size / static_cast<T>(pooled));
  if (!(g > T(0) && g <= std::numeric_limits<T>::max())) {
    return 0;  // empty, inverted, NaN or infinite roi: no samples
  }
  if (!(g < static_cast<T>(kMaxGridPerAxis))) {
    return kMaxGridPerAxis;
  }
  return static_cast<int64_t>(g);
}

// roi = (batch_index, x1, y1, x2, y2). spatial_scale is already rounded to T,
// as torchvision passes it to its kernel.
//   start = c1*s - off,  end = (c2 + roi_end_mode)*s - off   (Part A10)
// Adding roi_end_mode == 0 leaves c2 unchanged, so mode 0 is torchvision's
// expression exactly; mode 1 is MindSpore's "(x2 + 1) * scale".
template <typename T>
C10_HOST_DEVICE inline RoiGeometry<T> roi_geometry(
    const T* roi,
    T spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode) {
  const T offset = aligned ? T(0.5) : T(0);
  const T end_shift = static_cast<T>(roi_end_mode);
  RoiGeometry<T> g;
  g.start_w = (roi[1] * spatial_scale) - offset;
  g.start_h = (roi[2] * spatial_scale) - offset;
  const T end_w = ((roi[3] + end_shift) * spatial_scale) - offset;
  const T end_h = ((roi[4] + end_shift) * spatial_scale) - offset;
  T roi_w = end_w - g.start_w;
  T roi_h = end_h - g.start_h;
  g.size_clamped_w = false;
  g.size_clamped_h = false;
  if (!aligned && roi_end_mode == 0) {
    // Legacy mode forces malformed rois to 1x1 (std::max semantics: a NaN
    // size stays NaN).
    g.size_clamped_w = roi_w < T(1);
    g.size_clamped_h = roi_h < T(1);
    roi_w = g.size_clamped_w ? T(1) : roi_w;
    roi_h = g.size_clamped_h ? T(1) : roi_h;
  }
  g.bin_h = roi_h / static_cast<T>(pooled_height);
  g.bin_w = roi_w / static_cast<T>(pooled_width);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio
                                : adaptive_grid(roi_h, pooled_height);
  g.grid_w = sampling_ratio > 0 ? sampling_ratio
                                : adaptive_grid(roi_w, pooled_width);
  return g;
}

// grid_h * grid_w without int64 overflow: a huge positive sampling_ratio
// (>= ~3e9) saturates at INT64_MAX instead (such a roi is refused anyway, see
// exceeds_sample_limit). Grids are never negative.
C10_HOST_DEVICE inline int64_t grid_product(int64_t grid_h, int64_t grid_w) {
  if (grid_h <= 0 || grid_w <= 0) {
    return 0;
  }
  if (grid_h > std::numeric_limits<int64_t>::max() / grid_w) {
    return std::numeric_limits<int64_t>::max();
  }
  return grid_h * grid_w;
}

// Divisor of the forward average: max(grid_h * grid_w, 1). The backward uses the
// same value; it differs from torchvision's backward divisor (grid_h * grid_w)
// only when there are no samples, and then nothing is divided.
template <typename T>
C10_HOST_DEVICE inline T sample_count(const RoiGeometry<T>& g) {
  const int64_t n = grid_product(g.grid_h, g.grid_w);
  return static_cast<T>(n > 1 ? n : 1);
}

// One roi may need at most this many bilinear samples in total
// (pooled_height * pooled_width * grid_h * grid_w). The CPU refuses a roi above
// it (ValueError naming sampling_ratio); so does CUDA, before any launch, when
// the count does not depend on the roi (sampling_ratio > 0). Under adaptive
// sampling only the kernel knows the count: the CUDA kernels then give such a
// roi NaN outputs and no gradient instead of looping up to 2^40 times.
constexpr int64_t kMaxSamplesPerRoi = int64_t(1) << 26;

// The sample total of a roi, in double: exact below 2^53, never overflows.
C10_HOST_DEVICE inline double roi_sample_total(
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t grid_h,
    int64_t grid_w) {
  return static_cast<double>(pooled_height) * static_cast<double>(pooled_width) *
      static_cast<double>(grid_h) * static_cast<double>(grid_w);
}

template <typename T>
C10_HOST_DEVICE inline bool exceeds_sample_limit(
    const RoiGeometry<T>& g,
    int64_t pooled_height,
    int64_t pooled_width) {
  return roi_sample_total(pooled_height, pooled_width, g.grid_h, g.grid_w) >
      static_cast<double>(kMaxSamplesPerRoi);
}

// Coordinate of sample i (of grid) inside bin p along one axis:
//   fl(fl(start + fl(p*bin)) + fl(fl((i + .5f)*bin) / grid))
template <typename T>
C10_HOST_DEVICE inline T sample_coord(
    T start,
    int64_t p,
    T bin,
    int64_t i,
    int64_t grid) {
  const T i_centre = static_cast<T>(static_cast<float>(i) + 0.5f);
  return (start + (static_cast<T>(p) * bin)) +
      ((i_centre * bin) / static_cast<T>(grid));
}

template <typename T>
struct BilinearWeights {
  T w1;  // (y_low,  x_low)
  T w2;  // (y_low,  x_high)
  T w3;  // (y_high, x_low)
  T w4;  // (y_high, x_high)
};

template <typename T>
struct BilinearTaps {
  int64_t y_low;
  int64_t y_high;
  int64_t x_low;
  int64_t x_high;
  BilinearWeights<T> w;
};

// The two pixel indices a sample touches along one axis, and its fraction.
template <typename T>
struct AxisTaps {
  int64_t low;
  int64_t high;
  T frac;
};

// Bilinear sample rule along one axis (Part B §4.1). Returns false when v lies
// outside [-1, size] or is NaN: the sample then contributes nothing (but is
// still counted in the divisor). Written as !(in range) so NaN never reaches the
// integer conversion below.
template <typename T>
C10_HOST_DEVICE inline bool axis_taps(T v, int64_t size, AxisTaps<T>& a) {
  if (!(v >= T(-1) && v <= static_cast<T>(size))) {
    return false;
  }
  if (v <= T(0)) {
    v = T(0);
  }
  a.low = static_cast<int64_t>(v);
  if (a.low >= size - 1) {
    a.low = a.high = size - 1;
    v = static_cast<T>(a.low);
  } else {
    a.high = a.low + 1;
  }
  a.frac = v - static_cast<T>(a.low);
  return true;
}

// torchvision writes `1. - ly` (a double subtraction rounded to T). For T =
// float the result is the same as the float subtraction: ly is exact and either
// 1 - ly is representable, or ly < 2^-30 and both round to 1.
template <typename T>
C10_HOST_DEVICE inline BilinearWeights<T> bilinear_weights(
    const AxisTaps<T>& ay,
    const AxisTaps<T>& ax) {
  const T hy = T(1) - ay.frac;
  const T hx = T(1) - ax.frac;
  return BilinearWeights<T>{hy * hx, hy * ax.frac, ay.frac * hx, ay.frac * ax.frac};
}

// Both axes at once: valid iff the sample lies in [-1, H] x [-1, W].
template <typename T>
C10_HOST_DEVICE inline bool bilinear_taps(
    T y,
    T x,
    int64_t height,
    int64_t width,
    BilinearTaps<T>& taps) {
  AxisTaps<T> ay, ax;
  if (!axis_taps(y, height, ay) || !axis_taps(x, width, ax)) {
    return false;
  }
  taps.y_low = ay.low;
  taps.y_high = ay.high;
  taps.x_low = ax.low;
  taps.x_high = ax.high;
  taps.w = bilinear_weights(ay, ax);
  return true;
}

// The value one sample adds to a bin's sum: ((w1 v1 + w2 v2) + w3 v3) + w4 v4.
// V is T, or a vector of T (the CPU kernels' channel lanes): the same
// operations then run lane by lane.
template <typename T, typename V>
C10_HOST_DEVICE inline V interpolate(
    const BilinearWeights<T>& w,
    V v1,
    V v2,
    V v3,
    V v4) {
  return (((w.w1 * v1) + (w.w2 * v2)) + (w.w3 * v3)) + (w.w4 * v4);
}

// The backward's share of output gradient g that goes to one corner of weight w:
// fl(fl(g * w) / count), the adjoint of interpolate() followed by the average.
template <typename T, typename V>
C10_HOST_DEVICE inline V corner_grad(V g, T w, T count) {
  return (g * w) / count;
}

// ---------------------------------------------------------------------------
// Derivatives with respect to the roi coordinates (roi_align(..., box_grad=True),
// the op _roi_align_backward_rois). The derivative of the forward exactly as the
// functions above compute it, branch by branch:
//   * the sample grid (grid_h, grid_w) and the divisor count are held fixed: with
//     adaptive sampling the grid is a piecewise-constant function of the roi
//     size, and this is the derivative inside the piece;
//   * a sample exactly on a pixel boundary, or on the edge of a clamp, gets the
//     one-sided derivative of the branch the forward takes;
//   * the legacy clamp (roi size < 1, aligned=False and roi_end_mode=0) makes
//     the size a constant: its derivative is 0 there;
//   * the batch index (column 0) receives no gradient.

// d v / d c1 and d v / d c2 of a sample coordinate v along one axis, where
// (c1, c2) are the roi's coordinates along that axis ((x1, x2) or (y1, y2)).
template <typename T>
struct CoordGrad {
  T d_c1;
  T d_c2;
};

// Sample i of bin p along one axis:
//   v = start + size * a,  a = (p + (i + .5) / grid) / pooled,
//   start = c1 * s - off,  size = (c2 + roi_end_mode - c1) * s
// so dv/dc1 = s * (1 - a) and dv/dc2 = s * a; with the size clamped to 1 only
// the start moves: (s, 0).
template <typename T>
C10_HOST_DEVICE inline CoordGrad<T> sample_coord_grad(
    T spatial_scale,
    int64_t p,
    int64_t i,
    int64_t grid,
    int64_t pooled,
    bool size_clamped) {
  if (size_clamped) {
    return CoordGrad<T>{spatial_scale, T(0)};
  }
  const T a = (static_cast<T>(p) + (static_cast<T>(i) + T(0.5)) / static_cast<T>(grid)) /
      static_cast<T>(pooled);
  return CoordGrad<T>{spatial_scale * (T(1) - a), spatial_scale * a};
}

// axis_taps() and d(frac)/dv: 1 where v is used as is, 0 where axis_taps clamps
// it (v <= 0 is read at 0; v at or beyond the last pixel, at size - 1), so the
// sample's value does not move with v there. Returns false (no contribution)
// where axis_taps does.
template <typename T>
C10_HOST_DEVICE inline bool axis_taps_slope(T v, int64_t size, AxisTaps<T>& a, T& slope) {
  if (!axis_taps(v, size, a)) {
    return false;
  }
  slope = (v > T(0) && a.low < size - 1) ? T(1) : T(0);
  return true;
}

// The derivatives of one bilinear sample ((w1 v1 + w2 v2) + w3 v3) + w4 v4 with
// respect to its coordinates (v1..v4 as in interpolate()):
//   d/dy = slope_y * ((1 - lx) (v3 - v1) + lx (v4 - v2))
//   d/dx = slope_x * ((1 - ly) (v2 - v1) + ly (v4 - v3))
template <typename T>
struct SampleSlopes {
  T d_dy;
  T d_dx;
};

template <typename T>
C10_HOST_DEVICE inline SampleSlopes<T> bilinear_slopes(
    const AxisTaps<T>& ay,
    T slope_y,
    const AxisTaps<T>& ax,
    T slope_x,
    T v1,
    T v2,
    T v3,
    T v4) {
  const T hy = T(1) - ay.frac;
  const T hx = T(1) - ax.frac;
  return SampleSlopes<T>{
      slope_y * ((hx * (v3 - v1)) + (ax.frac * (v4 - v2))),
      slope_x * ((hy * (v2 - v1)) + (ay.frac * (v4 - v3)))};
}

// The gradient of a roi's coordinates: sums of the terms of its samples.
template <typename T>
struct RoiCoordGrad {
  T x1, y1, x2, y2;
};

// Adds the terms of one sample: g_dx = sum over channels of grad * d/dx (and
// likewise g_dy), times the sample coordinates' derivatives (cx along x, cy
// along y). The divisor count is applied once per roi, at the end.
template <typename T>
C10_HOST_DEVICE inline void add_sample_coord_grad(
    RoiCoordGrad<T>& acc,
    T g_dy,
    T g_dx,
    const CoordGrad<T>& cy,
    const CoordGrad<T>& cx) {
  acc.x1 += g_dx * cx.d_c1;
  acc.y1 += g_dy * cy.d_c1;
  acc.x2 += g_dx * cx.d_c2;
  acc.y2 += g_dy * cy.d_c2;
}

// Batch index of a roi (Part A12): truncated toward zero; valid iff the float
// value lies in [0, batch_size) (so NaN, -0.5 and batch_size are rejected).
template <typename T>
C10_HOST_DEVICE inline bool valid_batch_index(T b, int64_t batch_size) {
  return b >= T(0) && b < static_cast<T>(batch_size);
}

}  // namespace roi_align_math
}  // namespace roi_ext

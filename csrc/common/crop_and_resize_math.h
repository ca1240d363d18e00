// CropAndResize per-sample math: the one definition used by the CPU kernels
// (forward, grad-image, grad-boxes) and the CUDA kernels.
//
// T is the compute type: float (TensorFlow's arithmetic, so float32 results are
// bit-identical to its CPU kernels; SPEC.md Part A1) or double (float64 images).
// Expressions keep TensorFlow's association exactly; the build disables FMA
// contraction. Boxes are [y1, x1, y2, x2] in normalised coordinates: a
// coordinate c maps to pixel c * (size - 1) ("align corners").
#pragma once

#include <torch/headeronly/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace roi_ext {
namespace crop_and_resize_math {

enum class Method : int { kBilinear = 0, kNearest = 1, kBilinearV2 = 2 };

// Element strides of a [B, H, W, D] view of an image, crop or gradient (an NCHW
// tensor is read through the strides of its permutation, without a copy).
struct Strides4 {
  int64_t b, h, w, d;
};

// ---------------------------------------------------------------------------
// Sampling coordinates (SPEC Part B §1.3)
// ---------------------------------------------------------------------------

// Step between consecutive samples of the forward and grad-image kernels:
// fl(fl((c2 - c1) * (size - 1)) / (crop - 1)).
template <typename T>
C10_HOST_DEVICE inline T forward_step(T c1, T c2, int64_t size, int64_t crop) {
  return crop > 1
      ? (((c2 - c1) * static_cast<T>(size - 1)) / static_cast<T>(crop - 1))
      : T(0);
}

// CropAndResizeGradBoxes builds its step from a ratio instead (SPEC §3):
// ratio = fl((size - 1) / (crop - 1)), step = fl((c2 - c1) * ratio).
template <typename T>
C10_HOST_DEVICE inline T grad_boxes_ratio(int64_t size, int64_t crop) {
  return crop > 1 ? (static_cast<T>(size - 1) / static_cast<T>(crop - 1)) : T(0);
}

template <typename T>
C10_HOST_DEVICE inline T grad_boxes_step(T c1, T c2, T ratio, int64_t crop) {
  return crop > 1 ? ((c2 - c1) * ratio) : T(0);
}

// Pixel coordinate of sample i: fl(fl(c1 * (size - 1)) + fl(i * step)); with a
// crop of 1 the box centre 0.5 * (c1 + c2) * (size - 1), which TensorFlow
// evaluates in double (Part A5).
template <typename T>
C10_HOST_DEVICE inline T sample_coord(
    T c1,
    T c2,
    T step,
    int64_t i,
    int64_t size,
    int64_t crop) {
  if (crop > 1) {
    return (c1 * static_cast<T>(size - 1)) + (static_cast<T>(i) * step);
  }
  return static_cast<T>(
      (0.5 * static_cast<double>(c1 + c2)) * static_cast<double>(size - 1));
}

// In range iff 0 <= v <= size - 1 (SPEC §1.4), compared exactly. Written as a
// positive test so NaN is out of range (Part A9) and never reaches an integer
// conversion. TensorFlow compares with T(size - 1), which rounds: for
// size - 1 = 2^24 + 3, float(size - 1) = 2^24 + 4 = size, and a sample there
// would read row `size`, one past the end (for size near 2^63 the float -> int64
// conversion itself overflows). A v equal to that rounded bound is therefore in
// range only when the bound is exact. For sizes T represents exactly (all
// realistic ones) this is TensorFlow's test, and an in-range v has floor, ceil
// and round in [0, size - 1].
template <typename T>
C10_HOST_DEVICE inline bool in_range(T v, int64_t size) {
  const T last = static_cast<T>(size - 1);
  if (!(v >= T(0) && v <= last)) {
    return false;
  }
  if (v < last) {
    return true;  // v < round(size - 1), so v <= size - 1 (v is a T too)
  }
  // v == last: exact iff last, an integer-valued T, converts back to size - 1.
  // 2^63 (the rounding of sizes near INT64_MAX) is past every int64.
  return last < T(9223372036854775807.0) && static_cast<int64_t>(last) <= size - 1;
}

// ---------------------------------------------------------------------------
// bilinear and nearest (SPEC §1.5-1.6); only for in-range coordinates
// ---------------------------------------------------------------------------
template <typename T>
struct Lerp {
  int64_t lo;  // floor(v)
  int64_t hi;  // ceil(v): equals lo at integer v, so no neighbour past size - 1
  T frac;      // v - floor(v), exact
};

// Only for in-range v (see in_range: then floor, ceil and round are all in
// [0, size - 1] and convert to int64 exactly).
template <typename T>
C10_HOST_DEVICE inline Lerp<T> lerp(T v) {
  const T lo = ::floor(v);
  return Lerp<T>{
      static_cast<int64_t>(lo), static_cast<int64_t>(::ceil(v)), v - lo};
}

// C round(): half away from zero (Part A6); never half-to-even.
template <typename T>
C10_HOST_DEVICE inline int64_t nearest_index(T v) {
  return static_cast<int64_t>(::round(v));
}

// V is T, or a vector of T (the CPU kernels' depth lanes): the same operations
// then run lane by lane. The same holds for the functions below taking V.
template <typename V, typename T>
C10_HOST_DEVICE inline V bilinear(V tl, V tr, V bl, V br, T x_frac, T y_frac) {
  const V top = tl + ((tr - tl) * x_frac);
  const V bottom = bl + ((br - bl) * x_frac);
  return top + ((bottom - top) * y_frac);
}

// The four image-gradient shares of output gradient g (SPEC §2), in the order
// TensorFlow adds them: top-left, top-right, bottom-left, bottom-right.
template <typename V>
struct Corners {
  V tl, tr, bl, br;
};

template <typename V, typename T>
C10_HOST_DEVICE inline Corners<V> bilinear_grad(V g, T x_frac, T y_frac) {
  const V dtop = (T(1) - y_frac) * g;
  const V dbottom = y_frac * g;
  return Corners<V>{
      (T(1) - x_frac) * dtop,
      x_frac * dtop,
      (T(1) - x_frac) * dbottom,
      x_frac * dbottom};
}

// d out / d in_y and d out / d in_x of one bilinear sample (SPEC §3).
template <typename V, typename T>
C10_HOST_DEVICE inline V bilinear_dy(V tl, V tr, V bl, V br, T x_frac) {
  return ((T(1) - x_frac) * (bl - tl)) + (x_frac * (br - tr));
}

template <typename V, typename T>
C10_HOST_DEVICE inline V bilinear_dx(V tl, V tr, V bl, V br, T y_frac) {
  return ((T(1) - y_frac) * (tr - tl)) + (y_frac * (br - bl));
}

// d in / d c1 and d in / d c2 of sample i along one axis (SPEC §3), with the
// grad-boxes ratio; for a crop of 1 both are 0.5 * (size - 1) and TensorFlow
// multiplies and adds in double (see add_box_grad).
template <typename T>
C10_HOST_DEVICE inline T dcoord_dc1(int64_t i, T ratio, int64_t size) {
  return static_cast<T>(size - 1) - (static_cast<T>(i) * ratio);
}

template <typename T>
C10_HOST_DEVICE inline T dcoord_dc2(int64_t i, T ratio) {
  return static_cast<T>(i) * ratio;
}

// acc += g * d with TensorFlow's rounding: for crop > 1 a T product and sum;
// for a crop of 1, fl(double(acc) + (double(g) * 0.5) * (size - 1)).
template <typename T>
C10_HOST_DEVICE inline T add_box_grad(
    T acc,
    T g,
    int64_t i,
    T ratio,
    int64_t size,
    int64_t crop,
    bool first_corner) {
  if (crop > 1) {
    return acc + (g * (first_corner ? dcoord_dc1(i, ratio, size) : dcoord_dc2(i, ratio)));
  }
  return static_cast<T>(
      static_cast<double>(acc) +
      ((static_cast<double>(g) * 0.5) * static_cast<double>(size - 1)));
}

// One valid sample (y, x) of CropAndResizeGradBoxes, what the depth loop needs.
template <typename scalar_t, typename T>
struct BoxGradSample {
  const scalar_t* top;     // image row ly.lo at depth 0
  const scalar_t* bottom;  // image row ly.hi at depth 0
  int64_t left;            // element offsets of columns lx.lo and lx.hi
  int64_t right;
  int64_t d_stride;        // image depth stride
  const T* grads;          // crop gradient at (y, x), depth 0
  int64_t g_d_stride;
  T x_frac, y_frac;
  T f_y1, f_y2, f_x1, f_x2;  // d in / d c of this sample (crop > 1)
};

// The depth loop of one sample: acc = {dy1, dx1, dy2, dx2} += over d, in d
// order, with TensorFlow's rounding (add_box_grad).
struct BoxGradDepth {
  template <typename scalar_t, typename T>
  C10_HOST_DEVICE void operator()(
      const BoxGradSample<scalar_t, T>& s,
      int64_t depth,
      int64_t y,
      int64_t x,
      T ratio_y,
      T ratio_x,
      int64_t height,
      int64_t width,
      int64_t crop_height,
      int64_t crop_width,
      T* acc) const {
    for (int64_t d = 0; d < depth; ++d) {
      const int64_t o = d * s.d_stride;
      const T tl = static_cast<T>(s.top[s.left + o]), tr = static_cast<T>(s.top[s.right + o]);
      const T bl = static_cast<T>(s.bottom[s.left + o]), br = static_cast<T>(s.bottom[s.right + o]);
      const T top_grad = s.grads[d * s.g_d_stride];
      const T gy = bilinear_dy(tl, tr, bl, br, s.x_frac) * top_grad;
      const T gx = bilinear_dx(tl, tr, bl, br, s.y_frac) * top_grad;
      acc[0] = add_box_grad(acc[0], gy, y, ratio_y, height, crop_height, true);
      acc[2] = add_box_grad(acc[2], gy, y, ratio_y, height, crop_height, false);
      acc[1] = add_box_grad(acc[1], gx, x, ratio_x, width, crop_width, true);
      acc[3] = add_box_grad(acc[3], gx, x, ratio_x, width, crop_width, false);
    }
  }
};

// TensorFlow's CropAndResizeGradBoxes for one box (SPEC §3): `image` points at
// the box's image, `grads` at its crop gradient; writes [dy1, dx1, dy2, dx2].
// Sums over the valid samples in (y, x, d) order, TensorFlow's order. `Depth`
// runs the depth loop (BoxGradDepth; the CPU passes a vectorised one that
// computes the same products and adds them in the same order).
template <typename scalar_t, typename T, typename Depth = BoxGradDepth>
C10_HOST_DEVICE inline void box_gradient(
    const scalar_t* image,
    Strides4 is,
    int64_t height,
    int64_t width,
    int64_t depth,
    const T* grads,
    Strides4 gs,
    int64_t crop_height,
    int64_t crop_width,
    const T* box,
    T* out,
    Depth depth_loop = Depth()) {
  const T y1 = box[0], x1 = box[1], y2 = box[2], x2 = box[3];
  const T ratio_y = grad_boxes_ratio<T>(height, crop_height);
  const T ratio_x = grad_boxes_ratio<T>(width, crop_width);
  const T step_y = grad_boxes_step(y1, y2, ratio_y, crop_height);
  const T step_x = grad_boxes_step(x1, x2, ratio_x, crop_width);
  T acc[4] = {0, 0, 0, 0};
  for (int64_t y = 0; y < crop_height; ++y) {
    const T in_y = sample_coord(y1, y2, step_y, y, height, crop_height);
    if (!in_range(in_y, height)) {
      continue;
    }
    const Lerp<T> ly = lerp(in_y);
    for (int64_t x = 0; x < crop_width; ++x) {
      const T in_x = sample_coord(x1, x2, step_x, x, width, crop_width);
      if (!in_range(in_x, width)) {
        continue;
      }
      const Lerp<T> lx = lerp(in_x);
      const BoxGradSample<scalar_t, T> s{
          image + ly.lo * is.h,
          image + ly.hi * is.h,
          lx.lo * is.w,
          lx.hi * is.w,
          is.d,
          grads + y * gs.h + x * gs.w,
          gs.d,
          lx.frac,
          ly.frac,
          dcoord_dc1(y, ratio_y, height),
          dcoord_dc2(y, ratio_y),
          dcoord_dc1(x, ratio_x, width),
          dcoord_dc2(x, ratio_x)};
      depth_loop(s, depth, y, x, ratio_y, ratio_x, height, width, crop_height, crop_width, acc);
    }
  }
  for (int i = 0; i < 4; ++i) {
    out[i] = acc[i];
  }
}

// ---------------------------------------------------------------------------
// bilinear_v2 (MindSpore's CPU kernel, SPEC §1.8 item 3, with Part A7's clamp)
// ---------------------------------------------------------------------------

// The box truncated to an inclusive integer pixel window [start, start+size-1].
struct V2Window {
  int64_t start;
  int64_t size;
  bool valid;  // false for non-finite or absurdly large coordinates (Part A9)
};

template <typename T>
C10_HOST_DEVICE inline V2Window v2_window(T c1, T c2, int64_t image_size) {
  const T a = c1 * static_cast<T>(image_size);
  const T b = c2 * static_cast<T>(image_size);
  constexpr T kLimit = T(2147483648.0);  // MindSpore converts to int32
  if (!(a > -kLimit && a < kLimit && b > -kLimit && b < kLimit)) {
    return V2Window{0, 1, false};
  }
  const int64_t start = static_cast<int64_t>(a);  // truncation toward zero
  const int64_t n = static_cast<int64_t>(b) - start + 1;
  return V2Window{start, n > 1 ? n : 1, true};
}

template <typename T>
struct V2Sample {
  int64_t lo;  // image pixel indices, clamped into [0, image_size - 1]
  int64_t hi;
  T frac;      // not clamped: may be negative at the first sample
};

C10_HOST_DEVICE inline int64_t clamp_index(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

template <typename T>
C10_HOST_DEVICE inline V2Sample<T> v2_sample(
    int64_t i,
    int64_t crop,
    const V2Window& w,
    int64_t image_size) {
  const T scale = static_cast<T>(w.size) / static_cast<T>(crop);
  const T p = ((static_cast<T>(i) + T(0.5)) * scale) - T(0.5);
  const int64_t lo = clamp_index(static_cast<int64_t>(::floor(p)), 0, w.size - 1);
  const int64_t hi = clamp_index(static_cast<int64_t>(::ceil(p)), 0, w.size - 1);
  return V2Sample<T>{
      clamp_index(w.start + lo, 0, image_size - 1),
      clamp_index(w.start + hi, 0, image_size - 1),
      p - static_cast<T>(lo)};
}

// MindSpore's four-product weighting, in its exact order.
template <typename V, typename T>
C10_HOST_DEVICE inline V bilinear_v2(V tl, V tr, V bl, V br, T x_frac, T y_frac) {
  const T one_y = T(1) - y_frac;
  const T one_x = T(1) - x_frac;
  return ((((tl * one_y) * one_x) + ((br * y_frac) * x_frac)) +
          ((tr * one_y) * x_frac)) +
      ((bl * y_frac) * one_x);
}

// Its exact adjoint (Part A8): the share of g for each corner.
template <typename V, typename T>
C10_HOST_DEVICE inline Corners<V> bilinear_v2_grad(V g, T x_frac, T y_frac) {
  const T one_y = T(1) - y_frac;
  const T one_x = T(1) - x_frac;
  return Corners<V>{
      (g * one_y) * one_x,
      (g * one_y) * x_frac,
      (g * y_frac) * one_x,
      (g * y_frac) * x_frac};
}

}  // namespace crop_and_resize_math
}  // namespace roi_ext

// CPU kernels of roi_ext::crop_and_resize, crop_and_resize_grad_image and
// crop_and_resize_grad_boxes: parallel loops around
// csrc/common/crop_and_resize_math.h.
//
// Every tensor is read and written through the strides of its [B, H, W, D]
// view, so NCHW images are used in place (no copy) and any strided input works.
//
// Determinism (SPEC.md Part A15):
// * forward: disjoint output rows per task;
// * grad-image: work split by (image, depth block); each task owns its gradient
//   elements and adds the contributions of the boxes of that image in the
//   reference order (box, y, x, corner), which is TensorFlow's deterministic
//   order, so float32 results are bit-identical to it at any thread count;
// * grad-boxes: one task per box, which sums over (y, x, d) in TensorFlow's order.
#include <algorithm>
#include <vector>

#include "../common/crop_and_resize_args.h"
#include "../common/crop_and_resize_math.h"
#include "../common/stable.h"
#include "cpu_utils.h"
#include "vec.h"

namespace roi_ext {
namespace {

using namespace crop_and_resize_math;
using cpu::channel_block;
using cpu::grain_for;

using Strides = Strides4;

constexpr const char* kForwardOutput = "crop_and_resize: output for crop_size";
constexpr const char* kGradImageOutput = "crop_and_resize_grad_image: gradient for image_size";
using detail::boxes_as;
using detail::nhwc_strides;

// Reads box_index as int64 and checks every value lies in [0, batch_size).
std::vector<int64_t> checked_box_index(
    const Tensor& box_index,
    int64_t batch_size,
    const char* op) {
  const Tensor idx = contiguous(to_dtype(box_index, ScalarType::Long), "box_index");
  const int64_t* p = idx.const_data_ptr<int64_t>();
  std::vector<int64_t> out(p, p + idx.numel());
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] < 0 || out[i] >= batch_size) {
      detail::throw_bad_box_index(op, static_cast<int64_t>(i), out[i], batch_size);
    }
  }
  return out;
}

// Boxes of each image in ascending order (a stable counting sort): the tasks
// that own an image's gradient visit them in the reference order.
struct BoxesByImage {
  std::vector<int64_t> begin;  // boxes of image b: order[begin[b] .. begin[b+1])
  std::vector<int64_t> order;
  BoxesByImage(const std::vector<int64_t>& box_index, int64_t batch_size)
      : begin(batch_size + 1, 0), order(box_index.size()) {
    for (int64_t b : box_index) {
      ++begin[b + 1];
    }
    for (int64_t b = 0; b < batch_size; ++b) {
      begin[b + 1] += begin[b];
    }
    std::vector<int64_t> next(begin.begin(), begin.end() - 1);
    for (size_t k = 0; k < box_index.size(); ++k) {
      order[next[box_index[k]]++] = static_cast<int64_t>(k);
    }
  }
};

// ---------------------------------------------------------------------------
// Depth loops for float data with contiguous depth (NHWC): 8 lanes at a time
// through the same math functions, compiled for AVX2 and the baseline (vec.h).
// ---------------------------------------------------------------------------
// out[d] = bilinear or bilinear_v2 of the four corner rows, d in [0, n).
template <bool kV2>
ROI_EXT_ALWAYS_INLINE void interp_depth(
    const float* tl, const float* tr, const float* bl, const float* br,
    float x_frac, float y_frac, float* out, int64_t n) {
  int64_t d = 0;
  for (; d + cpu::kLanes <= n; d += cpu::kLanes) {
    const cpu::vf8 a = cpu::load8(tl + d), b = cpu::load8(tr + d);
    const cpu::vf8 c = cpu::load8(bl + d), e = cpu::load8(br + d);
    cpu::store8(out + d, kV2 ? bilinear_v2(a, b, c, e, x_frac, y_frac) : bilinear(a, b, c, e, x_frac, y_frac));
  }
  for (; d < n; ++d) {
    out[d] = kV2 ? bilinear_v2(tl[d], tr[d], bl[d], br[d], x_frac, y_frac)
                 : bilinear(tl[d], tr[d], bl[d], br[d], x_frac, y_frac);
  }
}

// The four corner rows += their shares of g, in the order tl, tr, bl, br (rows
// may coincide: each add reads what the previous one stored).
template <bool kV2>
ROI_EXT_ALWAYS_INLINE void scatter_depth(
    const float* g, float x_frac, float y_frac, float* tl, float* tr, float* bl, float* br, int64_t n) {
  int64_t d = 0;
  for (; d + cpu::kLanes <= n; d += cpu::kLanes) {
    const cpu::vf8 gv = cpu::load8(g + d);
    const Corners<cpu::vf8> c = kV2 ? bilinear_v2_grad(gv, x_frac, y_frac) : bilinear_grad(gv, x_frac, y_frac);
    cpu::store8(tl + d, cpu::load8(tl + d) + c.tl);
    cpu::store8(tr + d, cpu::load8(tr + d) + c.tr);
    cpu::store8(bl + d, cpu::load8(bl + d) + c.bl);
    cpu::store8(br + d, cpu::load8(br + d) + c.br);
  }
  for (; d < n; ++d) {
    const Corners<float> c = kV2 ? bilinear_v2_grad(g[d], x_frac, y_frac) : bilinear_grad(g[d], x_frac, y_frac);
    tl[d] += c.tl;
    tr[d] += c.tr;
    bl[d] += c.bl;
    br[d] += c.br;
  }
}

ROI_EXT_ALWAYS_INLINE void add_depth(const float* g, float* dst, int64_t n) {
  int64_t d = 0;
  for (; d + cpu::kLanes <= n; d += cpu::kLanes) {
    cpu::store8(dst + d, cpu::load8(dst + d) + cpu::load8(g + d));
  }
  for (; d < n; ++d) {
    dst[d] += g[d];
  }
}

// Grad-boxes depth loop: the products of BoxGradDepth 8 lanes at a time, then
// the four sums in depth order (crop sizes > 1; the crop-1 rule adds in double).
ROI_EXT_ALWAYS_INLINE void box_grad_depth(
    const BoxGradSample<float, float>& s, int64_t depth, int64_t y, int64_t x, float ratio_y,
    float ratio_x, int64_t height, int64_t width, int64_t crop_height, int64_t crop_width, float* acc) {
  if (crop_height == 1 || crop_width == 1 || s.d_stride != 1 || s.g_d_stride != 1) {
    BoxGradDepth()(s, depth, y, x, ratio_y, ratio_x, height, width, crop_height, crop_width, acc);
    return;
  }
  int64_t d = 0;
  for (; d + cpu::kLanes <= depth; d += cpu::kLanes) {
    const cpu::vf8 tl = cpu::load8(s.top + s.left + d), tr = cpu::load8(s.top + s.right + d);
    const cpu::vf8 bl = cpu::load8(s.bottom + s.left + d), br = cpu::load8(s.bottom + s.right + d);
    const cpu::vf8 g = cpu::load8(s.grads + d);
    const cpu::vf8 gy = bilinear_dy(tl, tr, bl, br, s.x_frac) * g;
    const cpu::vf8 gx = bilinear_dx(tl, tr, bl, br, s.y_frac) * g;
    const cpu::vf8 p_y1 = gy * s.f_y1, p_y2 = gy * s.f_y2, p_x1 = gx * s.f_x1, p_x2 = gx * s.f_x2;
    for (int64_t l = 0; l < cpu::kLanes; ++l) {
      acc[0] += p_y1[l];
      acc[2] += p_y2[l];
      acc[1] += p_x1[l];
      acc[3] += p_x2[l];
    }
  }
  if (d < depth) {
    BoxGradSample<float, float> rest = s;
    rest.left += d;
    rest.right += d;
    rest.grads += d;
    BoxGradDepth()(rest, depth - d, y, x, ratio_y, ratio_x, height, width, crop_height, crop_width, acc);
  }
}

ROI_EXT_TARGET_AVX2 void interp_depth_avx2(const float* a, const float* b, const float* c, const float* e,
                                           float xf, float yf, float* out, int64_t n) {
  interp_depth<false>(a, b, c, e, xf, yf, out, n);
}
void interp_depth_baseline(const float* a, const float* b, const float* c, const float* e, float xf,
                           float yf, float* out, int64_t n) {
  interp_depth<false>(a, b, c, e, xf, yf, out, n);
}
ROI_EXT_TARGET_AVX2 void interp_v2_depth_avx2(const float* a, const float* b, const float* c, const float* e,
                                              float xf, float yf, float* out, int64_t n) {
  interp_depth<true>(a, b, c, e, xf, yf, out, n);
}
void interp_v2_depth_baseline(const float* a, const float* b, const float* c, const float* e, float xf,
                              float yf, float* out, int64_t n) {
  interp_depth<true>(a, b, c, e, xf, yf, out, n);
}
ROI_EXT_TARGET_AVX2 void scatter_depth_avx2(const float* g, float xf, float yf, float* a, float* b, float* c,
                                            float* e, int64_t n) {
  scatter_depth<false>(g, xf, yf, a, b, c, e, n);
}
void scatter_depth_baseline(const float* g, float xf, float yf, float* a, float* b, float* c, float* e,
                            int64_t n) {
  scatter_depth<false>(g, xf, yf, a, b, c, e, n);
}
ROI_EXT_TARGET_AVX2 void scatter_v2_depth_avx2(const float* g, float xf, float yf, float* a, float* b, float* c,
                                               float* e, int64_t n) {
  scatter_depth<true>(g, xf, yf, a, b, c, e, n);
}
void scatter_v2_depth_baseline(const float* g, float xf, float yf, float* a, float* b, float* c, float* e,
                               int64_t n) {
  scatter_depth<true>(g, xf, yf, a, b, c, e, n);
}
ROI_EXT_TARGET_AVX2 void add_depth_avx2(const float* g, float* dst, int64_t n) { add_depth(g, dst, n); }
void add_depth_baseline(const float* g, float* dst, int64_t n) { add_depth(g, dst, n); }

struct BoxGradDepthAvx2 {
  ROI_EXT_TARGET_AVX2 void operator()(const BoxGradSample<float, float>& s, int64_t depth, int64_t y, int64_t x,
                                      float ry, float rx, int64_t h, int64_t w, int64_t ch, int64_t cw,
                                      float* acc) const {
    box_grad_depth(s, depth, y, x, ry, rx, h, w, ch, cw, acc);
  }
};
struct BoxGradDepthBaseline {
  void operator()(const BoxGradSample<float, float>& s, int64_t depth, int64_t y, int64_t x, float ry, float rx,
                  int64_t h, int64_t w, int64_t ch, int64_t cw, float* acc) const {
    box_grad_depth(s, depth, y, x, ry, rx, h, w, ch, cw, acc);
  }
};

// Prefetches the depth vectors of pixels x and x + 1 (clamped) of two rows
// (`top` and `bottom` point at pixel 0 of each; pixel stride w_stride floats).
// kWrite: for a read-modify-write. Four explicit prefetches per line: a loop
// over the four addresses measured markedly slower.
template <int kWrite>
ROI_EXT_ALWAYS_INLINE void prefetch_corners(const float* top, const float* bottom, int64_t x, int64_t width,
                                            int64_t w_stride, int64_t n) {
  const int64_t xr = x + 1 < width ? x + 1 : x;
  for (int64_t line = 0; line < n; line += 16) {  // 16 floats per 64-byte line
    __builtin_prefetch(top + x * w_stride + line, kWrite);
    __builtin_prefetch(top + xr * w_stride + line, kWrite);
    __builtin_prefetch(bottom + x * w_stride + line, kWrite);
    __builtin_prefetch(bottom + xr * w_stride + line, kWrite);
  }
}

// How many columns ahead the kernels prefetch corners (measured on the main
// benchmark workload, forward: none 10.9 ms, 1 no gain, 2 6.9, 4 6.6, 8 8.0;
// grad-image: 1 8.4-8.9 ms, 2 7.8-8.4, 4 7.6-8.3).
constexpr int64_t kPrefetchDistance = 4;

// The clones this CPU runs.
struct DepthLoops {
  void (*interp)(const float*, const float*, const float*, const float*, float, float, float*, int64_t);
  void (*interp_v2)(const float*, const float*, const float*, const float*, float, float, float*, int64_t);
  void (*scatter)(const float*, float, float, float*, float*, float*, float*, int64_t);
  void (*scatter_v2)(const float*, float, float, float*, float*, float*, float*, int64_t);
  void (*add)(const float*, float*, int64_t);
};

const DepthLoops& depth_loops() {
  static const DepthLoops loops = cpu::use_avx2()
      ? DepthLoops{interp_depth_avx2, interp_v2_depth_avx2, scatter_depth_avx2, scatter_v2_depth_avx2,
                   add_depth_avx2}
      : DepthLoops{interp_depth_baseline, interp_v2_depth_baseline, scatter_depth_baseline,
                   scatter_v2_depth_baseline, add_depth_baseline};
  return loops;
}

// ---------------------------------------------------------------------------
// forward
// ---------------------------------------------------------------------------
template <typename scalar_t, typename T>
void forward_impl(
    const Tensor& image,
    Strides is,
    const Tensor& boxes,
    const std::vector<int64_t>& box_index,
    int64_t crop_height,
    int64_t crop_width,
    Method method,
    T extrapolation_value,
    Tensor& output,
    Strides os) {
  const int64_t num_boxes = boxes.size(0);
  const int64_t height = image.size(1), width = image.size(2), depth = image.size(3);
  const scalar_t* img = image.const_data_ptr<scalar_t>();
  const T* box = boxes.const_data_ptr<T>();
  T* out = output.mutable_data_ptr<T>();
  const int64_t grain = grain_for(4 * crop_width * depth);
  // float pixels with contiguous depth in and out: the vectorised depth loops.
  const bool fast = std::is_same_v<scalar_t, float> && is.d == 1 && os.d == 1;
  const DepthLoops& loops = depth_loops();

  cpu::parallel_for(0, num_boxes * crop_height, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / crop_height;
      const int64_t y = task % crop_height;
      const T y1 = box[b * 4 + 0], x1 = box[b * 4 + 1];
      const T y2 = box[b * 4 + 2], x2 = box[b * 4 + 3];
      const scalar_t* src = img + box_index[b] * is.b;
      T* row = out + b * os.b + y * os.h;
      auto fill = [&](int64_t x) {
        for (int64_t d = 0; d < depth; ++d) {
          row[x * os.w + d * os.d] = extrapolation_value;
        }
      };
      auto px = [&](int64_t yy, int64_t xx, int64_t d) {
        return static_cast<T>(src[yy * is.h + xx * is.w + d * is.d]);
      };

      if (method == Method::kBilinearV2) {
        const V2Window wy = v2_window(y1, y2, height);
        const V2Window wx = v2_window(x1, x2, width);
        if (!wy.valid || !wx.valid) {
          for (int64_t x = 0; x < crop_width; ++x) fill(x);
          continue;
        }
        const V2Sample<T> sy = v2_sample<T>(y, crop_height, wy, height);
        for (int64_t x = 0; x < crop_width; ++x) {
          const V2Sample<T> sx = v2_sample<T>(x, crop_width, wx, width);
          if constexpr (std::is_same_v<scalar_t, float>) {
            if (fast) {
              const float* top = src + sy.lo * is.h;
              const float* bottom = src + sy.hi * is.h;
              loops.interp_v2(top + sx.lo * is.w, top + sx.hi * is.w, bottom + sx.lo * is.w,
                              bottom + sx.hi * is.w, sx.frac, sy.frac, row + x * os.w, depth);
              continue;
            }
          }
          for (int64_t d = 0; d < depth; ++d) {
            row[x * os.w + d * os.d] = bilinear_v2(
                px(sy.lo, sx.lo, d), px(sy.lo, sx.hi, d), px(sy.hi, sx.lo, d),
                px(sy.hi, sx.hi, d), sx.frac, sy.frac);
          }
        }
        continue;
      }

      const T in_y = sample_coord(y1, y2, forward_step(y1, y2, height, crop_height),
                                  y, height, crop_height);
      if (!in_range(in_y, height)) {
        for (int64_t x = 0; x < crop_width; ++x) fill(x);
        continue;
      }
      const T step_x = forward_step(x1, x2, width, crop_width);
      if (method == Method::kBilinear) {
        const Lerp<T> ly = lerp(in_y);
        for (int64_t x = 0; x < crop_width; ++x) {
          const T in_x = sample_coord(x1, x2, step_x, x, width, crop_width);
          if (!in_range(in_x, width)) {
            fill(x);
            continue;
          }
          const Lerp<T> lx = lerp(in_x);
          if constexpr (std::is_same_v<scalar_t, float>) {
            if (fast) {
              const float* top = src + ly.lo * is.h;
              const float* bottom = src + ly.hi * is.h;
              if (x + kPrefetchDistance < crop_width) {
                // The corners are scattered reads, each a DRAM latency away:
                // start fetching those of a sample a few columns ahead.
                const T ahead = sample_coord(x1, x2, step_x, x + kPrefetchDistance, width, crop_width);
                if (in_range(ahead, width)) {
                  prefetch_corners<0>(top, bottom, static_cast<int64_t>(ahead), width, is.w, depth);
                }
              }
              loops.interp(top + lx.lo * is.w, top + lx.hi * is.w, bottom + lx.lo * is.w,
                           bottom + lx.hi * is.w, lx.frac, ly.frac, row + x * os.w, depth);
              continue;
            }
          }
          for (int64_t d = 0; d < depth; ++d) {
            row[x * os.w + d * os.d] = bilinear(
                px(ly.lo, lx.lo, d), px(ly.lo, lx.hi, d), px(ly.hi, lx.lo, d),
                px(ly.hi, lx.hi, d), lx.frac, ly.frac);
          }
        }
      } else {
        const int64_t cy = nearest_index(in_y);
        for (int64_t x = 0; x < crop_width; ++x) {
          const T in_x = sample_coord(x1, x2, step_x, x, width, crop_width);
          if (!in_range(in_x, width)) {
            fill(x);
            continue;
          }
          const int64_t cx = nearest_index(in_x);
          for (int64_t d = 0; d < depth; ++d) {
            row[x * os.w + d * os.d] = px(cy, cx, d);
          }
        }
      }
    }
  });
}

Tensor crop_and_resize_cpu(
    const Tensor& image,
    const Tensor& boxes,
    const Tensor& box_index,
    int64_t crop_height,
    int64_t crop_width,
    std::string method_name,
    double extrapolation_value,
    std::string data_format) {
  constexpr const char* op = "crop_and_resize";
  const detail::ParsedArgs parsed = detail::check_forward_args(
      image, boxes, box_index, crop_height, crop_width, method_name, data_format);
  const Method method = parsed.method;
  const bool nchw = parsed.nchw;
  ROI_EXT_CHECK(image.is_cpu(), op, ": image must be a CPU tensor, got ", device_of(image));

  const Tensor img = detail::as_nhwc(image, nchw);  // a view
  const int64_t batch = img.size(0), depth = img.size(3);
  const std::vector<int64_t> index = checked_box_index(box_index, batch, op);
  const int64_t num_boxes = boxes.size(0);
  const ScalarType out_type = image.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
  Tensor output = nchw
      ? empty(kForwardOutput, {num_boxes, depth, crop_height, crop_width}, out_type, image.device())
      : empty(kForwardOutput, {num_boxes, crop_height, crop_width, depth}, out_type, image.device());
  if (output.numel() == 0) {
    return output;
  }
  const Strides is = nhwc_strides(image, nchw);
  const Strides os = nhwc_strides(output, nchw);
  THO_DISPATCH_V2(
      image.scalar_type(), "crop_and_resize_cpu", AT_WRAP([&] {
        if constexpr (std::is_same_v<scalar_t, double>) {
          (forward_impl<scalar_t, double>)(
              img, is, boxes_as<double>(boxes), index, crop_height, crop_width, method,
              extrapolation_value, output, os);
        } else {
          (forward_impl<scalar_t, float>)(
              img, is, boxes_as<float>(boxes), index, crop_height, crop_width, method,
              static_cast<float>(extrapolation_value), output, os);
        }
      }),
      AT_EXPAND(AT_ALL_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

// ---------------------------------------------------------------------------
// grad-image
// ---------------------------------------------------------------------------
// T: compute type of the shares (double iff grads are float64); acc_t: the
// type the gradient is accumulated in (double for float64 output, else float32;
// half outputs are rounded once at the end, Part A3).
template <typename T, typename acc_t>
void grad_image_impl(
    const Tensor& grads,
    Strides gs,
    const Tensor& boxes,
    const std::vector<int64_t>& box_index,
    int64_t batch,
    int64_t height,
    int64_t width,
    int64_t depth,
    Method method,
    Tensor& grad_image,
    Strides os) {
  const int64_t crop_height = grads.size(1), crop_width = grads.size(2);
  const T* g = grads.const_data_ptr<T>();
  const T* box = boxes.const_data_ptr<T>();
  acc_t* out = grad_image.mutable_data_ptr<acc_t>();
  const BoxesByImage by_image(box_index, batch);
  const int64_t dblock = channel_block(depth, batch, /*tasks_per_thread=*/1);
  const int64_t blocks = (depth + dblock - 1) / dblock;
  const int64_t boxes_per_image = (grads.size(0) + batch - 1) / std::max<int64_t>(batch, 1);
  const int64_t grain = grain_for(4 * boxes_per_image * crop_height * crop_width * dblock);
  constexpr bool kFloat = std::is_same_v<T, float> && std::is_same_v<acc_t, float>;
  const bool fast = kFloat && gs.d == 1 && os.d == 1;
  const DepthLoops& loops = depth_loops();

  cpu::parallel_for(0, batch * blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = task / blocks;
      const int64_t d0 = (task % blocks) * dblock;
      const int64_t d1 = std::min(depth, d0 + dblock);
      acc_t* dst = out + bi * os.b;
      auto add = [&](int64_t yy, int64_t xx, int64_t d, T v) {
        dst[yy * os.h + xx * os.w + d * os.d] += static_cast<acc_t>(v);
      };
      auto at = [&](int64_t yy, int64_t xx) { return dst + yy * os.h + xx * os.w + d0; };
      for (int64_t j = by_image.begin[bi]; j < by_image.begin[bi + 1]; ++j) {
        const int64_t b = by_image.order[j];
        const T y1 = box[b * 4 + 0], x1 = box[b * 4 + 1];
        const T y2 = box[b * 4 + 2], x2 = box[b * 4 + 3];
        const T* gb = g + b * gs.b;
        if (method == Method::kBilinearV2) {
          const V2Window wy = v2_window(y1, y2, height);
          const V2Window wx = v2_window(x1, x2, width);
          if (!wy.valid || !wx.valid) {
            continue;
          }
          for (int64_t y = 0; y < crop_height; ++y) {
            const V2Sample<T> sy = v2_sample<T>(y, crop_height, wy, height);
            for (int64_t x = 0; x < crop_width; ++x) {
              const V2Sample<T> sx = v2_sample<T>(x, crop_width, wx, width);
              if constexpr (kFloat) {
                if (fast) {
                  loops.scatter_v2(gb + y * gs.h + x * gs.w + d0, sx.frac, sy.frac, at(sy.lo, sx.lo),
                                   at(sy.lo, sx.hi), at(sy.hi, sx.lo), at(sy.hi, sx.hi), d1 - d0);
                  continue;
                }
              }
              for (int64_t d = d0; d < d1; ++d) {
                const Corners<T> c =
                    bilinear_v2_grad(gb[y * gs.h + x * gs.w + d * gs.d], sx.frac, sy.frac);
                add(sy.lo, sx.lo, d, c.tl);
                add(sy.lo, sx.hi, d, c.tr);
                add(sy.hi, sx.lo, d, c.bl);
                add(sy.hi, sx.hi, d, c.br);
              }
            }
          }
          continue;
        }
        const T step_y = forward_step(y1, y2, height, crop_height);
        const T step_x = forward_step(x1, x2, width, crop_width);
        for (int64_t y = 0; y < crop_height; ++y) {
          const T in_y = sample_coord(y1, y2, step_y, y, height, crop_height);
          if (!in_range(in_y, height)) {
            continue;
          }
          const Lerp<T> ly = lerp(in_y);
          const int64_t cy = nearest_index(in_y);
          for (int64_t x = 0; x < crop_width; ++x) {
            const T in_x = sample_coord(x1, x2, step_x, x, width, crop_width);
            if (!in_range(in_x, width)) {
              continue;
            }
            const T* gp = gb + y * gs.h + x * gs.w;
            if constexpr (kFloat) {
              if (fast) {
                if (method == Method::kBilinear) {
                  const Lerp<T> lx = lerp(in_x);
                  if (x + kPrefetchDistance < crop_width) {
                    // The corners are a scattered read-modify-write: start fetching
                    // those of a sample a few columns ahead.
                    const T next_x = sample_coord(x1, x2, step_x, x + kPrefetchDistance, width, crop_width);
                    if (in_range(next_x, width)) {
                      prefetch_corners<1>(at(ly.lo, 0), at(ly.hi, 0), static_cast<int64_t>(next_x), width, os.w,
                                          d1 - d0);
                    }
                  }
                  loops.scatter(gp + d0, lx.frac, ly.frac, at(ly.lo, lx.lo), at(ly.lo, lx.hi),
                                at(ly.hi, lx.lo), at(ly.hi, lx.hi), d1 - d0);
                } else {
                  loops.add(gp + d0, at(cy, nearest_index(in_x)), d1 - d0);
                }
                continue;
              }
            }
            if (method == Method::kBilinear) {
              const Lerp<T> lx = lerp(in_x);
              for (int64_t d = d0; d < d1; ++d) {
                const Corners<T> c = bilinear_grad(gp[d * gs.d], lx.frac, ly.frac);
                add(ly.lo, lx.lo, d, c.tl);
                add(ly.lo, lx.hi, d, c.tr);
                add(ly.hi, lx.lo, d, c.bl);
                add(ly.hi, lx.hi, d, c.br);
              }
            } else {
              const int64_t cx = nearest_index(in_x);
              for (int64_t d = d0; d < d1; ++d) {
                add(cy, cx, d, gp[d * gs.d]);
              }
            }
          }
        }
      }
    }
  });
}

Tensor crop_and_resize_grad_image_cpu(
    const Tensor& grads,
    const Tensor& boxes,
    const Tensor& box_index,
    int64_t batch_size,
    int64_t image_height,
    int64_t image_width,
    int64_t depth,
    std::string method_name,
    ScalarType dtype,
    std::string data_format,
    bool /*deterministic: the CPU kernel always is*/) {
  constexpr const char* op = "crop_and_resize_grad_image";
  const detail::ParsedArgs parsed = detail::check_grad_image_args(
      grads, boxes, box_index, batch_size, image_height, image_width, depth, method_name, dtype,
      data_format);
  const Method method = parsed.method;
  const bool nchw = parsed.nchw;
  ROI_EXT_CHECK(grads.is_cpu(), op, ": grads must be a CPU tensor, got ", device_of(grads));
  const std::vector<int64_t> index = checked_box_index(box_index, batch_size, op);

  const ScalarType acc_type = dtype == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
  Tensor grad_image = nchw
      ? zeros(kGradImageOutput, {batch_size, depth, image_height, image_width}, acc_type, grads.device())
      : zeros(kGradImageOutput, {batch_size, image_height, image_width, depth}, acc_type, grads.device());
  if (grad_image.numel() == 0 || grads.numel() == 0) {
    return to_dtype(grad_image, dtype);
  }
  const Strides os = nhwc_strides(grad_image, nchw);
  const bool use_double = grads.scalar_type() == ScalarType::Double;
  const Tensor g = detail::as_nhwc(to_dtype(grads, use_double ? ScalarType::Double : ScalarType::Float), nchw);
  const Strides gs{g.stride(0), g.stride(1), g.stride(2), g.stride(3)};
  auto run = [&](auto t_tag, auto acc_tag) {
    using T = decltype(t_tag);
    using acc_t = decltype(acc_tag);
    grad_image_impl<T, acc_t>(
        g, gs, boxes_as<T>(boxes), index, batch_size, image_height, image_width, depth,
        method, grad_image, os);
  };
  if (use_double) {
    acc_type == ScalarType::Double ? run(double{}, double{}) : run(double{}, float{});
  } else {
    acc_type == ScalarType::Double ? run(float{}, double{}) : run(float{}, float{});
  }
  return to_dtype(grad_image, dtype);
}

// ---------------------------------------------------------------------------
// grad-boxes
// ---------------------------------------------------------------------------
template <typename scalar_t, typename T>
void grad_boxes_impl(
    const Tensor& grads,
    Strides gs,
    const Tensor& image,
    Strides is,
    const Tensor& boxes,
    const std::vector<int64_t>& box_index,
    Tensor& output) {
  const int64_t num_boxes = boxes.size(0);
  const int64_t crop_height = grads.size(1), crop_width = grads.size(2);
  const int64_t height = image.size(1), width = image.size(2), depth = image.size(3);
  const T* g = grads.const_data_ptr<T>();
  const scalar_t* img = image.const_data_ptr<scalar_t>();
  const T* box = boxes.const_data_ptr<T>();
  T* out = output.mutable_data_ptr<T>();
  const int64_t grain = grain_for(8 * crop_height * crop_width * depth);
  cpu::parallel_for(0, num_boxes, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* image_b = img + box_index[b] * is.b;
      if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<T, float>) {
        if (cpu::use_avx2()) {
          box_gradient(image_b, is, height, width, depth, g + b * gs.b, gs, crop_height, crop_width,
                       box + b * 4, out + b * 4, BoxGradDepthAvx2());
        } else {
          box_gradient(image_b, is, height, width, depth, g + b * gs.b, gs, crop_height, crop_width,
                       box + b * 4, out + b * 4, BoxGradDepthBaseline());
        }
      } else {
        box_gradient<scalar_t, T>(image_b, is, height, width, depth, g + b * gs.b, gs, crop_height,
                                  crop_width, box + b * 4, out + b * 4);
      }
    }
  });
}

Tensor crop_and_resize_grad_boxes_cpu(
    const Tensor& grads,
    const Tensor& image,
    const Tensor& boxes,
    const Tensor& box_index,
    std::string method_name,
    std::string data_format) {
  constexpr const char* op = "crop_and_resize_grad_boxes";
  const detail::ParsedArgs parsed = detail::check_grad_boxes_args(
      grads, image, boxes, box_index, method_name, data_format);
  const Method method = parsed.method;
  const bool nchw = parsed.nchw;
  const Tensor img = detail::as_nhwc(image, nchw);
  ROI_EXT_CHECK(image.is_cpu(), op, ": image must be a CPU tensor, got ", device_of(image));
  const std::vector<int64_t> index = checked_box_index(box_index, img.size(0), op);

  const bool use_double =
      grads.scalar_type() == ScalarType::Double || image.scalar_type() == ScalarType::Double;
  const ScalarType out_type = use_double ? ScalarType::Double : ScalarType::Float;
  Tensor output = zeros("crop_and_resize_grad_boxes: output", {boxes.size(0), 4}, out_type, grads.device());
  // bilinear_v2 truncates the box to whole pixels: a piecewise-constant map
  // whose gradient is zero (Part A8).
  if (output.numel() == 0 || grads.numel() == 0 || method == Method::kBilinearV2) {
    return output;
  }
  const Tensor g = detail::as_nhwc(to_dtype(grads, out_type), nchw);
  const Strides gs{g.stride(0), g.stride(1), g.stride(2), g.stride(3)};
  const Strides is{img.stride(0), img.stride(1), img.stride(2), img.stride(3)};
  THO_DISPATCH_V2(
      image.scalar_type(), "crop_and_resize_grad_boxes_cpu", AT_WRAP([&] {
        if (use_double) {
          (grad_boxes_impl<scalar_t, double>)(g, gs, img, is, boxes_as<double>(boxes), index, output);
        } else {
          (grad_boxes_impl<scalar_t, float>)(g, gs, img, is, boxes_as<float>(boxes), index, output);
        }
      }),
      AT_EXPAND(AT_ALL_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(roi_ext, CPU, m) {
  m.impl("crop_and_resize", TORCH_BOX(&crop_and_resize_cpu));
  m.impl("crop_and_resize_grad_image", TORCH_BOX(&crop_and_resize_grad_image_cpu));
  m.impl("crop_and_resize_grad_boxes", TORCH_BOX(&crop_and_resize_grad_boxes_cpu));
}

}  // namespace roi_ext

// CUDA kernels of roi_ext::crop_and_resize, crop_and_resize_grad_image and
// crop_and_resize_grad_boxes: grid-stride loops around
// csrc/common/crop_and_resize_math.h (built with --fmad=false, so float32
// results equal the CPU's, which equal TensorFlow's CPU kernels).
//
// Threads: one per output element, depth fastest for NHWC (a warp reads
// consecutive channels of one pixel: coalesced) and x fastest for NCHW.
// grad-image: atomicAdd into a float32/float64 buffer by default; with
// deterministic=True (the op's last argument: Python passes
// torch.are_deterministic_algorithms_enabled()) a gather (grad_image_gather_kernel)
// makes it bitwise reproducible and equal to the CPU. grad-boxes: a block of
// threads per box, whose partial sums are added as a fixed binary tree
// (cuda::launch_block_reduce): deterministic, equal to the CPU within rounding
// (the CPU adds in TensorFlow's serial order).
//
// No host synchronisation: box_index is not checked on the host (that would
// mean copying it there). A box whose index is outside [0, B) reads nothing:
// its crop is extrapolation_value everywhere, as if it lay outside the image,
// it adds nothing to the image gradient and its box gradient is 0. The CPU
// kernels raise an IndexError for it instead (SPEC.md Part A9).
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch_v2.h>

#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/crop_and_resize_args.h"
#include "../common/crop_and_resize_math.h"
#include "../common/stable.h"
#include "cuda_utils.cuh"

namespace roi_ext {
namespace {

using namespace crop_and_resize_math;

__host__ __device__ inline bool valid_box_index(int64_t b, int64_t batch) {
  return b >= 0 && b < batch;
}

template <typename scalar_t, typename T>
__global__ void forward_kernel(
    int64_t total,
    const scalar_t* __restrict__ image,
    Strides4 is,
    int64_t batch,
    int64_t height,
    int64_t width,
    int64_t depth,
    const T* __restrict__ boxes,
    const int64_t* __restrict__ box_index,
    int64_t crop_height,
    int64_t crop_width,
    Method method,
    T extrapolation_value,
    bool nchw,
    T* __restrict__ out,
    Strides4 os) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    ROI_EXT_COUNT_WORK(1);
    int64_t b, y, x, d;
    cuda::decompose_nchw(index, depth, crop_height, crop_width, !nchw, b, d, y, x);
    T* dst = out + b * os.b + y * os.h + x * os.w + d * os.d;
    const int64_t bi = box_index[b];
    if (!valid_box_index(bi, batch)) {
      *dst = extrapolation_value;
      continue;
    }
    const T* box = boxes + b * 4;
    const T y1 = box[0], x1 = box[1], y2 = box[2], x2 = box[3];
    const scalar_t* src = image + bi * is.b + d * is.d;
    auto px = [&](int64_t yy, int64_t xx) { return static_cast<T>(src[yy * is.h + xx * is.w]); };
    T value = extrapolation_value;
    if (method == Method::kBilinearV2) {
      const V2Window wy = v2_window(y1, y2, height);
      const V2Window wx = v2_window(x1, x2, width);
      if (wy.valid && wx.valid) {
        const V2Sample<T> sy = v2_sample<T>(y, crop_height, wy, height);
        const V2Sample<T> sx = v2_sample<T>(x, crop_width, wx, width);
        value = bilinear_v2(px(sy.lo, sx.lo), px(sy.lo, sx.hi), px(sy.hi, sx.lo), px(sy.hi, sx.hi),
                            sx.frac, sy.frac);
      }
    } else {
      const T in_y = sample_coord(y1, y2, forward_step(y1, y2, height, crop_height), y, height, crop_height);
      const T in_x = sample_coord(x1, x2, forward_step(x1, x2, width, crop_width), x, width, crop_width);
      if (in_range(in_y, height) && in_range(in_x, width)) {
        if (method == Method::kBilinear) {
          const Lerp<T> ly = lerp(in_y);
          const Lerp<T> lx = lerp(in_x);
          value = bilinear(px(ly.lo, lx.lo), px(ly.lo, lx.hi), px(ly.hi, lx.lo), px(ly.hi, lx.hi),
                           lx.frac, ly.frac);
        } else {
          value = px(nearest_index(in_y), nearest_index(in_x));
        }
      }
    }
    *dst = value;
  }
}

template <typename T, typename acc_t>
__global__ void grad_image_atomic_kernel(
    int64_t total,
    const T* __restrict__ grads,
    Strides4 gs,
    int64_t crop_height,
    int64_t crop_width,
    int64_t depth,
    const T* __restrict__ boxes,
    const int64_t* __restrict__ box_index,
    int64_t batch,
    int64_t height,
    int64_t width,
    Method method,
    bool nchw,
    acc_t* __restrict__ out,
    Strides4 os) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    ROI_EXT_COUNT_WORK(1);
    int64_t b, y, x, d;
    cuda::decompose_nchw(index, depth, crop_height, crop_width, !nchw, b, d, y, x);
    const int64_t bi = box_index[b];
    if (!valid_box_index(bi, batch)) {
      continue;
    }
    const T* box = boxes + b * 4;
    const T y1 = box[0], x1 = box[1], y2 = box[2], x2 = box[3];
    const T g = grads[b * gs.b + y * gs.h + x * gs.w + d * gs.d];
    acc_t* dst = out + bi * os.b + d * os.d;
    auto add = [&](int64_t yy, int64_t xx, T v) { atomicAdd(dst + yy * os.h + xx * os.w, static_cast<acc_t>(v)); };
    if (method == Method::kBilinearV2) {
      const V2Window wy = v2_window(y1, y2, height);
      const V2Window wx = v2_window(x1, x2, width);
      if (wy.valid && wx.valid) {
        const V2Sample<T> sy = v2_sample<T>(y, crop_height, wy, height);
        const V2Sample<T> sx = v2_sample<T>(x, crop_width, wx, width);
        const Corners<T> c = bilinear_v2_grad(g, sx.frac, sy.frac);
        add(sy.lo, sx.lo, c.tl);
        add(sy.lo, sx.hi, c.tr);
        add(sy.hi, sx.lo, c.bl);
        add(sy.hi, sx.hi, c.br);
      }
      continue;
    }
    const T in_y = sample_coord(y1, y2, forward_step(y1, y2, height, crop_height), y, height, crop_height);
    const T in_x = sample_coord(x1, x2, forward_step(x1, x2, width, crop_width), x, width, crop_width);
    if (!in_range(in_y, height) || !in_range(in_x, width)) {
      continue;
    }
    if (method == Method::kBilinear) {
      const Lerp<T> ly = lerp(in_y);
      const Lerp<T> lx = lerp(in_x);
      const Corners<T> c = bilinear_grad(g, lx.frac, ly.frac);
      add(ly.lo, lx.lo, c.tl);
      add(ly.lo, lx.hi, c.tr);
      add(ly.hi, lx.lo, c.bl);
      add(ly.hi, lx.hi, c.br);
    } else {
      add(nearest_index(in_y), nearest_index(in_x), g);
    }
  }
}

// One axis of one box for the gather: where the samples i = 0 .. crop - 1 of
// the box land on the image (the pixel rows, or columns, each touches).
template <typename T>
struct AxisSampler {
  Method method;
  T c1, c2, step;  // bilinear / nearest
  V2Window window;  // bilinear_v2
  int64_t size, crop;

  __host__ __device__ AxisSampler(Method m, T a, T b, int64_t size_, int64_t crop_)
      : method(m), c1(a), c2(b), step(forward_step(a, b, size_, crop_)), size(size_), crop(crop_) {
    window = m == Method::kBilinearV2 ? v2_window(a, b, size_) : V2Window{0, 1, false};
  }

  // The pixels sample i touches: lo <= hi, weights by `frac`; false when it is
  // outside the image (bilinear / nearest; nearest touches lo == hi only).
  struct Taps {
    int64_t lo, hi;
    T frac;
  };
  __host__ __device__ bool taps(int64_t i, Taps& t) const {
    if (method == Method::kBilinearV2) {
      const V2Sample<T> s = v2_sample<T>(i, crop, window, size);
      t.lo = s.lo;
      t.hi = s.hi;
      t.frac = s.frac;
      return true;
    }
    const T v = sample_coord(c1, c2, step, i, size, crop);
    if (!in_range(v, size)) {
      return false;
    }
    if (method == Method::kNearest) {
      t.lo = t.hi = nearest_index(v);
      return true;
    }
    const Lerp<T> l = lerp(v);
    t.lo = l.lo;
    t.hi = l.hi;
    t.frac = l.frac;
    return true;
  }

  __host__ __device__ bool touches(int64_t i, int64_t lo, int64_t hi) const {
    Taps t;
    return taps(i, t) && ((t.lo >= lo && t.lo < hi) || (t.hi >= lo && t.hi < hi));
  }

  // The samples touching pixels [lo, hi): found arithmetically (a superset),
  // then narrowed to the first and last that do.
  __host__ __device__ cuda::IndexRange touching(int64_t lo, int64_t hi) const {
    cuda::IndexRange r{0, -1};
    const double eps = static_cast<double>(std::numeric_limits<T>::epsilon());
    if (method == Method::kBilinearV2) {
      if (!window.valid) {
        return r;
      }
      // Unclamped, sample i lands at window.start + (i + .5) * scale - .5; the
      // clamps send every sample beyond an end of the window or image to the
      // first / last reachable pixel.
      const double scale = static_cast<double>(window.size) / static_cast<double>(crop);
      const double start = static_cast<double>(window.start);
      const int64_t first_px = cuda_clamp(window.start, size);
      const int64_t last_px = cuda_clamp(window.start + window.size - 1, size);
      const double v_lo = lo <= first_px ? -1e300 : static_cast<double>(lo - 1);
      const double v_hi = hi - 1 >= last_px ? 1e300 : static_cast<double>(hi);
      const double slack = 1.0 + 8.0 * eps * (::fabs(start) + static_cast<double>(window.size) + 1.0);
      r = cuda::candidate_range(start - 0.5 + 0.5 * scale, scale, crop, v_lo, v_hi, slack);
    } else if (crop == 1) {
      r = cuda::IndexRange{0, 0};
    } else {
      // Sample i lands at c1 * (size - 1) + i * step: pixels [lo, hi) only if
      // it lies in [lo - 1, hi].
      const double first = static_cast<double>(c1) * static_cast<double>(size - 1);
      const double s = static_cast<double>(step);
      const double slack = 1.0 + 8.0 * eps * (::fabs(first) + static_cast<double>(crop) * ::fabs(s));
      r = cuda::candidate_range(first, s, crop, static_cast<double>(lo - 1), static_cast<double>(hi), slack);
    }
    return cuda::narrow_range(r, [&](int64_t i) { return touches(i, lo, hi); });
  }

  __host__ __device__ static int64_t cuda_clamp(int64_t v, int64_t size) {
    return clamp_index(v, 0, size - 1);
  }
};

// Deterministic gather. Thread = (tile, depth), depth fastest; it owns the
// tile's pixels at that depth in every image of `out` (acc_t, zeroed). It
// visits the boxes in order k = 0, 1, ..., and of each box the crop samples
// (y, x) touching its tile in row-major order, adding each corner's share to
// the pixel it lands on if the thread owns it: each element receives exactly
// the CPU kernel's shares in the CPU kernel's order (box, y, x, corner), hence
// the same bits. Work: about the atomic kernel's (twice for bilinear, whose
// samples touch two rows, when those fall in different tiles) plus one scan of
// the boxes per tile.
template <typename T, typename acc_t>
__global__ void grad_image_gather_kernel(
    int64_t total,
    const T* __restrict__ grads,
    Strides4 gs,
    int64_t crop_height,
    int64_t crop_width,
    const T* __restrict__ boxes,
    const int64_t* __restrict__ box_index,
    int64_t num_boxes,
    int64_t batch,
    int64_t height,
    int64_t width,
    int64_t depth,
    Method method,
    cuda::Tiling tiling,
    acc_t* __restrict__ out,
    Strides4 os) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    const int64_t d = index % depth;
    const int64_t tile = index / depth;
    const int64_t y0 = (tile / tiling.tiles_x) * tiling.tile_h;
    const int64_t x0 = (tile % tiling.tiles_x) * tiling.tile_w;
    const int64_t y1 = y0 + tiling.tile_h < height ? y0 + tiling.tile_h : height;
    const int64_t x1 = x0 + tiling.tile_w < width ? x0 + tiling.tile_w : width;
    for (int64_t k = 0; k < num_boxes; ++k) {
      const int64_t bi = box_index[k];
      if (!valid_box_index(bi, batch)) {
        ROI_EXT_COUNT_WORK(1);
        continue;
      }
      const T* box = boxes + k * 4;
      const AxisSampler<T> ay(method, box[0], box[2], height, crop_height);
      const cuda::IndexRange ry = ay.touching(y0, y1);
      if (ry.begin > ry.end) {
        ROI_EXT_COUNT_WORK(1);
        continue;
      }
      const AxisSampler<T> ax(method, box[1], box[3], width, crop_width);
      const cuda::IndexRange rx = ax.touching(x0, x1);
      if (rx.begin > rx.end) {
        ROI_EXT_COUNT_WORK(1);
        continue;
      }
      const T* gk = grads + k * gs.b + d * gs.d;
      acc_t* dst = out + bi * os.b + d * os.d;
      auto add = [&](int64_t yy, int64_t xx, T v) {
        if (yy >= y0 && yy < y1 && xx >= x0 && xx < x1) {
          dst[yy * os.h + xx * os.w] += static_cast<acc_t>(v);
        }
      };
      for (int64_t y = ry.begin; y <= ry.end; ++y) {
        typename AxisSampler<T>::Taps ty;
        if (!ay.taps(y, ty) || !((ty.lo >= y0 && ty.lo < y1) || (ty.hi >= y0 && ty.hi < y1))) {
          ROI_EXT_COUNT_WORK(1);
          continue;
        }
        for (int64_t x = rx.begin; x <= rx.end; ++x) {
          ROI_EXT_COUNT_WORK(1);
          typename AxisSampler<T>::Taps tx;
          if (!ax.taps(x, tx)) {
            continue;
          }
          const T g = gk[y * gs.h + x * gs.w];
          if (method == Method::kNearest) {
            add(ty.lo, tx.lo, g);
            continue;
          }
          const Corners<T> c =
              method == Method::kBilinear ? bilinear_grad(g, tx.frac, ty.frac) : bilinear_v2_grad(g, tx.frac, ty.frac);
          add(ty.lo, tx.lo, c.tl);
          add(ty.lo, tx.hi, c.tr);
          add(ty.hi, tx.lo, c.bl);
          add(ty.hi, tx.hi, c.br);
        }
      }
    }
  }
}

// The four sums of CropAndResizeGradBoxes, added element-wise by the reduction.
using cuda::Sum4;

// grad-boxes, a block per box: thread t of n takes the samples j = t, t + n, ...
// of the box's (y, x, d) grid (d fastest: coalesced for NHWC) and sums their
// terms with TensorFlow's formulas (BoxGradDepth, SPEC §3); the block adds the
// threads' sums as a binary tree (cuda::launch_block_reduce).
template <typename scalar_t, typename T>
struct BoxGradients {
  using Value = Sum4<T>;
  const T* grads;
  Strides4 gs;
  const scalar_t* image;
  Strides4 is;
  int64_t batch, height, width, depth;
  const T* boxes;
  const int64_t* box_index;
  int64_t crop_height, crop_width;
  T* out;

  __host__ __device__ Value partial(int64_t k, int thread, int threads) const {
    Value acc{{T(0), T(0), T(0), T(0)}};
    const int64_t bi = box_index[k];
    if (!valid_box_index(bi, batch)) {
      return acc;
    }
    const T* box = boxes + k * 4;
    const T y1 = box[0], x1 = box[1], y2 = box[2], x2 = box[3];
    const T ratio_y = grad_boxes_ratio<T>(height, crop_height);
    const T ratio_x = grad_boxes_ratio<T>(width, crop_width);
    const T step_y = grad_boxes_step(y1, y2, ratio_y, crop_height);
    const T step_x = grad_boxes_step(x1, x2, ratio_x, crop_width);
    const scalar_t* img = image + bi * is.b;
    const T* gk = grads + k * gs.b;
    const int64_t n = crop_height * crop_width * depth;
    for (int64_t j = thread; j < n; j += threads) {
      ROI_EXT_COUNT_WORK(1);
      const int64_t d = j % depth;
      const int64_t x = (j / depth) % crop_width;
      const int64_t y = j / (depth * crop_width);
      const T in_y = sample_coord(y1, y2, step_y, y, height, crop_height);
      const T in_x = sample_coord(x1, x2, step_x, x, width, crop_width);
      if (!in_range(in_y, height) || !in_range(in_x, width)) {
        continue;
      }
      const Lerp<T> ly = lerp(in_y);
      const Lerp<T> lx = lerp(in_x);
      const scalar_t* top = img + ly.lo * is.h + d * is.d;
      const scalar_t* bottom = img + ly.hi * is.h + d * is.d;
      const T tl = static_cast<T>(top[lx.lo * is.w]), tr = static_cast<T>(top[lx.hi * is.w]);
      const T bl = static_cast<T>(bottom[lx.lo * is.w]), br = static_cast<T>(bottom[lx.hi * is.w]);
      const T top_grad = gk[y * gs.h + x * gs.w + d * gs.d];
      const T gy = bilinear_dy(tl, tr, bl, br, lx.frac) * top_grad;
      const T gx = bilinear_dx(tl, tr, bl, br, ly.frac) * top_grad;
      acc.v[0] = add_box_grad(acc.v[0], gy, y, ratio_y, height, crop_height, true);
      acc.v[2] = add_box_grad(acc.v[2], gy, y, ratio_y, height, crop_height, false);
      acc.v[1] = add_box_grad(acc.v[1], gx, x, ratio_x, width, crop_width, true);
      acc.v[3] = add_box_grad(acc.v[3], gx, x, ratio_x, width, crop_width, false);
    }
    return acc;
  }

  __host__ __device__ void finish(int64_t k, const Value& total) const {
    for (int i = 0; i < 4; ++i) {
      out[k * 4 + i] = total.v[i];
    }
  }
};

template <typename scalar_t, typename T>
void launch_grad_boxes(
    const Tensor& g,
    Strides4 gs,
    const Tensor& image,
    Strides4 is,
    const Tensor& img,
    const Tensor& boxes,
    const Tensor& index,
    int64_t crop_height,
    int64_t crop_width,
    Tensor& output,
    int64_t num_boxes,
    cudaStream_t stream) {
  const Tensor bx = detail::boxes_as<T>(boxes);
  const BoxGradients<scalar_t, T> f{
      g.const_data_ptr<T>(), gs, image.const_data_ptr<scalar_t>(), is, img.size(0), img.size(1), img.size(2),
      img.size(3), bx.const_data_ptr<T>(), index.const_data_ptr<int64_t>(), crop_height, crop_width,
      output.mutable_data_ptr<T>()};
  cuda::launch_block_reduce(f, num_boxes, stream);
}

constexpr const char* kForwardOutput = "crop_and_resize: output for crop_size";
constexpr const char* kGradImageOutput = "crop_and_resize_grad_image: gradient for image_size";
constexpr const char* kGradBoxesOutput = "crop_and_resize_grad_boxes: output";

// The type crop_and_resize computes and returns in for an image of scalar_t.
template <typename scalar_t>
using compute_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// box_index as a contiguous int64 device tensor. Its values are not checked
// here (no host synchronisation); the kernels skip boxes outside [0, B).
Tensor device_box_index(const Tensor& box_index) {
  return contiguous(to_dtype(box_index, ScalarType::Long), "box_index");
}

Tensor crop_and_resize_cuda(
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
  ROI_EXT_CHECK(cuda::on_device(image), op, ": image must be ", cuda::kDeviceTensor, ", got ", device_of(image));
  const cuda::DeviceGuard guard(image);
  const cudaStream_t stream = cuda::current_stream(image);

  const Tensor img = detail::as_nhwc(image, nchw);
  const int64_t depth = img.size(3);
  const Tensor index = device_box_index(box_index);
  const int64_t num_boxes = boxes.size(0);
  const ScalarType out_type = image.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
  Tensor output = nchw
      ? roi_ext::empty(kForwardOutput, {num_boxes, depth, crop_height, crop_width}, out_type, image.device())
      : roi_ext::empty(kForwardOutput, {num_boxes, crop_height, crop_width, depth}, out_type, image.device());
  if (output.numel() == 0) {
    return output;
  }
  const Strides4 is = detail::nhwc_strides(image, nchw);
  const Strides4 os = detail::nhwc_strides(output, nchw);
  const int64_t total = output.numel();
  THO_DISPATCH_V2(
      image.scalar_type(), "crop_and_resize_cuda", AT_WRAP([&] {
        using T = compute_t<scalar_t>;
        const Tensor bx = detail::boxes_as<T>(boxes);
        cuda::launch(
            forward_kernel<scalar_t, T>, total, stream,
            total, image.const_data_ptr<scalar_t>(), is, img.size(0), img.size(1), img.size(2), depth,
            bx.const_data_ptr<T>(), index.const_data_ptr<int64_t>(), crop_height, crop_width,
            method, static_cast<T>(extrapolation_value), nchw, output.mutable_data_ptr<T>(), os);
      }),
      AT_EXPAND(AT_ALL_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

Tensor crop_and_resize_grad_image_cuda(
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
    bool deterministic) {
  constexpr const char* op = "crop_and_resize_grad_image";
  const detail::ParsedArgs parsed = detail::check_grad_image_args(
      grads, boxes, box_index, batch_size, image_height, image_width, depth, method_name, dtype, data_format);
  const Method method = parsed.method;
  const bool nchw = parsed.nchw;
  ROI_EXT_CHECK(cuda::on_device(grads), op, ": grads must be ", cuda::kDeviceTensor, ", got ", device_of(grads));
  const cuda::DeviceGuard guard(grads);
  const cudaStream_t stream = cuda::current_stream(grads);
  const Tensor index = device_box_index(box_index);

  const ScalarType acc_type = dtype == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
  Tensor grad_image = nchw
      ? roi_ext::zeros(kGradImageOutput, {batch_size, depth, image_height, image_width}, acc_type, grads.device())
      : roi_ext::zeros(kGradImageOutput, {batch_size, image_height, image_width, depth}, acc_type, grads.device());
  if (grad_image.numel() == 0 || grads.numel() == 0) {
    return to_dtype(grad_image, dtype);
  }
  const Strides4 os = detail::nhwc_strides(grad_image, nchw);
  const bool use_double = grads.scalar_type() == ScalarType::Double;
  const Tensor g = to_dtype(grads, use_double ? ScalarType::Double : ScalarType::Float);
  const Strides4 gs = detail::nhwc_strides(g, nchw);
  const Tensor gv = detail::as_nhwc(g, nchw);
  const int64_t crop_height = gv.size(1), crop_width = gv.size(2);
  auto run = [&](auto t_tag, auto acc_tag) {
    using T = decltype(t_tag);
    using acc_t = decltype(acc_tag);
    const Tensor bx = detail::boxes_as<T>(boxes);
    if (deterministic) {
      const cuda::Tiling tiling = cuda::choose_tiling(image_height, image_width, crop_height * crop_width);
      const int64_t total = tiling.count() * depth;
      cuda::launch(
          grad_image_gather_kernel<T, acc_t>, total, stream,
          total, g.const_data_ptr<T>(), gs, crop_height, crop_width, bx.const_data_ptr<T>(),
          index.const_data_ptr<int64_t>(), bx.size(0), batch_size, image_height, image_width, depth, method,
          tiling, grad_image.mutable_data_ptr<acc_t>(), os);
    } else {
      const int64_t total = g.numel();
      cuda::launch(
          grad_image_atomic_kernel<T, acc_t>, total, stream,
          total, g.const_data_ptr<T>(), gs, crop_height, crop_width, depth, bx.const_data_ptr<T>(),
          index.const_data_ptr<int64_t>(), batch_size, image_height, image_width, method, nchw,
          grad_image.mutable_data_ptr<acc_t>(), os);
    }
  };
  if (use_double) {
    acc_type == ScalarType::Double ? run(double{}, double{}) : run(double{}, float{});
  } else {
    acc_type == ScalarType::Double ? run(float{}, double{}) : run(float{}, float{});
  }
  return to_dtype(grad_image, dtype);
}

Tensor crop_and_resize_grad_boxes_cuda(
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
  ROI_EXT_CHECK(cuda::on_device(image), op, ": image must be ", cuda::kDeviceTensor, ", got ", device_of(image));
  const cuda::DeviceGuard guard(image);
  const cudaStream_t stream = cuda::current_stream(image);
  const Tensor index = device_box_index(box_index);

  const bool use_double =
      grads.scalar_type() == ScalarType::Double || image.scalar_type() == ScalarType::Double;
  const ScalarType out_type = use_double ? ScalarType::Double : ScalarType::Float;
  Tensor output = roi_ext::zeros(kGradBoxesOutput, {boxes.size(0), 4}, out_type, grads.device());
  if (output.numel() == 0 || grads.numel() == 0 || method == Method::kBilinearV2) {
    return output;
  }
  const Tensor g = to_dtype(grads, out_type);
  const Tensor gv = detail::as_nhwc(g, nchw);
  const Strides4 gs = detail::nhwc_strides(g, nchw);
  const Strides4 is = detail::nhwc_strides(image, nchw);
  const int64_t num_boxes = boxes.size(0);
  THO_DISPATCH_V2(
      image.scalar_type(), "crop_and_resize_grad_boxes_cuda", AT_WRAP([&] {
        if (use_double) {
          (launch_grad_boxes<scalar_t, double>)(g, gs, image, is, img, boxes, index, gv.size(1), gv.size(2), output,
                                              num_boxes, stream);
        } else {
          (launch_grad_boxes<scalar_t, float>)(g, gs, image, is, img, boxes, index, gv.size(1), gv.size(2), output,
                                             num_boxes, stream);
        }
      }),
      AT_EXPAND(AT_ALL_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

}  // namespace

ROI_EXT_CUDA_LIBRARY_IMPL(m) {
  m.impl("crop_and_resize", TORCH_BOX(&crop_and_resize_cuda));
  m.impl("crop_and_resize_grad_image", TORCH_BOX(&crop_and_resize_grad_image_cuda));
  m.impl("crop_and_resize_grad_boxes", TORCH_BOX(&crop_and_resize_grad_boxes_cuda));
}

}  // namespace roi_ext

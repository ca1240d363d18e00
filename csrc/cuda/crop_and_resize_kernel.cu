// CUDA kernels of roi_ext::crop_and_resize, crop_and_resize_grad_image and
// crop_and_resize_grad_boxes: grid-stride loops around
// csrc/common/crop_and_resize_math.h (built with --fmad=false, so float32
// results equal the CPU's, which equal TensorFlow's CPU kernels).
//
// Threads: one per output element, depth fastest for NHWC (a warp reads
// consecutive channels of one pixel: coalesced) and x fastest for NCHW.
// grad-image: atomicAdd into a float32/float64 buffer by default; with
// deterministic=True (the op's last argument: Python passes
// torch.are_deterministic_algorithms_enabled()) a gather kernel (one thread per
// image element, boxes visited in the CPU kernel's order) makes it bitwise
// reproducible and equal to the CPU. grad-boxes: one thread per box summing in
// TensorFlow's order (no atomics: deterministic and equal to the CPU).
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch_v2.h>

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

template <typename scalar_t, typename T>
__global__ void forward_kernel(
    int64_t total,
    const scalar_t* __restrict__ image,
    Strides4 is,
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
    int64_t b, y, x, d;
    cuda::decompose_nchw(index, depth, crop_height, crop_width, !nchw, b, d, y, x);
    const T* box = boxes + b * 4;
    const T y1 = box[0], x1 = box[1], y2 = box[2], x2 = box[3];
    const scalar_t* src = image + box_index[b] * is.b + d * is.d;
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
    out[b * os.b + y * os.h + x * os.w + d * os.d] = value;
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
    int64_t height,
    int64_t width,
    Method method,
    bool nchw,
    acc_t* __restrict__ out,
    Strides4 os) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t b, y, x, d;
    cuda::decompose_nchw(index, depth, crop_height, crop_width, !nchw, b, d, y, x);
    const T* box = boxes + b * 4;
    const T y1 = box[0], x1 = box[1], y2 = box[2], x2 = box[3];
    const T g = grads[b * gs.b + y * gs.h + x * gs.w + d * gs.d];
    acc_t* dst = out + box_index[b] * os.b + d * os.d;
    auto add = [&](int64_t yy, int64_t xx, T v) {
      atomicAdd(dst + yy * os.h + xx * os.w, static_cast<acc_t>(v));
    };
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

// Deterministic gather: one thread per image-gradient element (bi, y, x, d),
// summing the shares that land on it in the CPU order (box, crop row, crop
// column, corner).
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
    int64_t height,
    int64_t width,
    int64_t depth,
    Method method,
    bool nchw,
    acc_t* __restrict__ out,
    Strides4 os) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t bi, y, x, d;
    cuda::decompose_nchw(index, depth, height, width, !nchw, bi, d, y, x);
    const T yf = static_cast<T>(y), xf = static_cast<T>(x);
    acc_t sum = 0;
    for (int64_t k = 0; k < num_boxes; ++k) {
      if (box_index[k] != bi) {
        continue;
      }
      const T* box = boxes + k * 4;
      const T y1 = box[0], x1 = box[1], y2 = box[2], x2 = box[3];
      const T* gk = grads + k * gs.b + d * gs.d;
      if (method == Method::kBilinearV2) {
        const V2Window wy = v2_window(y1, y2, height);
        const V2Window wx = v2_window(x1, x2, width);
        if (!wy.valid || !wx.valid ||
            y < clamp_index(wy.start, 0, height - 1) || y > clamp_index(wy.start + wy.size - 1, 0, height - 1) ||
            x < clamp_index(wx.start, 0, width - 1) || x > clamp_index(wx.start + wx.size - 1, 0, width - 1)) {
          continue;
        }
        for (int64_t cy = 0; cy < crop_height; ++cy) {
          const V2Sample<T> sy = v2_sample<T>(cy, crop_height, wy, height);
          if (sy.lo != y && sy.hi != y) {
            continue;
          }
          for (int64_t cx = 0; cx < crop_width; ++cx) {
            const V2Sample<T> sx = v2_sample<T>(cx, crop_width, wx, width);
            if (sx.lo != x && sx.hi != x) {
              continue;
            }
            const Corners<T> c = bilinear_v2_grad(gk[cy * gs.h + cx * gs.w], sx.frac, sy.frac);
            if (sy.lo == y && sx.lo == x) sum += static_cast<acc_t>(c.tl);
            if (sy.lo == y && sx.hi == x) sum += static_cast<acc_t>(c.tr);
            if (sy.hi == y && sx.lo == x) sum += static_cast<acc_t>(c.bl);
            if (sy.hi == y && sx.hi == x) sum += static_cast<acc_t>(c.br);
          }
        }
        continue;
      }
      // Samples lie between c1 * (size - 1) and c2 * (size - 1); a pixel more
      // than two away is never touched (NaN boxes are skipped here too).
      const T span_y = static_cast<T>(height - 1), span_x = static_cast<T>(width - 1);
      if (!(yf >= ::fmin(y1, y2) * span_y - T(2) && yf <= ::fmax(y1, y2) * span_y + T(2) &&
            xf >= ::fmin(x1, x2) * span_x - T(2) && xf <= ::fmax(x1, x2) * span_x + T(2))) {
        continue;
      }
      const T step_y = forward_step(y1, y2, height, crop_height);
      const T step_x = forward_step(x1, x2, width, crop_width);
      for (int64_t cy = 0; cy < crop_height; ++cy) {
        const T in_y = sample_coord(y1, y2, step_y, cy, height, crop_height);
        if (!in_range(in_y, height)) {
          continue;
        }
        const Lerp<T> ly = lerp(in_y);
        if (method == Method::kBilinear ? (ly.lo != y && ly.hi != y) : nearest_index(in_y) != y) {
          continue;
        }
        for (int64_t cx = 0; cx < crop_width; ++cx) {
          const T in_x = sample_coord(x1, x2, step_x, cx, width, crop_width);
          if (!in_range(in_x, width)) {
            continue;
          }
          const T g = gk[cy * gs.h + cx * gs.w];
          if (method == Method::kNearest) {
            if (nearest_index(in_x) == x) sum += static_cast<acc_t>(g);
            continue;
          }
          const Lerp<T> lx = lerp(in_x);
          if (lx.lo != x && lx.hi != x) {
            continue;
          }
          const Corners<T> c = bilinear_grad(g, lx.frac, ly.frac);
          if (ly.lo == y && lx.lo == x) sum += static_cast<acc_t>(c.tl);
          if (ly.lo == y && lx.hi == x) sum += static_cast<acc_t>(c.tr);
          if (ly.hi == y && lx.lo == x) sum += static_cast<acc_t>(c.bl);
          if (ly.hi == y && lx.hi == x) sum += static_cast<acc_t>(c.br);
        }
      }
    }
    out[bi * os.b + y * os.h + x * os.w + d * os.d] = sum;
  }
}

template <typename scalar_t, typename T>
__global__ void grad_boxes_kernel(
    int64_t num_boxes,
    const T* __restrict__ grads,
    Strides4 gs,
    const scalar_t* __restrict__ image,
    Strides4 is,
    int64_t height,
    int64_t width,
    int64_t depth,
    const T* __restrict__ boxes,
    const int64_t* __restrict__ box_index,
    int64_t crop_height,
    int64_t crop_width,
    T* __restrict__ out) {
  ROI_EXT_KERNEL_LOOP(k, num_boxes) {
    box_gradient<scalar_t, T>(
        image + box_index[k] * is.b, is, height, width, depth, grads + k * gs.b, gs,
        crop_height, crop_width, boxes + k * 4, out + k * 4);
  }
}

constexpr const char* kForwardOutput = "crop_and_resize: output for crop_size";
constexpr const char* kGradImageOutput = "crop_and_resize_grad_image: gradient for image_size";
constexpr const char* kGradBoxesOutput = "crop_and_resize_grad_boxes: output";

// The type crop_and_resize computes and returns in for an image of scalar_t.
template <typename scalar_t>
using compute_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// box_index as int64 on the device, checked against [0, batch) with one
// reduction and one host check (Part A9).
Tensor checked_box_index(const Tensor& box_index, int64_t batch, const char* op, cudaStream_t stream) {
  const Tensor idx = contiguous(to_dtype(box_index, ScalarType::Long), "box_index");
  const int64_t i = cuda::first_out_of_range<int64_t>(idx, batch, stream, op);
  if (i >= 0) {
    detail::throw_bad_box_index(op, i, cuda::value_at<int64_t>(idx, i), batch);
  }
  return idx;
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
  ROI_EXT_CHECK(image.is_cuda(), op, ": image must be a CUDA tensor");
  const torch::stable::accelerator::DeviceGuard guard(image.get_device_index());
  const cudaStream_t stream = cuda::current_stream(image.get_device_index());

  const Tensor img = detail::as_nhwc(image, nchw);
  const int64_t depth = img.size(3);
  const Tensor index = checked_box_index(box_index, img.size(0), op, stream);
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
            total, image.const_data_ptr<scalar_t>(), is, img.size(1), img.size(2), depth,
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
      grads, boxes, box_index, batch_size, image_height, image_width, depth, method_name, dtype,
      data_format);
  const Method method = parsed.method;
  const bool nchw = parsed.nchw;
  ROI_EXT_CHECK(grads.is_cuda(), op, ": grads must be a CUDA tensor");
  const torch::stable::accelerator::DeviceGuard guard(grads.get_device_index());
  const cudaStream_t stream = cuda::current_stream(grads.get_device_index());
  const Tensor index = checked_box_index(box_index, batch_size, op, stream);

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
  auto run = [&](auto t_tag, auto acc_tag) {
    using T = decltype(t_tag);
    using acc_t = decltype(acc_tag);
    const Tensor bx = detail::boxes_as<T>(boxes);
    const Tensor gv = detail::as_nhwc(g, nchw);
    if (deterministic) {
      const int64_t total = grad_image.numel();
      cuda::launch(
          grad_image_gather_kernel<T, acc_t>, total, stream,
          total, g.const_data_ptr<T>(), gs, gv.size(1), gv.size(2), bx.const_data_ptr<T>(),
          index.const_data_ptr<int64_t>(), bx.size(0), image_height, image_width, depth, method,
          nchw, grad_image.mutable_data_ptr<acc_t>(), os);
    } else {
      const int64_t total = g.numel();
      cuda::launch(
          grad_image_atomic_kernel<T, acc_t>, total, stream,
          total, g.const_data_ptr<T>(), gs, gv.size(1), gv.size(2), depth, bx.const_data_ptr<T>(),
          index.const_data_ptr<int64_t>(), image_height, image_width, method, nchw,
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
  ROI_EXT_CHECK(image.is_cuda(), op, ": image must be a CUDA tensor");
  const torch::stable::accelerator::DeviceGuard guard(image.get_device_index());
  const cudaStream_t stream = cuda::current_stream(image.get_device_index());
  const Tensor index = checked_box_index(box_index, img.size(0), op, stream);

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
        auto run = [&](auto t_tag) {
          using T = decltype(t_tag);
          const Tensor bx = detail::boxes_as<T>(boxes);
          cuda::launch(
              grad_boxes_kernel<scalar_t, T>, num_boxes, stream,
              num_boxes, g.const_data_ptr<T>(), gs, image.const_data_ptr<scalar_t>(), is, img.size(1),
              img.size(2), img.size(3), bx.const_data_ptr<T>(), index.const_data_ptr<int64_t>(),
              gv.size(1), gv.size(2), output.mutable_data_ptr<T>());
        };
        use_double ? run(double{}) : run(float{});
      }),
      AT_EXPAND(AT_ALL_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(roi_ext, CUDA, m) {
  m.impl("crop_and_resize", TORCH_BOX(&crop_and_resize_cuda));
  m.impl("crop_and_resize_grad_image", TORCH_BOX(&crop_and_resize_grad_image_cuda));
  m.impl("crop_and_resize_grad_boxes", TORCH_BOX(&crop_and_resize_grad_boxes_cuda));
}

}  // namespace roi_ext

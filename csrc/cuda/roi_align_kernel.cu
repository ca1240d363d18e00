// CUDA kernels of roi_ext::roi_align and roi_ext::_roi_align_backward: thin
// grid-stride loops around csrc/common/roi_align_math.h, so CUDA computes what
// the CPU computes (built with --fmad=false: float32 results equal the CPU's).
//
// Thread order: one thread per output element; for channels_last tensors the
// channel is the fastest index, so a warp reads 32 consecutive channels of one
// pixel (coalesced).
//
// Backward: by default one thread per output-gradient element scatters with
// atomicAdd (float32 accumulation for 16-bit types, then one rounding). With
// deterministic=True (the op's last argument: Python passes
// torch.are_deterministic_algorithms_enabled()), a gather kernel is used
// instead: one thread per input-gradient element sums, in the CPU kernel's order
// (roi, bin, sample, corner), every contribution that lands on it, so the
// result is bitwise reproducible and equal to the CPU result.
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch_v2.h>

#include "../common/roi_align_args.h"
#include "../common/roi_align_math.h"
#include "../common/stable.h"
#include "cuda_utils.cuh"

namespace roi_ext {
namespace {

using namespace roi_align_math;

// Element offset of pixel (y, x) of channel c of image b, and the distance
// between horizontally adjacent pixels, for NCHW or channels_last storage.
struct Layout {
  int64_t channels, height, width;
  bool channels_last;

  __device__ int64_t plane(int64_t b, int64_t c) const {
    return channels_last ? (b * height * width * channels + c)
                         : ((b * channels + c) * height * width);
  }
  __device__ int64_t pixel_stride() const {
    return channels_last ? channels : 1;
  }
};

template <typename scalar_t, typename acc_t>
__global__ void roi_align_forward_kernel(
    int64_t total,
    const scalar_t* __restrict__ input,
    const acc_t* __restrict__ rois,
    acc_t spatial_scale,
    Layout in,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode,
    scalar_t* __restrict__ output) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t k, c, ph, pw;
    cuda::decompose_nchw(index, in.channels, pooled_height, pooled_width, in.channels_last, k, c, ph, pw);
    const acc_t* roi = rois + k * 5;
    const RoiGeometry<acc_t> g = roi_geometry(
        roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode);
    const scalar_t* base = input + in.plane(static_cast<int64_t>(roi[0]), c);
    const int64_t ps = in.pixel_stride();
    acc_t sum = 0;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
        BilinearTaps<acc_t> t;
        if (!bilinear_taps(y, x, in.height, in.width, t)) {
          continue;
        }
        sum += interpolate(
            t.w,
            static_cast<acc_t>(base[(t.y_low * in.width + t.x_low) * ps]),
            static_cast<acc_t>(base[(t.y_low * in.width + t.x_high) * ps]),
            static_cast<acc_t>(base[(t.y_high * in.width + t.x_low) * ps]),
            static_cast<acc_t>(base[(t.y_high * in.width + t.x_high) * ps]));
      }
    }
    output[index] = static_cast<scalar_t>(sum / sample_count(g));
  }
}

// Atomic scatter into grad_input (acc_t storage).
template <typename scalar_t, typename acc_t>
__global__ void roi_align_backward_atomic_kernel(
    int64_t total,
    const scalar_t* __restrict__ grad,
    int64_t gs0,
    int64_t gs1,
    int64_t gs2,
    int64_t gs3,
    const acc_t* __restrict__ rois,
    acc_t spatial_scale,
    Layout out,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode,
    acc_t* __restrict__ grad_input) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t k, c, ph, pw;
    cuda::decompose_nchw(index, out.channels, pooled_height, pooled_width, out.channels_last, k, c, ph, pw);
    const acc_t* roi = rois + k * 5;
    const RoiGeometry<acc_t> g = roi_geometry(
        roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode);
    const acc_t gval = static_cast<acc_t>(grad[k * gs0 + c * gs1 + ph * gs2 + pw * gs3]);
    const acc_t count = sample_count(g);
    acc_t* base = grad_input + out.plane(static_cast<int64_t>(roi[0]), c);
    const int64_t ps = out.pixel_stride();
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
        BilinearTaps<acc_t> t;
        if (!bilinear_taps(y, x, out.height, out.width, t)) {
          continue;
        }
        atomicAdd(base + (t.y_low * out.width + t.x_low) * ps, corner_grad(gval, t.w.w1, count));
        atomicAdd(base + (t.y_low * out.width + t.x_high) * ps, corner_grad(gval, t.w.w2, count));
        atomicAdd(base + (t.y_high * out.width + t.x_low) * ps, corner_grad(gval, t.w.w3, count));
        atomicAdd(base + (t.y_high * out.width + t.x_high) * ps, corner_grad(gval, t.w.w4, count));
      }
    }
  }
}

// Deterministic gather: one thread per grad_input element (b, c, y, x).
template <typename scalar_t, typename acc_t>
__global__ void roi_align_backward_gather_kernel(
    int64_t total,
    const scalar_t* __restrict__ grad,
    int64_t gs0,
    int64_t gs1,
    int64_t gs2,
    int64_t gs3,
    const acc_t* __restrict__ rois,
    int64_t num_rois,
    acc_t spatial_scale,
    Layout out,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode,
    scalar_t* __restrict__ grad_input) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t b, c, y, x;
    // grad_input is [B, C, H, W] in NCHW or channels_last order.
    cuda::decompose_nchw(index, out.channels, out.height, out.width, out.channels_last, b, c, y, x);
    const acc_t yf = static_cast<acc_t>(y), xf = static_cast<acc_t>(x);
    acc_t sum = 0;
    for (int64_t k = 0; k < num_rois; ++k) {
      const acc_t* roi = rois + k * 5;
      if (static_cast<int64_t>(roi[0]) != b) {
        continue;
      }
      const RoiGeometry<acc_t> g = roi_geometry(
          roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode);
      // Every sample lies between start and start + pooled * bin; a pixel more
      // than two away from that span is never one of its taps.
      const acc_t end_h = g.start_h + static_cast<acc_t>(pooled_height) * g.bin_h;
      const acc_t end_w = g.start_w + static_cast<acc_t>(pooled_width) * g.bin_w;
      if (!(yf >= ::fmin(g.start_h, end_h) - acc_t(2) && yf <= ::fmax(g.start_h, end_h) + acc_t(2) &&
            xf >= ::fmin(g.start_w, end_w) - acc_t(2) && xf <= ::fmax(g.start_w, end_w) + acc_t(2))) {
        continue;
      }
      const acc_t count = sample_count(g);
      for (int64_t ph = 0; ph < pooled_height; ++ph) {
        for (int64_t pw = 0; pw < pooled_width; ++pw) {
          const acc_t gval = static_cast<acc_t>(grad[k * gs0 + c * gs1 + ph * gs2 + pw * gs3]);
          for (int64_t iy = 0; iy < g.grid_h; ++iy) {
            AxisTaps<acc_t> ay;
            if (!axis_taps(sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h), out.height, ay) ||
                (ay.low != y && ay.high != y)) {
              continue;
            }
            for (int64_t ix = 0; ix < g.grid_w; ++ix) {
              AxisTaps<acc_t> ax;
              if (!axis_taps(sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w), out.width, ax) ||
                  (ax.low != x && ax.high != x)) {
                continue;
              }
              const BilinearWeights<acc_t> w = bilinear_weights(ay, ax);
              if (ay.low == y && ax.low == x) sum += corner_grad(gval, w.w1, count);
              if (ay.low == y && ax.high == x) sum += corner_grad(gval, w.w2, count);
              if (ay.high == y && ax.low == x) sum += corner_grad(gval, w.w3, count);
              if (ay.high == y && ax.high == x) sum += corner_grad(gval, w.w4, count);
            }
          }
        }
      }
    }
    grad_input[index] = static_cast<scalar_t>(sum);
  }
}

constexpr const char* kForwardOutput = "roi_align: output for output_size (pooled_height, pooled_width)";
constexpr const char* kBackwardOutput =
    "_roi_align_backward: grad_input for (batch_size, channels, height, width)";

// Part A12 on the GPU: one reduction, one host check; the message names the roi.
// rois_acc: rois converted to the compute type acc_t (float32 or float64), contiguous.
template <typename acc_t>
void check_batch_indices_as(const Tensor& rois_acc, int64_t batch_size, const char* op, cudaStream_t stream) {
  const Tensor b = torch::stable::select(rois_acc, 1, 0);
  // b < batch_size compares in acc_t, as ATen's b.lt(double(batch_size)) did.
  const int64_t k = cuda::first_out_of_range<acc_t>(
      b, static_cast<acc_t>(static_cast<double>(batch_size)), stream, op);
  if (k >= 0) {
    detail::throw_bad_batch_index(op, k, static_cast<double>(cuda::value_at<acc_t>(b, k)), batch_size);
  }
}

void check_batch_indices_cuda(const Tensor& rois_acc, int64_t batch_size, const char* op, cudaStream_t stream) {
  if (rois_acc.scalar_type() == ScalarType::Double) {
    check_batch_indices_as<double>(rois_acc, batch_size, op, stream);
  } else {
    check_batch_indices_as<float>(rois_acc, batch_size, op, stream);
  }
}

Tensor roi_align_forward_cuda(
    const Tensor& input,
    const Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode) {
  detail::check_roi_align_forward_args(
      input, rois, spatial_scale, pooled_height, pooled_width, roi_end_mode);
  ROI_EXT_CHECK(input.is_cuda(), "roi_align: input must be a CUDA tensor");
  const torch::stable::accelerator::DeviceGuard guard(input.get_device_index());
  const cudaStream_t stream = cuda::current_stream(input.get_device_index());

  const MemoryFormat fmt = detail::roi_align_memory_format(input);
  const ScalarType acc_type = opmath_type(input.scalar_type());
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");
  if (rois_.size(0) > 0) {
    check_batch_indices_cuda(rois_, input.size(0), "roi_align", stream);
  }
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  Tensor output = roi_ext::empty(
      kForwardOutput, {num_rois, channels, pooled_height, pooled_width}, input.scalar_type(), input.device(), fmt);
  if (height == 0 || width == 0) {
    torch::stable::zero_(output);
    return output;
  }
  if (output.numel() == 0) {
    return output;
  }
  const Tensor input_ = contiguous(input, "roi_align: input", fmt);
  const Layout layout{channels, height, width, fmt == MemoryFormat::ChannelsLast};
  const int64_t total = output.numel();
  THO_DISPATCH_V2(
      input.scalar_type(), "roi_align_forward_cuda", AT_WRAP([&] {
        using acc_t = opmath_t<scalar_t>;
        cuda::launch(
            roi_align_forward_kernel<scalar_t, acc_t>, total, stream,
            total, input_.const_data_ptr<scalar_t>(), rois_.const_data_ptr<acc_t>(),
            static_cast<acc_t>(spatial_scale), layout, pooled_height, pooled_width,
            sampling_ratio, aligned, roi_end_mode, output.mutable_data_ptr<scalar_t>());
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

Tensor roi_align_backward_cuda(
    const Tensor& grad,
    const Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode,
    bool deterministic) {
  detail::check_roi_align_backward_args(
      grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height,
      width, roi_end_mode);
  ROI_EXT_CHECK(grad.is_cuda(), "_roi_align_backward: grad must be a CUDA tensor");
  const torch::stable::accelerator::DeviceGuard guard(grad.get_device_index());
  const cudaStream_t stream = cuda::current_stream(grad.get_device_index());

  const MemoryFormat fmt = detail::roi_align_memory_format(grad);
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");
  if (rois_.size(0) > 0) {
    check_batch_indices_cuda(rois_, batch_size, "_roi_align_backward", stream);
  }
  const Layout layout{channels, height, width, fmt == MemoryFormat::ChannelsLast};
  if (grad.numel() == 0 || batch_size * channels * height * width == 0) {
    return roi_ext::zeros(kBackwardOutput, {batch_size, channels, height, width}, grad.scalar_type(), grad.device(),
                          fmt);
  }
  return THO_DISPATCH_V2(
      grad.scalar_type(), "roi_align_backward_cuda", AT_WRAP([&]() -> Tensor {
        using acc_t = opmath_t<scalar_t>;
        if (deterministic) {
          Tensor grad_input = roi_ext::empty(
              kBackwardOutput, {batch_size, channels, height, width}, grad.scalar_type(), grad.device(), fmt);
          const int64_t total = grad_input.numel();
          cuda::launch(
              roi_align_backward_gather_kernel<scalar_t, acc_t>, total, stream,
              total, grad.const_data_ptr<scalar_t>(), grad.stride(0), grad.stride(1),
              grad.stride(2), grad.stride(3), rois_.const_data_ptr<acc_t>(), rois_.size(0),
              static_cast<acc_t>(spatial_scale), layout, pooled_height, pooled_width,
              sampling_ratio, aligned, roi_end_mode, grad_input.mutable_data_ptr<scalar_t>());
          return grad_input;
        }
        Tensor acc = roi_ext::zeros(
            kBackwardOutput, {batch_size, channels, height, width}, acc_type, grad.device(), fmt);
        const int64_t total = grad.numel();
        cuda::launch(
            roi_align_backward_atomic_kernel<scalar_t, acc_t>, total, stream,
            total, grad.const_data_ptr<scalar_t>(), grad.stride(0), grad.stride(1),
            grad.stride(2), grad.stride(3), rois_.const_data_ptr<acc_t>(),
            static_cast<acc_t>(spatial_scale), layout, pooled_height, pooled_width,
            sampling_ratio, aligned, roi_end_mode, acc.mutable_data_ptr<acc_t>());
        return to_dtype(acc, grad.scalar_type());
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(roi_ext, CUDA, m) {
  m.impl("roi_align", TORCH_BOX(&roi_align_forward_cuda));
  m.impl("_roi_align_backward", TORCH_BOX(&roi_align_backward_cuda));
}

}  // namespace roi_ext

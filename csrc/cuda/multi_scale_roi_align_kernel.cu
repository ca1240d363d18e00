// CUDA kernels of roi_ext::multi_scale_roi_align and its backward: ROIAlign over
// the levels of a feature pyramid in one launch, roi k pooled from level
// levels[k]. Grid-stride loops around host-device functions of the thread index
// (the emulation build runs them serially on the CPU), over the math of
// csrc/common/roi_align_math.h, built with --fmad=false: float32 results equal
// the CPU kernel's, i.e. torchvision's.
//
// Thread order: one thread per output element, in the output's memory order
// (channels_last: the channel is the fastest index, so a warp reads 32
// consecutive channels of one pixel of a channels-last level).
//
// Backward: by default one thread per output-gradient element scatters with
// atomicAdd (float32 accumulation for 16-bit types, then one rounding). With
// deterministic=True (Python passes torch.are_deterministic_algorithms_enabled())
// a gather is used instead: one thread per grad_input element of every level
// sums, in the CPU kernel's order (roi, bin, sample, corner), the shares of the
// rois of its image and level, so the result is bitwise reproducible and equal
// to the CPU's.
//
// No host synchronisation: levels and batch indices stay on the device. A roi
// whose level is not in [0, num_levels) pools nothing (output 0, no gradient), as
// on the CPU; a roi whose batch index is not in [0, N) likewise gives 0 (the CPU
// kernel raises an IndexError for it instead, SPEC.md Part A12).
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch_v2.h>

#include <limits>
#include <vector>

#include "../common/multi_scale_roi_align_args.h"
#include "../common/roi_align_math.h"
#include "../common/stable.h"
#include "cuda_utils.cuh"
#include "rois.cuh"

namespace roi_ext {
namespace {

using namespace roi_align_math;

// Levels a launch can take (passed by value in the kernel arguments). FPNs
// have 4 or 5.
constexpr int kMaxLevels = 16;

// The levels of a pyramid: data (features, or gradient accumulators) and
// geometry, one layout flag per level.
template <typename T, typename acc_t>
struct Levels {
  T* data[kMaxLevels];
  int64_t height[kMaxLevels];
  int64_t width[kMaxLevels];
  int64_t offset[kMaxLevels + 1];  // first flat element of each level (gather kernel)
  acc_t scale[kMaxLevels];
  bool channels_last[kMaxLevels];
  int64_t count;
};

struct Args {
  int64_t batch, channels, pooled_height, pooled_width, sampling_ratio;
  bool aligned;
  bool out_channels_last;  // layout of the output (forward) or of grad (backward)
};

struct GradStrides {
  int64_t k, c, h, w;
};

// Offset of channel c of image b's plane, and the pixel stride, in a level.
C10_HOST_DEVICE inline int64_t plane_offset(bool channels_last, int64_t b, int64_t c, int64_t channels, int64_t hw) {
  return channels_last ? (b * hw * channels + c) : ((b * channels + c) * hw);
}

// The level and image of roi k, or false when it pools nothing.
template <typename acc_t>
C10_HOST_DEVICE inline bool roi_level_and_image(const acc_t* rois, const int64_t* levels, int64_t k,
                                                int64_t num_levels, int64_t batch, int64_t& level,
                                                int64_t& image) {
  level = levels[k];
  const acc_t b = rois[k * 5];
  if (level < 0 || level >= num_levels || !valid_batch_index(b, batch)) {
    return false;
  }
  image = static_cast<int64_t>(b);
  return true;
}

template <typename acc_t>
C10_HOST_DEVICE inline bool too_many_samples(const RoiGeometry<acc_t>& g, const Args& a) {
  return exceeds_sample_limit(g, a.pooled_height, a.pooled_width);
}

// Output element `index` of the forward.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline void forward_element(int64_t index, const Levels<const scalar_t, acc_t>& lv,
                                            const acc_t* rois, const int64_t* levels, const Args& a,
                                            scalar_t* output) {
  int64_t k, c, ph, pw;
  cuda::decompose_nchw(index, a.channels, a.pooled_height, a.pooled_width, a.out_channels_last, k, c, ph, pw);
  int64_t l, b;
  if (!roi_level_and_image(rois, levels, k, lv.count, a.batch, l, b) || lv.height[l] == 0 || lv.width[l] == 0) {
    output[index] = static_cast<scalar_t>(acc_t(0));
    return;
  }
  const RoiGeometry<acc_t> g = roi_geometry(rois + k * 5, lv.scale[l], a.pooled_height, a.pooled_width,
                                            a.sampling_ratio, a.aligned, int64_t(0));
  if (too_many_samples(g, a)) {
    output[index] = static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN());
    return;
  }
  const int64_t height = lv.height[l], width = lv.width[l];
  const bool cl = lv.channels_last[l];
  const scalar_t* base = lv.data[l] + plane_offset(cl, b, c, a.channels, height * width);
  const int64_t ps = cl ? a.channels : 1;
  acc_t sum = 0;
  for (int64_t iy = 0; iy < g.grid_h; ++iy) {
    const acc_t y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
    for (int64_t ix = 0; ix < g.grid_w; ++ix) {
      ROI_EXT_COUNT_WORK(1);
      const acc_t x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
      BilinearTaps<acc_t> t;
      if (!bilinear_taps(y, x, height, width, t)) {
        continue;
      }
      sum += interpolate(t.w, static_cast<acc_t>(base[(t.y_low * width + t.x_low) * ps]),
                         static_cast<acc_t>(base[(t.y_low * width + t.x_high) * ps]),
                         static_cast<acc_t>(base[(t.y_high * width + t.x_low) * ps]),
                         static_cast<acc_t>(base[(t.y_high * width + t.x_high) * ps]));
    }
  }
  output[index] = static_cast<scalar_t>(sum / sample_count(g));
}

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(int64_t total, Levels<const scalar_t, acc_t> lv, const acc_t* __restrict__ rois,
                               const int64_t* __restrict__ levels, Args a, scalar_t* __restrict__ output) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    forward_element<scalar_t, acc_t>(index, lv, rois, levels, a, output);
  }
}

// Output-gradient element `index`: its shares, added atomically to the level's
// accumulator (acc_t, grad's layout).
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline void backward_atomic_element(int64_t index, const Levels<acc_t, acc_t>& lv,
                                                    const scalar_t* grad, GradStrides gs, const acc_t* rois,
                                                    const int64_t* levels, const Args& a) {
  int64_t k, c, ph, pw;
  cuda::decompose_nchw(index, a.channels, a.pooled_height, a.pooled_width, a.out_channels_last, k, c, ph, pw);
  int64_t l, b;
  if (!roi_level_and_image(rois, levels, k, lv.count, a.batch, l, b) || lv.height[l] == 0 || lv.width[l] == 0) {
    return;
  }
  const RoiGeometry<acc_t> g = roi_geometry(rois + k * 5, lv.scale[l], a.pooled_height, a.pooled_width,
                                            a.sampling_ratio, a.aligned, int64_t(0));
  if (too_many_samples(g, a)) {
    return;
  }
  const int64_t height = lv.height[l], width = lv.width[l];
  const bool cl = lv.channels_last[l];
  acc_t* base = lv.data[l] + plane_offset(cl, b, c, a.channels, height * width);
  const int64_t ps = cl ? a.channels : 1;
  const acc_t gval = static_cast<acc_t>(grad[k * gs.k + c * gs.c + ph * gs.h + pw * gs.w]);
  const acc_t count = sample_count(g);
  for (int64_t iy = 0; iy < g.grid_h; ++iy) {
    const acc_t y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
    for (int64_t ix = 0; ix < g.grid_w; ++ix) {
      ROI_EXT_COUNT_WORK(1);
      const acc_t x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
      BilinearTaps<acc_t> t;
      if (!bilinear_taps(y, x, height, width, t)) {
        continue;
      }
      atomicAdd(base + (t.y_low * width + t.x_low) * ps, corner_grad(gval, t.w.w1, count));
      atomicAdd(base + (t.y_low * width + t.x_high) * ps, corner_grad(gval, t.w.w2, count));
      atomicAdd(base + (t.y_high * width + t.x_low) * ps, corner_grad(gval, t.w.w3, count));
      atomicAdd(base + (t.y_high * width + t.x_high) * ps, corner_grad(gval, t.w.w4, count));
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_atomic_kernel(int64_t total, Levels<acc_t, acc_t> lv, const scalar_t* __restrict__ grad,
                                       GradStrides gs, const acc_t* __restrict__ rois,
                                       const int64_t* __restrict__ levels, Args a) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    backward_atomic_element<scalar_t, acc_t>(index, lv, grad, gs, rois, levels, a);
  }
}

// grad_input element `index` of the concatenation of every level's [B, C, H, W]
// (each in grad's layout): the sum, in the CPU kernel's order, of the shares of
// the rois of its image and level.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline void backward_gather_element(int64_t index, const Levels<scalar_t, acc_t>& lv,
                                                    const scalar_t* grad, GradStrides gs, const acc_t* rois,
                                                    const int64_t* levels, int64_t num_rois, const Args& a) {
  int64_t l = 0;
  while (l + 1 < lv.count && index >= lv.offset[l + 1]) {
    ++l;
  }
  const int64_t height = lv.height[l], width = lv.width[l];
  int64_t b, c, y, x;
  cuda::decompose_nchw(index - lv.offset[l], a.channels, height, width, a.out_channels_last, b, c, y, x);
  const acc_t yf = static_cast<acc_t>(y), xf = static_cast<acc_t>(x);
  acc_t sum = 0;
  for (int64_t k = 0; k < num_rois; ++k) {
    int64_t lk, bk;
    if (!roi_level_and_image(rois, levels, k, lv.count, a.batch, lk, bk) || lk != l || bk != b) {
      continue;
    }
    const RoiGeometry<acc_t> g = roi_geometry(rois + k * 5, lv.scale[l], a.pooled_height, a.pooled_width,
                                              a.sampling_ratio, a.aligned, int64_t(0));
    if (too_many_samples(g, a)) {
      continue;
    }
    // Every sample lies between start and start + pooled * bin; a pixel more
    // than two away from that span is never one of its taps.
    const acc_t end_h = g.start_h + static_cast<acc_t>(a.pooled_height) * g.bin_h;
    const acc_t end_w = g.start_w + static_cast<acc_t>(a.pooled_width) * g.bin_w;
    if (!(yf >= ::fmin(g.start_h, end_h) - acc_t(2) && yf <= ::fmax(g.start_h, end_h) + acc_t(2) &&
          xf >= ::fmin(g.start_w, end_w) - acc_t(2) && xf <= ::fmax(g.start_w, end_w) + acc_t(2))) {
      continue;
    }
    const acc_t count = sample_count(g);
    for (int64_t ph = 0; ph < a.pooled_height; ++ph) {
      for (int64_t pw = 0; pw < a.pooled_width; ++pw) {
        const acc_t gval = static_cast<acc_t>(grad[k * gs.k + c * gs.c + ph * gs.h + pw * gs.w]);
        for (int64_t iy = 0; iy < g.grid_h; ++iy) {
          AxisTaps<acc_t> ay;
          if (!axis_taps(sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h), height, ay) ||
              (ay.low != y && ay.high != y)) {
            continue;
          }
          for (int64_t ix = 0; ix < g.grid_w; ++ix) {
            ROI_EXT_COUNT_WORK(1);
            AxisTaps<acc_t> ax;
            if (!axis_taps(sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w), width, ax) ||
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
  lv.data[l][index - lv.offset[l]] = static_cast<scalar_t>(sum);
}

template <typename scalar_t, typename acc_t>
__global__ void backward_gather_kernel(int64_t total, Levels<scalar_t, acc_t> lv, const scalar_t* __restrict__ grad,
                                       GradStrides gs, const acc_t* __restrict__ rois,
                                       const int64_t* __restrict__ levels, int64_t num_rois, Args a) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    backward_gather_element<scalar_t, acc_t>(index, lv, grad, gs, rois, levels, num_rois, a);
  }
}

constexpr const char* kForward = "multi_scale_roi_align";
constexpr const char* kBackward = "_multi_scale_roi_align_backward";
constexpr const char* kForwardOutput = "multi_scale_roi_align: output for output_size (pooled_height, pooled_width)";
constexpr const char* kBackwardOutput =
    "_multi_scale_roi_align_backward: grad_input for (batch_size, channels, heights, widths)";

void check_level_count(size_t n, const char* op) {
  ROI_EXT_CHECK_VALUE(n <= size_t(kMaxLevels), op, ": at most ", kMaxLevels,
                      " feature levels on CUDA, got ", n);
}

template <typename scalar_t>
void launch_forward(const std::vector<Tensor>& dense, const std::vector<double>& scales, const Tensor& rois,
                    const Tensor& levels, const Args& args, cudaStream_t stream, Tensor& output) {
  using acc_t = opmath_t<scalar_t>;
  Levels<const scalar_t, acc_t> lv{};
  lv.count = static_cast<int64_t>(dense.size());
  for (size_t l = 0; l < dense.size(); ++l) {
    lv.data[l] = dense[l].const_data_ptr<scalar_t>();
    lv.height[l] = dense[l].size(2);
    lv.width[l] = dense[l].size(3);
    lv.scale[l] = static_cast<acc_t>(scales[l]);  // as torchvision passes it to its kernel
    lv.channels_last[l] = !dense[l].is_contiguous();
  }
  const int64_t total = output.numel();
  cuda::launch(forward_kernel<scalar_t, acc_t>, total, stream, total, lv, rois.const_data_ptr<acc_t>(),
               levels.const_data_ptr<int64_t>(), args, output.mutable_data_ptr<scalar_t>());
}

template <typename scalar_t>
std::vector<Tensor> launch_backward(const Tensor& grad, const Tensor& rois, const Tensor& levels,
                                    const std::vector<double>& scales, int64_t batch_size, int64_t channels,
                                    const std::vector<int64_t>& heights, const std::vector<int64_t>& widths,
                                    MemoryFormat fmt, const Args& args, bool deterministic, cudaStream_t stream) {
  using acc_t = opmath_t<scalar_t>;
  const int64_t num_levels = static_cast<int64_t>(scales.size());
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const GradStrides gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
  const bool nothing = grad.numel() == 0 || batch_size == 0 || channels == 0;
  std::vector<Tensor> result;
  if (deterministic && !nothing) {
    // Every element is written by the gather: no zero fill, no conversion.
    Levels<scalar_t, acc_t> lv{};
    lv.count = num_levels;
    lv.offset[0] = 0;
    for (int64_t l = 0; l < num_levels; ++l) {
      result.push_back(roi_ext::empty(kBackwardOutput, {batch_size, channels, heights[l], widths[l]},
                                      grad.scalar_type(), grad.device(), fmt));
      lv.data[l] = result.back().mutable_data_ptr<scalar_t>();
      lv.height[l] = heights[l];
      lv.width[l] = widths[l];
      lv.scale[l] = static_cast<acc_t>(scales[l]);
      lv.channels_last[l] = args.out_channels_last;
      lv.offset[l + 1] = lv.offset[l] + result.back().numel();
    }
    const int64_t total = lv.offset[num_levels];
    if (total > 0) {
      cuda::launch(backward_gather_kernel<scalar_t, acc_t>, total, stream, total, lv,
                   grad.const_data_ptr<scalar_t>(), gs, rois.const_data_ptr<acc_t>(),
                   levels.const_data_ptr<int64_t>(), rois.size(0), args);
    }
    return result;
  }
  std::vector<Tensor> acc;
  Levels<acc_t, acc_t> lv{};
  lv.count = num_levels;
  for (int64_t l = 0; l < num_levels; ++l) {
    acc.push_back(roi_ext::zeros(kBackwardOutput, {batch_size, channels, heights[l], widths[l]}, acc_type,
                                 grad.device(), fmt));
    lv.data[l] = acc.back().mutable_data_ptr<acc_t>();
    lv.height[l] = heights[l];
    lv.width[l] = widths[l];
    lv.scale[l] = static_cast<acc_t>(scales[l]);
    lv.channels_last[l] = args.out_channels_last;
  }
  if (!nothing) {
    const int64_t total = grad.numel();
    cuda::launch(backward_atomic_kernel<scalar_t, acc_t>, total, stream, total, lv, grad.const_data_ptr<scalar_t>(),
                 gs, rois.const_data_ptr<acc_t>(), levels.const_data_ptr<int64_t>(), args);
  }
  for (const Tensor& t : acc) {
    result.push_back(to_dtype(t, grad.scalar_type()));
  }
  return result;
}

Tensor multi_scale_roi_align_forward_cuda(std::vector<Tensor> features, Tensor rois, Tensor levels,
                                          std::vector<double> scales, int64_t pooled_height, int64_t pooled_width,
                                          int64_t sampling_ratio, bool aligned) {
  detail::check_multi_scale_forward_args(features, rois, levels, scales, pooled_height, pooled_width);
  const Tensor& f0 = features[0];
  ROI_EXT_CHECK(cuda::on_device(f0), kForward, ": features must be ", cuda::kDeviceTensor);
  check_level_count(features.size(), kForward);
  const cuda::DeviceGuard guard(f0);
  const cudaStream_t stream = cuda::current_stream(f0);

  const MemoryFormat fmt = nchw_memory_format(f0);
  const ScalarType acc_type = opmath_type(f0.scalar_type());
  const Tensor rois_ = cuda::rois_in_compute_type(rois, acc_type, f0.size(0), stream);
  const Tensor levels_ = contiguous(to_dtype(levels, ScalarType::Long), "levels");
  Tensor output = roi_ext::empty(kForwardOutput, {rois.size(0), f0.size(1), pooled_height, pooled_width},
                                 f0.scalar_type(), f0.device(), fmt);
  if (output.numel() == 0) {
    return output;
  }
  // Each level is read in its own layout; other strides are made dense (NCHW).
  std::vector<Tensor> dense;
  for (const Tensor& f : features) {
    dense.push_back((is_channels_last(f) && !f.is_contiguous())
                        ? f
                        : contiguous(f, "multi_scale_roi_align: features (contiguous copy)"));
  }
  const Args args{f0.size(0), f0.size(1), pooled_height, pooled_width, sampling_ratio, aligned,
                  fmt == MemoryFormat::ChannelsLast};
  THO_DISPATCH_V2(
      f0.scalar_type(), "multi_scale_roi_align_forward_cuda", AT_WRAP([&] {
        launch_forward<scalar_t>(dense, scales, rois_, levels_, args, stream, output);
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

std::vector<Tensor> multi_scale_roi_align_backward_cuda(Tensor grad, Tensor rois, Tensor levels,
                                                        std::vector<double> scales, int64_t pooled_height,
                                                        int64_t pooled_width, int64_t batch_size, int64_t channels,
                                                        std::vector<int64_t> heights, std::vector<int64_t> widths,
                                                        int64_t sampling_ratio, bool aligned, bool deterministic) {
  detail::check_multi_scale_backward_args(grad, rois, levels, scales, pooled_height, pooled_width, batch_size,
                                          channels, heights, widths);
  ROI_EXT_CHECK(cuda::on_device(grad), kBackward, ": grad must be ", cuda::kDeviceTensor);
  check_level_count(scales.size(), kBackward);
  const cuda::DeviceGuard guard(grad);
  const cudaStream_t stream = cuda::current_stream(grad);

  const MemoryFormat fmt = nchw_memory_format(grad);
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const Tensor rois_ = cuda::rois_in_compute_type(rois, acc_type, batch_size, stream);
  const Tensor levels_ = contiguous(to_dtype(levels, ScalarType::Long), "levels");
  const Args args{batch_size, channels, pooled_height, pooled_width, sampling_ratio, aligned,
                  fmt == MemoryFormat::ChannelsLast};
  return THO_DISPATCH_V2(
      grad.scalar_type(), "multi_scale_roi_align_backward_cuda", AT_WRAP([&]() -> std::vector<Tensor> {
        return launch_backward<scalar_t>(grad, rois_, levels_, scales, batch_size, channels, heights, widths, fmt,
                                         args, deterministic, stream);
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
}

}  // namespace

ROI_EXT_CUDA_LIBRARY_IMPL(m) {
  m.impl("multi_scale_roi_align", TORCH_BOX(&multi_scale_roi_align_forward_cuda));
  m.impl("_multi_scale_roi_align_backward", TORCH_BOX(&multi_scale_roi_align_backward_cuda));
}

}  // namespace roi_ext

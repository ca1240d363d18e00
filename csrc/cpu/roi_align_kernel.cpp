// CPU kernels of roi_ext::roi_align (also registered as roi_align_with_box_grad),
// roi_ext::_roi_align_backward and roi_ext::_roi_align_backward_rois: parallel
// loops around the per-roi building blocks of csrc/cpu/roi_align_cpu.h (sample
// tables, vectorised channels-last loops, in-place NCHW loops), which in turn
// use csrc/common/roi_align_math.h, the math the CUDA kernels share.
//
// Layouts. A channels-last input is read in place by the vectorised channel
// loops. An NCHW input is read in place, plane by plane, when its rois read few
// taps per pixel of the map (few rois on a large map: copying the map would
// cost more than the pooling), and through a channels-last copy when they read
// many (the 8-lane channel loops then win back the copy). The backward chooses
// the same way where it accumulates: in the gradient's own NCHW planes, or in a
// channels-last buffer converted once at the end. Half types are accumulated in
// float32 and rounded once (SPEC.md Part A3).
//
// Determinism (SPEC.md Part A15): the forward writes disjoint outputs. The
// backward partitions the work by (image, channel block): every gradient
// element is owned by one task, which adds the contributions of the rois of that
// image in the reference order (roi, bin, sample, corner), so the result is
// bitwise the same at any thread count and equals torchvision's serial kernel.
#include <algorithm>
#include <vector>

#include "../common/roi_align_args.h"
#include "../common/roi_align_math.h"
#include "../common/stable.h"
#include "channel_dot.h"
#include "cpu_utils.h"
#include "roi_align_cpu.h"

namespace roi_ext {
namespace {

using namespace roi_align_cpu;
using cpu::channel_block;
using cpu::grain_for;

constexpr const char* kForward = "roi_align";
constexpr const char* kBackward = "_roi_align_backward";
constexpr const char* kForwardOutput = "roi_align: output for output_size (pooled_height, pooled_width)";
constexpr const char* kBackwardOutput =
    "_roi_align_backward: grad_input for (batch_size, channels, height, width)";

// An NCHW map goes through channels-last memory when its rois read more than
// this many bilinear taps per pixel of the map (see the file comment; the same
// rule as multi_scale_roi_align's).
constexpr double kChannelsLastWhenTapsPerPixel = 4.0;

bool prefer_channels_last(int64_t num_rois, int64_t bins, int64_t sampling_ratio, int64_t batch, int64_t height,
                          int64_t width) {
  // Adaptive sampling: assume the common 2 x 2 grid.
  const double samples_per_bin = sampling_ratio > 0 ? double(sampling_ratio) * double(sampling_ratio) : 4.0;
  const double taps = 4.0 * double(num_rois) * double(bins) * samples_per_bin;
  const double pixels = double(batch) * double(height) * double(width);
  return taps > kChannelsLastWhenTapsPerPixel * pixels;
}

template <typename scalar_t>
void roi_align_forward_impl(
    const Tensor& input,  // [N, C, H, W], channels-last or dense NCHW memory
    bool input_channels_last,
    const Tensor& rois,  // in the compute type, contiguous
    const std::vector<int64_t>& batch_index,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode,
    bool output_channels_last,
    Tensor& output) {
  using acc_t = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1);
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  const int64_t hw = height * width;
  const int64_t bins = pooled_height * pooled_width;
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const acc_t scale = static_cast<acc_t>(spatial_scale);  // as torchvision passes it to its kernel
  const int64_t out_bin_stride = output_channels_last ? channels : 1;
  const int64_t out_c_stride = output_channels_last ? 1 : bins;

  const int64_t cblock = channel_block(channels, num_rois);
  const int64_t blocks = (channels + cblock - 1) / cblock;
  // About four samples of four taps per bin and channel.
  const int64_t grain = grain_for(16 * bins * cblock);
  cpu::parallel_for(0, num_rois * blocks, grain, [&](int64_t begin, int64_t end) {
    ForwardScratch<acc_t> w;
    int64_t geometry_of = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k = task / blocks;
      const int64_t c0 = (task % blocks) * cblock;
      const int64_t n = std::min(channels, c0 + cblock) - c0;
      if (k != geometry_of) {
        w.s.set_roi(roi_data + k * 5, k, scale, pooled_height, pooled_width, sampling_ratio, aligned,
                    roi_end_mode, kForward);
        geometry_of = k;
      }
      const int64_t b = batch_index[k];
      const ImageView<scalar_t> view = input_channels_last
          ? ImageView<scalar_t>{in + b * hw * channels + c0, channels, 1}
          : ImageView<scalar_t>{in + (b * channels + c0) * hw, 1, hw};
      scalar_t* out_k = output_channels_last ? out + k * bins * channels + c0 : out + (k * channels + c0) * bins;
      pool_roi<scalar_t, acc_t>(w, height, width, pooled_width, bins, view, n, out_k, out_bin_stride,
                                out_c_stride);
    }
  });
}

Tensor roi_align_forward_cpu(
    const Tensor& input,
    const Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode) {
  detail::check_roi_align_forward_args(input, rois, spatial_scale, pooled_height, pooled_width, roi_end_mode);
  ROI_EXT_CHECK(input.is_cpu(), "roi_align: input must be a CPU tensor, got ", device_of(input));

  const MemoryFormat fmt = detail::roi_align_memory_format(input);
  const ScalarType acc_type = opmath_type(input.scalar_type());
  const std::vector<int64_t> batch_index =
      batch_indices(rois, input.size(0), kForward, [](int64_t) { return true; });
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");

  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1);
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  if (height == 0 || width == 0) {
    // No pixel to sample: every bin is an average over nothing.
    return zeros(kForwardOutput, {num_rois, channels, pooled_height, pooled_width}, input.scalar_type(),
                 input.device(), fmt);
  }
  Tensor output = empty(kForwardOutput, {num_rois, channels, pooled_height, pooled_width}, input.scalar_type(),
                        input.device(), fmt);
  if (output.numel() == 0) {
    return output;
  }
  const bool channels_last = fmt == MemoryFormat::ChannelsLast ||
      prefer_channels_last(num_rois, pooled_height * pooled_width, sampling_ratio, input.size(0), height, width);
  const Tensor input_ = channels_last
      ? contiguous(input, "roi_align: input (channels-last copy)", MemoryFormat::ChannelsLast)
      : contiguous(input, "roi_align: input (contiguous copy)");
  THO_DISPATCH_V2(
      input.scalar_type(), "roi_align_forward_cpu", AT_WRAP([&] {
        roi_align_forward_impl<scalar_t>(input_, channels_last, rois_, batch_index, spatial_scale, pooled_height,
                                         pooled_width, sampling_ratio, aligned, roi_end_mode,
                                         fmt == MemoryFormat::ChannelsLast, output);
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

// grad: the output gradient, read through its strides. grad_input: a zeroed
// accumulator in acc_t, channels-last or NCHW memory (`accumulate_channels_last`).
template <typename scalar_t>
void roi_align_backward_impl(
    const Tensor& grad,
    const Tensor& rois,  // in the compute type, contiguous
    const std::vector<int64_t>& batch_index,
    double spatial_scale,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode,
    bool accumulate_channels_last,
    Tensor& grad_input) {
  using acc_t = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t pooled_height = grad.size(2);
  const int64_t pooled_width = grad.size(3);
  const int64_t bins = pooled_height * pooled_width;
  const int64_t hw = height * width;
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const int64_t gs0 = grad.stride(0), gs1 = grad.stride(1), gs2 = grad.stride(2), gs3 = grad.stride(3);
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  acc_t* gi = grad_input.mutable_data_ptr<acc_t>();
  const acc_t scale = static_cast<acc_t>(spatial_scale);

  // The rois of each image in ascending order (the reference order).
  const cpu::RoisByImage by_image = cpu::rois_by_image(batch_index, batch_size);

  const int64_t cblock = channel_block(channels, batch_size, /*tasks_per_thread=*/1);
  const int64_t blocks = (channels + cblock - 1) / cblock;
  const int64_t rois_per_image = (num_rois + batch_size - 1) / std::max<int64_t>(batch_size, 1);
  const int64_t grain = grain_for(16 * rois_per_image * bins * cblock);
  cpu::parallel_for(0, batch_size * blocks, grain, [&](int64_t begin, int64_t end) {
    RoiSamples<acc_t> s;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks;
      const int64_t c0 = (task % blocks) * cblock;
      const int64_t n = std::min(channels, c0 + cblock) - c0;
      const GradView<acc_t> view = accumulate_channels_last
          ? GradView<acc_t>{gi + b * hw * channels + c0, channels, 1}
          : GradView<acc_t>{gi + (b * channels + c0) * hw, 1, hw};
      for (int64_t j = by_image.begin[b]; j < by_image.begin[b + 1]; ++j) {
        const int64_t k = by_image.order[j];
        s.set_roi(roi_data + k * 5, k, scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode,
                  kBackward);
        const GradOutView<scalar_t> go{g + k * gs0 + c0 * gs1, gs1, gs2, gs3};
        scatter_roi<scalar_t, acc_t>(s, height, width, pooled_width, bins, go, view, n);
      }
    }
  });
}

Tensor roi_align_backward_cpu(
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
    bool /*deterministic: the CPU kernel always is*/) {
  detail::check_roi_align_backward_args(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                                        height, width, roi_end_mode);
  ROI_EXT_CHECK(grad.is_cpu(), "_roi_align_backward: grad must be a CPU tensor, got ", device_of(grad));

  const MemoryFormat fmt = detail::roi_align_memory_format(grad);
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const std::vector<int64_t> batch_index =
      batch_indices(rois, batch_size, kBackward, [](int64_t) { return true; });
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");

  // Where to accumulate (see the file comment): channels-last memory for a
  // channels-last gradient or many rois, else the NCHW planes themselves.
  const bool channels_last = fmt == MemoryFormat::ChannelsLast ||
      prefer_channels_last(rois.size(0), pooled_height * pooled_width, sampling_ratio, batch_size, height, width);
  const MemoryFormat acc_fmt = channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
  Tensor grad_input = zeros(kBackwardOutput, {batch_size, channels, height, width}, acc_type, grad.device(), acc_fmt);
  if (grad.numel() > 0 && grad_input.numel() > 0) {
    // Channels-last accumulation reads the output gradient channels-last too,
    // so its channel loop is contiguous (a small copy: one value per bin).
    const Tensor grad_ = channels_last
        ? contiguous(grad, "_roi_align_backward: grad (channels-last copy)", MemoryFormat::ChannelsLast)
        : grad;
    THO_DISPATCH_V2(
        grad.scalar_type(), "roi_align_backward_cpu", AT_WRAP([&] {
          roi_align_backward_impl<scalar_t>(grad_, rois_, batch_index, spatial_scale, batch_size, channels, height,
                                            width, sampling_ratio, aligned, roi_end_mode, channels_last,
                                            grad_input);
        }),
        AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  }
  if (grad.scalar_type() == acc_type && acc_fmt == fmt) {
    return grad_input;
  }
  Tensor result = empty(kBackwardOutput, {batch_size, channels, height, width}, grad.scalar_type(), grad.device(),
                        fmt);
  copy_into(result, grad_input);
  return result;
}

// ---------------------------------------------------------------------------
// _roi_align_backward_rois: the gradient of roi_align with respect to the roi
// coordinates (roi_align(..., box_grad=True); the math is in roi_align_math.h).
// A task per roi; each roi sums its terms in one fixed order (bin row, sample
// row, bin column, sample column, channel), so the result is bitwise the same
// at any thread count.

constexpr const char* kBackwardRois = "_roi_align_backward_rois";
constexpr const char* kBackwardRoisOutput = "_roi_align_backward_rois: grad_rois for rois";

template <typename scalar_t>
void roi_align_backward_rois_impl(
    const Tensor& grad,  // [K, C, PH, PW] of scalar_t, read through its strides
    const Tensor& input,  // [N, C, H, W], channels-last or dense NCHW memory
    bool input_channels_last,
    const Tensor& rois,  // in the compute type, contiguous
    const std::vector<int64_t>& batch_index,
    double spatial_scale,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode,
    Tensor& grad_rois) {  // [K, 5] in the compute type, zeroed
  using acc_t = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1);
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  const int64_t hw = height * width;
  const int64_t pooled_height = grad.size(2);
  const int64_t pooled_width = grad.size(3);
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const int64_t gs0 = grad.stride(0), gs1 = grad.stride(1), gs2 = grad.stride(2), gs3 = grad.stride(3);
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  acc_t* out = grad_rois.mutable_data_ptr<acc_t>();
  const acc_t scale = static_cast<acc_t>(spatial_scale);  // as the forward rounds it

  // About four samples per bin, each reading four taps per channel.
  const double work = 16.0 * double(pooled_height) * double(pooled_width) * double(channels);
  const int64_t grain = grain_for(static_cast<int64_t>(std::min(work, 1e9)));
  cpu::parallel_for(0, num_rois, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gvals;
    for (int64_t k = begin; k < end; ++k) {
      const acc_t* roi = roi_data + k * 5;
      const RoiGeometry<acc_t> geo =
          roi_geometry(roi, scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode);
      ROI_EXT_CHECK_VALUE(
          !exceeds_sample_limit(geo, pooled_height, pooled_width), kBackwardRois, ": roi ", k, " would need ",
          roi_sample_total(pooled_height, pooled_width, geo.grid_h, geo.grid_w),
          " bilinear samples (output_size x sampling_ratio^2, or adaptive sampling of a "
          "huge roi); pass a smaller positive sampling_ratio");
      const int64_t b = batch_index[k];
      const ImageView<scalar_t> v = input_channels_last
          ? ImageView<scalar_t>{in + b * hw * channels, channels, 1}
          : ImageView<scalar_t>{in + b * channels * hw, 1, hw};
      const scalar_t* gk = g + k * gs0;
      // The roi's output gradient in acc_t, channels innermost: gvals[bin * C + c].
      gvals.resize(static_cast<size_t>(pooled_height * pooled_width * channels));
      for (int64_t ph = 0; ph < pooled_height; ++ph) {
        for (int64_t pw = 0; pw < pooled_width; ++pw) {
          acc_t* dst = gvals.data() + (ph * pooled_width + pw) * channels;
          for (int64_t c = 0; c < channels; ++c) {
            dst[c] = static_cast<acc_t>(gk[c * gs1 + ph * gs2 + pw * gs3]);
          }
        }
      }
      RoiCoordGrad<acc_t> acc{acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
      for (int64_t ph = 0; ph < pooled_height; ++ph) {
        for (int64_t iy = 0; iy < geo.grid_h; ++iy) {
          const acc_t y = sample_coord(geo.start_h, ph, geo.bin_h, iy, geo.grid_h);
          AxisTaps<acc_t> ay;
          acc_t slope_y;
          if (!axis_taps_slope(y, height, ay, slope_y)) {
            continue;
          }
          const CoordGrad<acc_t> cy =
              sample_coord_grad(scale, ph, iy, geo.grid_h, pooled_height, geo.size_clamped_h);
          for (int64_t pw = 0; pw < pooled_width; ++pw) {
            for (int64_t ix = 0; ix < geo.grid_w; ++ix) {
              const acc_t x = sample_coord(geo.start_w, pw, geo.bin_w, ix, geo.grid_w);
              AxisTaps<acc_t> ax;
              acc_t slope_x;
              if (!axis_taps_slope(x, width, ax, slope_x) || (slope_x == acc_t(0) && slope_y == acc_t(0))) {
                continue;  // outside the map, or clamped along both axes: no derivative
              }
              const CoordGrad<acc_t> cx =
                  sample_coord_grad(scale, pw, ix, geo.grid_w, pooled_width, geo.size_clamped_w);
              const int64_t ps = v.pixel_stride;
              const int64_t p1 = (ay.low * width + ax.low) * ps, p2 = (ay.low * width + ax.high) * ps;
              const int64_t p3 = (ay.high * width + ax.low) * ps, p4 = (ay.high * width + ax.high) * ps;
              // The slopes are linear in the pixel values: contract the output
              // gradient with the channels of each corner first.
              const acc_t* gc = gvals.data() + (ph * pooled_width + pw) * channels;
              const int64_t cs = v.channel_stride;
              const SampleSlopes<acc_t> d = bilinear_slopes(
                  ay, slope_y, ax, slope_x, cpu::dot_channels<acc_t, scalar_t>(gc, v.image + p1, cs, channels),
                  cpu::dot_channels<acc_t, scalar_t>(gc, v.image + p2, cs, channels),
                  cpu::dot_channels<acc_t, scalar_t>(gc, v.image + p3, cs, channels),
                  cpu::dot_channels<acc_t, scalar_t>(gc, v.image + p4, cs, channels));
              add_sample_coord_grad(acc, d.d_dy, d.d_dx, cy, cx);
            }
          }
        }
      }
      const acc_t count = sample_count(geo);
      out[k * 5 + 1] = acc.x1 / count;
      out[k * 5 + 2] = acc.y1 / count;
      out[k * 5 + 3] = acc.x2 / count;
      out[k * 5 + 4] = acc.y2 / count;
    }
  });
}

Tensor roi_align_backward_rois_cpu(
    const Tensor& grad,
    const Tensor& input,
    const Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode) {
  detail::check_roi_align_backward_rois_args(grad, input, rois, spatial_scale, pooled_height, pooled_width,
                                             roi_end_mode);
  ROI_EXT_CHECK(input.is_cpu(), kBackwardRois, ": input must be a CPU tensor, got ", device_of(input));

  const ScalarType acc_type = opmath_type(input.scalar_type());
  const std::vector<int64_t> batch_index =
      batch_indices(rois, input.size(0), kBackwardRois, [](int64_t) { return true; });
  Tensor grad_rois = zeros(kBackwardRoisOutput, {rois.size(0), 5}, acc_type, rois.device());
  if (grad.numel() > 0 && input.numel() > 0) {
    const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");
    // The channels of a pixel are read together (a dot product with the output
    // gradient per corner): a channels-last input in place; an NCHW one through
    // a channels-last copy when its rois read many taps per pixel (the forward's
    // rule), else through its planes.
    const bool channels_last = detail::roi_align_memory_format(input) == MemoryFormat::ChannelsLast ||
        prefer_channels_last(rois.size(0), pooled_height * pooled_width, sampling_ratio, input.size(0),
                             input.size(2), input.size(3));
    const Tensor input_ = channels_last
        ? contiguous(input, "_roi_align_backward_rois: input (channels-last copy)", MemoryFormat::ChannelsLast)
        : contiguous(input, "_roi_align_backward_rois: input (contiguous copy)");
    const Tensor grad_ = to_dtype(grad, input.scalar_type());
    THO_DISPATCH_V2(
        input.scalar_type(), "roi_align_backward_rois_cpu", AT_WRAP([&] {
          roi_align_backward_rois_impl<scalar_t>(grad_, input_, channels_last, rois_, batch_index, spatial_scale,
                                                 sampling_ratio, aligned, roi_end_mode, grad_rois);
        }),
        AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  }
  return to_dtype(grad_rois, rois.scalar_type());
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(roi_ext, CPU, m) {
  m.impl("roi_align", TORCH_BOX(&roi_align_forward_cpu));
  m.impl("_roi_align_backward", TORCH_BOX(&roi_align_backward_cpu));
  // roi_align(..., box_grad=True): the same forward, another autograd formula.
  m.impl("roi_align_with_box_grad", TORCH_BOX(&roi_align_forward_cpu));
  m.impl("_roi_align_backward_rois", TORCH_BOX(&roi_align_backward_rois_cpu));
}

}  // namespace roi_ext

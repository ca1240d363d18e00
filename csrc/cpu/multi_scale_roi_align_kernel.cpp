// CPU kernels of roi_ext::multi_scale_roi_align and its backward: ROIAlign over
// the levels of a feature pyramid in one call, each roi pooled from the level
// `levels[k]` with that level's spatial scale. The loops are roi_align's
// (csrc/cpu/roi_align_cpu.h over csrc/common/roi_align_math.h), so every roi's
// result is bitwise what roi_align gives on its level, i.e. torchvision's
// MultiScaleRoIAlign (which calls roi_align once per level, aligned=False).
//
// A roi whose level lies outside [0, num_levels) pools nothing: its output is 0
// and it receives no gradient. (torchvision's pooler leaves such rows at 0 too:
// boxes of negative area get a NaN level, which matches no level.)
//
// Layouts: channels-last levels are read in place by the vectorised channel
// loops; NCHW levels in place by the per-plane loops when they have few rois
// (no copy of a large map for a handful of rois), else through a channels-last
// copy (level_view). The output has the memory format of features[0]; the
// gradients that of grad.
//
// Determinism (SPEC.md Part A15): the forward writes disjoint outputs. The
// backward partitions the work by (image, level, channel block): every gradient
// element is owned by one task, which adds the contributions of its rois in
// ascending roi order, so the result is bitwise the same at any thread count and
// equals torchvision's serial per-level kernels.
#include <algorithm>
#include <vector>

#include "../common/multi_scale_roi_align_args.h"
#include "../common/roi_align_math.h"
#include "../common/stable.h"
#include "cpu_utils.h"
#include "roi_align_cpu.h"

namespace roi_ext {
namespace {

using namespace roi_align_cpu;
using cpu::channel_block;
using cpu::grain_for;

constexpr const char* kForward = "multi_scale_roi_align";
constexpr const char* kBackward = "_multi_scale_roi_align_backward";
constexpr const char* kForwardOutput = "multi_scale_roi_align: output for output_size (pooled_height, pooled_width)";
constexpr const char* kBackwardOutput =
    "_multi_scale_roi_align_backward: grad_input for (batch_size, channels, heights, widths)";

// levels as int64 values on the host.
std::vector<int64_t> level_values(const Tensor& levels) {
  const Tensor l = contiguous(to_dtype(levels, ScalarType::Long), "levels");
  const int64_t* p = l.const_data_ptr<int64_t>();
  return std::vector<int64_t>(p, p + l.numel());
}

// One feature level as the kernels read it.
struct Level {
  Tensor data;  // keeps a copy alive when one was needed
  int64_t height, width;
  bool channels_last;
};

// A channels-last copy of an NCHW level pays for itself when its rois read
// many more taps than the level has pixels: the channels-last loops run 8
// channels at a time, the NCHW loops one. (Measured on the FPN pooler of an
// 800 x 1000 image pair: 1000 box rois read the levels through the copy 3x
// faster; 32 mask rois read them faster in place.)
constexpr double kCopyWhenTapsPerPixel = 4.0;

// A level in place when it is channels-last, or NCHW with few rois; else a
// channels-last copy (many rois) or a dense NCHW copy (other strides).
Level level_view(const Tensor& f, int64_t rois_on_level, int64_t bins, int64_t sampling_ratio) {
  if (is_channels_last(f) && !f.is_contiguous()) {
    return Level{f, f.size(2), f.size(3), true};
  }
  const double samples_per_bin = sampling_ratio > 0 ? double(sampling_ratio) * double(sampling_ratio) : 4.0;
  const double taps = 4.0 * double(rois_on_level) * double(bins) * samples_per_bin;
  const double pixels = double(f.size(0)) * double(f.size(2)) * double(f.size(3));
  if (taps > kCopyWhenTapsPerPixel * pixels) {
    return Level{contiguous(f, "multi_scale_roi_align: features (channels-last copy)", MemoryFormat::ChannelsLast),
                 f.size(2), f.size(3), true};
  }
  return Level{contiguous(f, "multi_scale_roi_align: features (contiguous copy)"), f.size(2), f.size(3), false};
}

template <typename scalar_t>
void forward_impl(const std::vector<Level>& lv, const std::vector<int64_t>& level, const std::vector<int64_t>& batch,
                  const Tensor& rois, const std::vector<double>& scales, int64_t pooled_height,
                  int64_t pooled_width, int64_t sampling_ratio, bool aligned, bool output_channels_last,
                  Tensor& output) {
  using acc_t = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t num_levels = static_cast<int64_t>(lv.size());
  const int64_t channels = output.size(1);
  const int64_t bins = pooled_height * pooled_width;
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  std::vector<const scalar_t*> data(num_levels);
  std::vector<acc_t> scale(num_levels);
  for (int64_t l = 0; l < num_levels; ++l) {
    data[l] = lv[l].data.const_data_ptr<scalar_t>();
    scale[l] = static_cast<acc_t>(scales[l]);  // as torchvision passes it to its kernel
  }
  const int64_t cblock = channel_block(channels, num_rois);
  const int64_t blocks = (channels + cblock - 1) / cblock;
  const int64_t grain = grain_for(16 * bins * cblock);
  const int64_t out_bin_stride = output_channels_last ? channels : 1;
  const int64_t out_c_stride = output_channels_last ? 1 : bins;
  cpu::parallel_for(0, num_rois * blocks, grain, [&](int64_t begin, int64_t end) {
    ForwardScratch<acc_t> w;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k = task / blocks;
      const int64_t c0 = (task % blocks) * cblock;
      const int64_t n = std::min(channels, c0 + cblock) - c0;
      scalar_t* out_k = output_channels_last ? out + k * bins * channels + c0 : out + (k * channels + c0) * bins;
      const int64_t l = level[k];
      if (l < 0 || l >= num_levels || lv[l].height == 0 || lv[l].width == 0) {
        // No level, or no pixel to sample: every bin is an average over nothing.
        for (int64_t c = 0; c < n; ++c) {
          for (int64_t bin = 0; bin < bins; ++bin) {
            out_k[bin * out_bin_stride + c * out_c_stride] = scalar_t(0);
          }
        }
        continue;
      }
      const Level& L = lv[l];
      const int64_t hw = L.height * L.width;
      const ImageView<scalar_t> view =
          L.channels_last ? ImageView<scalar_t>{data[l] + batch[k] * hw * channels + c0, channels, 1}
                          : ImageView<scalar_t>{data[l] + (batch[k] * channels + c0) * hw, 1, hw};
      w.s.set_roi(roi_data + k * 5, k, scale[l], pooled_height, pooled_width, sampling_ratio, aligned, 0, kForward);
      pool_roi<scalar_t, acc_t>(w, L.height, L.width, pooled_width, bins, view, n, out_k, out_bin_stride,
                                out_c_stride);
    }
  });
}

Tensor multi_scale_roi_align_forward_cpu(std::vector<Tensor> features, Tensor rois, Tensor levels,
                                         std::vector<double> scales, int64_t pooled_height, int64_t pooled_width,
                                         int64_t sampling_ratio, bool aligned) {
  detail::check_multi_scale_forward_args(features, rois, levels, scales, pooled_height, pooled_width);
  const Tensor& f0 = features[0];
  ROI_EXT_CHECK(f0.is_cpu(), kForward, ": features must be CPU tensors, got ", device_of(f0));

  const MemoryFormat fmt = nchw_memory_format(f0);
  const int64_t num_levels = static_cast<int64_t>(features.size());
  const std::vector<int64_t> level = level_values(levels);
  const std::vector<int64_t> batch = batch_indices(rois, f0.size(0), kForward, [&](int64_t k) {
    return level[k] >= 0 && level[k] < num_levels;
  });
  const ScalarType acc_type = opmath_type(f0.scalar_type());
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");

  Tensor output = empty(kForwardOutput, {rois.size(0), f0.size(1), pooled_height, pooled_width}, f0.scalar_type(),
                        f0.device(), fmt);
  if (output.numel() == 0) {
    return output;
  }
  std::vector<int64_t> rois_on_level(num_levels, 0);
  for (int64_t l : level) {
    if (l >= 0 && l < num_levels) {
      ++rois_on_level[l];
    }
  }
  std::vector<Level> lv;
  lv.reserve(features.size());
  for (int64_t l = 0; l < num_levels; ++l) {
    lv.push_back(level_view(features[l], rois_on_level[l], pooled_height * pooled_width, sampling_ratio));
  }
  THO_DISPATCH_V2(
      f0.scalar_type(), "multi_scale_roi_align_forward_cpu", AT_WRAP([&] {
        forward_impl<scalar_t>(lv, level, batch, rois_, scales, pooled_height, pooled_width, sampling_ratio,
                               aligned, fmt == MemoryFormat::ChannelsLast, output);
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

template <typename scalar_t>
void backward_impl(const Tensor& grad, const std::vector<int64_t>& level, const std::vector<int64_t>& batch,
                   const Tensor& rois, const std::vector<double>& scales, int64_t batch_size, int64_t channels,
                   const std::vector<int64_t>& heights, const std::vector<int64_t>& widths, int64_t sampling_ratio,
                   bool aligned, bool channels_last, std::vector<Tensor>& acc) {
  using acc_t = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t num_levels = static_cast<int64_t>(acc.size());
  const int64_t pooled_height = grad.size(2);
  const int64_t pooled_width = grad.size(3);
  const int64_t bins = pooled_height * pooled_width;
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const int64_t gs0 = grad.stride(0), gs1 = grad.stride(1), gs2 = grad.stride(2), gs3 = grad.stride(3);
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  std::vector<acc_t*> gi(num_levels);
  std::vector<acc_t> scale(num_levels);
  for (int64_t l = 0; l < num_levels; ++l) {
    gi[l] = acc[l].mutable_data_ptr<acc_t>();
    scale[l] = static_cast<acc_t>(scales[l]);
  }

  // Rois of each (image, level) group in ascending order (a stable counting
  // sort), so the task owning a group visits them in the reference order.
  const int64_t groups = batch_size * num_levels;
  std::vector<int64_t> group_begin(groups + 1, 0);
  auto group_of = [&](int64_t k) { return batch[k] * num_levels + level[k]; };
  for (int64_t k = 0; k < num_rois; ++k) {
    if (batch[k] >= 0) {
      ++group_begin[group_of(k) + 1];
    }
  }
  for (int64_t i = 0; i < groups; ++i) {
    group_begin[i + 1] += group_begin[i];
  }
  std::vector<int64_t> order(group_begin[groups]);
  {
    std::vector<int64_t> next(group_begin.begin(), group_begin.end() - 1);
    for (int64_t k = 0; k < num_rois; ++k) {
      if (batch[k] >= 0) {
        order[next[group_of(k)]++] = k;
      }
    }
  }

  const int64_t cblock = channel_block(channels, groups, /*tasks_per_thread=*/1);
  const int64_t blocks = (channels + cblock - 1) / cblock;
  const int64_t rois_per_group = (num_rois + groups - 1) / std::max<int64_t>(groups, 1);
  const int64_t grain = grain_for(16 * rois_per_group * bins * cblock);
  cpu::parallel_for(0, groups * blocks, grain, [&](int64_t begin, int64_t end) {
    RoiSamples<acc_t> s;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / blocks;
      const int64_t b = group / num_levels;
      const int64_t l = group % num_levels;
      const int64_t height = heights[l], width = widths[l];
      if (height == 0 || width == 0 || group_begin[group] == group_begin[group + 1]) {
        continue;
      }
      const int64_t c0 = (task % blocks) * cblock;
      const int64_t n = std::min(channels, c0 + cblock) - c0;
      const int64_t hw = height * width;
      const GradView<acc_t> view = channels_last ? GradView<acc_t>{gi[l] + b * hw * channels + c0, channels, 1}
                                                 : GradView<acc_t>{gi[l] + (b * channels + c0) * hw, 1, hw};
      for (int64_t j = group_begin[group]; j < group_begin[group + 1]; ++j) {
        const int64_t k = order[j];
        s.set_roi(roi_data + k * 5, k, scale[l], pooled_height, pooled_width, sampling_ratio, aligned, 0, kBackward);
        const GradOutView<scalar_t> go{g + k * gs0 + c0 * gs1, gs1, gs2, gs3};
        scatter_roi<scalar_t, acc_t>(s, height, width, pooled_width, bins, go, view, n);
      }
    }
  });
}

std::vector<Tensor> multi_scale_roi_align_backward_cpu(Tensor grad, Tensor rois, Tensor levels,
                                                       std::vector<double> scales, int64_t pooled_height,
                                                       int64_t pooled_width, int64_t batch_size, int64_t channels,
                                                       std::vector<int64_t> heights, std::vector<int64_t> widths,
                                                       int64_t sampling_ratio, bool aligned,
                                                       bool /*deterministic: the CPU kernel always is*/) {
  detail::check_multi_scale_backward_args(grad, rois, levels, scales, pooled_height, pooled_width, batch_size,
                                          channels, heights, widths);
  ROI_EXT_CHECK(grad.is_cpu(), kBackward, ": grad must be a CPU tensor, got ", device_of(grad));

  const MemoryFormat fmt = nchw_memory_format(grad);
  const bool channels_last = fmt == MemoryFormat::ChannelsLast;
  const int64_t num_levels = static_cast<int64_t>(scales.size());
  const std::vector<int64_t> level = level_values(levels);
  const std::vector<int64_t> batch = batch_indices(rois, batch_size, kBackward, [&](int64_t k) {
    return level[k] >= 0 && level[k] < num_levels;
  });
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");

  // Accumulate in acc_t (float32 for half types, Part A3) in grad's memory
  // format; converted once at the end when grad is a half type.
  std::vector<Tensor> acc;
  acc.reserve(num_levels);
  for (int64_t l = 0; l < num_levels; ++l) {
    acc.push_back(zeros(kBackwardOutput, {batch_size, channels, heights[l], widths[l]}, acc_type, grad.device(), fmt));
  }
  if (grad.numel() > 0 && batch_size > 0 && channels > 0) {
    THO_DISPATCH_V2(
        grad.scalar_type(), "multi_scale_roi_align_backward_cpu", AT_WRAP([&] {
          backward_impl<scalar_t>(grad, level, batch, rois_, scales, batch_size, channels, heights, widths,
                                  sampling_ratio, aligned, channels_last, acc);
        }),
        AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  }
  if (grad.scalar_type() == acc_type) {
    return acc;
  }
  std::vector<Tensor> result;
  result.reserve(num_levels);
  for (int64_t l = 0; l < num_levels; ++l) {
    Tensor r = empty(kBackwardOutput, {batch_size, channels, heights[l], widths[l]}, grad.scalar_type(),
                     grad.device(), fmt);
    copy_into(r, acc[l]);
    result.push_back(r);
  }
  return result;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(roi_ext, CPU, m) {
  m.impl("multi_scale_roi_align", TORCH_BOX(&multi_scale_roi_align_forward_cpu));
  m.impl("_multi_scale_roi_align_backward", TORCH_BOX(&multi_scale_roi_align_backward_cpu));
}

}  // namespace roi_ext

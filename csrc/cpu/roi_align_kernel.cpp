// CPU kernels of roi_ext::roi_align and roi_ext::_roi_align_backward: thin
// parallel loops around csrc/common/roi_align_math.h.
//
// Both kernels first turn a roi into its list of valid bilinear samples
// (RoiSamples: pixel indices and weights, grouped by output bin), then loop over
// channels, so the per-sample math runs once per roi rather than once per
// channel.
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
#include "cpu_utils.h"
#include "vec.h"

namespace roi_ext {
namespace {

using namespace roi_align_math;
using cpu::channel_block;
using cpu::grain_for;

constexpr const char* kForwardOutput = "roi_align: output for output_size (pooled_height, pooled_width)";
constexpr const char* kBackwardOutput =
    "_roi_align_backward: grad_input for (batch_size, channels, height, width)";

// One roi holds at most this many samples in total (pooled_h * pooled_w *
// grid_h * grid_w); beyond it the call is refused rather than allocating
// gigabytes of sample tables.
constexpr double kMaxSamplesPerRoi = double(int64_t(1) << 26);

template <typename T>
struct Tap {
  int64_t p1, p2, p3, p4;  // pixel indices y * W + x of the four corners
  BilinearWeights<T> w;
};

// The valid samples of one roi, grouped by bin: the taps of bin (ph, pw) are
// taps[bin_begin[ph * PW + pw] .. bin_begin[ph * PW + pw + 1]).
template <typename T>
struct RoiSamples {
  std::vector<Tap<T>> taps;
  std::vector<int64_t> bin_begin;
  T count = T(1);

  void compute(
      const T* roi,
      int64_t k,
      T spatial_scale,
      int64_t height,
      int64_t width,
      int64_t pooled_height,
      int64_t pooled_width,
      int64_t sampling_ratio,
      bool aligned,
      int64_t roi_end_mode) {
    const RoiGeometry<T> g = roi_geometry(
        roi,
        spatial_scale,
        pooled_height,
        pooled_width,
        sampling_ratio,
        aligned,
        roi_end_mode);
    count = sample_count(g);
    const double total = double(pooled_height) * double(pooled_width) *
        double(g.grid_h) * double(g.grid_w);
    ROI_EXT_CHECK_VALUE(
        total <= kMaxSamplesPerRoi,
        "roi_align: roi ",
        k,
        " would need ",
        total,
        " bilinear samples (output_size x sampling_ratio^2, or adaptive sampling of a "
        "huge roi); pass a smaller positive sampling_ratio");
    taps.clear();
    taps.reserve(static_cast<size_t>(total));
    bin_begin.resize(pooled_height * pooled_width + 1);
    int64_t bin = 0;
    for (int64_t ph = 0; ph < pooled_height; ++ph) {
      for (int64_t pw = 0; pw < pooled_width; ++pw, ++bin) {
        bin_begin[bin] = static_cast<int64_t>(taps.size());
        for (int64_t iy = 0; iy < g.grid_h; ++iy) {
          const T y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
          for (int64_t ix = 0; ix < g.grid_w; ++ix) {
            const T x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
            BilinearTaps<T> t;
            if (!bilinear_taps(y, x, height, width, t)) {
              continue;
            }
            taps.push_back(Tap<T>{
                t.y_low * width + t.x_low,
                t.y_low * width + t.x_high,
                t.y_high * width + t.x_low,
                t.y_high * width + t.x_high,
                t.w});
          }
        }
      }
    }
    bin_begin[bin] = static_cast<int64_t>(taps.size());
  }
};

// Validates every batch index (Part A12) before any memory is touched.
template <typename T>
void check_batch_indices(const T* rois, int64_t num_rois, int64_t batch_size, const char* op) {
  for (int64_t k = 0; k < num_rois; ++k) {
    const T b = rois[k * 5];
    if (!valid_batch_index(b, batch_size)) {
      detail::throw_bad_batch_index(op, k, static_cast<double>(b), batch_size);
    }
  }
}

// Element types whose channel loops run 8 float lanes at a time (vec.h).
template <typename scalar_t>
constexpr bool kVectorised = std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>;

// The bins of one roi for channels [c0, c0 + n) of a channels-last image:
// out[bin * out_bin_stride + c * out_c_stride] = (sum of the bin's samples) / count.
// `image` points at channel c0 of pixel (0, 0) of the roi's image.
template <typename scalar_t, typename acc_t>
ROI_EXT_ALWAYS_INLINE void roi_bins_channels_last(
    const RoiSamples<acc_t>& s,
    int64_t bins,
    const scalar_t* image,
    int64_t channels,
    int64_t n,
    scalar_t* out,
    int64_t out_bin_stride,
    int64_t out_c_stride) {
  for (int64_t bin = 0; bin < bins; ++bin) {
    const Tap<acc_t>* first = s.taps.data() + s.bin_begin[bin];
    const Tap<acc_t>* last = s.taps.data() + s.bin_begin[bin + 1];
    scalar_t* o = out + bin * out_bin_stride;
    int64_t c = 0;
    if constexpr (kVectorised<scalar_t>) {
      for (; c + cpu::kLanes <= n; c += cpu::kLanes) {
        cpu::vf8 acc = cpu::splat8(0.f);
        for (const Tap<acc_t>* t = first; t != last; ++t) {
          const cpu::vf8 v1 = cpu::load8(image + t->p1 * channels + c);
          const cpu::vf8 v2 = cpu::load8(image + t->p2 * channels + c);
          const cpu::vf8 v3 = cpu::load8(image + t->p3 * channels + c);
          const cpu::vf8 v4 = cpu::load8(image + t->p4 * channels + c);
          acc += interpolate(t->w, v1, v2, v3, v4);
        }
        const cpu::vf8 r = acc / s.count;
        if (out_c_stride == 1) {
          cpu::store8(o + c, r);
        } else {
          for (int64_t l = 0; l < cpu::kLanes; ++l) {
            o[(c + l) * out_c_stride] = static_cast<scalar_t>(r[l]);
          }
        }
      }
    }
    for (; c < n; ++c) {
      acc_t sum = 0;
      for (const Tap<acc_t>* t = first; t != last; ++t) {
        sum += interpolate(
            t->w,
            static_cast<acc_t>(image[t->p1 * channels + c]),
            static_cast<acc_t>(image[t->p2 * channels + c]),
            static_cast<acc_t>(image[t->p3 * channels + c]),
            static_cast<acc_t>(image[t->p4 * channels + c]));
      }
      o[c * out_c_stride] = static_cast<scalar_t>(sum / s.count);
    }
  }
}

// The same loop compiled for AVX2 and for the baseline ISA (vec.h), for the
// vectorised element types (float32 and bfloat16, computed in float32).
template <typename scalar_t>
ROI_EXT_TARGET_AVX2 void roi_bins_avx2(
    const RoiSamples<float>& s, int64_t bins, const scalar_t* image, int64_t channels, int64_t n,
    scalar_t* out, int64_t out_bin_stride, int64_t out_c_stride) {
  roi_bins_channels_last<scalar_t, float>(s, bins, image, channels, n, out, out_bin_stride, out_c_stride);
}
template <typename scalar_t>
void roi_bins_baseline(
    const RoiSamples<float>& s, int64_t bins, const scalar_t* image, int64_t channels, int64_t n,
    scalar_t* out, int64_t out_bin_stride, int64_t out_c_stride) {
  roi_bins_channels_last<scalar_t, float>(s, bins, image, channels, n, out, out_bin_stride, out_c_stride);
}

template <typename scalar_t, typename acc_t>
void roi_bins(
    const RoiSamples<acc_t>& s, int64_t bins, const scalar_t* image, int64_t channels, int64_t n,
    scalar_t* out, int64_t out_bin_stride, int64_t out_c_stride) {
  if constexpr (kVectorised<scalar_t>) {
    static const auto fn = cpu::use_avx2() ? roi_bins_avx2<scalar_t> : roi_bins_baseline<scalar_t>;
    fn(s, bins, image, channels, n, out, out_bin_stride, out_c_stride);
  } else {
    roi_bins_channels_last<scalar_t, acc_t>(s, bins, image, channels, n, out, out_bin_stride, out_c_stride);
  }
}

// input_nhwc: the input in channels-last memory (the caller's own tensor, or a
// copy of an NCHW one: channels then sit next to each other and the loop runs
// across them). The output is written in `output`'s own layout.
template <typename scalar_t>
void roi_align_forward_impl(
    const Tensor& input_nhwc,
    const Tensor& rois,
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
  const int64_t channels = input_nhwc.size(1);
  const int64_t height = input_nhwc.size(2);
  const int64_t width = input_nhwc.size(3);
  const int64_t bins = pooled_height * pooled_width;
  const scalar_t* in = input_nhwc.const_data_ptr<scalar_t>();
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const acc_t scale = static_cast<acc_t>(spatial_scale);

  const int64_t cblock = channel_block(channels, num_rois);
  const int64_t blocks = (channels + cblock - 1) / cblock;
  // About four samples of four taps per bin and channel.
  const int64_t grain = grain_for(16 * bins * cblock);
  cpu::parallel_for(0, num_rois * blocks, grain, [&](int64_t begin, int64_t end) {
    RoiSamples<acc_t> s;
    int64_t cached = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k = task / blocks;
      const int64_t c0 = (task % blocks) * cblock;
      const int64_t c1 = std::min(channels, c0 + cblock);
      const acc_t* roi = roi_data + k * 5;
      if (k != cached) {
        s.compute(roi, k, scale, height, width, pooled_height, pooled_width,
                  sampling_ratio, aligned, roi_end_mode);
        cached = k;
      }
      const int64_t b = static_cast<int64_t>(roi[0]);
      const scalar_t* image = in + b * height * width * channels + c0;
      if (output_channels_last) {
        roi_bins<scalar_t, acc_t>(s, bins, image, channels, c1 - c0,
                                  out + k * bins * channels + c0, channels, 1);
      } else {
        roi_bins<scalar_t, acc_t>(s, bins, image, channels, c1 - c0,
                                  out + (k * channels + c0) * bins, 1, bins);
      }
    }
  });
}

// Validates every batch index (Part A12) of rois converted to the compute type.
void check_batch_indices(const Tensor& rois_acc, int64_t batch_size, const char* op) {
  THO_DISPATCH_V2(
      rois_acc.scalar_type(), "roi_align_check_batch", AT_WRAP([&] {
        check_batch_indices(rois_acc.const_data_ptr<scalar_t>(), rois_acc.size(0), batch_size, op);
      }),
      AT_EXPAND(AT_FLOATING_TYPES));
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
  detail::check_roi_align_forward_args(
      input, rois, spatial_scale, pooled_height, pooled_width, roi_end_mode);
  ROI_EXT_CHECK(input.is_cpu(), "roi_align: input must be a CPU tensor, got ", device_of(input));

  const MemoryFormat fmt = detail::roi_align_memory_format(input);
  const bool channels_last = fmt == MemoryFormat::ChannelsLast;
  const ScalarType acc_type = opmath_type(input.scalar_type());
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");
  check_batch_indices(rois_, input.size(0), "roi_align");

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
  // The kernel reads channels-last memory. An NCHW input is copied into that
  // layout (a fraction of the work: every output element reads ~16 pixels).
  const Tensor input_nhwc = contiguous(input, "roi_align: input (channels-last copy)", MemoryFormat::ChannelsLast);
  THO_DISPATCH_V2(
      input.scalar_type(), "roi_align_forward_cpu", AT_WRAP([&] {
        roi_align_forward_impl<scalar_t>(
            input_nhwc, rois_, spatial_scale, pooled_height, pooled_width,
            sampling_ratio, aligned, roi_end_mode, channels_last, output);
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

// Adds the shares of one roi's output gradient to a channels-last gradient
// image, for channels [c0, c0 + n): for every bin, sample and corner (in that
// order: the reference order per element), dst[c] += corner_grad(g[c], w).
// `grad` points at channel c0 of bin (0, 0) of the roi; `image` at channel c0 of
// pixel (0, 0) of its image's gradient.
template <typename scalar_t, typename acc_t>
ROI_EXT_ALWAYS_INLINE void scatter_bins_channels_last(
    const RoiSamples<acc_t>& s,
    int64_t pooled_height,
    int64_t pooled_width,
    const scalar_t* grad,
    int64_t g_c_stride,
    int64_t g_h_stride,
    int64_t g_w_stride,
    acc_t* image,
    int64_t channels,
    int64_t n) {
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      const int64_t bin = ph * pooled_width + pw;
      const scalar_t* g = grad + ph * g_h_stride + pw * g_w_stride;
      for (int64_t i = s.bin_begin[bin]; i < s.bin_begin[bin + 1]; ++i) {
        const Tap<acc_t>& t = s.taps[i];
        const int64_t pos[4] = {t.p1, t.p2, t.p3, t.p4};
        const acc_t wts[4] = {t.w.w1, t.w.w2, t.w.w3, t.w.w4};
        // One pass per corner keeps the per-element order w1..w4 even where
        // corners coincide.
        for (int corner = 0; corner < 4; ++corner) {
          acc_t* dst = image + pos[corner] * channels;
          const acc_t w = wts[corner];
          int64_t c = 0;
          if constexpr (kVectorised<scalar_t>) {
            if (g_c_stride == 1) {
              for (; c + cpu::kLanes <= n; c += cpu::kLanes) {
                cpu::store8(dst + c, cpu::load8(dst + c) + corner_grad(cpu::load8(g + c), w, s.count));
              }
            }
          }
          for (; c < n; ++c) {
            dst[c] += corner_grad(static_cast<acc_t>(g[c * g_c_stride]), w, s.count);
          }
        }
      }
    }
  }
}

template <typename scalar_t>
ROI_EXT_TARGET_AVX2 void scatter_bins_avx2(
    const RoiSamples<float>& s, int64_t ph, int64_t pw, const scalar_t* grad, int64_t gc, int64_t gh,
    int64_t gw, float* image, int64_t channels, int64_t n) {
  scatter_bins_channels_last<scalar_t, float>(s, ph, pw, grad, gc, gh, gw, image, channels, n);
}
template <typename scalar_t>
void scatter_bins_baseline(
    const RoiSamples<float>& s, int64_t ph, int64_t pw, const scalar_t* grad, int64_t gc, int64_t gh,
    int64_t gw, float* image, int64_t channels, int64_t n) {
  scatter_bins_channels_last<scalar_t, float>(s, ph, pw, grad, gc, gh, gw, image, channels, n);
}

template <typename scalar_t, typename acc_t>
void scatter_bins(
    const RoiSamples<acc_t>& s, int64_t ph, int64_t pw, const scalar_t* grad, int64_t gc, int64_t gh,
    int64_t gw, acc_t* image, int64_t channels, int64_t n) {
  if constexpr (kVectorised<scalar_t>) {
    static const auto fn = cpu::use_avx2() ? scatter_bins_avx2<scalar_t> : scatter_bins_baseline<scalar_t>;
    fn(s, ph, pw, grad, gc, gh, gw, image, channels, n);
  } else {
    scatter_bins_channels_last<scalar_t, acc_t>(s, ph, pw, grad, gc, gh, gw, image, channels, n);
  }
}

// grad_nhwc: the output gradient (read through its strides; channels-last
// memory makes the channel loop contiguous). grad_input_nhwc: a zeroed
// channels-last accumulator in acc_t (float32 for half types, Part A3).
template <typename scalar_t>
void roi_align_backward_impl(
    const Tensor& grad,
    const Tensor& rois,
    double spatial_scale,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode,
    Tensor& grad_input_nhwc) {
  using acc_t = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t pooled_height = grad.size(2);
  const int64_t pooled_width = grad.size(3);
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const int64_t gs0 = grad.stride(0), gs1 = grad.stride(1),
                gs2 = grad.stride(2), gs3 = grad.stride(3);
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  acc_t* gi = grad_input_nhwc.mutable_data_ptr<acc_t>();
  const acc_t scale = static_cast<acc_t>(spatial_scale);

  // Rois of each image in ascending order (a stable counting sort), so the
  // task owning an image visits them in the reference order.
  std::vector<int64_t> image_begin(batch_size + 1, 0);
  for (int64_t k = 0; k < num_rois; ++k) {
    ++image_begin[static_cast<int64_t>(roi_data[k * 5]) + 1];
  }
  for (int64_t b = 0; b < batch_size; ++b) {
    image_begin[b + 1] += image_begin[b];
  }
  std::vector<int64_t> order(num_rois);
  {
    std::vector<int64_t> next(image_begin.begin(), image_begin.end() - 1);
    for (int64_t k = 0; k < num_rois; ++k) {
      order[next[static_cast<int64_t>(roi_data[k * 5])]++] = k;
    }
  }

  const int64_t cblock = channel_block(channels, batch_size, /*tasks_per_thread=*/1);
  const int64_t blocks = (channels + cblock - 1) / cblock;
  const int64_t rois_per_image = (num_rois + batch_size - 1) / std::max<int64_t>(batch_size, 1);
  const int64_t grain = grain_for(16 * rois_per_image * pooled_height * pooled_width * cblock);
  cpu::parallel_for(0, batch_size * blocks, grain, [&](int64_t begin, int64_t end) {
    RoiSamples<acc_t> s;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks;
      const int64_t c0 = (task % blocks) * cblock;
      const int64_t c1 = std::min(channels, c0 + cblock);
      for (int64_t j = image_begin[b]; j < image_begin[b + 1]; ++j) {
        const int64_t k = order[j];
        s.compute(roi_data + k * 5, k, scale, height, width, pooled_height,
                  pooled_width, sampling_ratio, aligned, roi_end_mode);
        scatter_bins<scalar_t, acc_t>(
            s, pooled_height, pooled_width, g + k * gs0 + c0 * gs1, gs1, gs2, gs3,
            gi + b * height * width * channels + c0, channels, c1 - c0);
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
  detail::check_roi_align_backward_args(
      grad, rois, spatial_scale, pooled_height, pooled_width, batch_size,
      channels, height, width, roi_end_mode);
  ROI_EXT_CHECK(grad.is_cpu(), "_roi_align_backward: grad must be a CPU tensor, got ", device_of(grad));

  const MemoryFormat fmt = detail::roi_align_memory_format(grad);
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");
  check_batch_indices(rois_, batch_size, "_roi_align_backward");

  // Accumulate in channels-last memory (the channel loop is then contiguous),
  // in acc_t; the result is converted once to grad's dtype and memory format.
  Tensor grad_input = zeros(kBackwardOutput, {batch_size, channels, height, width}, acc_type, grad.device(),
                            MemoryFormat::ChannelsLast);
  if (grad.numel() > 0 && grad_input.numel() > 0) {
    const Tensor grad_nhwc = contiguous(grad, "_roi_align_backward: grad (channels-last copy)",
                                        MemoryFormat::ChannelsLast);
    THO_DISPATCH_V2(
        grad.scalar_type(), "roi_align_backward_cpu", AT_WRAP([&] {
          roi_align_backward_impl<scalar_t>(
              grad_nhwc, rois_, spatial_scale, batch_size, channels, height, width,
              sampling_ratio, aligned, roi_end_mode, grad_input);
        }),
        AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  }
  if (grad.scalar_type() == acc_type && fmt == MemoryFormat::ChannelsLast) {
    return grad_input;
  }
  Tensor result = empty(kBackwardOutput, {batch_size, channels, height, width}, grad.scalar_type(),
                        grad.device(), fmt);
  copy_into(result, grad_input);
  return result;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(roi_ext, CPU, m) {
  m.impl("roi_align", TORCH_BOX(&roi_align_forward_cpu));
  m.impl("_roi_align_backward", TORCH_BOX(&roi_align_backward_cpu));
}

}  // namespace roi_ext

// CPU building blocks of the ROIAlign kernels (roi_align, multi_scale_roi_align):
// per-roi sample tables and the channel loops around csrc/common/roi_align_math.h.
//
// A roi is first turned into its list of valid bilinear samples (RoiSamples:
// pixel indices and weights, grouped by output bin), so the per-sample math runs
// once per roi rather than once per channel; the loops below then run over
// channels, for both storage orders of an image:
//   * channels-last (NHWC memory): the channels of a pixel are adjacent and the
//     loops run 8 float lanes at a time (vec.h), float32 and bfloat16;
//   * NCHW: each channel is a plane; the loops read the planes in place (no
//     copy of the image into channels-last memory, which costs more than the
//     pooling itself when there are few rois on a large map).
// Every element is computed with the same operations in the same order as
// torchvision's serial kernel, whichever loop runs: forward sums over samples
// in (iy, ix) order; backward adds to each element in (roi, bin, sample,
// corner) order.
//
// Names live in roi_ext::roi_align_cpu (not an anonymous namespace), so that a
// kernel file may include this header next to its own helpers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../common/roi_align_args.h"
#include "../common/roi_align_math.h"
#include "../common/stable.h"
#include "vec.h"

namespace roi_ext {
namespace roi_align_cpu {

using namespace roi_align_math;

// A sample table holds at most this many samples: a roi's bins are processed in
// chunks of whole bins, and a bin with more samples than this in chunks of its
// samples, so the table stays a few MB per thread whatever the output size.
// Typical rois (7 x 7 bins of 4 samples) fit in one chunk.
constexpr int64_t kChunkSamples = int64_t(1) << 16;

template <typename T>
struct Tap {
  int64_t p1, p2, p3, p4;  // pixel indices y * W + x of the four corners
  BilinearWeights<T> w;
};

// The valid samples of one chunk of a roi, grouped by bin: the taps of the
// chunk's bin j (bin `bin0 + j` of the roi) are taps[bin_begin[j] .. bin_begin[j + 1]).
template <typename T>
struct RoiSamples {
  std::vector<Tap<T>> taps;
  std::vector<int64_t> bin_begin;
  RoiGeometry<T> g;
  T count = T(1);
  int64_t per_bin = 0;  // grid_h * grid_w

  // The roi's geometry; refuses rois with absurd sample counts (`op` names the
  // operator in the message).
  void set_roi(
      const T* roi,
      int64_t k,
      T spatial_scale,
      int64_t pooled_height,
      int64_t pooled_width,
      int64_t sampling_ratio,
      bool aligned,
      int64_t roi_end_mode,
      const char* op) {
    g = roi_geometry(roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode);
    count = sample_count(g);
    // The limit the CUDA kernels share (roi_align_math.h): refused rather than
    // running for hours.
    ROI_EXT_CHECK_VALUE(
        !exceeds_sample_limit(g, pooled_height, pooled_width), op, ": roi ", k, " would need ",
        roi_sample_total(pooled_height, pooled_width, g.grid_h, g.grid_w),
        " bilinear samples (output_size x sampling_ratio^2, or adaptive sampling of a "
        "huge roi); pass a smaller positive sampling_ratio");
    per_bin = g.grid_h * g.grid_w;
  }

  // Calls f(bin0, bin1, sample0, sample1) for the chunks of the roi in order:
  // whole bins [bin0, bin1) (sample0 = 0, sample1 = per_bin) while a bin has at
  // most kChunkSamples samples, else one bin at a time in sample ranges.
  template <typename F>
  void for_each_chunk(int64_t bins, const F& f) const {
    if (per_bin <= kChunkSamples) {
      const int64_t step = std::max<int64_t>(1, kChunkSamples / std::max<int64_t>(per_bin, 1));
      for (int64_t b0 = 0; b0 < bins; b0 += step) {
        f(b0, std::min(bins, b0 + step), int64_t(0), per_bin);
      }
      return;
    }
    for (int64_t bin = 0; bin < bins; ++bin) {
      for (int64_t s0 = 0; s0 < per_bin; s0 += kChunkSamples) {
        f(bin, bin + 1, s0, std::min(per_bin, s0 + kChunkSamples));
      }
    }
  }

  // The taps of samples [sample0, sample1) (index iy * grid_w + ix) of bins
  // [bin0, bin1), in the reference order (bin, iy, ix).
  void fill(int64_t height, int64_t width, int64_t pooled_width, int64_t bin0, int64_t bin1, int64_t sample0,
            int64_t sample1) {
    taps.clear();
    taps.reserve(static_cast<size_t>((bin1 - bin0) * (sample1 - sample0)));
    bin_begin.resize(bin1 - bin0 + 1);
    for (int64_t bin = bin0; bin < bin1; ++bin) {
      bin_begin[bin - bin0] = static_cast<int64_t>(taps.size());
      const int64_t ph = bin / pooled_width;
      const int64_t pw = bin % pooled_width;
      // Row by row (one division per row, not per sample).
      for (int64_t i = sample0; i < sample1;) {
        const int64_t iy = i / g.grid_w;
        int64_t ix = i - iy * g.grid_w;
        const int64_t row_end = std::min(sample1, (iy + 1) * g.grid_w);
        const T y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
        for (; i < row_end; ++i, ++ix) {
          const T x = sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
          BilinearTaps<T> t;
          if (!bilinear_taps(y, x, height, width, t)) {
            continue;
          }
          taps.push_back(Tap<T>{t.y_low * width + t.x_low, t.y_low * width + t.x_high,
                                t.y_high * width + t.x_low, t.y_high * width + t.x_high, t.w});
        }
      }
    }
    bin_begin[bin1 - bin0] = static_cast<int64_t>(taps.size());
  }
};

// The batch index of every roi (SPEC Part A12), truncated toward zero in the
// rois' own dtype, before any conversion to the compute type (float64 rois of a
// float32 input keep 0.9999999999 as image 0). `valid(k)` says which rois are
// checked (and used); the others get -1. Every dtype converts to double exactly.
template <typename Valid>
std::vector<int64_t> batch_indices(const Tensor& rois, int64_t batch_size, const char* op, const Valid& valid) {
  const Tensor r = contiguous(rois, "rois");
  std::vector<int64_t> out(r.size(0), -1);
  THO_DISPATCH_V2(
      r.scalar_type(), "roi_align_batch_indices", AT_WRAP([&] {
        const scalar_t* p = r.const_data_ptr<scalar_t>();
        for (int64_t k = 0; k < r.size(0); ++k) {
          if (!valid(k)) {
            continue;
          }
          const double b = static_cast<double>(p[k * 5]);
          if (!valid_batch_index(b, batch_size)) {
            detail::throw_bad_batch_index(op, k, b, batch_size);
          }
          out[k] = static_cast<int64_t>(b);
        }
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return out;
}

// Element types whose channels-last loops run 8 float lanes at a time (vec.h).
template <typename scalar_t>
constexpr bool kVectorised = std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>;

// An image of one roi, and where its pooled bins go.
//   image:  channel c0 of pixel (0, 0); pixel p of channel c0 + c is at
//           image[p * pixel_stride + c * channel_stride]
//           (channels-last: pixel_stride = C, channel_stride = 1;
//            NCHW: pixel_stride = 1, channel_stride = H * W)
//   out:    channel c0 of bin 0; bin b of channel c0 + c is at
//           out[b * out_bin_stride + c * out_c_stride]
template <typename scalar_t>
struct ImageView {
  const scalar_t* image;
  int64_t pixel_stride;
  int64_t channel_stride;
};

// ---------------------------------------------------------------------------
// Forward

// Whole bins [0, bins) of a chunk for channels [c0, c0 + n), channels-last image
// (channel_stride == 1): out = (sum of the bin's samples) / count.
template <typename scalar_t, typename acc_t>
ROI_EXT_ALWAYS_INLINE void pool_bins_channels_last(const RoiSamples<acc_t>& s, int64_t bins, const scalar_t* image,
                                                   int64_t channels, int64_t n, scalar_t* out,
                                                   int64_t out_bin_stride, int64_t out_c_stride) {
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
        sum += interpolate(t->w, static_cast<acc_t>(image[t->p1 * channels + c]),
                           static_cast<acc_t>(image[t->p2 * channels + c]),
                           static_cast<acc_t>(image[t->p3 * channels + c]),
                           static_cast<acc_t>(image[t->p4 * channels + c]));
      }
      o[c * out_c_stride] = static_cast<scalar_t>(sum / s.count);
    }
  }
}

// The same loop compiled for AVX2 and for the baseline ISA (vec.h).
template <typename scalar_t>
ROI_EXT_TARGET_AVX2 void pool_bins_channels_last_avx2(const RoiSamples<float>& s, int64_t bins, const scalar_t* image,
                                                      int64_t channels, int64_t n, scalar_t* out, int64_t obs,
                                                      int64_t ocs) {
  pool_bins_channels_last<scalar_t, float>(s, bins, image, channels, n, out, obs, ocs);
}
template <typename scalar_t>
void pool_bins_channels_last_baseline(const RoiSamples<float>& s, int64_t bins, const scalar_t* image,
                                      int64_t channels, int64_t n, scalar_t* out, int64_t obs, int64_t ocs) {
  pool_bins_channels_last<scalar_t, float>(s, bins, image, channels, n, out, obs, ocs);
}

// Whole bins of a chunk, NCHW image: channel by channel, each plane read in place.
template <typename scalar_t, typename acc_t>
void pool_bins_nchw(const RoiSamples<acc_t>& s, int64_t bins, const scalar_t* image, int64_t plane, int64_t n,
                    scalar_t* out, int64_t out_bin_stride, int64_t out_c_stride) {
  const Tap<acc_t>* taps = s.taps.data();
  for (int64_t c = 0; c < n; ++c) {
    const scalar_t* im = image + c * plane;
    scalar_t* o = out + c * out_c_stride;
    for (int64_t bin = 0; bin < bins; ++bin) {
      acc_t sum = 0;
      for (int64_t i = s.bin_begin[bin]; i < s.bin_begin[bin + 1]; ++i) {
        const Tap<acc_t>& t = taps[i];
        sum += interpolate(t.w, static_cast<acc_t>(im[t.p1]), static_cast<acc_t>(im[t.p2]),
                           static_cast<acc_t>(im[t.p3]), static_cast<acc_t>(im[t.p4]));
      }
      o[bin * out_bin_stride] = static_cast<scalar_t>(sum / s.count);
    }
  }
}

template <typename scalar_t, typename acc_t>
void pool_bins(const RoiSamples<acc_t>& s, int64_t bins, const ImageView<scalar_t>& v, int64_t n, scalar_t* out,
               int64_t out_bin_stride, int64_t out_c_stride) {
  if (v.channel_stride != 1) {
    pool_bins_nchw<scalar_t, acc_t>(s, bins, v.image, v.channel_stride, n, out, out_bin_stride, out_c_stride);
    return;
  }
  if constexpr (kVectorised<scalar_t>) {
    static const auto fn =
        cpu::use_avx2() ? pool_bins_channels_last_avx2<scalar_t> : pool_bins_channels_last_baseline<scalar_t>;
    fn(s, bins, v.image, v.pixel_stride, n, out, out_bin_stride, out_c_stride);
  } else {
    pool_bins_channels_last<scalar_t, acc_t>(s, bins, v.image, v.pixel_stride, n, out, out_bin_stride,
                                             out_c_stride);
  }
}

// Per-thread scratch of the forward: the sample table and the per-channel sums
// of a bin split into sample chunks.
template <typename acc_t>
struct ForwardScratch {
  RoiSamples<acc_t> s;
  std::vector<acc_t> acc;
};

// Pools every bin of one roi (geometry already set in w.s by set_roi) for
// channels [c0, c0 + n) of image `v` into `out` (channel c0 of bin 0).
template <typename scalar_t, typename acc_t>
void pool_roi(ForwardScratch<acc_t>& w, int64_t height, int64_t width, int64_t pooled_width, int64_t bins,
              const ImageView<scalar_t>& v, int64_t n, scalar_t* out, int64_t out_bin_stride, int64_t out_c_stride) {
  RoiSamples<acc_t>& s = w.s;
  s.for_each_chunk(bins, [&](int64_t bin0, int64_t bin1, int64_t sample0, int64_t sample1) {
    s.fill(height, width, pooled_width, bin0, bin1, sample0, sample1);
    if (sample0 == 0 && sample1 == s.per_bin) {
      pool_bins<scalar_t, acc_t>(s, bin1 - bin0, v, n, out + bin0 * out_bin_stride, out_bin_stride, out_c_stride);
      return;
    }
    // One bin in sample chunks: the sums carry over from chunk to chunk, in
    // the same order (and so with the same rounding) as pool_bins.
    if (sample0 == 0) {
      w.acc.assign(n, acc_t(0));
    }
    for (const Tap<acc_t>& t : s.taps) {
      for (int64_t c = 0; c < n; ++c) {
        const scalar_t* im = v.image + c * v.channel_stride;
        const int64_t ps = v.pixel_stride;
        w.acc[c] += interpolate(t.w, static_cast<acc_t>(im[t.p1 * ps]), static_cast<acc_t>(im[t.p2 * ps]),
                                static_cast<acc_t>(im[t.p3 * ps]), static_cast<acc_t>(im[t.p4 * ps]));
      }
    }
    if (sample1 == s.per_bin) {
      scalar_t* o = out + bin0 * out_bin_stride;
      for (int64_t c = 0; c < n; ++c) {
        o[c * out_c_stride] = static_cast<scalar_t>(w.acc[c] / s.count);
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Backward

// A gradient image in acc_t: channel c0 of pixel (0, 0), same strides as ImageView.
template <typename acc_t>
struct GradView {
  acc_t* image;
  int64_t pixel_stride;
  int64_t channel_stride;
};

// Adds the shares of the output gradient of bins [bin0, bin0 + chunk bins) of one
// roi to a channels-last gradient image (channel_stride == 1), for channels
// [c0, c0 + n): for every bin, sample and corner, in that order,
// dst[c] += corner_grad(g[c], w). `grad` points at channel c0 of the roi's bin 0;
// bin b of channel c is at grad[(b / pooled_width) * gh + (b % pooled_width) * gw + c * gc].
template <typename scalar_t, typename acc_t>
ROI_EXT_ALWAYS_INLINE void scatter_bins_channels_last(const RoiSamples<acc_t>& s, int64_t bin0, int64_t bins,
                                                      int64_t pooled_width, const scalar_t* grad, int64_t gc,
                                                      int64_t gh, int64_t gw, acc_t* image, int64_t channels,
                                                      int64_t n) {
  for (int64_t j = 0; j < bins; ++j) {
    const int64_t bin = bin0 + j;
    const scalar_t* g = grad + (bin / pooled_width) * gh + (bin % pooled_width) * gw;
    for (int64_t i = s.bin_begin[j]; i < s.bin_begin[j + 1]; ++i) {
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
          if (gc == 1) {
            for (; c + cpu::kLanes <= n; c += cpu::kLanes) {
              cpu::store8(dst + c, cpu::load8(dst + c) + corner_grad(cpu::load8(g + c), w, s.count));
            }
          }
        }
        for (; c < n; ++c) {
          dst[c] += corner_grad(static_cast<acc_t>(g[c * gc]), w, s.count);
        }
      }
    }
  }
}

template <typename scalar_t>
ROI_EXT_TARGET_AVX2 void scatter_bins_channels_last_avx2(const RoiSamples<float>& s, int64_t bin0, int64_t bins,
                                                         int64_t pw, const scalar_t* grad, int64_t gc, int64_t gh,
                                                         int64_t gw, float* image, int64_t channels, int64_t n) {
  scatter_bins_channels_last<scalar_t, float>(s, bin0, bins, pw, grad, gc, gh, gw, image, channels, n);
}
template <typename scalar_t>
void scatter_bins_channels_last_baseline(const RoiSamples<float>& s, int64_t bin0, int64_t bins, int64_t pw,
                                         const scalar_t* grad, int64_t gc, int64_t gh, int64_t gw, float* image,
                                         int64_t channels, int64_t n) {
  scatter_bins_channels_last<scalar_t, float>(s, bin0, bins, pw, grad, gc, gh, gw, image, channels, n);
}

// The same for an NCHW gradient image (channel planes of `plane` elements).
template <typename scalar_t, typename acc_t>
void scatter_bins_nchw(const RoiSamples<acc_t>& s, int64_t bin0, int64_t bins, int64_t pooled_width,
                       const scalar_t* grad, int64_t gc, int64_t gh, int64_t gw, acc_t* image, int64_t plane,
                       int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    acc_t* im = image + c * plane;
    for (int64_t j = 0; j < bins; ++j) {
      const int64_t bin = bin0 + j;
      const acc_t g = static_cast<acc_t>(grad[(bin / pooled_width) * gh + (bin % pooled_width) * gw + c * gc]);
      for (int64_t i = s.bin_begin[j]; i < s.bin_begin[j + 1]; ++i) {
        const Tap<acc_t>& t = s.taps[i];
        im[t.p1] += corner_grad(g, t.w.w1, s.count);
        im[t.p2] += corner_grad(g, t.w.w2, s.count);
        im[t.p3] += corner_grad(g, t.w.w3, s.count);
        im[t.p4] += corner_grad(g, t.w.w4, s.count);
      }
    }
  }
}

// The output-gradient view of one roi: channel c0 of bin (0, 0) and its strides.
template <typename scalar_t>
struct GradOutView {
  const scalar_t* grad;
  int64_t c_stride, h_stride, w_stride;
};

// Scatters every bin of one roi (geometry set in s by set_roi) for channels
// [c0, c0 + n) into gradient image `gi`.
template <typename scalar_t, typename acc_t>
void scatter_roi(RoiSamples<acc_t>& s, int64_t height, int64_t width, int64_t pooled_width, int64_t bins,
                 const GradOutView<scalar_t>& go, const GradView<acc_t>& gi, int64_t n) {
  s.for_each_chunk(bins, [&](int64_t bin0, int64_t bin1, int64_t sample0, int64_t sample1) {
    s.fill(height, width, pooled_width, bin0, bin1, sample0, sample1);
    if (gi.channel_stride != 1) {
      scatter_bins_nchw<scalar_t, acc_t>(s, bin0, bin1 - bin0, pooled_width, go.grad, go.c_stride, go.h_stride,
                                         go.w_stride, gi.image, gi.channel_stride, n);
      return;
    }
    if constexpr (kVectorised<scalar_t>) {
      static const auto fn = cpu::use_avx2() ? scatter_bins_channels_last_avx2<scalar_t>
                                             : scatter_bins_channels_last_baseline<scalar_t>;
      fn(s, bin0, bin1 - bin0, pooled_width, go.grad, go.c_stride, go.h_stride, go.w_stride, gi.image,
         gi.pixel_stride, n);
    } else {
      scatter_bins_channels_last<scalar_t, acc_t>(s, bin0, bin1 - bin0, pooled_width, go.grad, go.c_stride,
                                                  go.h_stride, go.w_stride, gi.image, gi.pixel_stride, n);
    }
  });
}

}  // namespace roi_align_cpu
}  // namespace roi_ext

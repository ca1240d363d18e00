// CPU kernels of roi_ext::prroi_pool (Precise RoI Pooling), its input gradient
// (_prroi_pool_backward) and its roi gradient (_prroi_pool_backward_rois):
// parallel loops around csrc/common/prroi_pool_math.h, the math the CUDA kernels
// share.
//
// Per roi, the weights of every bin along x and y (prroi_math::hat_weight) are
// tabulated once (RoiTables) and reused for every channel; they are the very
// values the CUDA kernels compute on the fly, and every sum runs in the same
// order, so the CUDA forward and the deterministic CUDA input gradient equal
// these kernels bit for bit.
//
// Layouts: a channels-last map is read in place, with the channel loop innermost
// in 8-float lanes (vec.h; float32 and bfloat16), as is an NCHW map read by many
// rois, through one channels-last copy; an NCHW map read by few rois is read in
// place, plane by plane. The input gradient is accumulated the same way
// (channels-last in lanes, or in the NCHW planes), in float32 for half types,
// and rounded once.
//
// Determinism: the forward writes disjoint outputs. The input gradient is
// partitioned by (image, channel block): each element is owned by one task,
// which adds the shares of the rois of that image in the order (roi, bin row,
// bin column). The roi gradient is a task per roi summing its bins in a fixed
// order. Results do not depend on the thread count.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "../common/prroi_pool_args.h"
#include "../common/prroi_pool_math.h"
#include "../common/stable.h"
#include "channel_dot.h"
#include "cpu_utils.h"
#include "roi_align_cpu.h"

namespace roi_ext {
namespace {

using namespace prroi_math;
using cpu::channel_block;
using cpu::grain_for;

constexpr const char* kForward = "prroi_pool";
constexpr const char* kBackward = "_prroi_pool_backward";
constexpr const char* kBackwardRois = "_prroi_pool_backward_rois";
constexpr const char* kForwardOutput = "prroi_pool: output for output_size (pooled_height, pooled_width)";
constexpr const char* kBackwardOutput = "_prroi_pool_backward: grad_input for (batch_size, channels, height, width)";
constexpr const char* kBackwardRoisOutput = "_prroi_pool_backward_rois: grad_rois";

// The bins of one roi along both axes and their pixel weights.
template <typename T>
struct RoiTables {
  PrRoi<T> r;
  std::vector<BinAxis<T>> ax, ay;         // per pw, per ph
  std::vector<int64_t> wx_begin, wy_begin;  // weights of bin pw: wx[wx_begin[pw] + (j - ax[pw].first)]
  std::vector<T> wx, wy;

  // false when the roi pools nothing (empty, inverted or non-finite).
  bool set(const T* roi, T scale, int64_t pooled_height, int64_t pooled_width, int64_t height, int64_t width) {
    r = prroi_geometry(roi, scale, pooled_height, pooled_width);
    if (r.empty) {
      return false;
    }
    fill(r.start_w, r.bin_w, pooled_width, width, ax, wx_begin, wx);
    fill(r.start_h, r.bin_h, pooled_height, height, ay, wy_begin, wy);
    return true;
  }

  static void fill(T start, T bin, int64_t pooled, int64_t size, std::vector<BinAxis<T>>& axes,
                   std::vector<int64_t>& begin, std::vector<T>& w) {
    axes.resize(pooled);
    begin.resize(pooled);
    w.clear();
    for (int64_t p = 0; p < pooled; ++p) {
      axes[p] = bin_axis(start, bin, p, size);
      begin[p] = static_cast<int64_t>(w.size());
      for (int64_t j = axes[p].first; j <= axes[p].last; ++j) {
        w.push_back(hat_weight(axes[p].lo, axes[p].hi, j));
      }
    }
  }
};

// The tabulated weights of one bin along one axis, as a functor of the pixel index.
template <typename T>
struct TableWeights {
  const T* w;
  int64_t first;
  T operator()(int64_t j) const {
    return w[j - first];
  }
};

template <typename T>
TableWeights<T> x_weights(const RoiTables<T>& t, int64_t pw) {
  return TableWeights<T>{t.wx.data() + t.wx_begin[pw], t.ax[pw].first};
}
template <typename T>
TableWeights<T> y_weights(const RoiTables<T>& t, int64_t ph) {
  return TableWeights<T>{t.wy.data() + t.wy_begin[ph], t.ay[ph].first};
}

// Pixel (i, j) of a channel plane in the compute type.
template <typename scalar_t, typename T>
struct PlaneReader {
  const scalar_t* p;
  int64_t row_stride, col_stride;
  T operator()(int64_t i, int64_t j) const {
    return static_cast<T>(p[i * row_stride + j * col_stride]);
  }
};

// ---------------------------------------------------------------------------
// Forward

// The row sums of a roi: row[i][pw] = sum_j wx_pw(j) * v(i, j) for every map row
// i the roi's bins touch, computed once and shared by the bins of a column that
// meet in row i (adjacent bins share their boundary rows; bins smaller than a
// pixel share most of them). Each bin then adds sum_i wy(i) * row[i][pw]: the
// same operations in the same order as bin_integral, so the same bits. Above
// kMaxRowCache values per task (a huge output_size) the bins are summed one by
// one instead.
constexpr int64_t kMaxRowCache = int64_t(1) << 20;

// Pools roi k's bins for channels [c0, c0 + n) of image `im` into out (values
// in out_t; channel c0 of bin 0 at out, strides out_bin / out_c).
// The cached path of pool_roi for a channels-last image in 8-float lanes
// (float32 and bfloat16 images; vec.h): every lane does the scalar loop's
// operations in its order, so the results are the same bits.
template <typename scalar_t, typename out_t>
ROI_EXT_ALWAYS_INLINE void pool_roi_lanes(const RoiTables<float>& t, const scalar_t* im, int64_t channels,
                                          int64_t width, int64_t n, int64_t pooled_height, int64_t pooled_width,
                                          int64_t row_lo, int64_t row_hi, out_t* out, int64_t out_bin,
                                          int64_t out_c, float* rows) {
  using cpu::kLanes;
  using cpu::load8;
  using cpu::splat8;
  using cpu::store8;
  using cpu::vf8;
  for (int64_t i = row_lo; i <= row_hi; ++i) {
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      const BinAxis<float>& ax = t.ax[pw];
      const TableWeights<float> wx = x_weights(t, pw);
      float* r = rows + ((i - row_lo) * pooled_width + pw) * n;
      for (int64_t j = ax.first; j <= ax.last; ++j) {
        const float w = wx(j);
        const vf8 wv = splat8(w);
        const scalar_t* px = im + (i * width + j) * channels;
        int64_t c = 0;
        for (; c + kLanes <= n; c += kLanes) {
          store8(r + c, load8(r + c) + (wv * load8(px + c)));
        }
        for (; c < n; ++c) {
          r[c] = r[c] + (w * static_cast<float>(px[c]));
        }
      }
    }
  }
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    const BinAxis<float>& ay = t.ay[ph];
    const TableWeights<float> wy = y_weights(t, ph);
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      out_t* o = out + (ph * pooled_width + pw) * out_bin;
      const float* r0 = rows + pw * n - row_lo * pooled_width * n;  // row i at r0 + i * PW * n
      int64_t c = 0;
      for (; c + kLanes <= n; c += kLanes) {
        vf8 a = splat8(0.f);
        for (int64_t i = ay.first; i <= ay.last; ++i) {
          a = a + (splat8(wy(i)) * load8(r0 + i * pooled_width * n + c));
        }
        const vf8 v = a / t.r.area;
        if constexpr (std::is_same_v<out_t, float> || std::is_same_v<out_t, c10::BFloat16>) {
          if (out_c == 1) {
            store8(o + c, v);
            continue;
          }
        }
        for (int64_t l = 0; l < kLanes; ++l) {
          o[(c + l) * out_c] = static_cast<out_t>(v[l]);
        }
      }
      for (; c < n; ++c) {
        float a = 0.f;
        for (int64_t i = ay.first; i <= ay.last; ++i) {
          a = a + (wy(i) * r0[i * pooled_width * n + c]);
        }
        o[c * out_c] = static_cast<out_t>(a / t.r.area);
      }
    }
  }
}

template <typename scalar_t, typename out_t>
ROI_EXT_TARGET_AVX2 void pool_roi_lanes_avx2(const RoiTables<float>& t, const scalar_t* im, int64_t channels,
                                             int64_t width, int64_t n, int64_t pooled_height, int64_t pooled_width,
                                             int64_t row_lo, int64_t row_hi, out_t* out, int64_t out_bin,
                                             int64_t out_c, float* rows) {
  pool_roi_lanes<scalar_t, out_t>(t, im, channels, width, n, pooled_height, pooled_width, row_lo, row_hi, out,
                                  out_bin, out_c, rows);
}

template <typename scalar_t, typename out_t>
void pool_roi_lanes_baseline(const RoiTables<float>& t, const scalar_t* im, int64_t channels, int64_t width,
                             int64_t n, int64_t pooled_height, int64_t pooled_width, int64_t row_lo, int64_t row_hi,
                             out_t* out, int64_t out_bin, int64_t out_c, float* rows) {
  pool_roi_lanes<scalar_t, out_t>(t, im, channels, width, n, pooled_height, pooled_width, row_lo, row_hi, out,
                                  out_bin, out_c, rows);
}

template <typename scalar_t, typename T, typename out_t>
void pool_roi(const RoiTables<T>& t, const scalar_t* im, int64_t pixel_stride, int64_t channel_stride, int64_t width,
              int64_t n, int64_t pooled_height, int64_t pooled_width, out_t* out, int64_t out_bin,
              int64_t out_c, std::vector<T>& rows, std::vector<T>& acc) {
  const int64_t bins = pooled_height * pooled_width;
  int64_t row_lo = 0, row_hi = -1;
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    if (t.ay[ph].first <= t.ay[ph].last) {
      row_lo = row_hi < row_lo ? t.ay[ph].first : std::min(row_lo, t.ay[ph].first);
      row_hi = std::max(row_hi, t.ay[ph].last);
    }
  }
  const int64_t num_rows = row_hi - row_lo + 1;
  if (num_rows <= 0) {
    for (int64_t b = 0; b < bins; ++b) {
      for (int64_t c = 0; c < n; ++c) {
        out[b * out_bin + c * out_c] = static_cast<out_t>(T(0));
      }
    }
    return;
  }
  const bool cached = num_rows * pooled_width * n <= kMaxRowCache;
  const bool lanes = channel_stride == 1;  // channels-last: the channel loop is innermost
  if constexpr (std::is_same_v<T, float> && roi_align_cpu::kVectorised<scalar_t>) {
    if (cached && lanes) {
      rows.assign(static_cast<size_t>(num_rows * pooled_width * n), 0.f);
      static const auto fn =
          cpu::use_avx2() ? pool_roi_lanes_avx2<scalar_t, out_t> : pool_roi_lanes_baseline<scalar_t, out_t>;
      fn(t, im, pixel_stride, width, n, pooled_height, pooled_width, row_lo, row_hi, out, out_bin, out_c,
         rows.data());
      return;
    }
  }
  if (cached) {
    // rows[((i - row_lo) * PW + pw) * n + c]
    rows.assign(static_cast<size_t>(num_rows * pooled_width * n), T(0));
    for (int64_t i = row_lo; i <= row_hi; ++i) {
      for (int64_t pw = 0; pw < pooled_width; ++pw) {
        const BinAxis<T>& ax = t.ax[pw];
        const TableWeights<T> wx = x_weights(t, pw);
        T* r = rows.data() + ((i - row_lo) * pooled_width + pw) * n;
        if (lanes) {
          for (int64_t j = ax.first; j <= ax.last; ++j) {
            const T w = wx(j);
            const scalar_t* px = im + (i * width + j) * pixel_stride;
            for (int64_t c = 0; c < n; ++c) {
              r[c] = r[c] + (w * static_cast<T>(px[c]));
            }
          }
        } else {
          for (int64_t c = 0; c < n; ++c) {
            const scalar_t* line = im + c * channel_stride + i * width;
            T v = T(0);
            for (int64_t j = ax.first; j <= ax.last; ++j) {
              v = v + (wx(j) * static_cast<T>(line[j]));
            }
            r[c] = v;
          }
        }
      }
    }
  }
  acc.resize(n);
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    const BinAxis<T>& ay = t.ay[ph];
    const TableWeights<T> wy = y_weights(t, ph);
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      out_t* o = out + (ph * pooled_width + pw) * out_bin;
      std::fill(acc.begin(), acc.end(), T(0));
      if (cached) {
        for (int64_t i = ay.first; i <= ay.last; ++i) {
          const T w = wy(i);
          const T* r = rows.data() + ((i - row_lo) * pooled_width + pw) * n;
          for (int64_t c = 0; c < n; ++c) {
            acc[c] = acc[c] + (w * r[c]);
          }
        }
      } else {
        for (int64_t c = 0; c < n; ++c) {
          const PlaneReader<scalar_t, T> v{im + c * channel_stride, width * pixel_stride, pixel_stride};
          acc[c] = bin_integral(ay, t.ax[pw], wy, x_weights(t, pw), v);
        }
      }
      for (int64_t c = 0; c < n; ++c) {
        o[c * out_c] = static_cast<out_t>(acc[c] / t.r.area);
      }
    }
  }
}

// out: [K, C, PH, PW] values in out_t, channels-last (bin-major) or NCHW memory.
template <typename scalar_t, typename out_t>
void forward_impl(const Tensor& input, bool channels_last, const Tensor& rois, const std::vector<int64_t>& image,
                  double spatial_scale, int64_t pooled_height, int64_t pooled_width, out_t* out,
                  bool out_channels_last) {
  using T = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1), height = input.size(2), width = input.size(3);
  const int64_t hw = height * width;
  const int64_t bins = pooled_height * pooled_width;
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const T* roi_data = rois.const_data_ptr<T>();
  const T scale = static_cast<T>(spatial_scale);
  const int64_t out_bin = out_channels_last ? channels : 1;
  const int64_t out_c = out_channels_last ? 1 : bins;

  const int64_t cblock = channel_block(channels, num_rois);
  const int64_t blocks = (channels + cblock - 1) / cblock;
  const int64_t grain = grain_for(16 * bins * cblock);
  cpu::parallel_for(0, num_rois * blocks, grain, [&](int64_t begin, int64_t end) {
    RoiTables<T> t;
    std::vector<T> rows, acc;
    int64_t tables_of = -1;
    bool live = false;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k = task / blocks;
      const int64_t c0 = (task % blocks) * cblock;
      const int64_t n = std::min(channels, c0 + cblock) - c0;
      if (k != tables_of) {
        live = t.set(roi_data + k * 5, scale, pooled_height, pooled_width, height, width);
        tables_of = k;
      }
      out_t* o = out + k * bins * channels + c0 * out_c;
      if (!live) {
        for (int64_t b = 0; b < bins; ++b) {
          for (int64_t c = 0; c < n; ++c) {
            o[b * out_bin + c * out_c] = static_cast<out_t>(T(0));
          }
        }
        continue;
      }
      const int64_t b = image[k];
      if (channels_last) {
        pool_roi<scalar_t, T, out_t>(t, in + b * hw * channels + c0, channels, 1, width, n, pooled_height,
                                     pooled_width, o, out_bin, out_c, rows, acc);
      } else {
        pool_roi<scalar_t, T, out_t>(t, in + (b * channels + c0) * hw, 1, hw, width, n, pooled_height,
                                     pooled_width, o, out_bin, out_c, rows, acc);
      }
    }
  });
}

// Whether the pooling reads the image in channels-last memory: always for a
// channels-last image; for an NCHW image when the rois read the map many times
// over (the vectorised channel loops then win back the copy), as roi_align does.
// About 16 pixel reads per bin and channel are assumed.
bool read_channels_last(const Tensor& input, int64_t num_rois, int64_t bins) {
  if (nchw_memory_format(input) == MemoryFormat::ChannelsLast) {
    return true;
  }
  const double reads = 16.0 * double(num_rois) * double(bins);
  const double pixels = double(input.size(0)) * double(input.size(2)) * double(input.size(3));
  return reads > 4.0 * pixels;
}

Tensor prroi_pool_forward_cpu(const Tensor& input, const Tensor& rois, double spatial_scale, int64_t pooled_height,
                              int64_t pooled_width) {
  detail::check_prroi_forward_args(input, rois, spatial_scale, pooled_height, pooled_width);
  ROI_EXT_CHECK(input.is_cpu(), "prroi_pool: input must be a CPU tensor, got ", device_of(input));
  const MemoryFormat fmt = nchw_memory_format(input);
  const ScalarType acc_type = opmath_type(input.scalar_type());
  const std::vector<int64_t> image =
      roi_align_cpu::batch_indices(rois, input.size(0), kForward, [](int64_t) { return true; });
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  if (input.size(2) == 0 || input.size(3) == 0) {
    return zeros(kForwardOutput, {num_rois, channels, pooled_height, pooled_width}, input.scalar_type(),
                 input.device(), fmt);
  }
  Tensor output = empty(kForwardOutput, {num_rois, channels, pooled_height, pooled_width}, input.scalar_type(),
                        input.device(), fmt);
  if (output.numel() == 0) {
    return output;
  }
  const bool channels_last = read_channels_last(input, num_rois, pooled_height * pooled_width);
  const Tensor input_ = contiguous(input, "prroi_pool: input (dense copy)",
                                   channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous);
  THO_DISPATCH_V2(
      input.scalar_type(), "prroi_pool_forward_cpu", AT_WRAP([&] {
        (forward_impl<scalar_t, scalar_t>)(input_, channels_last, rois_, image, spatial_scale, pooled_height,
                                           pooled_width, output.mutable_data_ptr<scalar_t>(),
                                           fmt == MemoryFormat::ChannelsLast);
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

// ---------------------------------------------------------------------------
// Gradient with respect to the input

// The shares of one bin for channels [c0, c0 + n) of a channels-last gradient
// image (im: channel c0 of pixel (0, 0); gsv[c] = g[c] / area): for every pixel
// (i, j) of the bin, dst[c] += (gsv[c] * wy(i)) * wx(j), rows ascending, columns
// ascending: the operations and order of the scalar kernels (and of the CUDA
// gather), in 8-float lanes where T is float.
template <typename T>
ROI_EXT_ALWAYS_INLINE void scatter_bin_lanes_scalar(T* im, int64_t channels, int64_t width, const BinAxis<T>& ay,
                                                    const BinAxis<T>& ax, const TableWeights<T>& wy,
                                                    const TableWeights<T>& wx, const T* gsv, T* rv, int64_t n) {
  for (int64_t i = ay.first; i <= ay.last; ++i) {
    const T w = wy(i);
    for (int64_t c = 0; c < n; ++c) {
      rv[c] = row_share(gsv[c], w);
    }
    for (int64_t j = ax.first; j <= ax.last; ++j) {
      const T u = wx(j);
      T* dst = im + (i * width + j) * channels;
      for (int64_t c = 0; c < n; ++c) {
        dst[c] += pixel_share(rv[c], u);
      }
    }
  }
}

ROI_EXT_ALWAYS_INLINE void scatter_bin_lanes_float(float* im, int64_t channels, int64_t width,
                                                   const BinAxis<float>& ay, const BinAxis<float>& ax,
                                                   const TableWeights<float>& wy, const TableWeights<float>& wx,
                                                   const float* gsv, float* rv, int64_t n) {
  using cpu::kLanes;
  using cpu::load8;
  using cpu::splat8;
  using cpu::store8;
  for (int64_t i = ay.first; i <= ay.last; ++i) {
    const float w = wy(i);
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) {
      store8(rv + c, load8(gsv + c) * splat8(w));
    }
    for (; c < n; ++c) {
      rv[c] = row_share(gsv[c], w);
    }
    for (int64_t j = ax.first; j <= ax.last; ++j) {
      const float u = wx(j);
      const cpu::vf8 uv = splat8(u);
      float* dst = im + (i * width + j) * channels;
      c = 0;
      for (; c + kLanes <= n; c += kLanes) {
        store8(dst + c, load8(dst + c) + (load8(rv + c) * uv));
      }
      for (; c < n; ++c) {
        dst[c] += pixel_share(rv[c], u);
      }
    }
  }
}

ROI_EXT_TARGET_AVX2 void scatter_bin_lanes_avx2(float* im, int64_t channels, int64_t width, const BinAxis<float>& ay,
                                                const BinAxis<float>& ax, const TableWeights<float>& wy,
                                                const TableWeights<float>& wx, const float* gsv, float* rv,
                                                int64_t n) {
  scatter_bin_lanes_float(im, channels, width, ay, ax, wy, wx, gsv, rv, n);
}

void scatter_bin_lanes_baseline(float* im, int64_t channels, int64_t width, const BinAxis<float>& ay,
                                const BinAxis<float>& ax, const TableWeights<float>& wy,
                                const TableWeights<float>& wx, const float* gsv, float* rv, int64_t n) {
  scatter_bin_lanes_float(im, channels, width, ay, ax, wy, wx, gsv, rv, n);
}

// grad: read through its strides. grad_input: zeroed, in the compute type T,
// channels-last or NCHW memory.
template <typename scalar_t>
void backward_impl(const Tensor& grad, const Tensor& rois, const std::vector<int64_t>& image, double spatial_scale,
                   int64_t batch_size, int64_t channels, int64_t height, int64_t width, bool channels_last,
                   Tensor& grad_input) {
  using T = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t pooled_height = grad.size(2), pooled_width = grad.size(3);
  const int64_t bins = pooled_height * pooled_width;
  const int64_t hw = height * width;
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const int64_t gs0 = grad.stride(0), gs1 = grad.stride(1), gs2 = grad.stride(2), gs3 = grad.stride(3);
  const T* roi_data = rois.const_data_ptr<T>();
  T* gi = grad_input.mutable_data_ptr<T>();
  const T scale = static_cast<T>(spatial_scale);

  // The rois of each image in ascending order (the order of the CUDA gather).
  const cpu::RoisByImage by_image = cpu::rois_by_image(image, batch_size);

  const int64_t cblock = channel_block(channels, batch_size, /*tasks_per_thread=*/1);
  const int64_t blocks = (channels + cblock - 1) / cblock;
  const int64_t rois_per_image = (num_rois + batch_size - 1) / std::max<int64_t>(batch_size, 1);
  const int64_t grain = grain_for(16 * rois_per_image * bins * cblock);
  cpu::parallel_for(0, batch_size * blocks, grain, [&](int64_t begin, int64_t end) {
    RoiTables<T> t;
    std::vector<T> gsv, rv;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks;
      const int64_t c0 = (task % blocks) * cblock;
      const int64_t n = std::min(channels, c0 + cblock) - c0;
      for (int64_t o = by_image.begin[b]; o < by_image.begin[b + 1]; ++o) {
        const int64_t k = by_image.order[o];
        if (!t.set(roi_data + k * 5, scale, pooled_height, pooled_width, height, width)) {
          continue;
        }
        const scalar_t* gk = g + k * gs0 + c0 * gs1;
        if (channels_last) {
          T* im = gi + b * hw * channels + c0;
          gsv.resize(n);
          rv.resize(n);
          for (int64_t ph = 0; ph < pooled_height; ++ph) {
            for (int64_t pw = 0; pw < pooled_width; ++pw) {
              const BinAxis<T>& ay = t.ay[ph];
              const BinAxis<T>& ax = t.ax[pw];
              const TableWeights<T> wy = y_weights(t, ph), wx = x_weights(t, pw);
              for (int64_t c = 0; c < n; ++c) {
                gsv[c] = static_cast<T>(gk[c * gs1 + ph * gs2 + pw * gs3]) / t.r.area;
              }
              if constexpr (std::is_same_v<T, float>) {
                static const auto fn = cpu::use_avx2() ? scatter_bin_lanes_avx2 : scatter_bin_lanes_baseline;
                fn(im, channels, width, ay, ax, wy, wx, gsv.data(), rv.data(), n);
              } else {
                scatter_bin_lanes_scalar<T>(im, channels, width, ay, ax, wy, wx, gsv.data(), rv.data(), n);
              }
            }
          }
        } else {
          for (int64_t c = 0; c < n; ++c) {
            T* im = gi + (b * channels + c0 + c) * hw;
            const scalar_t* gc = gk + c * gs1;
            for (int64_t ph = 0; ph < pooled_height; ++ph) {
              for (int64_t pw = 0; pw < pooled_width; ++pw) {
                const BinAxis<T>& ay = t.ay[ph];
                const BinAxis<T>& ax = t.ax[pw];
                const TableWeights<T> wy = y_weights(t, ph), wx = x_weights(t, pw);
                const T gsc = static_cast<T>(gc[ph * gs2 + pw * gs3]) / t.r.area;
                for (int64_t i = ay.first; i <= ay.last; ++i) {
                  const T r = row_share(gsc, wy(i));
                  T* dst = im + i * width;
                  for (int64_t j = ax.first; j <= ax.last; ++j) {
                    dst[j] += pixel_share(r, wx(j));
                  }
                }
              }
            }
          }
        }
      }
    }
  });
}

Tensor prroi_pool_backward_cpu(const Tensor& grad, const Tensor& rois, double spatial_scale, int64_t pooled_height,
                               int64_t pooled_width, int64_t batch_size, int64_t channels, int64_t height,
                               int64_t width, bool /*deterministic: the CPU kernel always is*/) {
  detail::check_prroi_backward_args(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                                    height, width);
  ROI_EXT_CHECK(grad.is_cpu(), "_prroi_pool_backward: grad must be a CPU tensor, got ", device_of(grad));
  const MemoryFormat fmt = nchw_memory_format(grad);
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const std::vector<int64_t> image =
      roi_align_cpu::batch_indices(rois, batch_size, kBackward, [](int64_t) { return true; });
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");
  // Where to accumulate: in channels-last memory (the vectorised channel loops)
  // for a channels-last gradient or when the rois cover the map many times over
  // (then converted once), else in the NCHW planes themselves.
  const double reads = 16.0 * double(rois.size(0)) * double(pooled_height * pooled_width);
  const bool channels_last = fmt == MemoryFormat::ChannelsLast ||
      reads > 4.0 * double(batch_size) * double(height) * double(width);
  const MemoryFormat acc_fmt = channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
  Tensor grad_input =
      zeros(kBackwardOutput, {batch_size, channels, height, width}, acc_type, grad.device(), acc_fmt);
  if (grad.numel() > 0 && grad_input.numel() > 0) {
    THO_DISPATCH_V2(
        grad.scalar_type(), "prroi_pool_backward_cpu", AT_WRAP([&] {
          backward_impl<scalar_t>(grad, rois_, image, spatial_scale, batch_size, channels, height, width,
                                  channels_last, grad_input);
        }),
        AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  }
  if (grad.scalar_type() == acc_type && acc_fmt == fmt) {
    return grad_input;
  }
  Tensor result =
      empty(kBackwardOutput, {batch_size, channels, height, width}, grad.scalar_type(), grad.device(), fmt);
  copy_into(result, grad_input);
  return result;
}

// ---------------------------------------------------------------------------
// Gradient with respect to the rois

// The bilinear taps of the four edges of every bin of a roi (the pixels next to
// x0 / x1 of each bin column and y0 / y1 of each bin row, with their weights
// hat(edge - j)), tabulated once per roi like the bin weights.
template <typename T>
struct EdgeTaps {
  Taps lo, hi;       // pixels around the bin's lower and upper edge
  T w_lo[2], w_hi[2];
};

template <typename T>
void edge_taps(const std::vector<BinAxis<T>>& axes, int64_t size, std::vector<EdgeTaps<T>>& out) {
  out.resize(axes.size());
  for (size_t p = 0; p < axes.size(); ++p) {
    EdgeTaps<T>& e = out[p];
    e.lo = point_taps(axes[p].lo, size);
    e.hi = point_taps(axes[p].hi, size);
    for (int64_t j = e.lo.first; j <= e.lo.last; ++j) {
      e.w_lo[j - e.lo.first] = hat(axes[p].lo, j);
    }
    for (int64_t j = e.hi.first; j <= e.hi.last; ++j) {
      e.w_hi[j - e.hi.first] = hat(axes[p].hi, j);
    }
  }
}

// out: [K, 5] in T, zeroed. The bin values first (the forward, in T, channels
// innermost), then a task per roi. The roi gradient is linear in the output
// gradient g, so for each bin the channels are contracted with g first: with
// G(i, j) = sum_c g[c] v(i, j, c), the bin needs sum_c g[c] out[c] and the edge
// integrals of G (edge_integrals' formula), and bin_roi_grad turns those five
// numbers into the bin's share. Bins are added row-major.
template <typename scalar_t, bool CL>
void backward_rois_impl(const Tensor& grad, const Tensor& input, const Tensor& rois,
                        const std::vector<int64_t>& image, double spatial_scale, Tensor& out) {
  using T = opmath_t<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1), height = input.size(2), width = input.size(3);
  const int64_t hw = height * width;
  const int64_t pooled_height = grad.size(2), pooled_width = grad.size(3);
  const int64_t bins = pooled_height * pooled_width;
  std::vector<T> values(static_cast<size_t>(num_rois * bins * channels));  // [K, PH, PW, C]
  (forward_impl<scalar_t, T>)(input, CL, rois, image, spatial_scale, pooled_height, pooled_width, values.data(),
                              true);
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const int64_t ps = CL ? channels : 1;  // between pixels
  const int64_t cs = CL ? 1 : hw;        // between channels
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const int64_t gs0 = grad.stride(0), gs1 = grad.stride(1), gs2 = grad.stride(2), gs3 = grad.stride(3);
  const T* roi_data = rois.const_data_ptr<T>();
  T* o = out.mutable_data_ptr<T>();
  const T scale = static_cast<T>(spatial_scale);
  // The edges of a bin: about 2 * (bin_h + bin_w + 4) taps per channel.
  const int64_t grain = grain_for(32 * bins * std::max<int64_t>(channels, 1));
  cpu::parallel_for(0, num_rois, grain, [&](int64_t begin, int64_t end) {
    RoiTables<T> t;
    std::vector<EdgeTaps<T>> ex, ey;
    std::vector<T> gv(channels);
    for (int64_t k = begin; k < end; ++k) {
      if (!t.set(roi_data + k * 5, scale, pooled_height, pooled_width, height, width)) {
        continue;
      }
      edge_taps(t.ax, width, ex);
      edge_taps(t.ay, height, ey);
      const scalar_t* im = in + image[k] * channels * hw;
      // G(i, j) for this bin: g contracted with the channels of pixel (i, j).
      auto G = [&](int64_t i, int64_t j) {
        return cpu::dot_channels<T, scalar_t>(gv.data(), im + (i * width + j) * ps, cs, channels);
      };
      T acc[4] = {T(0), T(0), T(0), T(0)};
      for (int64_t ph = 0; ph < pooled_height; ++ph) {
        const BinAxis<T>& ay = t.ay[ph];
        const EdgeTaps<T>& ty = ey[ph];
        const TableWeights<T> wy = y_weights(t, ph);
        for (int64_t pw = 0; pw < pooled_width; ++pw) {
          const BinAxis<T>& ax = t.ax[pw];
          const EdgeTaps<T>& tx = ex[pw];
          const TableWeights<T> wx = x_weights(t, pw);
          const scalar_t* gb = g + k * gs0 + ph * gs2 + pw * gs3;
          for (int64_t c = 0; c < channels; ++c) {
            gv[c] = static_cast<T>(gb[c * gs1]);
          }
          EdgeIntegrals<T> e{T(0), T(0), T(0), T(0)};
          // Along x = x0 and x = x1 over the bin's rows, then along y = y0 and
          // y = y1 over its columns.
          for (int64_t i = ay.first; i <= ay.last; ++i) {
            T vl = T(0), vr = T(0);
            for (int64_t j = tx.lo.first; j <= tx.lo.last; ++j) {
              vl = vl + (tx.w_lo[j - tx.lo.first] * G(i, j));
            }
            for (int64_t j = tx.hi.first; j <= tx.hi.last; ++j) {
              vr = vr + (tx.w_hi[j - tx.hi.first] * G(i, j));
            }
            const T w = wy(i);
            e.left = e.left + (w * vl);
            e.right = e.right + (w * vr);
          }
          for (int64_t j = ax.first; j <= ax.last; ++j) {
            T vt = T(0), vb = T(0);
            for (int64_t i = ty.lo.first; i <= ty.lo.last; ++i) {
              vt = vt + (ty.w_lo[i - ty.lo.first] * G(i, j));
            }
            for (int64_t i = ty.hi.first; i <= ty.hi.last; ++i) {
              vb = vb + (ty.w_hi[i - ty.hi.first] * G(i, j));
            }
            const T w = wx(j);
            e.top = e.top + (w * vt);
            e.bottom = e.bottom + (w * vb);
          }
          const T* value = values.data() + (k * bins + ph * pooled_width + pw) * channels;
          const T g_out = cpu::dot_channels<T, T>(gv.data(), value, 1, channels);
          const Grad4<T> d = bin_roi_grad(t.r, ph, pw, pooled_height, pooled_width, scale, g_out, e, T(1));
          for (int q = 0; q < 4; ++q) {
            acc[q] = acc[q] + d.v[q];
          }
        }
      }
      for (int q = 0; q < 4; ++q) {
        o[k * 5 + 1 + q] = acc[q];
      }
    }
  });
}

Tensor prroi_pool_backward_rois_cpu(const Tensor& grad, const Tensor& input, const Tensor& rois,
                                    double spatial_scale, int64_t pooled_height, int64_t pooled_width) {
  detail::check_prroi_backward_rois_args(grad, input, rois, spatial_scale, pooled_height, pooled_width);
  ROI_EXT_CHECK(input.is_cpu(), "_prroi_pool_backward_rois: input must be a CPU tensor, got ", device_of(input));
  ROI_EXT_CHECK_TYPE(grad.scalar_type() == input.scalar_type(),
                     "_prroi_pool_backward_rois: grad must have the dtype of input (", dtype_name(input.scalar_type()),
                     "), got ", dtype_name(grad.scalar_type()));
  const ScalarType acc_type = opmath_type(input.scalar_type());
  const std::vector<int64_t> image =
      roi_align_cpu::batch_indices(rois, input.size(0), kBackwardRois, [](int64_t) { return true; });
  const Tensor rois_ = contiguous(to_dtype(rois, acc_type), "rois");
  Tensor out = zeros(kBackwardRoisOutput, {rois.size(0), 5}, acc_type, input.device());
  if (grad.numel() > 0 && input.size(2) > 0 && input.size(3) > 0) {
    const bool channels_last = read_channels_last(input, rois.size(0), pooled_height * pooled_width);
    const Tensor input_ = contiguous(input, "_prroi_pool_backward_rois: input (dense copy)",
                                     channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous);
    THO_DISPATCH_V2(
        input.scalar_type(), "prroi_pool_backward_rois_cpu", AT_WRAP([&] {
          if (channels_last) {
            (backward_rois_impl<scalar_t, true>)(grad, input_, rois_, image, spatial_scale, out);
          } else {
            (backward_rois_impl<scalar_t, false>)(grad, input_, rois_, image, spatial_scale, out);
          }
        }),
        AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  }
  return to_dtype(out, rois.scalar_type());
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(roi_ext, CPU, m) {
  m.impl("prroi_pool", TORCH_BOX(&prroi_pool_forward_cpu));
  m.impl("_prroi_pool_backward", TORCH_BOX(&prroi_pool_backward_cpu));
  m.impl("_prroi_pool_backward_rois", TORCH_BOX(&prroi_pool_backward_rois_cpu));
}

}  // namespace roi_ext

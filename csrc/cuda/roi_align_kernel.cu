// CUDA kernels of roi_ext::roi_align (also registered as roi_align_with_box_grad),
// roi_ext::_roi_align_backward and roi_ext::_roi_align_backward_rois: thin
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
// torch.are_deterministic_algorithms_enabled()) a gather is used instead (see
// backward_gather_kernel): every grad_input element receives the same shares,
// in the CPU kernel's order (roi, bin, sample, corner), so the result is bitwise
// reproducible and equal to the CPU's, for about twice the atomic kernel's work.
//
// No host synchronisation: the batch indices are not checked on the host (that
// would mean copying them there). A roi whose batch index is not in [0, N) (or
// NaN) reads nothing: its output is 0 and it adds nothing to grad_input. The
// CPU kernels raise an IndexError for it instead (SPEC.md Part A12).
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch_v2.h>

#include <limits>

#include "../common/roi_align_args.h"
#include "../common/roi_align_math.h"
#include "../common/stable.h"
#include "cuda_utils.cuh"
#include "rois.cuh"

namespace roi_ext {
namespace {

using namespace roi_align_math;

using cuda::Layout;

// What a kernel needs of roi k: its image (-1 when the batch index is not in
// [0, batch)) and geometry; `skip` when it has nothing to compute (no valid
// image, or more samples than kMaxSamplesPerRoi, which the CPU refuses).
template <typename acc_t>
struct Roi {
  int64_t image;
  RoiGeometry<acc_t> g;
  bool too_many_samples;
};

template <typename acc_t>
__host__ __device__ inline Roi<acc_t> load_roi(
    const acc_t* roi,
    int64_t batch,
    acc_t spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode) {
  Roi<acc_t> r;
  r.image = valid_batch_index(roi[0], batch) ? static_cast<int64_t>(roi[0]) : -1;
  r.g = roi_geometry(roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, roi_end_mode);
  r.too_many_samples = exceeds_sample_limit(r.g, pooled_height, pooled_width);
  return r;
}

struct RoiArgs {
  int64_t pooled_height, pooled_width, sampling_ratio, roi_end_mode;
  bool aligned;
};


template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(
    int64_t total,
    const scalar_t* __restrict__ input,
    const acc_t* __restrict__ rois,
    acc_t spatial_scale,
    Layout in,
    RoiArgs a,
    scalar_t* __restrict__ output) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t k, c, ph, pw;
    cuda::decompose_nchw(index, in.channels, a.pooled_height, a.pooled_width, in.channels_last, k, c, ph, pw);
    const Roi<acc_t> r = load_roi(rois + k * 5, in.batch, spatial_scale, a.pooled_height, a.pooled_width,
                                  a.sampling_ratio, a.aligned, a.roi_end_mode);
    if (r.image < 0) {
      output[index] = static_cast<scalar_t>(acc_t(0));
      continue;
    }
    if (r.too_many_samples) {
      output[index] = static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN());
      continue;
    }
    const RoiGeometry<acc_t>& g = r.g;
    const scalar_t* base = input + in.plane(r.image, c);
    const int64_t ps = in.pixel_stride();
    acc_t sum = 0;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        ROI_EXT_COUNT_WORK(1);
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

// Strides of the output gradient [K, C, PH, PW] (any layout, stride 0 too).
struct GradStrides {
  int64_t k, c, h, w;
};

// Atomic scatter into grad_input (acc_t storage, `out` layout).
template <typename scalar_t, typename acc_t>
__global__ void backward_atomic_kernel(
    int64_t total,
    const scalar_t* __restrict__ grad,
    GradStrides gs,
    const acc_t* __restrict__ rois,
    acc_t spatial_scale,
    Layout out,
    RoiArgs a,
    acc_t* __restrict__ grad_input) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t k, c, ph, pw;
    cuda::decompose_nchw(index, out.channels, a.pooled_height, a.pooled_width, out.channels_last, k, c, ph, pw);
    const Roi<acc_t> r = load_roi(rois + k * 5, out.batch, spatial_scale, a.pooled_height, a.pooled_width,
                                  a.sampling_ratio, a.aligned, a.roi_end_mode);
    if (r.image < 0 || r.too_many_samples) {
      continue;
    }
    const RoiGeometry<acc_t>& g = r.g;
    const acc_t gval = static_cast<acc_t>(grad[k * gs.k + c * gs.c + ph * gs.h + pw * gs.w]);
    const acc_t count = sample_count(g);
    acc_t* base = grad_input + out.plane(r.image, c);
    const int64_t ps = out.pixel_stride();
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        ROI_EXT_COUNT_WORK(1);
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

// The samples of one axis of a roi, numbered s = bin * grid + i (bin p, sample
// i): the indices whose pixels (axis_taps) touch [lo, hi), found without
// visiting the others (cuda::candidate_range), then narrowed to the first and
// last that do.
template <typename acc_t>
__host__ __device__ inline cuda::IndexRange touching_samples(
    acc_t start,
    acc_t bin,
    int64_t grid,
    int64_t pooled,
    int64_t size,
    int64_t lo,
    int64_t hi) {
  // A sample v touches rows floor(v) and floor(v) + 1 for v in (0, size - 1),
  // rows 0 and 1 for v in [-1, 0], row size - 1 for v in [size - 1, size]:
  // those in [lo, hi) only if v lies in [lo - 1, hi] (or lo <= 1 and v >= -1).
  const double v_lo = lo <= 1 ? -1.0 : static_cast<double>(lo - 1);
  const double v_hi = static_cast<double>(hi);
  // |computed - (first + s * step)| is a few roundings of numbers up to
  // |start| + pooled * |bin|; 8 of them is a safe bound, 1 pixel more for luck.
  const double magnitude = ::fabs(static_cast<double>(start)) +
      (static_cast<double>(pooled) + 1.0) * ::fabs(static_cast<double>(bin));
  const double slack = 1.0 + 8.0 * static_cast<double>(std::numeric_limits<acc_t>::epsilon()) * magnitude;
  const double step = static_cast<double>(bin) / static_cast<double>(grid);
  const double first = static_cast<double>(start) + 0.5 * step;
  const cuda::IndexRange r = cuda::candidate_range(first, step, pooled * grid, v_lo, v_hi, slack);
  return cuda::narrow_range(r, [&](int64_t s) {
    AxisTaps<acc_t> t;
    return axis_taps(sample_coord(start, s / grid, bin, s % grid, grid), size, t) &&
        ((t.low >= lo && t.low < hi) || (t.high >= lo && t.high < hi));
  });
}

// Deterministic gather. Thread = (tile, channel), channel fastest; it owns the
// tile's pixels of that channel in every image of grad_acc (channels-last,
// acc_t, zeroed). It visits the rois in order k = 0, 1, ..., and of each roi
// the samples touching its tile in the order (bin row, bin column, sample row,
// sample column), adding each corner's share to the pixel it lands on if the
// thread owns it: each element receives exactly the CPU kernel's shares in the
// CPU kernel's order (roi, bin, sample, corner), hence the same bits. The work
// is about twice the atomic kernel's (a sample touches two rows; a thread owns
// both when they lie in its tile) plus one scan of the rois per tile.
template <typename scalar_t, typename acc_t>
__global__ void backward_gather_kernel(
    int64_t total,
    const scalar_t* __restrict__ grad,
    GradStrides gs,
    const acc_t* __restrict__ rois,
    int64_t num_rois,
    acc_t spatial_scale,
    Layout out,
    cuda::Tiling tiling,
    RoiArgs a,
    acc_t* __restrict__ grad_acc) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    const int64_t channels = out.channels, height = out.height, width = out.width;
    const int64_t c = index % channels;
    const int64_t tile = index / channels;
    const int64_t y0 = (tile / tiling.tiles_x) * tiling.tile_h;
    const int64_t x0 = (tile % tiling.tiles_x) * tiling.tile_w;
    const int64_t y1 = y0 + tiling.tile_h < height ? y0 + tiling.tile_h : height;
    const int64_t x1 = x0 + tiling.tile_w < width ? x0 + tiling.tile_w : width;
    for (int64_t k = 0; k < num_rois; ++k) {
      const Roi<acc_t> r = load_roi(rois + k * 5, out.batch, spatial_scale, a.pooled_height, a.pooled_width,
                                    a.sampling_ratio, a.aligned, a.roi_end_mode);
      const RoiGeometry<acc_t>& g = r.g;
      if (r.image < 0 || r.too_many_samples || g.grid_h <= 0 || g.grid_w <= 0) {
        ROI_EXT_COUNT_WORK(1);
        continue;
      }
      const cuda::IndexRange sy =
          touching_samples(g.start_h, g.bin_h, g.grid_h, a.pooled_height, height, y0, y1);
      if (sy.begin > sy.end) {
        ROI_EXT_COUNT_WORK(1);
        continue;
      }
      const cuda::IndexRange sx =
          touching_samples(g.start_w, g.bin_w, g.grid_w, a.pooled_width, width, x0, x1);
      if (sx.begin > sx.end) {
        ROI_EXT_COUNT_WORK(1);
        continue;
      }
      const acc_t count = sample_count(g);
      acc_t* image = grad_acc + r.image * height * width * channels + c;
      const scalar_t* gk = grad + k * gs.k + c * gs.c;
      for (int64_t ph = sy.begin / g.grid_h; ph <= sy.end / g.grid_h; ++ph) {
        const int64_t iy_begin = sy.begin > ph * g.grid_h ? sy.begin - ph * g.grid_h : 0;
        const int64_t iy_end = sy.end < (ph + 1) * g.grid_h ? sy.end - ph * g.grid_h : g.grid_h - 1;
        for (int64_t pw = sx.begin / g.grid_w; pw <= sx.end / g.grid_w; ++pw) {
          const int64_t ix_begin = sx.begin > pw * g.grid_w ? sx.begin - pw * g.grid_w : 0;
          const int64_t ix_end = sx.end < (pw + 1) * g.grid_w ? sx.end - pw * g.grid_w : g.grid_w - 1;
          const acc_t gval = static_cast<acc_t>(gk[ph * gs.h + pw * gs.w]);
          for (int64_t iy = iy_begin; iy <= iy_end; ++iy) {
            AxisTaps<acc_t> ay;
            if (!axis_taps(sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h), height, ay) ||
                !((ay.low >= y0 && ay.low < y1) || (ay.high >= y0 && ay.high < y1))) {
              ROI_EXT_COUNT_WORK(1);
              continue;
            }
            for (int64_t ix = ix_begin; ix <= ix_end; ++ix) {
              ROI_EXT_COUNT_WORK(1);
              AxisTaps<acc_t> ax;
              if (!axis_taps(sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w), width, ax)) {
                continue;
              }
              const BilinearWeights<acc_t> w = bilinear_weights(ay, ax);
              const int64_t ys[4] = {ay.low, ay.low, ay.high, ay.high};
              const int64_t xs[4] = {ax.low, ax.high, ax.low, ax.high};
              const acc_t ws[4] = {w.w1, w.w2, w.w3, w.w4};
              for (int corner = 0; corner < 4; ++corner) {
                if (ys[corner] >= y0 && ys[corner] < y1 && xs[corner] >= x0 && xs[corner] < x1) {
                  image[(ys[corner] * width + xs[corner]) * channels] += corner_grad(gval, ws[corner], count);
                }
              }
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// _roi_align_backward_rois (roi_align(..., box_grad=True)): a block per roi
// (cuda::launch_block_reduce). Thread t of n takes the items j = t, t + n, ... of
// the roi's (bin row, bin column, sample row, sample column, channel) space
// (channel fastest: coalesced for channels-last inputs) and sums their terms
// (roi_align_math.h: bilinear_slopes, sample_coord_grad); the block adds the
// threads' sums as a binary tree in a fixed order: no atomics, the same bits on
// every run. A roi with an invalid batch index or too many samples gets a zero
// gradient (nothing is checked on the host).

// The four sums of a roi's coordinate gradient, added element-wise.
template <typename T>
struct CoordGradSum {
  RoiCoordGrad<T> s;
  __host__ __device__ friend CoordGradSum operator+(const CoordGradSum& a, const CoordGradSum& b) {
    return CoordGradSum{{a.s.x1 + b.s.x1, a.s.y1 + b.s.y1, a.s.x2 + b.s.x2, a.s.y2 + b.s.y2}};
  }
};

template <typename scalar_t, typename acc_t>
struct RoiCoordGradients {
  using Value = CoordGradSum<acc_t>;
  const scalar_t* grad;  // [K, C, PH, PW], strides gs
  GradStrides gs;
  const scalar_t* input;  // layout `in`
  Layout in;
  const acc_t* rois;  // [K, 5] in acc_t
  acc_t spatial_scale;
  RoiArgs a;
  acc_t* out;  // [K, 5] in acc_t, zeroed

  __host__ __device__ Roi<acc_t> roi(int64_t k) const {
    return load_roi(rois + k * 5, in.batch, spatial_scale, a.pooled_height, a.pooled_width, a.sampling_ratio,
                    a.aligned, a.roi_end_mode);
  }

  __host__ __device__ Value partial(int64_t k, int thread, int threads) const {
    Value acc{{acc_t(0), acc_t(0), acc_t(0), acc_t(0)}};
    const Roi<acc_t> r = roi(k);
    if (r.image < 0 || r.too_many_samples) {
      return acc;
    }
    const RoiGeometry<acc_t>& g = r.g;
    const int64_t channels = in.channels;
    // Grids are >= 0 and the sample total is within kMaxSamplesPerRoi here.
    const int64_t n = a.pooled_height * a.pooled_width * g.grid_h * g.grid_w * channels;
    const scalar_t* base = input + in.plane(r.image, 0);
    const int64_t ps = in.pixel_stride();
    const int64_t cs = in.channels_last ? 1 : in.height * in.width;
    for (int64_t j = thread; j < n; j += threads) {
      ROI_EXT_COUNT_WORK(1);
      const int64_t c = j % channels;
      int64_t rest = j / channels;
      const int64_t ix = rest % g.grid_w;
      rest /= g.grid_w;
      const int64_t iy = rest % g.grid_h;
      rest /= g.grid_h;
      const int64_t pw = rest % a.pooled_width;
      const int64_t ph = rest / a.pooled_width;
      AxisTaps<acc_t> ay, ax;
      acc_t slope_y, slope_x;
      if (!axis_taps_slope(sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h), in.height, ay, slope_y) ||
          !axis_taps_slope(sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w), in.width, ax, slope_x) ||
          (slope_y == acc_t(0) && slope_x == acc_t(0))) {
        continue;
      }
      const scalar_t* im = base + c * cs;
      const SampleSlopes<acc_t> d = bilinear_slopes(
          ay, slope_y, ax, slope_x,
          static_cast<acc_t>(im[(ay.low * in.width + ax.low) * ps]),
          static_cast<acc_t>(im[(ay.low * in.width + ax.high) * ps]),
          static_cast<acc_t>(im[(ay.high * in.width + ax.low) * ps]),
          static_cast<acc_t>(im[(ay.high * in.width + ax.high) * ps]));
      const acc_t gv = static_cast<acc_t>(grad[k * gs.k + c * gs.c + ph * gs.h + pw * gs.w]);
      add_sample_coord_grad(
          acc.s, gv * d.d_dy, gv * d.d_dx,
          sample_coord_grad(spatial_scale, ph, iy, g.grid_h, a.pooled_height, g.size_clamped_h),
          sample_coord_grad(spatial_scale, pw, ix, g.grid_w, a.pooled_width, g.size_clamped_w));
    }
    return acc;
  }

  __host__ __device__ void finish(int64_t k, const Value& total) const {
    const acc_t count = sample_count(roi(k).g);
    out[k * 5 + 1] = total.s.x1 / count;
    out[k * 5 + 2] = total.s.y1 / count;
    out[k * 5 + 3] = total.s.x2 / count;
    out[k * 5 + 4] = total.s.y2 / count;
  }
};

template <typename scalar_t, typename acc_t>
void launch_backward_rois(const Tensor& grad, const Tensor& input, const Layout& layout, const Tensor& rois,
                          double spatial_scale, const RoiArgs& args, Tensor& out, cudaStream_t stream) {
  const RoiCoordGradients<scalar_t, acc_t> f{
      grad.const_data_ptr<scalar_t>(), GradStrides{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)},
      input.const_data_ptr<scalar_t>(), layout, rois.const_data_ptr<acc_t>(), static_cast<acc_t>(spatial_scale),
      args, out.mutable_data_ptr<acc_t>()};
  cuda::launch_block_reduce(f, rois.size(0), stream);
}

constexpr const char* kForwardOutput = "roi_align: output for output_size (pooled_height, pooled_width)";
constexpr const char* kBackwardOutput =
    "_roi_align_backward: grad_input for (batch_size, channels, height, width)";
constexpr const char* kBackwardRoisOutput = "_roi_align_backward_rois: grad_rois for rois";

// With sampling_ratio > 0 every roi needs the same number of samples: refused
// on the host, before any launch, with the CPU kernel's error (which names the
// first roi). Adaptive sampling: see kMaxSamplesPerRoi.
void check_fixed_sample_count(int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio) {
  if (sampling_ratio <= 0) {
    return;
  }
  const double total = roi_sample_total(pooled_height, pooled_width, sampling_ratio, sampling_ratio);
  ROI_EXT_CHECK_VALUE(
      total <= static_cast<double>(kMaxSamplesPerRoi),
      "roi_align: roi ",
      0,
      " would need ",
      total,
      " bilinear samples (output_size x sampling_ratio^2, or adaptive sampling of a "
      "huge roi); pass a smaller positive sampling_ratio");
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
  detail::check_roi_align_forward_args(input, rois, spatial_scale, pooled_height, pooled_width, roi_end_mode);
  ROI_EXT_CHECK(cuda::on_device(input), "roi_align: input must be ", cuda::kDeviceTensor, ", got ",
                device_of(input));
  const cuda::DeviceGuard guard(input);
  const cudaStream_t stream = cuda::current_stream(input);

  const MemoryFormat fmt = detail::roi_align_memory_format(input);
  const ScalarType acc_type = opmath_type(input.scalar_type());
  const Tensor rois_ = cuda::rois_in_compute_type(rois, acc_type, input.size(0), stream);
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
  check_fixed_sample_count(pooled_height, pooled_width, sampling_ratio);
  const Tensor input_ = contiguous(input, "roi_align: input", fmt);
  const Layout layout{input.size(0), channels, height, width, fmt == MemoryFormat::ChannelsLast};
  const RoiArgs args{pooled_height, pooled_width, sampling_ratio, roi_end_mode, aligned};
  const int64_t total = output.numel();
  THO_DISPATCH_V2(
      input.scalar_type(), "roi_align_forward_cuda", AT_WRAP([&] {
        using acc_t = opmath_t<scalar_t>;
        cuda::launch(
            forward_kernel<scalar_t, acc_t>, total, stream,
            total, input_.const_data_ptr<scalar_t>(), rois_.const_data_ptr<acc_t>(),
            static_cast<acc_t>(spatial_scale), layout, args, output.mutable_data_ptr<scalar_t>());
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
      grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width, roi_end_mode);
  ROI_EXT_CHECK(cuda::on_device(grad), "_roi_align_backward: grad must be ", cuda::kDeviceTensor, ", got ",
                device_of(grad));
  const cuda::DeviceGuard guard(grad);
  const cudaStream_t stream = cuda::current_stream(grad);

  const MemoryFormat fmt = detail::roi_align_memory_format(grad);
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const Tensor rois_ = cuda::rois_in_compute_type(rois, acc_type, batch_size, stream);
  const Layout layout{batch_size, channels, height, width, fmt == MemoryFormat::ChannelsLast};
  if (grad.numel() == 0 || batch_size * channels * height * width == 0) {
    return roi_ext::zeros(kBackwardOutput, {batch_size, channels, height, width}, grad.scalar_type(), grad.device(),
                          fmt);
  }
  check_fixed_sample_count(pooled_height, pooled_width, sampling_ratio);
  const GradStrides gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
  const RoiArgs args{pooled_height, pooled_width, sampling_ratio, roi_end_mode, aligned};
  return THO_DISPATCH_V2(
      grad.scalar_type(), "roi_align_backward_cuda", AT_WRAP([&]() -> Tensor {
        using acc_t = opmath_t<scalar_t>;
        if (deterministic) {
          // Accumulated channels-last in acc_t, as the CPU kernel does, then
          // converted once to grad's dtype and memory format.
          Tensor acc = roi_ext::zeros(kBackwardOutput, {batch_size, channels, height, width}, acc_type,
                                      grad.device(), MemoryFormat::ChannelsLast);
          const int64_t per_roi = pooled_height * pooled_width * std::max<int64_t>(sampling_ratio, 1) *
              std::max<int64_t>(sampling_ratio, 1);
          const cuda::Tiling tiling = cuda::choose_tiling(height, width, per_roi);
          const int64_t total = tiling.count() * channels;
          cuda::launch(
              backward_gather_kernel<scalar_t, acc_t>, total, stream,
              total, grad.const_data_ptr<scalar_t>(), gs, rois_.const_data_ptr<acc_t>(), rois_.size(0),
              static_cast<acc_t>(spatial_scale), layout, tiling, args, acc.mutable_data_ptr<acc_t>());
          if (grad.scalar_type() == acc_type && fmt == MemoryFormat::ChannelsLast) {
            return acc;
          }
          Tensor result = roi_ext::empty(kBackwardOutput, {batch_size, channels, height, width}, grad.scalar_type(),
                                         grad.device(), fmt);
          copy_into(result, acc);
          return result;
        }
        Tensor acc = roi_ext::zeros(
            kBackwardOutput, {batch_size, channels, height, width}, acc_type, grad.device(), fmt);
        const int64_t total = grad.numel();
        cuda::launch(
            backward_atomic_kernel<scalar_t, acc_t>, total, stream,
            total, grad.const_data_ptr<scalar_t>(), gs, rois_.const_data_ptr<acc_t>(),
            static_cast<acc_t>(spatial_scale), layout, args, acc.mutable_data_ptr<acc_t>());
        return to_dtype(acc, grad.scalar_type());
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
}

Tensor roi_align_backward_rois_cuda(
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
  ROI_EXT_CHECK(cuda::on_device(input), "_roi_align_backward_rois: input must be ", cuda::kDeviceTensor, ", got ",
                device_of(input));
  const cuda::DeviceGuard guard(input);
  const cudaStream_t stream = cuda::current_stream(input);

  const ScalarType acc_type = opmath_type(input.scalar_type());
  const Tensor rois_ = cuda::rois_in_compute_type(rois, acc_type, input.size(0), stream);
  Tensor out = roi_ext::zeros(kBackwardRoisOutput, {rois.size(0), 5}, acc_type, rois.device());
  if (grad.numel() == 0 || input.numel() == 0) {
    return to_dtype(out, rois.scalar_type());
  }
  check_fixed_sample_count(pooled_height, pooled_width, sampling_ratio);
  const MemoryFormat fmt = detail::roi_align_memory_format(input);
  const Tensor input_ = contiguous(input, "_roi_align_backward_rois: input", fmt);
  const Tensor grad_ = to_dtype(grad, input.scalar_type());
  const Layout layout{input.size(0), input.size(1), input.size(2), input.size(3), fmt == MemoryFormat::ChannelsLast};
  const RoiArgs args{pooled_height, pooled_width, sampling_ratio, roi_end_mode, aligned};
  THO_DISPATCH_V2(
      input.scalar_type(), "roi_align_backward_rois_cuda", AT_WRAP([&] {
        (launch_backward_rois<scalar_t, opmath_t<scalar_t>>)(grad_, input_, layout, rois_, spatial_scale, args, out,
                                                             stream);
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return to_dtype(out, rois.scalar_type());
}

}  // namespace

ROI_EXT_CUDA_LIBRARY_IMPL(m) {
  m.impl("roi_align", TORCH_BOX(&roi_align_forward_cuda));
  m.impl("_roi_align_backward", TORCH_BOX(&roi_align_backward_cuda));
  // roi_align(..., box_grad=True): the same forward, another autograd formula.
  m.impl("roi_align_with_box_grad", TORCH_BOX(&roi_align_forward_cuda));
  m.impl("_roi_align_backward_rois", TORCH_BOX(&roi_align_backward_rois_cuda));
}

}  // namespace roi_ext

// CUDA kernels of roi_ext::prroi_pool (Precise RoI Pooling), _prroi_pool_backward
// and _prroi_pool_backward_rois: grid-stride loops and block reductions around
// csrc/common/prroi_pool_math.h, so CUDA computes what the CPU computes (built
// with --fmad=false).
//
// * Forward: a thread per output element (channel fastest for channels_last
//   tensors: a warp reads consecutive channels of a pixel). Its sum runs in the
//   CPU kernel's order: the same bits.
// * Input gradient: by default a thread per output-gradient element scatters
//   its shares with atomicAdd (float32 accumulation for 16-bit types). With
//   deterministic=True (Python passes torch.are_deterministic_algorithms_enabled())
//   a gather: a thread owns a tile of pixels of one channel in every image and
//   adds the shares landing there in the CPU kernel's order (roi, bin row, bin
//   column): bitwise the CPU result.
// * Roi gradient: a block per roi (cuda::launch_block_reduce); thread t sums the
//   terms of the (channel, bin) items t, t + 256, ...; the block adds the
//   threads' sums as a fixed binary tree. Deterministic, with no atomics; equal
//   to the CPU result within rounding (the CPU adds the same terms serially).
//
// No host synchronisation: batch indices are resolved on the device. A roi
// whose batch index is not in [0, N) (or NaN) reads nothing: output 0, no
// gradient (the CPU kernels raise IndexError instead).
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch_v2.h>

#include <vector>

#include "../common/prroi_pool_args.h"
#include "../common/prroi_pool_math.h"
#include "../common/stable.h"
#include "cuda_utils.cuh"
#include "rois.cuh"

namespace roi_ext {
namespace {

using namespace prroi_math;

using cuda::Layout;
using cuda::Sum4;

struct Pooled {
  int64_t height, width;
};

struct Strides4 {
  int64_t s0, s1, s2, s3;
};

// Pixel (i, j) of one channel plane, in T.
template <typename scalar_t, typename T>
struct PlaneReader {
  const scalar_t* p;
  int64_t row_stride, col_stride;
  __host__ __device__ T operator()(int64_t i, int64_t j) const {
    return static_cast<T>(p[i * row_stride + j * col_stride]);
  }
};

// Image of roi k (-1: invalid batch index; the rois in the compute type carry
// -1 there already when they were converted, see rois.cuh).
template <typename T>
__host__ __device__ inline int64_t roi_image(const T* roi, int64_t batch) {
  return valid_batch_index(roi[0], batch) ? static_cast<int64_t>(roi[0]) : -1;
}

template <typename scalar_t, typename T>
__global__ void forward_kernel(int64_t total, const scalar_t* __restrict__ input, const T* __restrict__ rois,
                               T spatial_scale, Layout in, Pooled pooled, scalar_t* __restrict__ output) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t k, c, ph, pw;
    cuda::decompose_nchw(index, in.channels, pooled.height, pooled.width, in.channels_last, k, c, ph, pw);
    const T* roi = rois + k * 5;
    const int64_t b = roi_image(roi, in.batch);
    const PrRoi<T> r = prroi_geometry(roi, spatial_scale, pooled.height, pooled.width);
    if (b < 0 || r.empty) {
      output[index] = static_cast<scalar_t>(T(0));
      continue;
    }
    const BinAxis<T> ay = bin_axis(r.start_h, r.bin_h, ph, in.height);
    const BinAxis<T> ax = bin_axis(r.start_w, r.bin_w, pw, in.width);
    ROI_EXT_COUNT_WORK((ay.last - ay.first + 1) * (ax.last - ax.first + 1));
    const PlaneReader<scalar_t, T> v{input + in.plane(b, c), in.width * in.pixel_stride(), in.pixel_stride()};
    output[index] = static_cast<scalar_t>(bin_integral(ay, ax, hat_weights(ay), hat_weights(ax), v) / r.area);
  }
}

// Atomic scatter into grad_input (T storage, `out` layout).
template <typename scalar_t, typename T>
__global__ void backward_atomic_kernel(int64_t total, const scalar_t* __restrict__ grad, Strides4 gs,
                                       const T* __restrict__ rois, T spatial_scale, Layout out, Pooled pooled,
                                       T* __restrict__ grad_input) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    int64_t k, c, ph, pw;
    cuda::decompose_nchw(index, out.channels, pooled.height, pooled.width, out.channels_last, k, c, ph, pw);
    const T* roi = rois + k * 5;
    const int64_t b = roi_image(roi, out.batch);
    const PrRoi<T> r = prroi_geometry(roi, spatial_scale, pooled.height, pooled.width);
    if (b < 0 || r.empty) {
      continue;
    }
    const BinAxis<T> ay = bin_axis(r.start_h, r.bin_h, ph, out.height);
    const BinAxis<T> ax = bin_axis(r.start_w, r.bin_w, pw, out.width);
    const T gsc = static_cast<T>(grad[k * gs.s0 + c * gs.s1 + ph * gs.s2 + pw * gs.s3]) / r.area;
    T* base = grad_input + out.plane(b, c);
    const int64_t ps = out.pixel_stride();
    for (int64_t i = ay.first; i <= ay.last; ++i) {
      const T row = row_share(gsc, hat_weight(ay.lo, ay.hi, i));
      for (int64_t j = ax.first; j <= ax.last; ++j) {
        ROI_EXT_COUNT_WORK(1);
        atomicAdd(base + (i * out.width + j) * ps, pixel_share(row, hat_weight(ax.lo, ax.hi, j)));
      }
    }
  }
}

// Deterministic gather. Thread = (tile, channel), channel fastest; it owns the
// tile's pixels of that channel in every image of grad_acc (channels-last, T,
// zeroed) and visits the rois in order k = 0, 1, ..., and of each roi the bins
// whose pixels meet its tile, row by row: every element receives the CPU
// kernel's shares in the CPU kernel's order.
template <typename scalar_t, typename T>
__global__ void backward_gather_kernel(int64_t total, const scalar_t* __restrict__ grad, Strides4 gs,
                                       const T* __restrict__ rois, int64_t num_rois, T spatial_scale, Layout out,
                                       Pooled pooled, cuda::Tiling tiling, T* __restrict__ grad_acc) {
  ROI_EXT_KERNEL_LOOP(index, total) {
    const int64_t channels = out.channels, height = out.height, width = out.width;
    const int64_t c = index % channels;
    const int64_t tile = index / channels;
    const int64_t y0 = (tile / tiling.tiles_x) * tiling.tile_h;
    const int64_t x0 = (tile % tiling.tiles_x) * tiling.tile_w;
    const int64_t y1 = (y0 + tiling.tile_h < height ? y0 + tiling.tile_h : height) - 1;  // inclusive
    const int64_t x1 = (x0 + tiling.tile_w < width ? x0 + tiling.tile_w : width) - 1;
    for (int64_t k = 0; k < num_rois; ++k) {
      ROI_EXT_COUNT_WORK(1);
      const T* roi = rois + k * 5;
      const int64_t b = roi_image(roi, out.batch);
      const PrRoi<T> r = prroi_geometry(roi, spatial_scale, pooled.height, pooled.width);
      if (b < 0 || r.empty) {
        continue;
      }
      T* image = grad_acc + b * height * width * channels + c;
      const scalar_t* gk = grad + k * gs.s0 + c * gs.s1;
      for (int64_t ph = 0; ph < pooled.height; ++ph) {
        ROI_EXT_COUNT_WORK(1);
        const BinAxis<T> ay = bin_axis(r.start_h, r.bin_h, ph, height);
        const int64_t i0 = ay.first > y0 ? ay.first : y0;
        const int64_t i1 = ay.last < y1 ? ay.last : y1;
        if (i0 > i1) {
          continue;
        }
        for (int64_t pw = 0; pw < pooled.width; ++pw) {
          ROI_EXT_COUNT_WORK(1);
          const BinAxis<T> ax = bin_axis(r.start_w, r.bin_w, pw, width);
          const int64_t j0 = ax.first > x0 ? ax.first : x0;
          const int64_t j1 = ax.last < x1 ? ax.last : x1;
          if (j0 > j1) {
            continue;
          }
          const T gsc = static_cast<T>(gk[ph * gs.s2 + pw * gs.s3]) / r.area;
          for (int64_t i = i0; i <= i1; ++i) {
            const T row = row_share(gsc, hat_weight(ay.lo, ay.hi, i));
            for (int64_t j = j0; j <= j1; ++j) {
              ROI_EXT_COUNT_WORK(1);
              image[(i * width + j) * channels] += pixel_share(row, hat_weight(ax.lo, ax.hi, j));
            }
          }
        }
      }
    }
  }
}

// Roi gradient, a block per roi: item j of the roi's (channel, bin) space
// (channel fastest for a channels-last input, bin column fastest for NCHW).
template <typename scalar_t, typename T>
struct RoiGradients {
  using Value = Sum4<T>;
  const scalar_t* grad;
  Strides4 gs;
  const scalar_t* input;
  Strides4 is;
  Layout in;
  const T* rois;
  T spatial_scale;
  Pooled pooled;
  T* out;  // [K, 5]

  __host__ __device__ Value partial(int64_t k, int thread, int threads) const {
    Value acc{{T(0), T(0), T(0), T(0)}};
    const T* roi = rois + k * 5;
    const int64_t b = roi_image(roi, in.batch);
    const PrRoi<T> r = prroi_geometry(roi, spatial_scale, pooled.height, pooled.width);
    if (b < 0 || r.empty) {
      return acc;
    }
    const int64_t bins = pooled.height * pooled.width;
    const int64_t n = in.channels * bins;
    for (int64_t j = thread; j < n; j += threads) {
      int64_t c, bin;
      if (in.channels_last) {
        c = j % in.channels;
        bin = j / in.channels;
      } else {
        c = j / bins;
        bin = j % bins;
      }
      const int64_t ph = bin / pooled.width, pw = bin % pooled.width;
      const BinAxis<T> ay = bin_axis(r.start_h, r.bin_h, ph, in.height);
      const BinAxis<T> ax = bin_axis(r.start_w, r.bin_w, pw, in.width);
      ROI_EXT_COUNT_WORK((ay.last - ay.first + 3) * (ax.last - ax.first + 3));
      const PlaneReader<scalar_t, T> v{input + b * is.s0 + c * is.s1, is.s2, is.s3};
      const T gv = static_cast<T>(grad[k * gs.s0 + c * gs.s1 + ph * gs.s2 + pw * gs.s3]);
      const T sum = bin_integral(ay, ax, hat_weights(ay), hat_weights(ax), v);
      const EdgeIntegrals<T> e = edge_integrals(ay, ax, in.height, in.width, hat_weights(ay), hat_weights(ax), v);
      const Grad4<T> d = bin_roi_grad(r, ph, pw, pooled.height, pooled.width, spatial_scale, sum / r.area, e, gv);
      for (int q = 0; q < 4; ++q) {
        acc.v[q] = acc.v[q] + d.v[q];
      }
    }
    return acc;
  }

  __host__ __device__ void finish(int64_t k, const Value& total) const {
    out[k * 5] = T(0);
    for (int q = 0; q < 4; ++q) {
      out[k * 5 + 1 + q] = total.v[q];
    }
  }
};

template <typename scalar_t>
void launch_roi_gradients(const Tensor& grad, Strides4 gs, const Tensor& input, Strides4 is, Layout shape,
                          const Tensor& rois, double spatial_scale, Pooled pooled, Tensor& out, cudaStream_t stream) {
  using T = opmath_t<scalar_t>;
  const RoiGradients<scalar_t, T> f{grad.const_data_ptr<scalar_t>(), gs, input.const_data_ptr<scalar_t>(), is,
                                    shape, rois.const_data_ptr<T>(), static_cast<T>(spatial_scale), pooled,
                                    out.mutable_data_ptr<T>()};
  cuda::launch_block_reduce(f, rois.size(0), stream);
}

constexpr const char* kForwardOutput = "prroi_pool: output for output_size (pooled_height, pooled_width)";
constexpr const char* kBackwardOutput = "_prroi_pool_backward: grad_input for (batch_size, channels, height, width)";
constexpr const char* kBackwardRoisOutput = "_prroi_pool_backward_rois: grad_rois";

Tensor prroi_pool_forward_cuda(const Tensor& input, const Tensor& rois, double spatial_scale, int64_t pooled_height,
                               int64_t pooled_width) {
  detail::check_prroi_forward_args(input, rois, spatial_scale, pooled_height, pooled_width);
  ROI_EXT_CHECK(cuda::on_device(input), "prroi_pool: input must be ", cuda::kDeviceTensor, ", got ",
                device_of(input));
  const cuda::DeviceGuard guard(input);
  const cudaStream_t stream = cuda::current_stream(input);
  const MemoryFormat fmt = nchw_memory_format(input);
  const ScalarType acc_type = opmath_type(input.scalar_type());
  const Tensor rois_ = cuda::rois_in_compute_type(rois, acc_type, input.size(0), stream);
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  Tensor output = roi_ext::empty(kForwardOutput, {num_rois, channels, pooled_height, pooled_width},
                                 input.scalar_type(), input.device(), fmt);
  if (height == 0 || width == 0) {
    torch::stable::zero_(output);
    return output;
  }
  if (output.numel() == 0) {
    return output;
  }
  const Tensor input_ = contiguous(input, "prroi_pool: input", fmt);
  const Layout shape{input.size(0), channels, height, width, fmt == MemoryFormat::ChannelsLast};
  const Pooled pooled{pooled_height, pooled_width};
  const int64_t total = output.numel();
  THO_DISPATCH_V2(
      input.scalar_type(), "prroi_pool_forward_cuda", AT_WRAP([&] {
        using T = opmath_t<scalar_t>;
        cuda::launch(forward_kernel<scalar_t, T>, total, stream, total, input_.const_data_ptr<scalar_t>(),
                     rois_.const_data_ptr<T>(), static_cast<T>(spatial_scale), shape, pooled,
                     output.mutable_data_ptr<scalar_t>());
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return output;
}

Tensor prroi_pool_backward_cuda(const Tensor& grad, const Tensor& rois, double spatial_scale, int64_t pooled_height,
                                int64_t pooled_width, int64_t batch_size, int64_t channels, int64_t height,
                                int64_t width, bool deterministic) {
  detail::check_prroi_backward_args(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                                    height, width);
  ROI_EXT_CHECK(cuda::on_device(grad), "_prroi_pool_backward: grad must be ", cuda::kDeviceTensor, ", got ",
                device_of(grad));
  const cuda::DeviceGuard guard(grad);
  const cudaStream_t stream = cuda::current_stream(grad);
  const MemoryFormat fmt = nchw_memory_format(grad);
  const ScalarType acc_type = opmath_type(grad.scalar_type());
  const Tensor rois_ = cuda::rois_in_compute_type(rois, acc_type, batch_size, stream);
  if (grad.numel() == 0 || batch_size * channels * height * width == 0) {
    return roi_ext::zeros(kBackwardOutput, {batch_size, channels, height, width}, grad.scalar_type(),
                          grad.device(), fmt);
  }
  const Strides4 gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
  const Pooled pooled{pooled_height, pooled_width};
  const std::vector<int64_t> sizes = {batch_size, channels, height, width};
  if (deterministic) {
    // Accumulated channels-last in the compute type, as the CPU kernel may,
    // then converted once to grad's dtype and memory format.
    Tensor acc = roi_ext::zeros(kBackwardOutput, sizes, acc_type, grad.device(), MemoryFormat::ChannelsLast);
    const Layout shape{batch_size, channels, height, width, true};
    // About four pixels per bin and roi.
    const cuda::Tiling tiling = cuda::choose_tiling(height, width, 4 * pooled_height * pooled_width);
    const int64_t total = tiling.count() * channels;
    THO_DISPATCH_V2(
        grad.scalar_type(), "prroi_pool_backward_cuda", AT_WRAP([&] {
          using T = opmath_t<scalar_t>;
          cuda::launch(backward_gather_kernel<scalar_t, T>, total, stream, total, grad.const_data_ptr<scalar_t>(),
                       gs, rois_.const_data_ptr<T>(), rois_.size(0), static_cast<T>(spatial_scale), shape, pooled,
                       tiling, acc.mutable_data_ptr<T>());
        }),
        AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
    if (grad.scalar_type() == acc_type && fmt == MemoryFormat::ChannelsLast) {
      return acc;
    }
    Tensor result = roi_ext::empty(kBackwardOutput, sizes, grad.scalar_type(), grad.device(), fmt);
    copy_into(result, acc);
    return result;
  }
  Tensor acc = roi_ext::zeros(kBackwardOutput, sizes, acc_type, grad.device(), fmt);
  const Layout shape{batch_size, channels, height, width, fmt == MemoryFormat::ChannelsLast};
  const int64_t total = grad.numel();
  THO_DISPATCH_V2(
      grad.scalar_type(), "prroi_pool_backward_cuda", AT_WRAP([&] {
        using T = opmath_t<scalar_t>;
        cuda::launch(backward_atomic_kernel<scalar_t, T>, total, stream, total, grad.const_data_ptr<scalar_t>(), gs,
                     rois_.const_data_ptr<T>(), static_cast<T>(spatial_scale), shape, pooled,
                     acc.mutable_data_ptr<T>());
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return to_dtype(acc, grad.scalar_type());
}

Tensor prroi_pool_backward_rois_cuda(const Tensor& grad, const Tensor& input, const Tensor& rois,
                                     double spatial_scale, int64_t pooled_height, int64_t pooled_width) {
  detail::check_prroi_backward_rois_args(grad, input, rois, spatial_scale, pooled_height, pooled_width);
  ROI_EXT_CHECK(cuda::on_device(input), "_prroi_pool_backward_rois: input must be ", cuda::kDeviceTensor, ", got ",
                device_of(input));
  ROI_EXT_CHECK_TYPE(grad.scalar_type() == input.scalar_type(),
                     "_prroi_pool_backward_rois: grad must have the dtype of input (", dtype_name(input.scalar_type()),
                     "), got ", dtype_name(grad.scalar_type()));
  const cuda::DeviceGuard guard(input);
  const cudaStream_t stream = cuda::current_stream(input);
  const ScalarType acc_type = opmath_type(input.scalar_type());
  const Tensor rois_ = cuda::rois_in_compute_type(rois, acc_type, input.size(0), stream);
  const int64_t num_rois = rois.size(0);
  Tensor out = roi_ext::zeros(kBackwardRoisOutput, {num_rois, 5}, acc_type, input.device());
  if (num_rois == 0 || grad.numel() == 0 || input.size(2) == 0 || input.size(3) == 0) {
    return to_dtype(out, rois.scalar_type());
  }
  const Strides4 gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
  const Strides4 is{input.stride(0), input.stride(1), input.stride(2), input.stride(3)};
  const Layout shape{input.size(0), input.size(1), input.size(2), input.size(3), is_channels_last(input)};
  const Pooled pooled{pooled_height, pooled_width};
  THO_DISPATCH_V2(
      input.scalar_type(), "prroi_pool_backward_rois_cuda", AT_WRAP([&] {
        (launch_roi_gradients<scalar_t>)(grad, gs, input, is, shape, rois_, spatial_scale, pooled, out, stream);
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return to_dtype(out, rois.scalar_type());
}

}  // namespace

ROI_EXT_CUDA_LIBRARY_IMPL(m) {
  m.impl("prroi_pool", TORCH_BOX(&prroi_pool_forward_cuda));
  m.impl("_prroi_pool_backward", TORCH_BOX(&prroi_pool_backward_cuda));
  m.impl("_prroi_pool_backward_rois", TORCH_BOX(&prroi_pool_backward_rois_cuda));
}

}  // namespace roi_ext

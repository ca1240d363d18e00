// Launch helpers shared by the CUDA kernels. LibTorch stable ABI only
// (csrc/common/stable.h): the current stream comes from the C shim, the launch
// check from the CUDA runtime.
//
// Every kernel is a grid-stride loop (ROI_EXT_KERNEL_LOOP) whose body depends
// only on the loop index, or a block per item whose threads' partial results
// are combined by launch_block_reduce. Both have a serial host version: built
// with ROI_EXT_CUDA_EMULATION (emulation.h), launch() runs every block and
// thread of the grid one after the other on the CPU, so CI executes every
// kernel without a GPU (tests/test_cuda_emulation.py).
//
// No host synchronisation anywhere: nothing here or in the kernels copies device
// memory to the host or waits for the stream (CUDA graph capture and
// torch.cuda.set_sync_debug_mode("error") must work, benchmarks/gpu_checks.py).
#pragma once

#if defined(ROI_EXT_CUDA_EMULATION)
#include "emulation.h"
#else
#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>

#include <dlfcn.h>

#define ROI_EXT_COUNT_WORK(n) ((void)0)
#endif

#include <torch/csrc/stable/device.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "../common/stable.h"

// The kernels of csrc/cuda register for CUDA tensors in the roi_ext namespace,
// or, in the emulation build, for CPU tensors in roi_ext_cuda_emulated (whose
// schemas csrc/cuda/emulation.cpp defines).
#if defined(ROI_EXT_CUDA_EMULATION)
#define ROI_EXT_CUDA_LIBRARY_IMPL(m) STABLE_TORCH_LIBRARY_IMPL(roi_ext_cuda_emulated, CPU, m)
#else
#define ROI_EXT_CUDA_LIBRARY_IMPL(m) STABLE_TORCH_LIBRARY_IMPL(roi_ext, CUDA, m)
#endif

namespace roi_ext {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items (kernels index in int64_t).
inline unsigned int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20)));
}

#define ROI_EXT_KERNEL_LOOP(i, n)                                                 \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (n);                                                                   \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

#if defined(ROI_EXT_CUDA_EMULATION)

constexpr const char* kDeviceTensor = "a CPU tensor (CUDA emulation build)";

inline bool on_device(const Tensor& t) {
  return t.is_cpu();
}

struct DeviceGuard {
  explicit DeviceGuard(const Tensor&) {}
};

inline cudaStream_t current_stream(const Tensor&) {
  return nullptr;
}

// Runs kernel<<<blocks_for(n), kThreads>>>(args...) serially: every block, every
// thread, in order.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), int64_t n, cudaStream_t, Args&&... args) {
  ++emulated_launches();
  gridDim = roi_ext_emulated_dim3{blocks_for(n), 1, 1};
  blockDim = roi_ext_emulated_dim3{static_cast<unsigned int>(kThreads), 1, 1};
  for (unsigned int b = 0; b < gridDim.x; ++b) {
    blockIdx.x = b;
    for (unsigned int t = 0; t < blockDim.x; ++t) {
      threadIdx.x = t;
      run_emulated_thread([&] { kernel(args...); });
    }
  }
}

#else  // the real CUDA build

constexpr const char* kDeviceTensor = "a CUDA tensor";

inline bool on_device(const Tensor& t) {
  return t.is_cuda();
}

// Makes t's GPU current for the op (c10::cuda::CUDAGuard).
struct DeviceGuard {
  torch::stable::accelerator::DeviceGuard guard;
  explicit DeviceGuard(const Tensor& t) : guard(t.get_device_index()) {}
};

// torch's current CUDA stream of t's device (c10::cuda::getCurrentCUDAStream),
// from the stable C shim function aoti_torch_get_current_cuda_stream. It lives
// in libtorch_cuda, which roi_ext does not link (so that the same library loads
// under CPU-only torch): it is looked up in the already loaded libtorch_cuda the
// first time a CUDA kernel runs, which can only happen under a CUDA torch.
inline cudaStream_t current_stream(const Tensor& t) {
  using Fn = AOTITorchError (*)(int32_t, void**);
  static const Fn get_stream = []() -> Fn {
    void* lib = dlopen("libtorch_cuda.so", RTLD_LAZY | RTLD_NOLOAD);
    return lib ? reinterpret_cast<Fn>(dlsym(lib, "aoti_torch_get_current_cuda_stream")) : nullptr;
  }();
  ROI_EXT_CHECK(get_stream != nullptr,
                "roi_ext: aoti_torch_get_current_cuda_stream not found (is this torch a CUDA build?)");
  const int32_t device_index = t.get_device_index();
  void* stream = nullptr;
  const AOTITorchError err = get_stream(device_index, &stream);
  ROI_EXT_CHECK(err == AOTI_TORCH_SUCCESS, "cannot get the current CUDA stream of cuda:", device_index);
  return static_cast<cudaStream_t>(stream);
}

// Raises the error of the last kernel launch, if any (C10_CUDA_KERNEL_LAUNCH_CHECK;
// cudaGetLastError does not synchronise).
inline void check_kernel_launch() {
  const cudaError_t err = cudaGetLastError();
  ROI_EXT_CHECK(err == cudaSuccess, "CUDA error: ", cudaGetErrorString(err), " (", cudaGetErrorName(err),
                ") in a roi_ext kernel launch");
}

// kernel<<<blocks_for(n), kThreads, 0, stream>>>(args...) and the launch check.
// A function, so that dispatch macro bodies hold no <<<...>>> commas.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), int64_t n, cudaStream_t stream, Args&&... args) {
  kernel<<<blocks_for(n), kThreads, 0, stream>>>(std::forward<Args>(args)...);
  check_kernel_launch();
}

#endif  // ROI_EXT_CUDA_EMULATION

// ---------------------------------------------------------------------------
// A block per item, reduced in a fixed order (deterministic).
//
// F::partial(item, thread, threads) is the share of `thread` (of `threads`) of
// item's result, a F::Value (trivially constructible, with operator+);
// F::finish(item, total) stores the sum of the shares, added as a binary tree
// whose shape depends only on kReduceThreads: the same bits on every run, on
// the GPU and in the emulation.
constexpr int kReduceThreads = 256;

template <typename V>
__host__ __device__ inline void tree_step(V* partial, int thread, int half) {
  if (thread < half) {
    partial[thread] = partial[thread] + partial[thread + half];
  }
}

#if defined(ROI_EXT_CUDA_EMULATION)

template <typename F>
void launch_block_reduce(const F& f, int64_t items, cudaStream_t) {
  ++emulated_launches();
  typename F::Value partial[kReduceThreads];
  for (int64_t item = 0; item < items; ++item) {
    for (int t = 0; t < kReduceThreads; ++t) {
      run_emulated_thread([&] { partial[t] = f.partial(item, t, kReduceThreads); });
    }
    for (int half = kReduceThreads / 2; half > 0; half /= 2) {
      for (int t = 0; t < half; ++t) {
        tree_step(partial, t, half);
      }
    }
    f.finish(item, partial[0]);
  }
}

#else

template <typename F>
__global__ void __launch_bounds__(kReduceThreads) block_reduce_kernel(int64_t items, F f) {
  __shared__ typename F::Value partial[kReduceThreads];
  const int t = static_cast<int>(threadIdx.x);
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    partial[t] = f.partial(item, t, kReduceThreads);
    __syncthreads();
    for (int half = kReduceThreads / 2; half > 0; half /= 2) {
      tree_step(partial, t, half);
      __syncthreads();
    }
    if (t == 0) {
      f.finish(item, partial[0]);
    }
    __syncthreads();  // partial[0] is read before the next item overwrites it
  }
}

template <typename F>
void launch_block_reduce(const F& f, int64_t items, cudaStream_t stream) {
  if (items <= 0) {
    return;
  }
  const unsigned int blocks = static_cast<unsigned int>(std::min<int64_t>(items, int64_t(1) << 20));
  block_reduce_kernel<F><<<blocks, kReduceThreads, 0, stream>>>(items, f);
  check_kernel_launch();
}

#endif  // ROI_EXT_CUDA_EMULATION

// Element offset of pixel (0, 0) of channel c of image b of a dense [N, C, H, W]
// tensor in NCHW or channels-last memory, and the distance between horizontally
// adjacent pixels.
struct Layout {
  int64_t batch, channels, height, width;
  bool channels_last;

  __host__ __device__ int64_t plane(int64_t b, int64_t c) const {
    return channels_last ? (b * height * width * channels + c) : ((b * channels + c) * height * width);
  }
  __host__ __device__ int64_t pixel_stride() const {
    return channels_last ? channels : 1;
  }
};

// Four sums added element-wise (the value of a block reduction of the box and
// roi gradients, launch_block_reduce).
template <typename T>
struct Sum4 {
  T v[4];
  __host__ __device__ friend Sum4 operator+(const Sum4& a, const Sum4& b) {
    return Sum4{{a.v[0] + b.v[0], a.v[1] + b.v[1], a.v[2] + b.v[2], a.v[3] + b.v[3]}};
  }
};

// (n, c, h, w) of element `index` of a [N, C, H, W] tensor stored NCHW (w
// fastest) or channels-last / NHWC (c fastest): threads follow memory order.
__host__ __device__ inline void decompose_nchw(
    int64_t index,
    int64_t channels,
    int64_t height,
    int64_t width,
    bool channels_last,
    int64_t& n,
    int64_t& c,
    int64_t& h,
    int64_t& w) {
  if (channels_last) {
    c = index % channels;
    index /= channels;
    w = index % width;
    index /= width;
    h = index % height;
    n = index / height;
  } else {
    w = index % width;
    index /= width;
    h = index % height;
    index /= height;
    c = index % channels;
    n = index / channels;
  }
}

// ---------------------------------------------------------------------------
// Deterministic gathers (the backward kernels under
// torch.use_deterministic_algorithms): each thread owns a rectangle of pixels
// (a tile) of one channel in every image, and adds into each of its elements,
// in the CPU kernels' order, every share that lands there. A thread finds the
// samples that touch its tile by the helpers below, so its work is about the
// work of the atomic scatter over the same samples, not a scan of everything.

// How the image plane is cut into tiles: tiles_y x tiles_x rectangles of
// tile_h x tile_w pixels (the last ones smaller).
struct Tiling {
  int64_t tiles_y, tiles_x, tile_h, tile_w;
  __host__ __device__ int64_t count() const {
    return tiles_y * tiles_x;
  }
};

// Each gather thread scans every roi / box once (for its tile): tiles x items
// scans per channel. `work_per_item` is a lower bound of the atomic kernel's
// work per item and channel; the tiles are kept below 1/4 of it in total
// (scans <= 1/4 of the atomic work), and never smaller than 2 x 2 pixels.
inline Tiling choose_tiling(int64_t height, int64_t width, int64_t work_per_item) {
  int64_t want = std::max<int64_t>(1, work_per_item / 4);
  want = std::min<int64_t>(want, std::max<int64_t>(1, (height / 2) * (width / 2)));
  const double aspect = static_cast<double>(height) / static_cast<double>(std::max<int64_t>(width, 1));
  int64_t ty = static_cast<int64_t>(std::sqrt(static_cast<double>(want) * aspect) + 0.5);
  ty = std::max<int64_t>(1, std::min<int64_t>(ty, std::max<int64_t>(1, height / 2)));
  int64_t tx = std::max<int64_t>(1, std::min<int64_t>(want / ty, std::max<int64_t>(1, width / 2)));
  const int64_t th = (height + ty - 1) / ty;
  const int64_t tw = (width + tx - 1) / tx;
  return Tiling{(height + th - 1) / th, (width + tw - 1) / tw, th, tw};
}

// Indices i in [0, n) whose sample coordinate, about first + i * step (the
// kernels' own rounding aside), may lie in [lo, hi]: a superset of those that
// do, given `slack` >= the rounding error of the coordinate. Returns
// begin > end when there is none. Non-finite first / step: none (such samples
// are all NaN or infinite, never in range); step 0: all or none.
struct IndexRange {
  int64_t begin, end;  // inclusive
};

// false for NaN and +-inf (x - x is then NaN); no <cmath> classification
// function is needed, which keeps host and device code the same.
__host__ __device__ inline bool is_finite(double x) {
  return x - x == 0.0;
}

__host__ __device__ inline IndexRange candidate_range(
    double first,
    double step,
    int64_t n,
    double lo,
    double hi,
    double slack) {
  const IndexRange none{0, -1};
  if (n <= 0 || !(is_finite(first) && is_finite(step))) {
    return none;
  }
  lo -= slack;
  hi += slack;
  if (step == 0.0 || !is_finite(1.0 / step)) {
    return (first >= lo && first <= hi) ? IndexRange{0, n - 1} : none;
  }
  double a = (lo - first) / step;
  double b = (hi - first) / step;
  if (a > b) {
    const double t = a;
    a = b;
    b = t;
  }
  const double last = static_cast<double>(n - 1);
  a = ::floor(a) - 1.0;
  b = ::ceil(b) + 1.0;
  if (!(b >= 0.0) || !(a <= last)) {
    return none;
  }
  return IndexRange{a <= 0.0 ? 0 : static_cast<int64_t>(a), b >= last ? n - 1 : static_cast<int64_t>(b)};
}

// Narrows [r.begin, r.end] to its first and last index for which touches(i)
// holds (begin > end when none does); every index tested counts as one
// iteration of work. Indices in between are tested again by the caller.
template <typename Pred>
__host__ __device__ inline IndexRange narrow_range(IndexRange r, const Pred& touches) {
  while (r.begin <= r.end) {
    ROI_EXT_COUNT_WORK(1);
    if (touches(r.begin)) {
      break;
    }
    ++r.begin;
  }
  while (r.end > r.begin) {
    ROI_EXT_COUNT_WORK(1);
    if (touches(r.end)) {
      break;
    }
    --r.end;
  }
  return r;
}

}  // namespace cuda
}  // namespace roi_ext

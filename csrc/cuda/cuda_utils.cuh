// Launch and validation helpers shared by the CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace roi_ext {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items (kernels index in int64_t).
inline unsigned int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20)));
}

#define ROI_EXT_KERNEL_LOOP(i, n)                                          \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (n);                                                            \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// (n, c, h, w) of element `index` of a [N, C, H, W] tensor stored NCHW (w
// fastest) or channels-last / NHWC (c fastest): threads follow memory order.
__device__ inline void decompose_nchw(
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

// Index of the first false element of the 1-D bool tensor `ok`, or -1 if all
// are true. One device reduction and one host synchronisation on the success
// path (SPEC.md Part A9/A12); the position is looked up only on failure.
inline int64_t first_false(const at::Tensor& ok) {
  if (ok.numel() == 0 || ok.all().item<bool>()) {
    return -1;
  }
  return ok.logical_not().nonzero().select(1, 0)[0].item<int64_t>();
}

}  // namespace cuda
}  // namespace roi_ext

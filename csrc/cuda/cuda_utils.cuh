// Launch and validation helpers shared by the CUDA kernels. LibTorch stable ABI
// only (csrc/common/stable.h): the current stream comes from the C shim, the
// launch check from the CUDA runtime.
#pragma once

#include <cuda_runtime.h>

#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/device.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/csrc/inductor/aoti_torch/c/shim.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "../common/stable.h"

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

// torch's current CUDA stream of the device (c10::cuda::getCurrentCUDAStream),
// from the stable C shim function aoti_torch_get_current_cuda_stream. It lives
// in libtorch_cuda, which roi_ext does not link (so that the same library loads
// under CPU-only torch): it is looked up in the already loaded libtorch_cuda the
// first time a CUDA kernel runs, which can only happen under a CUDA torch.
inline cudaStream_t current_stream(int32_t device_index) {
  using Fn = AOTITorchError (*)(int32_t, void**);
  static const Fn get_stream = []() -> Fn {
    void* lib = dlopen("libtorch_cuda.so", RTLD_LAZY | RTLD_NOLOAD);
    return lib ? reinterpret_cast<Fn>(dlsym(lib, "aoti_torch_get_current_cuda_stream")) : nullptr;
  }();
  ROI_EXT_CHECK(get_stream != nullptr,
                "roi_ext: aoti_torch_get_current_cuda_stream not found (is this torch a CUDA build?)");
  void* stream = nullptr;
  const AOTITorchError err = get_stream(device_index, &stream);
  ROI_EXT_CHECK(err == AOTI_TORCH_SUCCESS, "cannot get the current CUDA stream of cuda:", device_index);
  return static_cast<cudaStream_t>(stream);
}

// Raises the error of the last kernel launch, if any (C10_CUDA_KERNEL_LAUNCH_CHECK).
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

// found = max over the elements v[i * stride] not in [0, hi) (NaN included) of
// n - i: 0 when all are in range, else n - (the first such i).
template <typename T>
__global__ void first_out_of_range_kernel(
    int64_t n,
    const T* __restrict__ v,
    int64_t stride,
    T hi,
    unsigned long long* __restrict__ found) {
  ROI_EXT_KERNEL_LOOP(i, n) {
    const T x = v[i * stride];
    if (!(x >= T(0) && x < hi)) {
      atomicMax(found, static_cast<unsigned long long>(n - i));
    }
  }
}

// Index of the first element of the 1-D CUDA tensor `v` (dtype T, any stride)
// outside [0, hi) or NaN, or -1 if there is none. One device reduction and one
// host synchronisation on the success path (SPEC.md Part A9/A12), on `stream`;
// `what` (the op) prefixes the error should the 8-byte scratch tensor not be had.
template <typename T>
int64_t first_out_of_range(const Tensor& v, T hi, cudaStream_t stream, const char* what) {
  const int64_t n = v.numel();
  if (n == 0) {
    return -1;
  }
  Tensor found = roi_ext::zeros(what, {1}, ScalarType::Long, v.device());
  launch(first_out_of_range_kernel<T>, n, stream, n, v.const_data_ptr<T>(), v.stride(0), hi,
         reinterpret_cast<unsigned long long*>(found.mutable_data_ptr<int64_t>()));
  const Tensor host = torch::stable::to(found, Device(torch::headeronly::DeviceType::CPU));
  const int64_t r = host.const_data_ptr<int64_t>()[0];
  return r == 0 ? -1 : n - r;
}

// v[i] of a 1-D CUDA tensor of dtype T, read on the host (a synchronisation).
template <typename T>
T value_at(const Tensor& v, int64_t i) {
  const Tensor host = torch::stable::to(torch::stable::select(v, 0, i), Device(torch::headeronly::DeviceType::CPU));
  return host.const_data_ptr<T>()[0];
}

}  // namespace cuda
}  // namespace roi_ext

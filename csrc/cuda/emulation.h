// The CUDA emulation build (ROI_EXT_CUDA_EMULATION=1, tests only; setup.py):
// csrc/cuda/*.cu compiled as host C++. Just enough of CUDA for the kernels:
// the qualifiers compile away, blockIdx / threadIdx / blockDim / gridDim are
// thread-local variables that cuda::launch (cuda_utils.cuh) sets while it runs
// every block and every thread of a grid one after the other, atomicAdd is a
// plain add (the emulation runs one thread at a time), and a stream is a null
// pointer. The kernels are then registered under the namespace
// roi_ext_cuda_emulated for CPU tensors (csrc/cuda/emulation.cpp), where
// tests/test_cuda_emulation.py compares them with the CPU kernels.
//
// Work counter: every kernel adds the number of its inner-loop iterations to a
// process-wide counter (ROI_EXT_COUNT_WORK; a no-op in the real CUDA build),
// read from Python as torch.ops.roi_ext_cuda_emulated.work_counter(): the work
// of each kernel is measurable without a GPU.
#pragma once

#if !defined(ROI_EXT_CUDA_EMULATION)
#error "emulation.h is for the ROI_EXT_CUDA_EMULATION build only"
#endif
#if defined(__CUDACC__)
#error "the CUDA emulation is compiled by the host compiler, not nvcc"
#endif

#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct roi_ext_emulated_dim3 {
  unsigned int x = 1, y = 1, z = 1;
};

inline thread_local roi_ext_emulated_dim3 blockIdx;
inline thread_local roi_ext_emulated_dim3 threadIdx;
inline thread_local roi_ext_emulated_dim3 blockDim;
inline thread_local roi_ext_emulated_dim3 gridDim;

using cudaStream_t = void*;

template <typename T>
inline T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}

namespace roi_ext {
namespace cuda {

// Inner-loop iterations of every kernel run since the last reset.
inline int64_t& emulated_work() {
  static int64_t work = 0;
  return work;
}

// Kernel launches since the last reset.
inline int64_t& emulated_launches() {
  static int64_t launches = 0;
  return launches;
}

// The most work one GPU thread did in a launch since the last reset: the
// critical path of a kernel, which grows when a kernel has too little
// parallelism (e.g. one thread per box).
inline int64_t& emulated_max_thread_work() {
  static int64_t work = 0;
  return work;
}

// Runs one emulated GPU thread, f(), and records its work.
template <typename F>
inline void run_emulated_thread(const F& f) {
  const int64_t before = emulated_work();
  f();
  const int64_t done = emulated_work() - before;
  if (done > emulated_max_thread_work()) {
    emulated_max_thread_work() = done;
  }
}

}  // namespace cuda
}  // namespace roi_ext

#define ROI_EXT_COUNT_WORK(n) (::roi_ext::cuda::emulated_work() += static_cast<int64_t>(n))

// The CUDA emulation build only (ROI_EXT_CUDA_EMULATION=1; setup.py compiles
// this file and csrc/cuda/emulated_*.cpp, which include the .cu files, as host
// C++). Defines the namespace roi_ext_cuda_emulated: the roi_ext schemas, whose
// CPU kernels are the emulated CUDA kernels, plus the work counter.
// tests/test_cuda_emulation.py checks that the schemas equal roi_ext's.
#if !defined(ROI_EXT_CUDA_EMULATION)
#error "emulation.cpp is for the ROI_EXT_CUDA_EMULATION build only"
#endif

#include <torch/csrc/stable/library.h>

#include <cstdint>

#include "../common/schemas.h"
#include "cuda_utils.cuh"

namespace roi_ext {
namespace {

// Inner-loop iterations counted by the kernels since the last reset.
int64_t work_counter() {
  return cuda::emulated_work();
}

// Kernel launches since the last reset.
int64_t launch_counter() {
  return cuda::emulated_launches();
}

// The most work one emulated GPU thread did in a launch since the last reset.
int64_t max_thread_work() {
  return cuda::emulated_max_thread_work();
}

void reset_counters() {
  cuda::emulated_work() = 0;
  cuda::emulated_launches() = 0;
  cuda::emulated_max_thread_work() = 0;
}

}  // namespace
}  // namespace roi_ext

STABLE_TORCH_LIBRARY(roi_ext_cuda_emulated, m) {
  roi_ext::define_schemas(m);  // the schemas of csrc/ops.cpp
  m.def("work_counter() -> int");
  m.def("launch_counter() -> int");
  m.def("max_thread_work() -> int");
  m.def("reset_counters() -> ()");
}

STABLE_TORCH_LIBRARY_IMPL(roi_ext_cuda_emulated, CompositeExplicitAutograd, m) {
  m.impl("work_counter", TORCH_BOX(&roi_ext::work_counter));
  m.impl("launch_counter", TORCH_BOX(&roi_ext::launch_counter));
  m.impl("max_thread_work", TORCH_BOX(&roi_ext::max_thread_work));
  m.impl("reset_counters", TORCH_BOX(&roi_ext::reset_counters));
}

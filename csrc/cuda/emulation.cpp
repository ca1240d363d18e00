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
  // The schemas of csrc/ops.cpp, verbatim.
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
      "bool aligned, int roi_end_mode) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
      "SymInt channels, SymInt height, SymInt width, int sampling_ratio, "
      "bool aligned, int roi_end_mode, bool deterministic=False) -> Tensor");
  m.def(
      "crop_and_resize(Tensor image, Tensor boxes, Tensor box_index, "
      "SymInt crop_height, SymInt crop_width, str method, "
      "float extrapolation_value, str data_format) -> Tensor");
  m.def(
      "crop_and_resize_grad_image(Tensor grads, Tensor boxes, Tensor box_index, "
      "SymInt batch_size, SymInt image_height, SymInt image_width, SymInt depth, "
      "str method, ScalarType dtype, str data_format, bool deterministic=False) -> Tensor");
  m.def(
      "crop_and_resize_grad_boxes(Tensor grads, Tensor image, Tensor boxes, "
      "Tensor box_index, str method, str data_format) -> Tensor");
  m.def(
      "multi_scale_roi_align(Tensor[] features, Tensor rois, Tensor levels, "
      "float[] scales, SymInt pooled_height, SymInt pooled_width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_multi_scale_roi_align_backward(Tensor grad, Tensor rois, Tensor levels, "
      "float[] scales, SymInt pooled_height, SymInt pooled_width, "
      "SymInt batch_size, SymInt channels, SymInt[] heights, SymInt[] widths, "
      "int sampling_ratio, bool aligned, bool deterministic=False) -> Tensor[]");
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

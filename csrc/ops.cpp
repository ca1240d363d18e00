// The schema owner of the roi_ext namespace: every operator is defined here once;
// csrc/cpu and csrc/cuda only register implementations. Fake (meta) kernels,
// autograd formulas and autocast are registered from Python (roi_ext/*.py).
//
// Built against the LibTorch stable ABI and CPython's limited API (abi3): one
// binary serves every torch release from the target version on and every
// Python from 3.10 on.
#include <Python.h>

#include <torch/csrc/stable/library.h>

// `from roi_ext import _C` loads this library, which runs the static operator
// registrations below; the module itself is empty (ops live in torch.ops.roi_ext).
// PyMODINIT_FUNC exports the symbol despite -fvisibility=hidden.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C", /* name */
      nullptr, /* doc */
      -1, /* size */
      nullptr, /* methods */
  };
  return PyModule_Create(&module_def);
}

// `deterministic` (the backward ops): the caller passes
// torch.are_deterministic_algorithms_enabled(), which the stable ABI cannot
// read; the CUDA kernels then use their deterministic gather paths.
STABLE_TORCH_LIBRARY(roi_ext, m) {
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
  // ROIAlign over the levels of a feature pyramid in one call: roi k is pooled
  // from features[levels[k]] with scales[levels[k]] (roi_ext.MultiScaleRoIAlign).
  m.def(
      "multi_scale_roi_align(Tensor[] features, Tensor rois, Tensor levels, "
      "float[] scales, SymInt pooled_height, SymInt pooled_width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_multi_scale_roi_align_backward(Tensor grad, Tensor rois, Tensor levels, "
      "float[] scales, SymInt pooled_height, SymInt pooled_width, "
      "SymInt batch_size, SymInt channels, SymInt[] heights, SymInt[] widths, "
      "int sampling_ratio, bool aligned, bool deterministic=False) -> Tensor[]");
}

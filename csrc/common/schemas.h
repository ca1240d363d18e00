// Every operator schema of roi_ext, written once: csrc/ops.cpp defines them in
// the roi_ext namespace, and the CUDA emulation build (csrc/cuda/emulation.cpp)
// again in roi_ext_cuda_emulated, so the two cannot drift apart.
//
// `deterministic` (the backward ops): the caller passes
// torch.are_deterministic_algorithms_enabled(), which the stable ABI cannot
// read; the CUDA kernels then use their deterministic gather paths.
#pragma once

namespace roi_ext {

template <typename Library>
inline void define_schemas(Library& m) {
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
      "bool aligned, int roi_end_mode) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
      "SymInt channels, SymInt height, SymInt width, int sampling_ratio, "
      "bool aligned, int roi_end_mode, bool deterministic=False) -> Tensor");
  // roi_align whose autograd formula also differentiates the roi coordinates
  // (roi_ext.roi_align(..., box_grad=True)): the same kernels forward.
  m.def(
      "roi_align_with_box_grad(Tensor input, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
      "bool aligned, int roi_end_mode) -> Tensor");
  // The gradient of roi_align with respect to the rois: [K, 5] in the rois'
  // dtype, column 0 (the batch index) zero.
  m.def(
      "_roi_align_backward_rois(Tensor grad, Tensor input, Tensor rois, "
      "float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
      "int sampling_ratio, bool aligned, int roi_end_mode) -> Tensor");
  // Precise RoI Pooling (Jiang et al., ECCV 2018): each bin is the exact
  // integral of the bilinearly interpolated map over the bin, over its area.
  m.def(
      "prroi_pool(Tensor input, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width) -> Tensor");
  m.def(
      "_prroi_pool_backward(Tensor grad, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
      "SymInt channels, SymInt height, SymInt width, "
      "bool deterministic=False) -> Tensor");
  m.def(
      "_prroi_pool_backward_rois(Tensor grad, Tensor input, Tensor rois, "
      "float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> Tensor");
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

}  // namespace roi_ext

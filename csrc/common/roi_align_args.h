// Host-side argument validation of the ROIAlign operators, shared by the CPU and
// CUDA kernels so that both reject the same inputs with the same messages.
// Messages name the argument; the error kinds map to Python's ValueError,
// TypeError and IndexError (csrc/common/stable.h).
#pragma once

#include "stable.h"

#include <cmath>
#include <cstdint>

namespace roi_ext {
namespace detail {

inline bool is_roi_align_dtype(ScalarType t) {
  return is_floating(t);
}

// The memory format roi_ext computes in and returns (see nchw_memory_format).
inline MemoryFormat roi_align_memory_format(const Tensor& t) {
  return nchw_memory_format(t);
}

inline void check_rois(const Tensor& rois, const char* op) {
  ROI_EXT_CHECK_VALUE(
      rois.dim() == 2 && rois.size(1) == 5,
      op,
      ": rois must have shape [K, 5] with rows (batch_index, x1, y1, x2, y2), "
      "got shape ",
      shape_of(rois));
  ROI_EXT_CHECK_TYPE(
      is_floating(rois.scalar_type()),
      op,
      ": rois must be a floating-point tensor, got ",
      dtype_name(rois.scalar_type()));
}

inline void check_common_args(
    const char* op,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t roi_end_mode) {
  ROI_EXT_CHECK_VALUE(
      std::isfinite(spatial_scale),
      op,
      ": spatial_scale must be finite, got ",
      spatial_scale);
  ROI_EXT_CHECK_VALUE(
      pooled_height >= 0 && pooled_width >= 0,
      op,
      ": output size (pooled_height, pooled_width) must be non-negative, got (",
      pooled_height,
      ", ",
      pooled_width,
      ")");
  ROI_EXT_CHECK_VALUE(
      roi_end_mode == 0 || roi_end_mode == 1,
      op,
      ": roi_end_mode must be 0 or 1, got ",
      roi_end_mode);
}

// A feature map (or its gradient) `name` of `op`: [N, C, H, W] of a floating
// dtype (also used by the Precise RoI Pooling operators).
inline void check_feature_map(const Tensor& t, const char* op, const char* name) {
  ROI_EXT_CHECK_VALUE(t.dim() == 4, op, ": ", name, " must be a 4-D tensor [N, C, H, W], got shape ", shape_of(t));
  ROI_EXT_CHECK_TYPE(is_roi_align_dtype(t.scalar_type()), op, ": ", name,
                     " must be float16, bfloat16, float32 or float64, got ", dtype_name(t.scalar_type()));
}

inline void check_roi_align_forward_args(
    const Tensor& input,
    const Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t roi_end_mode) {
  constexpr const char* op = "roi_align";
  check_feature_map(input, op, "input");
  check_rois(rois, op);
  ROI_EXT_CHECK(
      input.device() == rois.device(),
      op,
      ": input and rois must be on the same device, got input on ",
      device_of(input),
      " and rois on ",
      device_of(rois));
  check_common_args(op, spatial_scale, pooled_height, pooled_width, roi_end_mode);
}

inline void check_roi_align_backward_args(
    const Tensor& grad,
    const Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t roi_end_mode) {
  constexpr const char* op = "_roi_align_backward";
  check_rois(rois, op);
  ROI_EXT_CHECK_TYPE(
      is_roi_align_dtype(grad.scalar_type()),
      op,
      ": grad must be float16, bfloat16, float32 or float64, got ",
      dtype_name(grad.scalar_type()));
  ROI_EXT_CHECK(
      grad.device() == rois.device(),
      op,
      ": grad and rois must be on the same device, got grad on ",
      device_of(grad),
      " and rois on ",
      device_of(rois));
  check_common_args(op, spatial_scale, pooled_height, pooled_width, roi_end_mode);
  ROI_EXT_CHECK_VALUE(
      batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0,
      op,
      ": input size (batch_size, channels, height, width) must be non-negative, "
      "got (",
      batch_size,
      ", ",
      channels,
      ", ",
      height,
      ", ",
      width,
      ")");
  ROI_EXT_CHECK_VALUE(
      grad.dim() == 4 && grad.size(0) == rois.size(0) &&
          grad.size(1) == channels && grad.size(2) == pooled_height &&
          grad.size(3) == pooled_width,
      op,
      ": grad must have shape [K, channels, pooled_height, pooled_width] = [",
      rois.size(0),
      ", ",
      channels,
      ", ",
      pooled_height,
      ", ",
      pooled_width,
      "], got ",
      shape_of(grad));
}

// _roi_align_backward_rois(grad, input, rois, ...): the forward's checks of
// input and rois, and grad of shape [K, C, pooled_height, pooled_width].
inline void check_roi_align_backward_rois_args(
    const Tensor& grad,
    const Tensor& input,
    const Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t roi_end_mode) {
  constexpr const char* op = "_roi_align_backward_rois";
  check_feature_map(input, op, "input");
  check_rois(rois, op);
  ROI_EXT_CHECK_TYPE(
      is_roi_align_dtype(grad.scalar_type()),
      op,
      ": grad must be float16, bfloat16, float32 or float64, got ",
      dtype_name(grad.scalar_type()));
  ROI_EXT_CHECK(
      input.device() == rois.device() && grad.device() == rois.device(),
      op,
      ": grad, input and rois must be on the same device, got grad on ",
      device_of(grad),
      ", input on ",
      device_of(input),
      " and rois on ",
      device_of(rois));
  check_common_args(op, spatial_scale, pooled_height, pooled_width, roi_end_mode);
  ROI_EXT_CHECK_VALUE(
      grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == input.size(1) &&
          grad.size(2) == pooled_height && grad.size(3) == pooled_width,
      op,
      ": grad must have shape [K, C, pooled_height, pooled_width] = [",
      rois.size(0),
      ", ",
      input.size(1),
      ", ",
      pooled_height,
      ", ",
      pooled_width,
      "] (K = rois.size(0), C = input.size(1)), got ",
      shape_of(grad));
}

// The error for a roi whose batch index (row k, column 0) is outside
// [0, batch_size) or not finite (Part A12); CPU and CUDA raise the same.
[[noreturn]] inline void throw_bad_batch_index(
    const char* op,
    int64_t k,
    double value,
    int64_t batch_size) {
  fail(ErrorKind::kIndex, op, ": rois[", k, ", 0] (batch index) is ", value, ", outside [0, ", batch_size, ")");
}

}  // namespace detail
}  // namespace roi_ext

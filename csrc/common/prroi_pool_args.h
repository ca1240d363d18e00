// Host-side argument validation of the Precise RoI Pooling operators, shared by
// the CPU and CUDA kernels (same inputs refused, same messages, naming the
// argument; error kinds as in csrc/common/stable.h).
#pragma once

#include "roi_align_args.h"
#include "stable.h"

#include <cstdint>

namespace roi_ext {
namespace detail {

inline void check_same_device(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name,
                              const char* op) {
  ROI_EXT_CHECK(a.device() == b.device(), op, ": ", a_name, " and ", b_name, " must be on the same device, got ",
                a_name, " on ", device_of(a), " and ", b_name, " on ", device_of(b));
}

inline void check_prroi_forward_args(const Tensor& input, const Tensor& rois, double spatial_scale,
                                     int64_t pooled_height, int64_t pooled_width) {
  constexpr const char* op = "prroi_pool";
  check_feature_map(input, op, "input");
  check_rois(rois, op);
  check_same_device(input, "input", rois, "rois", op);
  check_common_args(op, spatial_scale, pooled_height, pooled_width, 0);
}

inline void check_prroi_backward_args(const Tensor& grad, const Tensor& rois, double spatial_scale,
                                      int64_t pooled_height, int64_t pooled_width, int64_t batch_size,
                                      int64_t channels, int64_t height, int64_t width) {
  constexpr const char* op = "_prroi_pool_backward";
  check_rois(rois, op);
  check_feature_map(grad, op, "grad");
  check_same_device(grad, "grad", rois, "rois", op);
  check_common_args(op, spatial_scale, pooled_height, pooled_width, 0);
  ROI_EXT_CHECK_VALUE(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0, op,
                      ": input size (batch_size, channels, height, width) must be non-negative, got (", batch_size,
                      ", ", channels, ", ", height, ", ", width, ")");
  ROI_EXT_CHECK_VALUE(grad.size(0) == rois.size(0) && grad.size(1) == channels && grad.size(2) == pooled_height &&
                          grad.size(3) == pooled_width,
                      op, ": grad must have shape [K, channels, pooled_height, pooled_width] = [", rois.size(0), ", ",
                      channels, ", ", pooled_height, ", ", pooled_width, "], got ", shape_of(grad));
}

inline void check_prroi_backward_rois_args(const Tensor& grad, const Tensor& input, const Tensor& rois,
                                           double spatial_scale, int64_t pooled_height, int64_t pooled_width) {
  constexpr const char* op = "_prroi_pool_backward_rois";
  check_feature_map(input, op, "input");
  check_rois(rois, op);
  check_feature_map(grad, op, "grad");
  check_same_device(input, "input", rois, "rois", op);
  check_same_device(input, "input", grad, "grad", op);
  check_common_args(op, spatial_scale, pooled_height, pooled_width, 0);
  ROI_EXT_CHECK_VALUE(grad.size(0) == rois.size(0) && grad.size(1) == input.size(1) &&
                          grad.size(2) == pooled_height && grad.size(3) == pooled_width,
                      op, ": grad must have shape [K, C, pooled_height, pooled_width] = [", rois.size(0), ", ",
                      input.size(1), ", ", pooled_height, ", ", pooled_width, "], got ", shape_of(grad));
}

}  // namespace detail
}  // namespace roi_ext

// Host-side argument validation of the multi-scale ROIAlign operators, shared by
// the CPU and CUDA kernels so that both reject the same inputs with the same
// messages (csrc/common/stable.h error kinds).
#pragma once

#include "roi_align_args.h"
#include "stable.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace roi_ext {
namespace detail {

inline void check_levels(const Tensor& levels, const Tensor& rois, const char* op) {
  ROI_EXT_CHECK_VALUE(levels.dim() == 1 && levels.size(0) == rois.size(0), op,
                      ": levels must have shape [K] (one FPN level per roi), with K = ", rois.size(0),
                      ", got shape ", shape_of(levels));
  ROI_EXT_CHECK_TYPE(levels.scalar_type() == ScalarType::Long || levels.scalar_type() == ScalarType::Int, op,
                     ": levels must be int64 or int32, got ", dtype_name(levels.scalar_type()));
  ROI_EXT_CHECK(levels.device() == rois.device(), op, ": levels and rois must be on the same device, got levels on ",
                device_of(levels), " and rois on ", device_of(rois));
}

inline void check_scales(const std::vector<double>& scales, size_t num_levels, const char* op) {
  ROI_EXT_CHECK_VALUE(scales.size() == num_levels, op, ": scales must have one entry per feature level (",
                      num_levels, "), got ", scales.size());
  for (size_t l = 0; l < scales.size(); ++l) {
    ROI_EXT_CHECK_VALUE(std::isfinite(scales[l]), op, ": scales[", l, "] must be finite, got ", scales[l]);
  }
}

inline void check_pooled(int64_t pooled_height, int64_t pooled_width, const char* op) {
  ROI_EXT_CHECK_VALUE(pooled_height >= 0 && pooled_width >= 0, op,
                      ": output size (pooled_height, pooled_width) must be non-negative, got (", pooled_height,
                      ", ", pooled_width, ")");
}

inline void check_multi_scale_forward_args(const std::vector<Tensor>& features, const Tensor& rois,
                                           const Tensor& levels, const std::vector<double>& scales,
                                           int64_t pooled_height, int64_t pooled_width) {
  constexpr const char* op = "multi_scale_roi_align";
  ROI_EXT_CHECK_VALUE(!features.empty(), op, ": features must hold at least one feature map");
  const Tensor& f0 = features[0];
  for (size_t l = 0; l < features.size(); ++l) {
    const Tensor& f = features[l];
    ROI_EXT_CHECK_VALUE(f.dim() == 4, op, ": features[", l, "] must be a 4-D tensor [N, C, H, W], got shape ",
                        shape_of(f));
    ROI_EXT_CHECK_TYPE(is_floating(f.scalar_type()), op, ": features[", l,
                       "] must be float16, bfloat16, float32 or float64, got ", dtype_name(f.scalar_type()));
    ROI_EXT_CHECK_TYPE(f.scalar_type() == f0.scalar_type(), op, ": every feature map must have the dtype of features[0] (",
                       dtype_name(f0.scalar_type()), "), features[", l, "] is ", dtype_name(f.scalar_type()));
    ROI_EXT_CHECK_VALUE(f.size(0) == f0.size(0) && f.size(1) == f0.size(1), op,
                        ": every feature map must have the batch size and channels of features[0] ",
                        shape_of(f0), ", features[", l, "] has shape ", shape_of(f));
    ROI_EXT_CHECK(f.device() == f0.device(), op, ": every feature map must be on the device of features[0] (",
                  device_of(f0), "), features[", l, "] is on ", device_of(f));
  }
  check_rois(rois, op);
  ROI_EXT_CHECK(rois.device() == f0.device(), op, ": features and rois must be on the same device, got features on ",
                device_of(f0), " and rois on ", device_of(rois));
  check_levels(levels, rois, op);
  check_scales(scales, features.size(), op);
  check_pooled(pooled_height, pooled_width, op);
}

inline void check_multi_scale_backward_args(const Tensor& grad, const Tensor& rois, const Tensor& levels,
                                            const std::vector<double>& scales, int64_t pooled_height,
                                            int64_t pooled_width, int64_t batch_size, int64_t channels,
                                            const std::vector<int64_t>& heights,
                                            const std::vector<int64_t>& widths) {
  constexpr const char* op = "_multi_scale_roi_align_backward";
  check_rois(rois, op);
  check_levels(levels, rois, op);
  ROI_EXT_CHECK_VALUE(!scales.empty(), op, ": scales must hold at least one level");
  check_scales(scales, scales.size(), op);
  ROI_EXT_CHECK_VALUE(heights.size() == scales.size() && widths.size() == scales.size(), op,
                      ": heights and widths must have one entry per level (", scales.size(), "), got ",
                      heights.size(), " and ", widths.size());
  check_pooled(pooled_height, pooled_width, op);
  ROI_EXT_CHECK_TYPE(is_floating(grad.scalar_type()), op, ": grad must be float16, bfloat16, float32 or float64, got ",
                     dtype_name(grad.scalar_type()));
  ROI_EXT_CHECK(grad.device() == rois.device(), op, ": grad and rois must be on the same device, got grad on ",
                device_of(grad), " and rois on ", device_of(rois));
  ROI_EXT_CHECK_VALUE(batch_size >= 0 && channels >= 0, op,
                      ": batch_size and channels must be non-negative, got (", batch_size, ", ", channels, ")");
  for (size_t l = 0; l < heights.size(); ++l) {
    ROI_EXT_CHECK_VALUE(heights[l] >= 0 && widths[l] >= 0, op, ": heights[", l, "] and widths[", l,
                        "] must be non-negative, got (", heights[l], ", ", widths[l], ")");
  }
  ROI_EXT_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                          grad.size(2) == pooled_height && grad.size(3) == pooled_width,
                      op, ": grad must have shape [K, channels, pooled_height, pooled_width] = [", rois.size(0), ", ",
                      channels, ", ", pooled_height, ", ", pooled_width, "], got ", shape_of(grad));
}

}  // namespace detail
}  // namespace roi_ext

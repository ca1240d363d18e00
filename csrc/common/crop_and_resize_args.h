// Host-side argument validation of the CropAndResize operators, shared by the
// CPU and CUDA kernels (SPEC.md Part B §1.2 and §2-3, in TensorFlow's order;
// the gradient ops are validated as strictly as the forward). Messages name the
// argument; error kinds map to ValueError / TypeError / IndexError
// (csrc/common/stable.h).
#pragma once

#include <string>

#include "stable.h"

#include "crop_and_resize_math.h"

namespace roi_ext {
namespace detail {

inline crop_and_resize_math::Method parse_method(const std::string& method, const char* op) {
  using crop_and_resize_math::Method;
  if (method == "bilinear") {
    return Method::kBilinear;
  }
  if (method == "nearest") {
    return Method::kNearest;
  }
  ROI_EXT_CHECK_VALUE(
      method == "bilinear_v2",
      op,
      ": method must be \"bilinear\", \"nearest\" or \"bilinear_v2\", got \"",
      method,
      "\"");
  return Method::kBilinearV2;
}

// true for "NCHW", false for "NHWC".
inline bool parse_nchw(const std::string& data_format, const char* op) {
  ROI_EXT_CHECK_VALUE(
      data_format == "NHWC" || data_format == "NCHW",
      op,
      ": data_format must be \"NHWC\" or \"NCHW\", got \"",
      data_format,
      "\"");
  return data_format == "NCHW";
}

inline bool is_image_dtype(ScalarType t) {
  switch (t) {
    case ScalarType::Byte:
    case ScalarType::Char:
    case ScalarType::Short:
    case ScalarType::Int:
    case ScalarType::Long:
    case ScalarType::Half:
    case ScalarType::BFloat16:
    case ScalarType::Float:
    case ScalarType::Double:
      return true;
    default:
      return false;
  }
}

// A 4-D tensor as a [B, H, W, D] view (a permutation for NCHW: no copy).
inline Tensor as_nhwc(const Tensor& t, bool nchw) {
  return nchw ? permute_nchw_to_nhwc(t) : t;
}

// Element strides of the [B, H, W, D] view of t.
inline crop_and_resize_math::Strides4 nhwc_strides(const Tensor& t, bool nchw) {
  const Tensor v = as_nhwc(t, nchw);
  return crop_and_resize_math::Strides4{v.stride(0), v.stride(1), v.stride(2), v.stride(3)};
}

// Boxes in the compute type T, contiguous [N, 4].
template <typename T>
Tensor boxes_as(const Tensor& boxes) {
  Tensor b = contiguous(to_dtype(boxes, scalar_type_of<T>()), "boxes");
  return torch::stable::reshape(b, {-1, 4});
}

inline void check_image(const Tensor& image, bool nchw, const char* op) {
  ROI_EXT_CHECK_VALUE(
      image.dim() == 4,
      op,
      ": image must be a 4-D tensor (",
      nchw ? "[B, D, H, W]" : "[B, H, W, D]",
      "), got shape ",
      shape_of(image));
  ROI_EXT_CHECK_TYPE(
      is_image_dtype(image.scalar_type()),
      op,
      ": image must be uint8, int8, int16, int32, int64, float16, bfloat16, "
      "float32 or float64, got ",
      dtype_name(image.scalar_type()));
  const Tensor v = as_nhwc(image, nchw);
  ROI_EXT_CHECK_VALUE(
      v.size(1) > 0 && v.size(2) > 0,
      op,
      ": image height and width must be positive, got image of shape ",
      shape_of(image));
}

// boxes [N, 4] floating, box_index [N] int32/int64, same device as `ref`.
inline void check_boxes(
    const Tensor& boxes,
    const Tensor& box_index,
    const Tensor& ref,
    const char* ref_name,
    const char* op) {
  ROI_EXT_CHECK_VALUE(
      boxes.dim() == 2, op, ": boxes must be a 2-D tensor [N, 4], got shape ", shape_of(boxes));
  ROI_EXT_CHECK_VALUE(
      box_index.dim() == 1,
      op,
      ": box_index must be a 1-D tensor [N], got shape ",
      shape_of(box_index));
  ROI_EXT_CHECK_VALUE(
      boxes.size(1) == 4 || (boxes.numel() == 0 && box_index.numel() == 0),
      op,
      ": boxes must have 4 columns [y1, x1, y2, x2], got shape ",
      shape_of(boxes));
  ROI_EXT_CHECK_VALUE(
      box_index.size(0) == boxes.size(0),
      op,
      ": box_index has ",
      box_index.size(0),
      " elements but boxes has ",
      boxes.size(0),
      " rows");
  ROI_EXT_CHECK_TYPE(
      is_floating(boxes.scalar_type()),
      op,
      ": boxes must be a floating-point tensor, got ",
      dtype_name(boxes.scalar_type()));
  ROI_EXT_CHECK_TYPE(
      box_index.scalar_type() == ScalarType::Int || box_index.scalar_type() == ScalarType::Long,
      op,
      ": box_index must be int32 or int64, got ",
      dtype_name(box_index.scalar_type()));
  ROI_EXT_CHECK(
      boxes.device() == ref.device(),
      op,
      ": boxes must be on the same device as ",
      ref_name,
      " (",
      device_of(ref),
      "), got boxes on ",
      device_of(boxes));
  ROI_EXT_CHECK(
      box_index.device() == ref.device(),
      op,
      ": box_index must be on the same device as ",
      ref_name,
      " (",
      device_of(ref),
      "), got box_index on ",
      device_of(box_index));
}

inline void check_crop_size(int64_t crop_height, int64_t crop_width, const char* op) {
  ROI_EXT_CHECK_VALUE(
      crop_height > 0 && crop_width > 0,
      op,
      ": crop_size must be positive, got (",
      crop_height,
      ", ",
      crop_width,
      ")");
}

// grads [N, crop_h, crop_w, D] (NHWC) or [N, D, crop_h, crop_w] (NCHW).
inline void check_grads(
    const Tensor& grads,
    const Tensor& boxes,
    int64_t depth,
    bool nchw,
    const char* op) {
  ROI_EXT_CHECK_VALUE(
      grads.dim() == 4, op, ": grads must be a 4-D tensor, got shape ", shape_of(grads));
  ROI_EXT_CHECK_TYPE(
      is_floating(grads.scalar_type()),
      op,
      ": grads must be a floating-point tensor, got ",
      dtype_name(grads.scalar_type()));
  const Tensor v = as_nhwc(grads, nchw);
  check_crop_size(v.size(1), v.size(2), op);
  ROI_EXT_CHECK_VALUE(
      v.size(0) == boxes.size(0),
      op,
      ": grads has ",
      v.size(0),
      " crops but boxes has ",
      boxes.size(0),
      " rows");
  ROI_EXT_CHECK_VALUE(
      v.size(3) == depth,
      op,
      ": grads depth ",
      v.size(3),
      " does not match the image depth ",
      depth);
}

// What the three ops' string arguments mean, once validated.
struct ParsedArgs {
  crop_and_resize_math::Method method;
  bool nchw;
};

// Every argument check of one op, in TensorFlow's order (the box_index range is
// checked by the kernels, which read the values).
inline ParsedArgs check_forward_args(
    const Tensor& image,
    const Tensor& boxes,
    const Tensor& box_index,
    int64_t crop_height,
    int64_t crop_width,
    const std::string& method,
    const std::string& data_format) {
  constexpr const char* op = "crop_and_resize";
  const ParsedArgs parsed{parse_method(method, op), parse_nchw(data_format, op)};
  check_image(image, parsed.nchw, op);
  check_boxes(boxes, box_index, image, "image", op);
  check_crop_size(crop_height, crop_width, op);
  return parsed;
}

inline ParsedArgs check_grad_image_args(
    const Tensor& grads,
    const Tensor& boxes,
    const Tensor& box_index,
    int64_t batch_size,
    int64_t image_height,
    int64_t image_width,
    int64_t depth,
    const std::string& method,
    ScalarType dtype,
    const std::string& data_format) {
  constexpr const char* op = "crop_and_resize_grad_image";
  const ParsedArgs parsed{parse_method(method, op), parse_nchw(data_format, op)};
  ROI_EXT_CHECK_VALUE(
      batch_size >= 0 && image_height > 0 && image_width > 0 && depth >= 0,
      op,
      ": image_size must have batch >= 0, height > 0, width > 0 and depth >= 0, got (",
      batch_size, ", ", image_height, ", ", image_width, ", ", depth, ") as (B, H, W, D)");
  ROI_EXT_CHECK_TYPE(
      is_floating(dtype),
      op,
      ": dtype must be float16, bfloat16, float32 or float64, got ",
      dtype_name(dtype));
  check_boxes(boxes, box_index, grads, "grads", op);
  check_grads(grads, boxes, depth, parsed.nchw, op);
  return parsed;
}

inline ParsedArgs check_grad_boxes_args(
    const Tensor& grads,
    const Tensor& image,
    const Tensor& boxes,
    const Tensor& box_index,
    const std::string& method,
    const std::string& data_format) {
  constexpr const char* op = "crop_and_resize_grad_boxes";
  const ParsedArgs parsed{parse_method(method, op), parse_nchw(data_format, op)};
  check_image(image, parsed.nchw, op);
  check_boxes(boxes, box_index, image, "image", op);
  check_grads(grads, boxes, as_nhwc(image, parsed.nchw).size(3), parsed.nchw, op);
  ROI_EXT_CHECK(
      grads.device() == image.device(),
      op,
      ": grads must be on the same device as image (",
      device_of(image),
      "), got grads on ",
      device_of(grads));
  return parsed;
}

// The error for box_index[i] outside [0, batch_size); CPU and CUDA raise the same.
[[noreturn]] inline void throw_bad_box_index(
    const char* op,
    int64_t i,
    int64_t value,
    int64_t batch_size) {
  fail(ErrorKind::kIndex, op, ": box_index[", i, "] = ", value, " is outside [0, ", batch_size,
       ") (batch size of the image)");
}

}  // namespace detail
}  // namespace roi_ext

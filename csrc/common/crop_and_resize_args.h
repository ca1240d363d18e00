// Host-side argument validation of the CropAndResize operators, shared by the
// CPU and CUDA kernels (SPEC.md Part B §1.2 and §2-3, in TensorFlow's order;
// the gradient ops are validated as strictly as the forward). Messages name the
// argument; exception types map to ValueError / TypeError / IndexError.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

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
  TORCH_CHECK_VALUE(
      method == "bilinear_v2",
      op,
      ": method must be \"bilinear\", \"nearest\" or \"bilinear_v2\", got \"",
      method,
      "\"");
  return Method::kBilinearV2;
}

// true for "NCHW", false for "NHWC".
inline bool parse_nchw(const std::string& data_format, const char* op) {
  TORCH_CHECK_VALUE(
      data_format == "NHWC" || data_format == "NCHW",
      op,
      ": data_format must be \"NHWC\" or \"NCHW\", got \"",
      data_format,
      "\"");
  return data_format == "NCHW";
}

inline bool is_image_dtype(at::ScalarType t) {
  switch (t) {
    case at::kByte:
    case at::kChar:
    case at::kShort:
    case at::kInt:
    case at::kLong:
    case at::kHalf:
    case at::kBFloat16:
    case at::kFloat:
    case at::kDouble:
      return true;
    default:
      return false;
  }
}

// A 4-D tensor as a [B, H, W, D] view (a permutation for NCHW: no copy).
inline at::Tensor as_nhwc(const at::Tensor& t, bool nchw) {
  return nchw ? t.permute({0, 2, 3, 1}) : t;
}

// Element strides of the [B, H, W, D] view of t.
inline crop_and_resize_math::Strides4 nhwc_strides(const at::Tensor& t, bool nchw) {
  const at::Tensor v = as_nhwc(t, nchw);
  return crop_and_resize_math::Strides4{v.stride(0), v.stride(1), v.stride(2), v.stride(3)};
}

// Boxes in the compute type T, contiguous [N, 4].
template <typename T>
at::Tensor boxes_as(const at::Tensor& boxes) {
  return boxes.to(c10::CppTypeToScalarType<T>::value).contiguous().reshape({-1, 4});
}

inline void check_image(const at::Tensor& image, bool nchw, const char* op) {
  TORCH_CHECK_VALUE(
      image.dim() == 4,
      op,
      ": image must be a 4-D tensor (",
      nchw ? "[B, D, H, W]" : "[B, H, W, D]",
      "), got shape ",
      image.sizes());
  TORCH_CHECK_TYPE(
      is_image_dtype(image.scalar_type()),
      op,
      ": image must be uint8, int8, int16, int32, int64, float16, bfloat16, "
      "float32 or float64, got ",
      image.scalar_type());
  const at::Tensor v = as_nhwc(image, nchw);
  TORCH_CHECK_VALUE(
      v.size(1) > 0 && v.size(2) > 0,
      op,
      ": image height and width must be positive, got image of shape ",
      image.sizes());
}

// boxes [N, 4] floating, box_index [N] int32/int64, same device as `ref`.
inline void check_boxes(
    const at::Tensor& boxes,
    const at::Tensor& box_index,
    const at::Tensor& ref,
    const char* ref_name,
    const char* op) {
  TORCH_CHECK_VALUE(
      boxes.dim() == 2, op, ": boxes must be a 2-D tensor [N, 4], got shape ", boxes.sizes());
  TORCH_CHECK_VALUE(
      box_index.dim() == 1,
      op,
      ": box_index must be a 1-D tensor [N], got shape ",
      box_index.sizes());
  TORCH_CHECK_VALUE(
      boxes.size(1) == 4 || (boxes.numel() == 0 && box_index.numel() == 0),
      op,
      ": boxes must have 4 columns [y1, x1, y2, x2], got shape ",
      boxes.sizes());
  TORCH_CHECK_VALUE(
      box_index.size(0) == boxes.size(0),
      op,
      ": box_index has ",
      box_index.size(0),
      " elements but boxes has ",
      boxes.size(0),
      " rows");
  TORCH_CHECK_TYPE(
      at::isFloatingType(boxes.scalar_type()),
      op,
      ": boxes must be a floating-point tensor, got ",
      boxes.scalar_type());
  TORCH_CHECK_TYPE(
      box_index.scalar_type() == at::kInt || box_index.scalar_type() == at::kLong,
      op,
      ": box_index must be int32 or int64, got ",
      box_index.scalar_type());
  TORCH_CHECK(
      boxes.device() == ref.device() && box_index.device() == ref.device(),
      op,
      ": boxes, box_index and ",
      ref_name,
      " must be on the same device, got ",
      ref.device(),
      ", ",
      boxes.device(),
      " and ",
      box_index.device());
}

inline void check_crop_size(int64_t crop_height, int64_t crop_width, const char* op) {
  TORCH_CHECK_VALUE(
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
    const at::Tensor& grads,
    const at::Tensor& boxes,
    int64_t depth,
    bool nchw,
    const char* op) {
  TORCH_CHECK_VALUE(
      grads.dim() == 4, op, ": grads must be a 4-D tensor, got shape ", grads.sizes());
  TORCH_CHECK_TYPE(
      at::isFloatingType(grads.scalar_type()),
      op,
      ": grads must be a floating-point tensor, got ",
      grads.scalar_type());
  const at::Tensor v = as_nhwc(grads, nchw);
  check_crop_size(v.size(1), v.size(2), op);
  TORCH_CHECK_VALUE(
      v.size(0) == boxes.size(0),
      op,
      ": grads has ",
      v.size(0),
      " crops but boxes has ",
      boxes.size(0),
      " rows");
  TORCH_CHECK_VALUE(
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
    const at::Tensor& image,
    const at::Tensor& boxes,
    const at::Tensor& box_index,
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
    const at::Tensor& grads,
    const at::Tensor& boxes,
    const at::Tensor& box_index,
    int64_t batch_size,
    int64_t image_height,
    int64_t image_width,
    int64_t depth,
    const std::string& method,
    at::ScalarType dtype,
    const std::string& data_format) {
  constexpr const char* op = "crop_and_resize_grad_image";
  const ParsedArgs parsed{parse_method(method, op), parse_nchw(data_format, op)};
  TORCH_CHECK_VALUE(
      batch_size >= 0 && image_height > 0 && image_width > 0 && depth >= 0,
      op,
      ": image_size must have batch >= 0, height > 0, width > 0 and depth >= 0, got (",
      batch_size, ", ", image_height, ", ", image_width, ", ", depth, ") as (B, H, W, D)");
  TORCH_CHECK_TYPE(
      dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat || dtype == at::kDouble,
      op,
      ": dtype must be float16, bfloat16, float32 or float64, got ",
      dtype);
  check_boxes(boxes, box_index, grads, "grads", op);
  check_grads(grads, boxes, depth, parsed.nchw, op);
  return parsed;
}

inline ParsedArgs check_grad_boxes_args(
    const at::Tensor& grads,
    const at::Tensor& image,
    const at::Tensor& boxes,
    const at::Tensor& box_index,
    const std::string& method,
    const std::string& data_format) {
  constexpr const char* op = "crop_and_resize_grad_boxes";
  const ParsedArgs parsed{parse_method(method, op), parse_nchw(data_format, op)};
  check_image(image, parsed.nchw, op);
  check_boxes(boxes, box_index, image, "image", op);
  check_grads(grads, boxes, as_nhwc(image, parsed.nchw).size(3), parsed.nchw, op);
  TORCH_CHECK(grads.device() == image.device(), op, ": grads and image must be on the same device");
  return parsed;
}

// The error for box_index[i] outside [0, batch_size); CPU and CUDA raise the same.
[[noreturn]] inline void throw_bad_box_index(
    const char* op,
    int64_t i,
    int64_t value,
    int64_t batch_size) {
  TORCH_CHECK_INDEX(
      false,
      op,
      ": box_index[",
      i,
      "] = ",
      value,
      " is outside [0, ",
      batch_size,
      ") (batch size of the image)");
  abort();  // unreachable
}

}  // namespace detail
}  // namespace roi_ext

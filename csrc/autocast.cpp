// Autocast kernels (CPU: AutocastCPU; CUDA: AutocastCUDA) for the forward ops.
//
// Under torch.autocast the ops accept any mix of input and box dtypes: floating
// inputs are cast to float32 (float64 stays float64, as torchvision's autocast
// does), the op runs with autocast off, and the result is returned in the
// autocast dtype (e.g. bfloat16 under CPU autocast). Autograd sees the casts
// (they are ordinary ops), so gradients flow back in the callers' dtypes.
#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

namespace roi_ext {
namespace {

template <c10::DeviceType device>
constexpr c10::DispatchKey autocast_key() {
  return device == c10::DeviceType::CUDA ? c10::DispatchKey::AutocastCUDA : c10::DispatchKey::AutocastCPU;
}

// float32 for float16/bfloat16 (and float32), float64 left alone.
at::Tensor to_compute_type(const at::Tensor& t) {
  return (t.is_floating_point() && t.scalar_type() != at::kDouble) ? t.to(at::kFloat) : t;
}

template <c10::DeviceType device>
at::Tensor to_autocast_dtype(const at::Tensor& out) {
  return out.scalar_type() == at::kDouble ? out : out.to(at::autocast::get_autocast_dtype(device));
}

template <c10::DeviceType device>
at::Tensor roi_align_autocast(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    c10::SymInt pooled_height,
    c10::SymInt pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    int64_t roi_end_mode) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key<device>());
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("roi_ext::roi_align", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, c10::SymInt,
                                         c10::SymInt, int64_t, bool, int64_t)>();
  at::Tensor x = to_compute_type(input);
  at::Tensor r = rois.is_floating_point() ? rois.to(x.scalar_type()) : rois;
  return to_autocast_dtype<device>(op.call(x, r, spatial_scale, std::move(pooled_height),
                                           std::move(pooled_width), sampling_ratio, aligned, roi_end_mode));
}

template <c10::DeviceType device>
at::Tensor crop_and_resize_autocast(
    const at::Tensor& image,
    const at::Tensor& boxes,
    const at::Tensor& box_index,
    c10::SymInt crop_height,
    c10::SymInt crop_width,
    c10::string_view method,
    double extrapolation_value,
    c10::string_view data_format) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key<device>());
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("roi_ext::crop_and_resize", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::SymInt,
                                         c10::SymInt, c10::string_view, double, c10::string_view)>();
  // Integer images are read as they are (the kernel converts pixels itself).
  const at::Tensor x = to_compute_type(image);
  const at::Tensor b = to_compute_type(boxes);
  return to_autocast_dtype<device>(op.call(x, b, box_index, std::move(crop_height), std::move(crop_width),
                                           method, extrapolation_value, data_format));
}

}  // namespace

TORCH_LIBRARY_IMPL(roi_ext, AutocastCPU, m) {
  m.impl("roi_align", &roi_align_autocast<c10::DeviceType::CPU>);
  m.impl("crop_and_resize", &crop_and_resize_autocast<c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(roi_ext, Autocast, m) {
  m.impl("roi_align", &roi_align_autocast<c10::DeviceType::CUDA>);
  m.impl("crop_and_resize", &crop_and_resize_autocast<c10::DeviceType::CUDA>);
}

}  // namespace roi_ext

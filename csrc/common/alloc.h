// Allocation of kernel outputs with an error that names the argument behind an
// impossible size (an output_size or crop_size whose tensor cannot exist), shared
// by the CPU and CUDA kernels. Out-of-memory stays torch.OutOfMemoryError.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace roi_ext {
namespace detail {

template <typename Alloc>
at::Tensor allocate_output(const char* what, at::IntArrayRef sizes, at::ScalarType dtype, Alloc&& alloc) {
  try {
    return alloc();
  } catch (const c10::OutOfMemoryError& e) {
    TORCH_CHECK_WITH(
        OutOfMemoryError, false, what, ": cannot allocate a ", dtype, " tensor of shape ", sizes, ": ",
        e.what_without_backtrace());
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, what, ": cannot allocate a ", dtype, " tensor of shape ", sizes, ": ",
                e.what_without_backtrace());
  }
}

}  // namespace detail
}  // namespace roi_ext

// Outputs of the CPU kernels are allocated through a small recycling pool.
//
// A freshly allocated block costs a page fault per 4 KiB page on first touch
// (glibc maps blocks over 32 MiB anew on every allocation): for a 50 MB crop
// output that is more time than the crop itself. The pool keeps a few freed
// blocks of the kernels' outputs and hands them back for the next call of the
// same size, as TensorFlow's and PyTorch's CUDA caching allocators do. The
// tensors are ordinary resizable CPU tensors. ROI_EXT_CPU_CACHE_MB bounds the
// bytes held while unused (default 1024; 0 disables the pool).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace roi_ext {
namespace cpu {

// at::empty(sizes, options.dtype(dtype)) with the given memory format, from the
// pool. `what` names the tensor and the argument that sized it, for the error
// raised when it cannot be allocated (e.g. "crop_and_resize: output for crop_size").
at::Tensor empty_output(
    const char* what,
    at::IntArrayRef sizes,
    at::ScalarType dtype,
    at::MemoryFormat memory_format = at::MemoryFormat::Contiguous);

// t in the given memory format: t itself when it already is, else a pooled copy.
at::Tensor contiguous_output(const at::Tensor& t, at::MemoryFormat memory_format);

}  // namespace cpu
}  // namespace roi_ext

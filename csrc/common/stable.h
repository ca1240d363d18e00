// The one place roi_ext's C++ meets libtorch: everything here comes from the
// LibTorch stable ABI (torch/csrc/stable/*, torch/headeronly/*), so one build of
// roi_ext loads under every torch release from TORCH_TARGET_VERSION on.
//
// Errors. A stable kernel can only throw std::exception, which torch turns into
// a RuntimeError. roi_ext's messages start with the Python exception type the
// error stands for ("ValueError: roi_align: ..."); the Python front-ends
// (roi_ext/_errors.py) re-raise it as that type. Calling torch.ops.roi_ext.*
// directly gives the RuntimeError with the same message.
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch_v2.h>
#include <torch/headeronly/core/MemoryFormat.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/macros/Macros.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Exception.h>
#include <torch/headeronly/util/Half.h>

#include <cstdint>
#include <limits>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace roi_ext {

using Tensor = torch::stable::Tensor;
using ScalarType = torch::headeronly::ScalarType;
using MemoryFormat = torch::headeronly::MemoryFormat;
using Device = torch::stable::Device;

// ---------------------------------------------------------------------------
// Errors

enum class ErrorKind { kValue, kType, kIndex, kRuntime, kMemory };

inline const char* error_tag(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kValue:
      return "ValueError: ";
    case ErrorKind::kType:
      return "TypeError: ";
    case ErrorKind::kIndex:
      return "IndexError: ";
    case ErrorKind::kMemory:
      return "OutOfMemoryError: ";
    case ErrorKind::kRuntime:
    default:
      return "RuntimeError: ";
  }
}

struct Shape {
  torch::headeronly::IntHeaderOnlyArrayRef sizes;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) {
  os << "[";
  for (size_t i = 0; i < s.sizes.size(); ++i) {
    os << (i ? ", " : "") << s.sizes[i];
  }
  return os << "]";
}

// The shape of t for messages: "[2, 3, 8, 9]".
inline Shape shape_of(const Tensor& t) {
  return Shape{t.sizes()};
}

inline const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Byte:
      return "uint8";
    case ScalarType::Char:
      return "int8";
    case ScalarType::Short:
      return "int16";
    case ScalarType::Int:
      return "int32";
    case ScalarType::Long:
      return "int64";
    case ScalarType::Half:
      return "float16";
    case ScalarType::BFloat16:
      return "bfloat16";
    case ScalarType::Float:
      return "float32";
    case ScalarType::Double:
      return "float64";
    case ScalarType::Bool:
      return "bool";
    default:
      return torch::headeronly::toString(t);
  }
}

// The device of t for messages: "cpu", "cuda:1", "meta".
inline std::string device_of(const Tensor& t) {
  using torch::headeronly::DeviceType;
  const Device d = t.device();
  std::ostringstream os;
  switch (d.type()) {
    case DeviceType::CPU:
      os << "cpu";
      break;
    case DeviceType::CUDA:
      os << "cuda";
      break;
    case DeviceType::Meta:
      os << "meta";
      break;
    default:
      os << "device type " << static_cast<int>(d.type());
  }
  if (d.index() >= 0) {
    os << ":" << static_cast<int>(d.index());
  }
  return os.str();
}

template <typename... Args>
[[noreturn]] C10_NOINLINE void fail(ErrorKind kind, const Args&... args) {
  std::ostringstream os;
  os << error_tag(kind);
  ((os << args), ...);
  throw std::runtime_error(os.str());
}

}  // namespace roi_ext

// Checks with a message that names the argument; the kind maps to the Python
// exception type (ValueError, TypeError, IndexError, RuntimeError).
#define ROI_EXT_CHECK_KIND(kind, cond, ...)             \
  do {                                                  \
    if (C10_UNLIKELY_OR_CONST(!(cond))) {               \
      ::roi_ext::fail(::roi_ext::ErrorKind::kind, __VA_ARGS__); \
    }                                                   \
  } while (0)
#define ROI_EXT_CHECK_VALUE(cond, ...) ROI_EXT_CHECK_KIND(kValue, cond, __VA_ARGS__)
#define ROI_EXT_CHECK_TYPE(cond, ...) ROI_EXT_CHECK_KIND(kType, cond, __VA_ARGS__)
#define ROI_EXT_CHECK_INDEX(cond, ...) ROI_EXT_CHECK_KIND(kIndex, cond, __VA_ARGS__)
#define ROI_EXT_CHECK(cond, ...) ROI_EXT_CHECK_KIND(kRuntime, cond, __VA_ARGS__)

namespace roi_ext {

// ---------------------------------------------------------------------------
// dtypes

inline bool is_floating(ScalarType t) {
  return t == ScalarType::Half || t == ScalarType::BFloat16 || t == ScalarType::Float ||
      t == ScalarType::Double;
}

// The type half types compute in (float32); float32/float64 compute in themselves.
template <typename T>
struct OpMath {
  using type = T;
};
template <>
struct OpMath<c10::Half> {
  using type = float;
};
template <>
struct OpMath<c10::BFloat16> {
  using type = float;
};
template <typename T>
using opmath_t = typename OpMath<T>::type;

inline ScalarType opmath_type(ScalarType t) {
  return (t == ScalarType::Half || t == ScalarType::BFloat16) ? ScalarType::Float : t;
}

template <typename T>
constexpr ScalarType scalar_type_of() {
  return c10::CppTypeToScalarType<T>::value;
}

// ---------------------------------------------------------------------------
// Layouts

// True when t's strides are those of a dense channels-last [N, C, H, W]
// tensor: PyTorch's is_contiguous(memory_format=torch.channels_last) rule,
// under which size-1 dimensions may have any stride.
inline bool is_channels_last(const Tensor& t) {
  if (t.dim() != 4) {
    return false;
  }
  // Expected strides of channels_last: C = 1, W = C, H = W * C, N = H * W * C.
  const int64_t order[4] = {1, 3, 2, 0};
  int64_t expected = 1;
  for (int64_t d : order) {
    const int64_t size = t.size(d);
    if (size != 1) {
      if (t.stride(d) != expected) {
        return false;
      }
      expected *= size;
    }
  }
  return true;
}

// Dense row-major (torch's is_contiguous()).
inline bool is_contiguous(const Tensor& t) {
  return t.is_contiguous();
}

// The memory format roi_ext computes in and returns for a 4-D [N, C, H, W]
// tensor: channels_last when the tensor is exactly channels_last and not also
// plain contiguous, else contiguous. roi_ext/roi_align.py applies the same rule
// in the fake kernels.
inline MemoryFormat nchw_memory_format(const Tensor& t) {
  return (is_channels_last(t) && !t.is_contiguous()) ? MemoryFormat::ChannelsLast
                                                     : MemoryFormat::Contiguous;
}

// ---------------------------------------------------------------------------
// Allocation

// Number of bytes of a tensor of these sizes, or nullopt when it does not fit
// in int64 (an impossible output size).
inline std::optional<int64_t> checked_nbytes(
    torch::headeronly::IntHeaderOnlyArrayRef sizes,
    int64_t element_size) {
  int64_t n = element_size;
  for (int64_t s : sizes) {
    if (s < 0) {
      return std::nullopt;
    }
    if (s != 0 && n > std::numeric_limits<int64_t>::max() / s) {
      return std::nullopt;
    }
    n *= s;
  }
  return n;
}

inline int64_t element_size(ScalarType t) {
  switch (t) {
    case ScalarType::Byte:
    case ScalarType::Char:
    case ScalarType::Bool:
      return 1;
    case ScalarType::Short:
    case ScalarType::Half:
    case ScalarType::BFloat16:
      return 2;
    case ScalarType::Int:
    case ScalarType::Float:
      return 4;
    default:
      return 8;
  }
}

// Large CPU outputs are backed by transparent huge pages where the system allows
// them for advised ranges (madvise(MADV_HUGEPAGE); only this tensor's memory is
// concerned, nothing process-wide). glibc maps large blocks anew for every
// allocation, and touching a fresh 50 MB output 4 KiB page by page costs as much
// as computing it (benchmarks/RESULTS.md); 2 MiB pages take 512x fewer faults.
// Must run before the memory is first written.
// (-DROI_EXT_NO_HUGEPAGES compiles it out, to measure what it is worth.)
inline void advise_huge_pages(const Tensor& t, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(ROI_EXT_NO_HUGEPAGES)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < int64_t(4 * kHuge) || !t.is_cpu()) {
    return;
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t begin = (start + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (start + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) {
    (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // advisory only
  }
#else
  (void)t;
  (void)bytes;
#endif
}

// torch::stable::empty on `device` with an error that names what the tensor is
// and the argument that sized it (`what`, e.g. "crop_and_resize: output for
// crop_size"), for sizes that cannot exist or memory that cannot be had.
inline Tensor empty(
    const char* what,
    std::vector<int64_t> sizes,
    ScalarType dtype,
    Device device,
    MemoryFormat memory_format = MemoryFormat::Contiguous) {
  const torch::headeronly::IntHeaderOnlyArrayRef ref(sizes);
  const std::optional<int64_t> bytes = checked_nbytes(ref, element_size(dtype));
  if (!bytes) {
    fail(ErrorKind::kRuntime, what, ": cannot allocate a ", dtype_name(dtype), " tensor of shape ",
         Shape{ref}, ": its size overflows int64");
  }
  Tensor t = [&] {
    try {
      return torch::stable::empty(ref, dtype, std::nullopt, device, std::nullopt, memory_format);
    } catch (const std::exception& e) {
      fail(ErrorKind::kMemory, what, ": cannot allocate a ", dtype_name(dtype), " tensor of shape ",
           Shape{ref}, " (", *bytes, " bytes): ", e.what());
    }
  }();
  advise_huge_pages(t, *bytes);
  return t;
}

inline Tensor zeros(
    const char* what,
    std::vector<int64_t> sizes,
    ScalarType dtype,
    Device device,
    MemoryFormat memory_format = MemoryFormat::Contiguous) {
  Tensor t = empty(what, std::move(sizes), dtype, device, memory_format);
  torch::stable::zero_(t);
  return t;
}

// t in the given dtype (t itself when it already is).
inline Tensor to_dtype(const Tensor& t, ScalarType dtype) {
  if (t.scalar_type() == dtype) {
    return t;
  }
  return torch::stable::to(t, dtype);
}

// t dense in the given memory format (t itself when it already is). `what`
// names the argument for the error raised when the copy cannot be allocated.
inline Tensor contiguous(const Tensor& t, const char* what, MemoryFormat memory_format = MemoryFormat::Contiguous) {
  const bool already = memory_format == MemoryFormat::ChannelsLast ? is_channels_last(t) : t.is_contiguous();
  if (already) {
    return t;
  }
  try {
    return torch::stable::contiguous(t, memory_format);
  } catch (const std::exception& e) {
    fail(ErrorKind::kMemory, what, ": cannot allocate a ", dtype_name(t.scalar_type()), " copy of shape ",
         shape_of(t), ": ", e.what());
  }
}

// Copies src into dst (same shape; dtypes and layouts may differ).
inline void copy_into(Tensor& dst, const Tensor& src) {
  torch::stable::copy_(dst, src);
}

// [B, D, H, W] -> [B, H, W, D] view (no copy).
inline Tensor permute_nchw_to_nhwc(const Tensor& t) {
  return torch::stable::permute(t, {0, 2, 3, 1});
}

inline std::vector<int64_t> to_vector(torch::headeronly::IntHeaderOnlyArrayRef r) {
  return std::vector<int64_t>(r.begin(), r.end());
}

}  // namespace roi_ext

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

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <unordered_map>
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

// An opt-in recycling pool for large CPU outputs: ROI_EXT_CPU_CACHE_MB=<MiB>
// (default 0: off). glibc maps every large block anew and unmaps it when it is
// freed, so each call's output starts as untouched pages, and faulting them in
// costs as much as the kernel itself on some machines (a 50 MB
// crop_and_resize output: ~8 ms of work, ~12 ms of page faults;
// benchmarks/RESULTS.md). With the pool, freed outputs of at least 1 MiB are
// kept (up to the limit) and handed back to the next call of the same size, as
// the CUDA caching allocator does. It is process-wide state, which a user must
// ask for: off unless the variable is set. Pooled tensors are ordinary tensors
// except that their storage cannot be resized.
namespace detail {

class OutputPool {
 public:
  static OutputPool& instance() {
    static OutputPool* pool = new OutputPool();  // never destroyed: tensors may die at exit
    return *pool;
  }

  bool enabled() const {
    return limit_ > 0;
  }

  // A block of n bytes (64-byte aligned), reused when one is free; nullptr when
  // the system has no memory.
  void* take(size_t n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(n);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        held_ -= n;
        return p;
      }
    }
    void* p = nullptr;
    if (posix_memalign(&p, 64, n) != 0) {
      return nullptr;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    size_of_[p] = n;
    return p;
  }

  static void give_back(void* p) {
    instance().release(p);
  }

 private:
  OutputPool() {
    const char* env = std::getenv("ROI_EXT_CPU_CACHE_MB");
    const long long mb = env ? std::atoll(env) : 0;
    limit_ = mb > 0 ? static_cast<size_t>(mb) << 20 : 0;
  }

  void release(void* p) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = size_of_.find(p);
      if (it != size_of_.end() && held_ + it->second <= limit_) {
        free_.emplace(it->second, p);
        held_ += it->second;
        return;
      }
      if (it != size_of_.end()) {
        size_of_.erase(it);
      }
    }
    std::free(p);
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;          // unused blocks by size
  std::unordered_map<void*, size_t> size_of_;  // blocks handed out or held
  size_t held_ = 0;
  size_t limit_ = 0;
};

constexpr int64_t kMinPooledBytes = int64_t(1) << 20;

// Strides of a dense tensor of these sizes in the memory format.
inline std::vector<int64_t> dense_strides(const std::vector<int64_t>& sizes, MemoryFormat memory_format) {
  std::vector<int64_t> strides(sizes.size(), 1);
  if (memory_format == MemoryFormat::ChannelsLast && sizes.size() == 4) {
    const int64_t c = std::max<int64_t>(sizes[1], 1), h = std::max<int64_t>(sizes[2], 1);
    const int64_t w = std::max<int64_t>(sizes[3], 1);
    strides = {h * w * c, 1, w * c, c};
    return strides;
  }
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 2; i >= 0; --i) {
    strides[i] = strides[i + 1] * std::max<int64_t>(sizes[i + 1], 1);
  }
  return strides;
}

}  // namespace detail

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
  if (device.type() == torch::headeronly::DeviceType::CPU && *bytes >= detail::kMinPooledBytes &&
      detail::OutputPool::instance().enabled()) {
    void* p = detail::OutputPool::instance().take(static_cast<size_t>(*bytes));
    if (p == nullptr) {
      fail(ErrorKind::kMemory, what, ": cannot allocate a ", dtype_name(dtype), " tensor of shape ",
           Shape{ref}, " (", *bytes, " bytes)");
    }
    const std::vector<int64_t> strides = detail::dense_strides(sizes, memory_format);
    return torch::stable::from_blob(p, ref, torch::headeronly::IntHeaderOnlyArrayRef(strides), device, dtype,
                                    &detail::OutputPool::give_back);
  }
  try {
    return torch::stable::empty(ref, dtype, std::nullopt, device, std::nullopt, memory_format);
  } catch (const std::exception& e) {
    fail(ErrorKind::kMemory, what, ": cannot allocate a ", dtype_name(dtype), " tensor of shape ",
         Shape{ref}, " (", *bytes, " bytes): ", e.what());
  }
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

}  // namespace roi_ext

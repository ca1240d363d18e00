#include "output_allocator.h"

#include "../common/alloc.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

namespace roi_ext {
namespace cpu {
namespace {

// Blocks below this size come from the default allocator (no page-fault cost
// worth saving, and no point holding them).
constexpr size_t kMinPooledBytes = size_t(1) << 20;

size_t cache_limit_bytes() {
  const char* env = std::getenv("ROI_EXT_CPU_CACHE_MB");
  const long long mb = env ? std::atoll(env) : 1024;
  return mb > 0 ? static_cast<size_t>(mb) << 20 : 0;
}

class RecyclingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    void* p = nullptr;
    if (nbytes >= kMinPooledBytes && limit_ > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(nbytes);  // same-size reuse: shapes repeat call to call
      if (it != free_.end()) {
        p = it->second;
        free_.erase(it);
        held_ -= nbytes;
      }
    }
    if (p == nullptr) {
      p = c10::alloc_cpu(nbytes);
      if (nbytes >= kMinPooledBytes && limit_ > 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        size_of_[p] = nbytes;
      }
    }
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override {
    return &release;
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  static RecyclingAllocator& instance() {
    // Never destroyed: tensors may be freed during interpreter shutdown.
    static RecyclingAllocator* a = new RecyclingAllocator();
    return *a;
  }

 private:
  static void release(void* p) {
    instance().give_back(p);
  }

  void give_back(void* p) {
    if (p == nullptr) {
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = size_of_.find(p);
      if (it != size_of_.end()) {
        const size_t n = it->second;
        if (held_ + n <= limit_) {  // keep it for the next call of this size
          free_.emplace(n, p);
          held_ += n;
          return;
        }
        size_of_.erase(it);
      }
    }
    c10::free_cpu(p);
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;          // unused blocks by size
  std::unordered_map<void*, size_t> size_of_;  // every pooled block ever handed out
  size_t held_ = 0;
  const size_t limit_ = cache_limit_bytes();
};

}  // namespace

at::Tensor empty_output(
    const char* what,
    at::IntArrayRef sizes,
    at::ScalarType dtype,
    at::MemoryFormat memory_format) {
  return detail::allocate_output(what, sizes, dtype, [&] {
    return at::Tensor(at::detail::empty_generic(
        sizes, &RecyclingAllocator::instance(), c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
        memory_format));
  });
}

at::Tensor contiguous_output(const at::Tensor& t, at::MemoryFormat memory_format) {
  if (t.is_contiguous(memory_format)) {
    return t;
  }
  at::Tensor out = empty_output("roi_ext: channels-last copy", t.sizes(), t.scalar_type(), memory_format);
  out.copy_(t);
  return out;
}

}  // namespace cpu
}  // namespace roi_ext

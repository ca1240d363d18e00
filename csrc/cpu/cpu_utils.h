// Work splitting shared by the CPU kernels. Splitting never changes results:
// each output element is computed by one task in a fixed order.
#pragma once

#include <torch/csrc/stable/ops.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>

namespace roi_ext {
namespace cpu {

// torch::stable::parallel_for, with errors raised by f carried back to the
// calling thread and rethrown there. An exception must not cross the stable C
// boundary of parallel_for: torch releases before 2.13 lose its message there.
// After the first error the remaining chunks return at once.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain_size, const F& f) {
  std::mutex mutex;
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  torch::stable::parallel_for(begin, end, grain_size, [&](int64_t chunk_begin, int64_t chunk_end) {
    if (failed.load(std::memory_order_relaxed)) {
      return;
    }
    try {
      f(chunk_begin, chunk_end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) {
        error = std::current_exception();
      }
      failed.store(true, std::memory_order_relaxed);
    }
  });
  if (error) {
    std::rethrow_exception(error);
  }
}

// Inner-loop iterations below which a parallel region costs more than it saves.
constexpr int64_t kMinWorkPerChunk = 32768;

// torch::stable::parallel_for grain for tasks of about `work` inner iterations each: small
// problems run inline on the calling thread, large ones on every thread.
inline int64_t grain_for(int64_t work) {
  return std::max<int64_t>(1, kMinWorkPerChunk / std::max<int64_t>(1, work));
}

// Size of the channel (depth) blocks a task handles: the whole range when there
// are at least `tasks_per_thread` outer items (rois, images) per thread, smaller
// blocks when fewer. Each block repeats the per-sample set-up, so kernels whose
// set-up is costly ask for fewer tasks.
inline int64_t channel_block(int64_t channels, int64_t outer, int64_t tasks_per_thread = 4) {
  const int64_t want = tasks_per_thread * static_cast<int64_t>(torch::stable::get_num_threads());
  int64_t blocks = outer >= want ? 1 : (want + outer - 1) / std::max<int64_t>(outer, 1);
  blocks = std::max<int64_t>(1, std::min(blocks, channels));
  const int64_t block = std::max<int64_t>(1, (channels + blocks - 1) / blocks);
  // A multiple of the 8 vector lanes, so blocks run the vectorised loops.
  return std::min(channels, (block + 7) / 8 * 8);
}

}  // namespace cpu
}  // namespace roi_ext

// Work splitting shared by the CPU kernels. Splitting never changes results:
// each output element is computed by one task in a fixed order.
#pragma once

#include <torch/csrc/stable/ops.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

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

// The rois of each image in ascending order (a stable counting sort): the rois
// of image b are order[begin[b]] .. order[begin[b + 1] - 1], so a task owning an
// image visits them in the reference order. image[k] is roi k's image, in
// [0, batch_size).
struct RoisByImage {
  std::vector<int64_t> begin;  // batch_size + 1 offsets into order
  std::vector<int64_t> order;
};

inline RoisByImage rois_by_image(const std::vector<int64_t>& image, int64_t batch_size) {
  const int64_t num_rois = static_cast<int64_t>(image.size());
  RoisByImage r;
  r.begin.assign(batch_size + 1, 0);
  for (int64_t k = 0; k < num_rois; ++k) {
    ++r.begin[image[k] + 1];
  }
  for (int64_t b = 0; b < batch_size; ++b) {
    r.begin[b + 1] += r.begin[b];
  }
  r.order.resize(num_rois);
  std::vector<int64_t> next(r.begin.begin(), r.begin.end() - 1);
  for (int64_t k = 0; k < num_rois; ++k) {
    r.order[next[image[k]]++] = k;
  }
  return r;
}

}  // namespace cpu
}  // namespace roi_ext

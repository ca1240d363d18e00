// Channel contractions of the CPU box-gradient kernels (_roi_align_backward_rois,
// _prroi_pool_backward_rois): their gradients are linear in the output gradient
// g, so each first contracts g with the channels of every pixel it reads (one
// dot product per pixel) and then does its per-sample or per-bin arithmetic once.
#pragma once

#include <torch/headeronly/util/BFloat16.h>

#include <cstdint>
#include <type_traits>

#include "vec.h"

namespace roi_ext {
namespace cpu {

// sum_c g[c] * p[c * stride] over n channels in T: in 8 float lanes (each lane
// summing every 8th channel, the lanes then added in order) for contiguous
// float32 / bfloat16 channels, else serially. Either order is fixed: the roi
// gradient is deterministic, and equal to the CUDA kernel's within rounding.
template <typename scalar_t>
ROI_EXT_ALWAYS_INLINE float dot_lanes(const float* g, const scalar_t* p, int64_t n) {
  vf8 a = splat8(0.f);
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    a = a + (load8(g + c) * load8(p + c));
  }
  float sum = 0.f;
  for (int64_t l = 0; l < kLanes; ++l) {
    sum = sum + a[l];
  }
  for (; c < n; ++c) {
    sum = sum + (g[c] * static_cast<float>(p[c]));
  }
  return sum;
}

template <typename scalar_t>
ROI_EXT_TARGET_AVX2 float dot_lanes_avx2(const float* g, const scalar_t* p, int64_t n) {
  return dot_lanes<scalar_t>(g, p, n);
}
template <typename scalar_t>
float dot_lanes_baseline(const float* g, const scalar_t* p, int64_t n) {
  return dot_lanes<scalar_t>(g, p, n);
}

template <typename scalar_t>
constexpr bool kDotLanes = std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>;

// dot_lanes when the channels are contiguous and lanes exist for the types.
template <typename T, typename scalar_t>
T dot_channels(const T* g, const scalar_t* p, int64_t stride, int64_t n) {
  if constexpr (std::is_same_v<T, float> && kDotLanes<scalar_t>) {
    if (stride == 1) {
      static const auto fn = use_avx2() ? dot_lanes_avx2<scalar_t> : dot_lanes_baseline<scalar_t>;
      return fn(g, p, n);
    }
  }
  T sum = T(0);
  for (int64_t c = 0; c < n; ++c) {
    sum = sum + (g[c] * static_cast<T>(p[c * stride]));
  }
  return sum;
}

}  // namespace cpu
}  // namespace roi_ext

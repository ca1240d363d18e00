// Channel-vectorised inner loops for the CPU kernels.
//
// The hot loops run across channels, which are contiguous in channels_last /
// NHWC layouts. They are written once with GCC vector extensions (8 floats per
// vector) as always-inline bodies and compiled twice: for AVX2 (picked at run
// time when the CPU has it) and for the baseline ISA. Every lane performs the
// same IEEE operations in the same order as the scalar code, and FMA
// contraction stays off (-ffp-contract=off), so results are bit-identical
// whichever path runs.
#pragma once

#include <torch/headeronly/util/BFloat16.h>

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define ROI_EXT_X86_DISPATCH 1
#define ROI_EXT_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define ROI_EXT_TARGET_AVX2
#endif

#define ROI_EXT_ALWAYS_INLINE inline __attribute__((always_inline))

namespace roi_ext {
namespace cpu {

typedef float vf8 __attribute__((vector_size(32)));
constexpr int64_t kLanes = 8;

ROI_EXT_ALWAYS_INLINE vf8 load8(const float* p) {
  vf8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

ROI_EXT_ALWAYS_INLINE void store8(float* p, vf8 v) {
  std::memcpy(p, &v, sizeof(v));
}

// bfloat16 lanes: widened exactly (the upper half of a float), and narrowed with
// round-to-nearest-even, NaN -> 0x7FC0: lane for lane what c10::BFloat16 does.
typedef uint16_t vu16x8 __attribute__((vector_size(16)));
typedef uint32_t vu32x8 __attribute__((vector_size(32)));
typedef int32_t vi32x8 __attribute__((vector_size(32)));

ROI_EXT_ALWAYS_INLINE vf8 load8(const c10::BFloat16* p) {
  vu16x8 h;
  std::memcpy(&h, p, sizeof(h));
  const vu32x8 w = __builtin_convertvector(h, vu32x8) << 16;
  vf8 v;
  std::memcpy(&v, &w, sizeof(v));
  return v;
}

ROI_EXT_ALWAYS_INLINE void store8(c10::BFloat16* p, vf8 v) {
  vu32x8 u;
  std::memcpy(&u, &v, sizeof(u));
  const vu32x8 rounded = (u + (((u >> 16) & 1) + 0x7FFF)) >> 16;
  const vi32x8 nan = v != v;  // all ones in NaN lanes
  const vu32x8 bits = (rounded & ~(vu32x8)nan) | ((vu32x8)nan & 0x7FC0);
  const vu16x8 h = __builtin_convertvector(bits, vu16x8);
  std::memcpy(p, &h, sizeof(h));
}

ROI_EXT_ALWAYS_INLINE vf8 splat8(float x) {
  return vf8{x, x, x, x, x, x, x, x};
}

// True when the AVX2 clones may run on this CPU.
inline bool use_avx2() {
#if defined(ROI_EXT_X86_DISPATCH)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

}  // namespace cpu
}  // namespace roi_ext

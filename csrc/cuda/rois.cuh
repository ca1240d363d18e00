// The rois of the ROIAlign CUDA kernels (roi_align, multi_scale_roi_align) in
// their compute type, converted on the device (no host synchronisation).
#pragma once

#include "../common/roi_align_math.h"
#include "../common/stable.h"
#include "cuda_utils.cuh"

namespace roi_ext {
namespace cuda {

// rois [K, 5] of any floating dtype -> contiguous rois in the compute type
// acc_t, with the batch index resolved in the rois' own precision (SPEC A12:
// checked and truncated toward zero before any rounding; a float64 index of
// 0.9999999999 is image 0, which float32 would round to 1). An invalid index
// becomes -1, which load_roi treats as invalid.
template <typename src_t, typename acc_t>
__global__ void rois_to_compute_kernel(int64_t total, const src_t* __restrict__ src, int64_t batch,
                                       acc_t* __restrict__ dst) {
  ROI_EXT_KERNEL_LOOP(i, total) {
    const opmath_t<src_t> v = static_cast<opmath_t<src_t>>(src[i]);  // exact (half types widen)
    if (i % 5 == 0) {
      dst[i] = roi_align_math::valid_batch_index(v, batch) ? static_cast<acc_t>(static_cast<int64_t>(v)) : acc_t(-1);
    } else {
      dst[i] = static_cast<acc_t>(v);
    }
  }
}

inline Tensor rois_in_compute_type(const Tensor& rois, ScalarType acc_type, int64_t batch, cudaStream_t stream) {
  const Tensor src = contiguous(rois, "rois");
  if (src.scalar_type() == acc_type) {
    return src;
  }
  Tensor dst = roi_ext::empty("rois (in the compute type)", {src.size(0), 5}, acc_type, src.device());
  const int64_t total = src.numel();
  if (total == 0) {
    return dst;
  }
  THO_DISPATCH_V2(
      src.scalar_type(), "roi_align_rois_to_compute", AT_WRAP([&] {
        using src_t = scalar_t;
        if (acc_type == ScalarType::Double) {
          launch(rois_to_compute_kernel<src_t, double>, total, stream, total, src.const_data_ptr<src_t>(),
                       batch, dst.mutable_data_ptr<double>());
        } else {
          launch(rois_to_compute_kernel<src_t, float>, total, stream, total, src.const_data_ptr<src_t>(),
                       batch, dst.mutable_data_ptr<float>());
        }
      }),
      AT_EXPAND(AT_FLOATING_TYPES), ScalarType::Half, ScalarType::BFloat16);
  return dst;
}

}  // namespace cuda
}  // namespace roi_ext

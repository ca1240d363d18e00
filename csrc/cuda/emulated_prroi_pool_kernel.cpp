// The CUDA emulation build only: prroi_pool_kernel.cu compiled as host C++ (see
// emulation.h). setup.py checks that every .cu file has such a wrapper.
#if !defined(ROI_EXT_CUDA_EMULATION)
#error "emulated_*.cpp are for the ROI_EXT_CUDA_EMULATION build only"
#endif
#include "prroi_pool_kernel.cu"

"""The CUDA emulation build's operators (scripts/test_emulation.sh): csrc/cuda/*.cu
compiled as host code and registered as torch.ops.roi_ext_cuda_emulated.*, with the
same schemas as torch.ops.roi_ext. The normal build does not have them: the test
files of the emulated kernels (tests/test_cuda_emulation*.py) set
``pytestmark = needs_emulation``."""
import pytest
import torch

import roi_ext  # noqa: F401  (loads the operators)


def _emulated():
    try:
        return torch.ops.roi_ext_cuda_emulated.work_counter.default
    except (AttributeError, RuntimeError):
        return None


EMU = torch.ops.roi_ext_cuda_emulated if _emulated() is not None else None
needs_emulation = pytest.mark.skipif(EMU is None, reason="not the CUDA emulation build (scripts/test_emulation.sh)")

"""Build roi_ext's compiled operator library, roi_ext._C.

A CUDAExtension when the installed torch is a CUDA build and nvcc is found (or
FORCE_CUDA=1), else a CppExtension. torch is not a build requirement: build with
`pip install --no-build-isolation .` against the torch you run with.

Environment:
  FORCE_CUDA=1            build the CUDA kernels even if detection says no
  FORCE_CPU=1             never build the CUDA kernels
  TORCH_CUDA_ARCH_LIST    GPU architectures (default "8.0;9.0" when no GPU is visible)
  ROI_EXT_SANITIZE=1      build with AddressSanitizer + UndefinedBehaviorSanitizer
"""
import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0") not in ("", "0")


def _use_cuda():
    if _flag("FORCE_CPU"):
        return False
    if _flag("FORCE_CUDA"):
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _extension():
    rel = lambda pattern: sorted(  # noqa: E731
        os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern))
    )
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    # No FMA contraction anywhere: results must be bit-identical to the
    # references and CPU == CUDA (SPEC.md Part A1-A2).
    cxx = ["-O2", "-g0", "-fopenmp", "-ffp-contract=off", "-fvisibility=hidden"]
    link = ["-fopenmp"]
    if _flag("ROI_EXT_SANITIZE"):
        # float-cast-overflow is not part of GCC's "undefined" group; it catches
        # NaN / out-of-range float -> int conversions, the classic bug here.
        san = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=all"]
        cxx = [f for f in cxx if f != "-O2"] + ["-O1"] + san
        link += san
    args = {"cxx": cxx}
    cls = CppExtension
    if _use_cuda():
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
        sources += rel("csrc/cuda/*.cu")
        args["nvcc"] = ["-O3", "--fmad=false", "-lineinfo"]
        cls = CUDAExtension
    return cls("roi_ext._C", sources, extra_compile_args=args, extra_link_args=link)


setup(
    name="roi_ext",
    version="0.1.0",
    description="Region-cropping operators for PyTorch: CropAndResize, ROIAlign, Cropping1D/2D/3D",
    packages=find_packages(include=["roi_ext", "roi_ext.*"]),
    package_data={"roi_ext": ["py.typed"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
    python_requires=">=3.9",
    install_requires=["torch"],
)

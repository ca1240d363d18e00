"""Build roi_ext's compiled operator library, roi_ext._C.

The C++ and CUDA sources use only the LibTorch stable ABI and CPython's limited
API, so the result is one `cp310-abi3` wheel that runs under every torch from
TORCH_FLOOR on and every Python from 3.10 on (pyproject.toml has the metadata).

A CUDAExtension when nvcc is found (CUDA_HOME, or /usr/local/cuda) and the
torch used for the build is a CUDA build (or FORCE_CUDA=1), else a
CppExtension. Either way the library links only libtorch_cpu (the stable C shim)
and, with CUDA, the static CUDA runtime: it loads under CPU-only torch builds
too, where the CUDA kernels are simply never called.

Environment:
  FORCE_CUDA=1            build the CUDA kernels even if detection says no
  FORCE_CPU=1             never build the CUDA kernels
  TORCH_CUDA_ARCH_LIST    GPU architectures (default "8.0;9.0+PTX"; always
                          keep a +PTX entry so newer GPUs can JIT the kernels)
  ROI_EXT_SANITIZE=1      build with AddressSanitizer + UndefinedBehaviorSanitizer
  ROI_EXT_CUDA_EMULATION=1  tests only, never for a wheel: also compile the CUDA
                          kernels (csrc/cuda/*.cu) as host C++ and register them
                          for CPU tensors as torch.ops.roi_ext_cuda_emulated.*
                          (csrc/cuda/emulation.h; tests/test_cuda_emulation.py,
                          scripts/test_emulation.sh)
"""
import glob
import os
import shutil

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

# The oldest torch the binary runs under: the stable-ABI version it targets.
TORCH_FLOOR = (2, 11)
PY_LIMITED_API = "0x030A0000"  # Python 3.10


def _flag(name):
    return os.environ.get(name, "0") not in ("", "0")


def _find_cuda_home():
    """CUDA_HOME as set, else the toolkit folder that holds nvcc and the CUDA
    runtime. torch's own guess follows the first `nvcc` on PATH, which may be a
    wrapper script outside the toolkit (the link then fails with -lcudart)."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = ["/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for c in candidates:
        if os.path.exists(os.path.join(c, "bin", "nvcc")) and os.path.exists(
            os.path.join(c, "include", "cuda_runtime.h")
        ):
            return c
    return None


_cuda_home = _find_cuda_home()
if _cuda_home and not _flag("FORCE_CPU"):
    os.environ["CUDA_HOME"] = _cuda_home  # before torch.utils.cpp_extension reads it

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _use_cuda():
    if _flag("FORCE_CPU"):
        return False
    if _flag("FORCE_CUDA"):
        return True
    return torch.version.cuda is not None and _cuda_home is not None


def _extension():
    rel = lambda pattern: sorted(  # noqa: E731
        os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern))
    )
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    target = "-DTORCH_TARGET_VERSION=0x{:02x}{:02x}000000000000".format(*TORCH_FLOOR)
    # No FMA contraction anywhere: results must be bit-identical to the
    # references and CPU == CUDA (SPEC.md Part A1-A2).
    cxx = ["-O2", "-g0", "-ffp-contract=off", "-fvisibility=hidden", target, "-Wno-psabi"]
    link = ["-Wl,--as-needed"]
    if _flag("ROI_EXT_SANITIZE"):
        # float-cast-overflow is not part of GCC's "undefined" group; it catches
        # NaN / out-of-range float -> int conversions, the classic bug here.
        # -fno-wrapv: Python's sysconfig CFLAGS (which come first) carry -fwrapv,
        # under which signed overflow is defined and UBSan's check for it is
        # compiled out.
        san = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=all", "-fno-wrapv"]
        cxx = [f for f in cxx if f != "-O2"] + ["-O1"] + san
        link += san
    if _flag("ROI_EXT_CUDA_EMULATION"):
        # Each csrc/cuda/X.cu is compiled through csrc/cuda/emulated_X.cpp.
        cu = [os.path.splitext(os.path.basename(p))[0] for p in rel("csrc/cuda/*.cu")]
        missing = [n for n in cu if not os.path.exists(os.path.join(HERE, "csrc", "cuda", f"emulated_{n}.cpp"))]
        if missing:
            raise RuntimeError(f"ROI_EXT_CUDA_EMULATION: no csrc/cuda/emulated_<name>.cpp wrapper for {missing}")
        sources += rel("csrc/cuda/*.cpp")
        cxx = cxx + ["-DROI_EXT_CUDA_EMULATION=1"]
    args = {"cxx": cxx}
    cls = CppExtension
    if _use_cuda() and not _flag("ROI_EXT_CUDA_EMULATION"):
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        sources += rel("csrc/cuda/*.cu")
        args["nvcc"] = ["-O3", "--fmad=false", "-lineinfo", target, "-std=c++17"]
        cls = CUDAExtension
    ext = cls("roi_ext._C", sources, extra_compile_args=args, extra_link_args=link, py_limited_api=True)
    # Only the stable C shim (libtorch_cpu) and, for CUDA, the static CUDA
    # runtime: no libc10_cuda / libtorch_cuda / libcudart dependency, so the
    # same file loads under CPU-only and CUDA builds of torch.
    ext.libraries = ["torch_cpu"]
    if cls is CUDAExtension:
        ext.libraries += ["cudart_static", "dl", "rt", "pthread"]
    return ext


setup(
    packages=find_packages(include=["roi_ext", "roi_ext.*"]),
    package_data={"roi_ext": ["py.typed"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)

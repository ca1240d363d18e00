// The schema owner of the roi_ext namespace: every operator is defined here once;
// csrc/cpu and csrc/cuda only register implementations. Fake (meta) kernels,
// autograd formulas and autocast are registered from Python (roi_ext/*.py).
//
// Built against the LibTorch stable ABI and CPython's limited API (abi3): one
// binary serves every torch release from the target version on and every
// Python from 3.10 on.
#include <Python.h>

#include <torch/csrc/stable/library.h>

#include "common/schemas.h"

// `from roi_ext import _C` loads this library, which runs the static operator
// registrations below; the module itself is empty (ops live in torch.ops.roi_ext).
// PyMODINIT_FUNC exports the symbol despite -fvisibility=hidden.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C", /* name */
      nullptr, /* doc */
      -1, /* size */
      nullptr, /* methods */
  };
  return PyModule_Create(&module_def);
}

STABLE_TORCH_LIBRARY(roi_ext, m) {
  roi_ext::define_schemas(m);
}

"""Autocast kernels for the forward ops, registered from Python (the LibTorch
stable ABI has no autocast API).

Under ``torch.autocast`` the ops behave as torchvision's ``roi_align`` does:
inputs of any floating dtypes are accepted together (half types are computed in
float32 by the kernels themselves), and the result has the dtype the op gives
outside autocast (``roi_align``: the dtype of ``input``; ``crop_and_resize``:
float32, or float64 for float64 images), never the autocast dtype. The kernels
below run the op with autocast excluded, so nothing inside it is recast.
"""
import torch

_AUTOCAST_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU) | torch._C.DispatchKeySet(
    torch._C.DispatchKey.AutocastCUDA
)

_lib = torch.library.Library("roi_ext", "IMPL")


def _register(name: str) -> None:
    op = getattr(torch.ops.roi_ext, name).default

    def kernel(keyset, *args):
        with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_KEYS):
            return op(*args)

    for key in ("AutocastCPU", "AutocastCUDA"):
        _lib.impl(name, kernel, key, with_keyset=True)


for _name in ("roi_align", "_roi_align_backward", "roi_align_with_box_grad", "_roi_align_backward_rois",
              "crop_and_resize", "crop_and_resize_grad_image",
              "crop_and_resize_grad_boxes", "multi_scale_roi_align", "_multi_scale_roi_align_backward"):
    _register(_name)

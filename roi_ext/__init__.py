"""roi_ext: region-cropping operators for PyTorch.

CropAndResize (TensorFlow / MindSpore semantics), ROIAlign (torchvision and
MindSpore conventions) and Cropping1D/2D/3D (Keras semantics), with native CPU
and CUDA kernels registered under ``torch.ops.roi_ext``.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (loads the compiled operators)
from . import _autocast  # noqa: F401  (autocast kernels)
from .crop_and_resize import CropAndResize, crop_and_resize, crop_and_resize_grad_boxes, crop_and_resize_grad_image
from .cropping import Cropping1D, Cropping2D, Cropping3D, cropping1d, cropping2d, cropping3d
from .roi_align import ROIAlign, RoIAlign, roi_align

__all__ = [
    "crop_and_resize",
    "crop_and_resize_grad_image",
    "crop_and_resize_grad_boxes",
    "CropAndResize",
    "roi_align",
    "ROIAlign",
    "RoIAlign",
    "cropping1d",
    "cropping2d",
    "cropping3d",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
]
__version__ = "0.2.0"

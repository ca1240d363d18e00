"""roi_ext: region-cropping operators for PyTorch.

CropAndResize (TensorFlow / MindSpore semantics), ROIAlign (torchvision and
MindSpore conventions), Precise RoI Pooling and Cropping1D/2D/3D (Keras
semantics), with native CPU and CUDA kernels registered under ``torch.ops.roi_ext``.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (loads the compiled operators)
from . import _autocast  # noqa: F401  (autocast kernels)
from . import onnx  # noqa: F401  (ONNX export of the ops, both exporters)
from .crop_and_resize import CropAndResize, crop_and_resize, crop_and_resize_grad_boxes, crop_and_resize_grad_image
from .cropping import Cropping1D, Cropping2D, Cropping3D, cropping1d, cropping2d, cropping3d
from .poolers import MultiScaleRoIAlign
from .prroi_pool import PrRoIPool, prroi_pool
from .roi_align import ROIAlign, RoIAlign, roi_align

# roi_align is an fx leaf when called as roi_ext.roi_align too (torch.fx.wrap
# patches the globals of the module that calls it: here, this package).
torch.fx.wrap("roi_align")
torch.fx.wrap("prroi_pool")

__all__ = [
    "crop_and_resize",
    "crop_and_resize_grad_image",
    "crop_and_resize_grad_boxes",
    "CropAndResize",
    "roi_align",
    "ROIAlign",
    "RoIAlign",
    "MultiScaleRoIAlign",
    "prroi_pool",
    "PrRoIPool",
    "cropping1d",
    "cropping2d",
    "cropping3d",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
]
__version__ = "0.2.0"

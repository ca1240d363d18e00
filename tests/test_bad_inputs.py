"""The bad-input matrix: malformed calls of every op, including the backward ops
called directly. Each case either returns the documented result or raises
ValueError/TypeError/IndexError/RuntimeError whose message names the argument.

The cases run in a child process, so a crash (segfault, abort) is a failed test
rather than a dead test run: the child reports each case before and after
running it; when it dies, the case it was running is recorded as a crash and a
new child carries on with the rest."""
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

# name -> (python expression, expected)
#   expected: ("ok", shape)                      returns a tensor of that shape
#             ("ok", None)                       returns (shape not checked)
#             (ExceptionName, keyword)           raises it, message contains keyword
CASES = {
    # --- roi_align -----------------------------------------------------------
    "ra_input_3d": ("R.roi_align(X[0], ROIS, 2)", ("ValueError", "input")),
    "ra_input_5d": ("R.roi_align(X[None], ROIS, 2)", ("ValueError", "input")),
    "ra_input_bool": ("R.roi_align(X > 0, ROIS, 2)", ("TypeError", "input")),
    "ra_input_complex": ("R.roi_align(X.to(torch.complex64), ROIS, 2)", ("TypeError", "input")),
    "ra_input_int": ("R.roi_align(X.long(), ROIS, 2)", ("TypeError", "input")),
    "ra_input_numpy": ("R.roi_align(X.numpy(), ROIS, 2)", ("TypeError", "input")),
    "ra_rois_4_columns": ("R.roi_align(X, ROIS[:, :4], 2)", ("ValueError", "boxes")),
    "ra_rois_1d": ("R.roi_align(X, ROIS[0], 2)", ("ValueError", "boxes")),
    "ra_rois_3d": ("R.roi_align(X, ROIS[None], 2)", ("ValueError", "boxes")),
    "ra_rois_list_of_5": ("R.roi_align(X, [ROIS], 2)", ("ValueError", "boxes[0]")),
    "ra_rois_list_of_numpy": ("R.roi_align(X, [ROIS[:, 1:].numpy()], 2)", ("ValueError", "boxes[0]")),
    "ra_rois_int": ("R.roi_align(X, ROIS.long(), 2)", ("TypeError", "rois")),
    "ra_rois_numpy": ("R.roi_align(X, ROIS.numpy(), 2)", ("TypeError", "boxes")),
    "ra_batch_negative": ("R.roi_align(X, t([[-1, 0, 0, 3, 3]]), 2)", ("IndexError", "batch index")),
    "ra_batch_equal_n": ("R.roi_align(X, t([[2, 0, 0, 3, 3]]), 2)", ("IndexError", "batch index")),
    "ra_batch_nan": ("R.roi_align(X, t([[NAN, 0, 0, 3, 3]]), 2)", ("IndexError", "batch index")),
    "ra_batch_inf": ("R.roi_align(X, t([[INF, 0, 0, 3, 3]]), 2)", ("IndexError", "batch index")),
    "ra_coords_nan": ("R.roi_align(X, t([[0, NAN, 0, NAN, 3]]), 2)", ("ok", (1, 3, 2, 2))),
    "ra_coords_inf": ("R.roi_align(X, t([[0, -INF, 0, INF, 3]]), 2, 1.0, -1, True)", ("ok", (1, 3, 2, 2))),
    "ra_coords_huge_fixed_sampling": ("R.roi_align(X, t([[0, -1e30, 0, 1e30, 3]]), 2, 1.0, 2)", ("ok", (1, 3, 2, 2))),
    "ra_coords_huge_adaptive": ("R.roi_align(X, t([[0, -1e30, -1e30, 1e30, 1e30]]), 2)", ("ValueError", "sampling_ratio")),
    "ra_coords_huge_one_axis": ("R.roi_align(X, t([[0, -1e30, 0, 1e30, 3]]), 2)", ("ok", (1, 3, 2, 2))),
    "ra_output_size_zero": ("R.roi_align(X, ROIS, 0)", ("ok", (2, 3, 0, 0))),
    "ra_output_size_negative": ("R.roi_align(X, ROIS, -2)", ("ValueError", "output_size")),
    "ra_output_size_3": ("R.roi_align(X, ROIS, (2, 2, 2))", ("ValueError", "output_size")),
    "ra_output_size_float": ("R.roi_align(X, ROIS, 2.5)", ("TypeError", "output_size")),
    "ra_output_too_large": ("R.roi_align(X, ROIS, (1 << 31, 1 << 31))", ("RuntimeError", "output_size")),
    "ra_roi_end_mode_2": ("R.roi_align(X, ROIS, 2, roi_end_mode=2)", ("ValueError", "roi_end_mode")),
    "ra_spatial_scale_nan": ("R.roi_align(X, ROIS, 2, spatial_scale=NAN)", ("ValueError", "spatial_scale")),
    "ra_spatial_scale_str": ("R.roi_align(X, ROIS, 2, spatial_scale='1')", ("TypeError", "spatial_scale")),
    "ra_sampling_ratio_float": ("R.roi_align(X, ROIS, 2, sampling_ratio=1.5)", ("TypeError", "sampling_ratio")),
    "ra_non_contiguous": ("R.roi_align(X[:, :, ::2, 1:], ROIS, 2)", ("ok", (2, 3, 2, 2))),
    "ra_stride0_expanded": ("R.roi_align(X[:1, :1].expand(2, 3, 8, 9), ROIS, 2)", ("ok", (2, 3, 2, 2))),
    "ra_zero_channels": ("R.roi_align(X[:, :0], ROIS, 2)", ("ok", (2, 0, 2, 2))),
    "ra_zero_height": ("R.roi_align(X[:, :, :0], ROIS, 2)", ("ok", (2, 3, 2, 2))),
    "ra_zero_batch_with_rois": ("R.roi_align(X[:0], ROIS, 2)", ("IndexError", "batch index")),
    "ra_no_rois": ("R.roi_align(X, ROIS[:0], 2)", ("ok", (0, 3, 2, 2))),
    "ra_sparse_input": ("R.roi_align(X.to_sparse(), ROIS, 2)", ("TypeError", "input")),
    "ra_aligned_string": ("R.roi_align(X, ROIS, 2, aligned='yes')", ("TypeError", "aligned")),
    "cr_sparse_boxes": ("R.crop_and_resize(IMG, BX.to_sparse(), BI, (2, 2))", ("TypeError", "boxes")),
    "cr_meta_tensors": ("R.crop_and_resize(IMG.to('meta'), BX.to('meta'), BI.to('meta'), (2, 3))", ("ok", (2, 2, 3, 3))),
    "ra_module_bad_pooled": ("R.ROIAlign(0, 2, 1.0)", ("ValueError", "pooled_height")),
    "rab_grad_shape": ("B(torch.ones(2, 3, 3, 2), ROIS, 1.0, 2, 2, 2, 3, 8, 9, -1, False, 0)", ("ValueError", "grad")),
    "rab_grad_3d": ("B(torch.ones(2, 3, 2), ROIS, 1.0, 2, 2, 2, 3, 8, 9, -1, False, 0)", ("ValueError", "grad")),
    "rab_grad_int": ("B(torch.ones(2, 3, 2, 2).long(), ROIS, 1.0, 2, 2, 2, 3, 8, 9, -1, False, 0)", ("TypeError", "grad")),
    "rab_negative_size": ("B(torch.ones(2, 3, 2, 2), ROIS, 1.0, 2, 2, 2, 3, -8, 9, -1, False, 0)", ("ValueError", "height")),
    "rab_batch_out_of_range": ("B(torch.ones(2, 3, 2, 2), ROIS, 1.0, 2, 2, 1, 3, 8, 9, -1, False, 0)", ("IndexError", "batch index")),
    "rab_rois_shape": ("B(torch.ones(2, 3, 2, 2), ROIS[:, :4], 1.0, 2, 2, 2, 3, 8, 9, -1, False, 0)", ("ValueError", "rois")),
    "rab_nan_rois": ("B(torch.ones(1, 3, 2, 2), t([[0, NAN, NAN, NAN, NAN]]), 1.0, 2, 2, 2, 3, 8, 9, 2, False, 0)", ("ok", (2, 3, 8, 9))),
    "rab_mode": ("B(torch.ones(2, 3, 2, 2), ROIS, 1.0, 2, 2, 2, 3, 8, 9, -1, False, 5)", ("ValueError", "roi_end_mode")),
    # --- crop_and_resize -----------------------------------------------------
    "cr_image_3d": ("R.crop_and_resize(IMG[0], BX, BI, (2, 2))", ("ValueError", "image")),
    "cr_image_zero_height": ("R.crop_and_resize(IMG[:, :0], BX, BI, (2, 2))", ("ValueError", "image")),
    "cr_image_bool": ("R.crop_and_resize(IMG > 0, BX, BI, (2, 2))", ("TypeError", "image")),
    "cr_image_complex": ("R.crop_and_resize(IMG.to(torch.complex64), BX, BI, (2, 2))", ("TypeError", "image")),
    "cr_boxes_1d": ("R.crop_and_resize(IMG, BX[0], BI, (2, 2))", ("ValueError", "boxes")),
    "cr_boxes_3_columns": ("R.crop_and_resize(IMG, BX[:, :3], BI, (2, 2))", ("ValueError", "boxes")),
    "cr_boxes_int": ("R.crop_and_resize(IMG, BX.long(), BI, (2, 2))", ("TypeError", "boxes")),
    "cr_box_index_2d": ("R.crop_and_resize(IMG, BX, BI[None], (2, 2))", ("ValueError", "box_index")),
    "cr_box_index_length": ("R.crop_and_resize(IMG, BX, BI[:1], (2, 2))", ("ValueError", "box_index")),
    "cr_box_index_negative": ("R.crop_and_resize(IMG, BX, ti([0, -1]), (2, 2))", ("IndexError", "box_index")),
    "cr_box_index_equal_b": ("R.crop_and_resize(IMG, BX, ti([0, 2]), (2, 2))", ("IndexError", "box_index")),
    "cr_box_index_huge": ("R.crop_and_resize(IMG, BX, ti([0, 1 << 40]), (2, 2))", ("IndexError", "box_index")),
    "cr_box_index_float_nan": ("R.crop_and_resize(IMG, BX, t([0, NAN]), (2, 2))", ("TypeError", "box_index")),
    "cr_boxes_nan": ("R.crop_and_resize(IMG, t([[NAN, 0, 1, 1], [0, NAN, 1, NAN]]), BI, (2, 2))", ("ok", (2, 2, 2, 3))),
    "cr_boxes_inf": ("R.crop_and_resize(IMG, t([[-INF, 0, INF, 1], [0, 0, 1e30, 1]]), BI, (2, 2), 'bilinear_v2')", ("ok", (2, 2, 2, 3))),
    "cr_crop_zero": ("R.crop_and_resize(IMG, BX, BI, (0, 2))", ("ValueError", "crop_size")),
    "cr_crop_negative": ("R.crop_and_resize(IMG, BX, BI, (2, -3))", ("ValueError", "crop_size")),
    "cr_crop_length_3": ("R.crop_and_resize(IMG, BX, BI, (2, 2, 2))", ("ValueError", "crop_size")),
    "cr_crop_float": ("R.crop_and_resize(IMG, BX, BI, (2.0, 2))", ("TypeError", "crop_size")),
    "cr_crop_too_large": ("R.crop_and_resize(IMG, BX, BI, (1 << 31, 1 << 31))", ("RuntimeError", "crop_size")),
    "cr_method_unknown": ("R.crop_and_resize(IMG, BX, BI, (2, 2), 'area')", ("ValueError", "method")),
    "cr_data_format_unknown": ("R.crop_and_resize(IMG, BX, BI, (2, 2), data_format='HWC')", ("ValueError", "data_format")),
    "cr_non_contiguous": ("R.crop_and_resize(IMG[:, ::2, 1:], BX, BI, (2, 2))", ("ok", (2, 2, 2, 3))),
    "cr_stride0_expanded": ("R.crop_and_resize(IMG[:1].expand(2, 8, 9, 3), BX, BI, (2, 2))", ("ok", (2, 2, 2, 3))),
    "cr_zero_depth": ("R.crop_and_resize(IMG[..., :0], BX, BI, (2, 2))", ("ok", (2, 2, 2, 0))),
    "cr_no_boxes": ("R.crop_and_resize(IMG, BX[:0], BI[:0], (2, 2))", ("ok", (0, 2, 2, 3))),
    "cr_empty_malformed_boxes": ("R.crop_and_resize(IMG, torch.zeros(0, 0), BI[:0], (2, 2))", ("ok", (0, 2, 2, 3))),
    "crgi_image_size_3": ("R.crop_and_resize_grad_image(G, BX, BI, (2, 8, 9))", ("ValueError", "image_size")),
    "crgi_image_size_zero_h": ("R.crop_and_resize_grad_image(G, BX, BI, (2, 0, 9, 3))", ("ValueError", "image_size")),
    "crgi_box_index": ("R.crop_and_resize_grad_image(G, BX, ti([0, 5]), (2, 8, 9, 3))", ("IndexError", "box_index")),
    "crgi_grads_3d": ("R.crop_and_resize_grad_image(G[0], BX, BI, (2, 8, 9, 3))", ("ValueError", "grads")),
    "crgi_grads_count": ("R.crop_and_resize_grad_image(G[:1], BX, BI, (2, 8, 9, 3))", ("ValueError", "grads")),
    "crgi_depth": ("R.crop_and_resize_grad_image(G, BX, BI, (2, 8, 9, 4))", ("ValueError", "depth")),
    "crgi_boxes_1d_empty": ("R.crop_and_resize_grad_image(G[:0], torch.zeros(0), BI[:0], (2, 8, 9, 3))", ("ValueError", "boxes")),
    "crgi_nan_boxes": ("R.crop_and_resize_grad_image(G, t([[NAN] * 4, [INF] * 4]), BI, (2, 8, 9, 3))", ("ok", (2, 8, 9, 3))),
    "crgi_dtype_int": ("R.crop_and_resize_grad_image(G, BX, BI, (2, 8, 9, 3), dtype=torch.int32)", ("TypeError", "dtype")),
    "crgi_too_large": ("R.crop_and_resize_grad_image(G, BX, BI, (1 << 20, 1 << 20, 1 << 20, 3))", ("RuntimeError", "image_size")),
    "crgb_nan_boxes": ("R.crop_and_resize_grad_boxes(G, IMG, t([[NAN] * 4, [-INF, 0, INF, 1]]), BI)", ("ok", (2, 4))),
    "crgb_boxes_1d_empty": ("R.crop_and_resize_grad_boxes(G[:0], IMG, torch.zeros(0), BI[:0])", ("ValueError", "boxes")),
    "crgb_box_index": ("R.crop_and_resize_grad_boxes(G, IMG, BX, ti([9, 0]))", ("IndexError", "box_index")),
    "crgb_depth": ("R.crop_and_resize_grad_boxes(G[..., :2], IMG, BX, BI)", ("ValueError", "depth")),
    "crgb_image_3d": ("R.crop_and_resize_grad_boxes(G, IMG[0], BX, BI)", ("ValueError", "image")),
    "crgb_grads_int": ("R.crop_and_resize_grad_boxes(G.long(), IMG, BX, BI)", ("TypeError", "grads")),
    # --- roi_align(box_grad=True) and its roi gradient ------------------------
    "rabg_input_int": ("R.roi_align(X.long(), ROIS, 2, box_grad=True)", ("TypeError", "input")),
    "rabg_box_grad_string": ("R.roi_align(X, ROIS, 2, box_grad='yes')", ("TypeError", "box_grad")),
    "rabg_batch_negative": ("R.roi_align(X, t([[-1, 0, 0, 3, 3]]), 2, box_grad=True)", ("IndexError", "batch index")),
    "rabr_grad_shape": ("BR(torch.ones(2, 3, 3, 2), X, ROIS, 1.0, 2, 2, -1, False, 0)", ("ValueError", "grad")),
    "rabr_grad_3d": ("BR(torch.ones(2, 3, 2), X, ROIS, 1.0, 2, 2, -1, False, 0)", ("ValueError", "grad")),
    "rabr_input_3d": ("BR(torch.ones(2, 3, 2, 2), X[0], ROIS, 1.0, 2, 2, -1, False, 0)", ("ValueError", "input")),
    "rabr_batch_out_of_range": ("BR(torch.ones(1, 3, 2, 2), X, t([[2, 0, 0, 3, 3]]), 1.0, 2, 2, -1, False, 0)",
                                ("IndexError", "batch index")),
    "rabr_nan_rois": ("BR(torch.ones(1, 3, 2, 2), X, t([[0, NAN, NAN, NAN, NAN]]), 1.0, 2, 2, 2, False, 0)",
                      ("ok", (1, 5))),
    "rabr_huge_adaptive": ("BR(torch.ones(1, 3, 2, 2), X, t([[0, -1e30, -1e30, 1e30, 1e30]]), 1.0, 2, 2, -1, False, 0)",
                           ("ValueError", "sampling_ratio")),
    "rabr_no_rois": ("BR(torch.ones(0, 3, 2, 2), X, ROIS[:0], 1.0, 2, 2, -1, False, 0)", ("ok", (0, 5))),
    "rabr_stride0_grad": ("BR(torch.ones(()).expand(2, 3, 2, 2), X, ROIS, 1.0, 2, 2, -1, True, 1)", ("ok", (2, 5))),
    # --- prroi_pool ----------------------------------------------------------
    "pr_input_3d": ("R.prroi_pool(X[0], ROIS, 2)", ("ValueError", "input")),
    "pr_input_int": ("R.prroi_pool(X.long(), ROIS, 2)", ("TypeError", "input")),
    "pr_input_bool": ("R.prroi_pool(X > 0, ROIS, 2)", ("TypeError", "input")),
    "pr_input_numpy": ("R.prroi_pool(X.numpy(), ROIS, 2)", ("TypeError", "input")),
    "pr_rois_4_columns": ("R.prroi_pool(X, ROIS[:, :4], 2)", ("ValueError", "rois")),
    "pr_rois_int": ("R.prroi_pool(X, ROIS.long(), 2)", ("TypeError", "rois")),
    "pr_rois_list_of_5": ("R.prroi_pool(X, [ROIS], 2)", ("ValueError", "rois")),
    "pr_rois_list_of_numpy": ("R.prroi_pool(X, [ROIS[:, 1:].numpy()], 2)", ("TypeError", "rois[0]")),
    "pr_batch_negative": ("R.prroi_pool(X, t([[-1, 0, 0, 3, 3]]), 2)", ("IndexError", "batch index")),
    "pr_batch_nan": ("R.prroi_pool(X, t([[NAN, 0, 0, 3, 3]]), 2)", ("IndexError", "batch index")),
    "pr_coords_nan": ("R.prroi_pool(X, t([[0, NAN, 0, NAN, 3]]), 2)", ("ok", (1, 3, 2, 2))),
    "pr_coords_inf": ("R.prroi_pool(X, t([[0, -INF, -INF, INF, INF]]), 2)", ("ok", (1, 3, 2, 2))),
    "pr_coords_huge": ("R.prroi_pool(X, t([[0, -1e30, -1e30, 1e30, 1e30]]), 7)", ("ok", (1, 3, 7, 7))),
    "pr_coords_float_max": ("R.prroi_pool(X, t([[0, -3.4e38, -3.4e38, 3.4e38, 3.4e38]]), 7)", ("ok", (1, 3, 7, 7))),
    "pr_output_size_zero": ("R.prroi_pool(X, ROIS, 0)", ("ok", (2, 3, 0, 0))),
    "pr_output_size_negative": ("R.prroi_pool(X, ROIS, -2)", ("ValueError", "output_size")),
    "pr_output_size_float": ("R.prroi_pool(X, ROIS, 2.5)", ("TypeError", "output_size")),
    "pr_output_too_large": ("R.prroi_pool(X, ROIS, (1 << 31, 1 << 31))", ("RuntimeError", "output_size")),
    "pr_spatial_scale_nan": ("R.prroi_pool(X, ROIS, 2, spatial_scale=NAN)", ("ValueError", "spatial_scale")),
    "pr_spatial_scale_huge_int": ("R.prroi_pool(X, ROIS, 2, spatial_scale=10**400)", ("ValueError", "spatial_scale")),
    "pr_non_contiguous": ("R.prroi_pool(X[:, :, ::2, 1:], ROIS, 2)", ("ok", (2, 3, 2, 2))),
    "pr_stride0_expanded": ("R.prroi_pool(X[:1, :1].expand(2, 3, 8, 9), ROIS, 2)", ("ok", (2, 3, 2, 2))),
    "pr_zero_channels": ("R.prroi_pool(X[:, :0], ROIS, 2)", ("ok", (2, 0, 2, 2))),
    "pr_zero_width": ("R.prroi_pool(X[:, :, :, :0], ROIS, 2)", ("ok", (2, 3, 2, 2))),
    "pr_no_rois": ("R.prroi_pool(X, ROIS[:0], 2)", ("ok", (0, 3, 2, 2))),
    "pr_sparse_input": ("R.prroi_pool(X.to_sparse(), ROIS, 2)", ("TypeError", "input")),
    "pr_huge_output_tiny_input": ("R.prroi_pool(X[:1, :1], ROIS[:1], (1024, 2048))", ("ok", (1, 1, 1024, 2048))),
    "pr_giant_broadcast_map": ("R.prroi_pool(X[:1, :1, :1, :1].expand(1, 1, 2**31 + 1, 2**31 - 1), ROIS[:1], 2)",
                               ("RuntimeError", "input")),  # the dense copy cannot be allocated
    "prb_grad_shape": ("PB(torch.ones(2, 3, 3, 2), ROIS, 1.0, 2, 2, 2, 3, 8, 9)", ("ValueError", "grad")),
    "prb_grad_int": ("PB(torch.ones(2, 3, 2, 2).long(), ROIS, 1.0, 2, 2, 2, 3, 8, 9)", ("TypeError", "grad")),
    "prb_negative_size": ("PB(torch.ones(2, 3, 2, 2), ROIS, 1.0, 2, 2, 2, 3, -8, 9)", ("ValueError", "height")),
    "prb_batch_out_of_range": ("PB(torch.ones(2, 3, 2, 2), ROIS, 1.0, 2, 2, 1, 3, 8, 9)", ("IndexError", "batch index")),
    "prb_stride0_grad": ("PB(torch.ones(()).expand(2, 3, 2, 2), ROIS, 1.0, 2, 2, 2, 3, 8, 9)", ("ok", (2, 3, 8, 9))),
    "prbr_grad_shape": ("PBR(torch.ones(2, 3, 3, 2), X, ROIS, 1.0, 2, 2)", ("ValueError", "grad")),
    "prbr_grad_dtype": ("PBR(torch.ones(2, 3, 2, 2, dtype=torch.float64), X, ROIS, 1.0, 2, 2)", ("TypeError", "grad")),
    "prbr_input_3d": ("PBR(torch.ones(2, 3, 2, 2), X[0], ROIS, 1.0, 2, 2)", ("ValueError", "input")),
    "prbr_batch_out_of_range": ("PBR(torch.ones(1, 3, 2, 2), X, t([[2, 0, 0, 3, 3]]), 1.0, 2, 2)",
                                ("IndexError", "batch index")),
    "prbr_nan_rois": ("PBR(torch.ones(1, 3, 2, 2), X, t([[0, NAN, NAN, NAN, NAN]]), 1.0, 2, 2)", ("ok", (1, 5))),
    "prbr_stride0_grad": ("PBR(torch.ones(()).expand(2, 3, 2, 2), X, ROIS, 1.0, 2, 2)", ("ok", (2, 5))),
    # --- cropping ------------------------------------------------------------
    "crop2d_negative": ("R.Cropping2D(-1)", ("ValueError", "cropping")),
    "crop2d_too_large": ("R.cropping2d(X, ((4, 4), (0, 0)))", ("ValueError", "cropping")),
    "crop2d_rank": ("R.cropping2d(X[0], 1)", ("ValueError", "ndim")),
    "crop3d_arity": ("R.Cropping3D((1, 2))", ("ValueError", "cropping")),
    "crop1d_non_tensor": ("R.cropping1d([1, 2, 3], 1)", ("TypeError", "Tensor")),
    "crop2d_data_format": ("R.Cropping2D(1, data_format='nhwc')", ("ValueError", "data_format")),
}

# Every tensor argument of every op on another device (meta) while the others
# are real, and the reverse: an error naming that argument, never the fake
# kernel's unfilled tensor (issue 15).
_OP_CALLS = {
    "cr": ("R.crop_and_resize({image}, {boxes}, {box_index}, (2, 3))", ("image", "boxes", "box_index")),
    "crgi": ("R.crop_and_resize_grad_image({grads}, {boxes}, {box_index}, (2, 8, 9, 3))",
             ("grads", "boxes", "box_index")),
    "crgb": ("R.crop_and_resize_grad_boxes({grads}, {image}, {boxes}, {box_index})",
             ("grads", "image", "boxes", "box_index")),
    "ra": ("R.roi_align({input}, {rois}, 2)", ("input", "rois")),
    "craw": ("torch.ops.roi_ext.crop_and_resize({image}, {boxes}, {box_index}, 2, 3, 'bilinear', 0.0, 'NHWC')",
             ("image", "boxes", "box_index")),
    "crgiraw": ("torch.ops.roi_ext.crop_and_resize_grad_image({grads}, {boxes}, {box_index}, 2, 8, 9, 3, 'bilinear', "
                "torch.float32, 'NHWC')", ("grads", "boxes", "box_index")),
    "crgbraw": ("torch.ops.roi_ext.crop_and_resize_grad_boxes({grads}, {image}, {boxes}, {box_index}, 'bilinear', "
                "'NHWC')", ("grads", "image", "boxes", "box_index")),
    "raraw": ("torch.ops.roi_ext.roi_align({input}, {rois}, 1.0, 2, 2, -1, False, 0)", ("input", "rois")),
    "rab": ("B({grad}, {rois}, 1.0, 2, 2, 2, 3, 8, 9, -1, False, 0)", ("grad", "rois")),
    "rabg": ("R.roi_align({input}, {rois}, 2, box_grad=True)", ("input", "rois")),
    "rabr": ("BR({grad}, {input}, {rois}, 1.0, 2, 2, -1, False, 0)", ("grad", "input", "rois")),
    "pr": ("R.prroi_pool({input}, {rois}, 2)", ("input", "rois")),
    "prraw": ("torch.ops.roi_ext.prroi_pool({input}, {rois}, 1.0, 2, 2)", ("input", "rois")),
    "prb": ("PB({grad}, {rois}, 1.0, 2, 2, 2, 3, 8, 9)", ("grad", "rois")),
    "prbr": ("PBR({grad}, {input}, {rois}, 1.0, 2, 2)", ("grad", "input", "rois")),
}
_REAL = {"image": "IMG", "boxes": "BX", "box_index": "BI", "grads": "G", "input": "X", "rois": "ROIS",
         "grad": "torch.ones(2, 3, 2, 2)"}
for _op, (_template, _args) in _OP_CALLS.items():
    for _arg in _args:
        for _where, _fmt in (("meta", "{}.to('meta')"), ("real", "{}")):
            _values = {a: (_fmt.format(_REAL[a]) if a == _arg else
                           (_REAL[a] if _where == "meta" else f"{_REAL[a]}.to('meta')")) for a in _args}
            _name = f"{_op}_{_arg}_{'on_meta' if _where == 'meta' else 'only_real'}"
            CASES[_name] = (_template.format(**_values), ("RuntimeError", _arg))
CASES.update({
    "ra_boxes_list_one_meta": ("R.roi_align(X, [ROIS[:1, 1:], ROIS[1:, 1:].to('meta')], 2)",
                               ("RuntimeError", "boxes[1]")),
    "ra_spatial_scale_huge_int": ("R.roi_align(X, ROIS, 2, spatial_scale=10**400)", ("ValueError", "spatial_scale")),
    "cr_extrapolation_huge_int": ("R.crop_and_resize(IMG, BX, BI, (2, 2), extrapolation_value=10**400)",
                                  ("ValueError", "extrapolation_value")),
    "cr_module_extrapolation_huge_int": ("R.CropAndResize(extrapolation_value=-10**400)",
                                         ("ValueError", "extrapolation_value")),
    "cr_fake_negative_crop": ("torch.ops.roi_ext.crop_and_resize(IMG.to('meta'), BX.to('meta'), BI.to('meta'), -2, 3, "
                              "'bilinear', 0.0, 'NHWC')", ("ValueError", "crop_size")),
    "crgi_fake_negative_size": ("torch.ops.roi_ext.crop_and_resize_grad_image(G.to('meta'), BX.to('meta'), "
                                "BI.to('meta'), 2, -8, 9, 3, 'bilinear', torch.float32, 'NHWC')",
                                ("ValueError", "image_size")),
    "rab_fake_negative_size": ("B(torch.ones(2, 3, 2, 2, device='meta'), ROIS.to('meta'), 1.0, 2, 2, 2, 3, -8, 9, -1, "
                               "False, 0)", ("ValueError", "height")),
    "ra_channels_last_copy_impossible": ("R.roi_align(X[:1, :1, :1, :1].expand(1, 2**20, 2**20, 2**20), ROIS[:1], 1)",
                                         ("RuntimeError", "input")),
    "cr_giant_broadcast_image": ("R.crop_and_resize(IMG[:1, :1, :1].expand(1, 2**60, 1, 3), BX, ti([0, 0]), (2, 2))",
                                 ("ok", (2, 2, 2, 3))),
    "cr_h_2_24_plus_4_broadcast": ("R.crop_and_resize(IMG[:1, :1, :1].expand(1, 16777220, 3, 3), t([[1, 0, 1, 1]]), "
                                   "ti([0]), (1, 2), 'nearest')", ("ok", (1, 1, 2, 3))),
    "crgb_giant_broadcast_image": ("R.crop_and_resize_grad_boxes(G[..., :1], IMG[:1, :1, :1, :1].expand(1, 2**31 + 1, 2**31 - 1, 1), "
                                   "BX, ti([0, 0]))", ("ok", (2, 4))),
    "ra_float64_rois_batch_index": ("R.roi_align(X, torch.tensor([[1.9999999999, 0, 0, 3, 3]], dtype=torch.float64), 2)",
                                    ("ok", (1, 3, 2, 2))),
    "ra_huge_output_tiny_input": ("R.roi_align(X[:1, :1], ROIS[:1], (1024, 2048), sampling_ratio=1)",
                                  ("ok", (1, 1, 1024, 2048))),
    "ra_huge_sampling_one_bin": ("R.roi_align(X[:1, :1], ROIS[:1], 1, sampling_ratio=2000)", ("ok", (1, 1, 1, 1))),
})

CHILD = textwrap.dedent(
    """
    import json, sys, torch, roi_ext as R
    NAN, INF = float("nan"), float("inf")
    t = lambda v: torch.tensor(v, dtype=torch.float32)
    ti = lambda v: torch.tensor(v, dtype=torch.int64)
    B = torch.ops.roi_ext._roi_align_backward
    BR = torch.ops.roi_ext._roi_align_backward_rois
    PB = torch.ops.roi_ext._prroi_pool_backward
    PBR = torch.ops.roi_ext._prroi_pool_backward_rois
    torch.manual_seed(0)
    X = torch.randn(2, 3, 8, 9)
    ROIS = t([[0, 1, 1, 5, 6], [1, 0.5, 2, 7, 7.5]])
    IMG = torch.randn(2, 8, 9, 3)
    BX = t([[0.1, 0.2, 0.8, 0.9], [0.5, 0.0, 0.2, 1.0]])
    BI = ti([0, 1])
    G = torch.randn(2, 2, 2, 3)
    for line in sys.stdin:
        name, expr = json.loads(line)
        print(json.dumps({"start": name}), flush=True)
        try:
            out = eval(expr)
            shape = list(out.shape) if isinstance(out, torch.Tensor) else None
            finite = (bool(torch.isfinite(out).all())
                      if isinstance(out, torch.Tensor) and out.is_floating_point() and out.device.type != "meta"
                      else True)
            res = {"name": name, "result": "ok", "shape": shape, "finite": finite}
        except Exception as e:
            res = {"name": name, "result": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__],
                   "message": str(e).splitlines()[0] if str(e) else ""}
        print(json.dumps(res), flush=True)
    """
)


def run_cases(names):
    """Runs the cases in child processes; returns {name: result dict}."""
    results = {}
    pending = list(names)
    while pending:
        payload = "".join(json.dumps([n, CASES[n][0]]) + "\n" for n in pending)
        # cwd: outside the source tree, which must not shadow the installed package.
        proc = subprocess.run([sys.executable, "-c", CHILD], input=payload, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"}, cwd=tempfile.gettempdir())
        started = None
        for line in proc.stdout.splitlines():
            msg = json.loads(line)
            if "start" in msg:
                started = msg["start"]
            else:
                results[msg["name"]] = msg
                started = None
        if started is not None:  # the child died inside this case
            results[started] = {"name": started, "result": "CRASH", "returncode": proc.returncode,
                                "stderr": proc.stderr[-2000:]}
        elif proc.returncode != 0 and len(results) < len(names):
            raise RuntimeError(f"child failed before running a case: {proc.stderr[-2000:]}")
        pending = [n for n in names if n not in results]
    return results


@pytest.fixture(scope="module")
def results():
    return run_cases(list(CASES))


def test_matrix_size():
    assert len(CASES) >= 50


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, results):
    expr, (kind, detail) = CASES[name]
    res = results[name]
    assert res["result"] != "CRASH", f"{expr} crashed the process: {res}"
    if kind == "ok":
        assert res["result"] == "ok", f"{expr} raised {res['result']}: {res.get('message')}"
        if detail is not None:
            assert tuple(res["shape"]) == tuple(detail)
        assert res["finite"], f"{expr} returned non-finite values"
    elif expr.startswith(("B(", "BR(", "PB(", "PBR(", "torch.ops.")) and kind not in res.get("mro", []):
        # A compiled op called directly (torch.ops.roi_ext.*) can only raise
        # RuntimeError (LibTorch stable ABI); its message starts with the type
        # the Python front-ends re-raise it as. (The Python fake kernels raise
        # the type itself.)
        assert res["result"] == "RuntimeError", f"{expr}: expected a RuntimeError, got {res}"
        assert res["message"].startswith(kind + ": "), f"{expr}: expected a {kind} tag: {res['message']}"
        assert detail.lower() in res["message"].lower(), f"{expr}: message does not name {detail!r}: {res['message']}"
    else:
        assert kind in res.get("mro", []), f"{expr}: expected {kind}, got {res}"
        assert detail.lower() in res["message"].lower(), f"{expr}: message does not name {detail!r}: {res['message']}"

"""CropAndResize: TensorFlow 2.21 and MindSpore 2.10 golden data, the SPEC
examples G10-G20, a reference written from SPEC.md, gradcheck, autograd vs the
explicit gradient ops, layouts, dtypes, determinism, opcheck and errors."""
import itertools
import json
import pathlib

import numpy as np
import pytest
import torch

import roi_ext
import reference as ref

DATA = pathlib.Path(__file__).parent / "data"
F32, F64 = torch.float32, torch.float64
METHODS = ("bilinear", "nearest", "bilinear_v2")


def load_cases(name):
    meta = json.loads((DATA / f"{name}.json").read_text())
    arrays = np.load(DATA / f"{name}.npz")
    cases = []
    for c in meta["cases"]:
        a = {k.split("__", 1)[1]: torch.from_numpy(arrays[k]) for k in arrays.files if k.startswith(c["case"] + "__")}
        cases.append((c, a))
    return cases


TF_CASES = load_cases("tf_crop_and_resize")
MS_CASES = [(c, a) for c, a in load_cases("mindspore_golden") if c["op"] == "crop_and_resize"]


def case_id(v):
    return v["case"] if isinstance(v, dict) and "case" in v else ""


# ---------------------------------------------------------------------------
# TensorFlow golden data (float32 bit for bit, Part A1)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case,a", [x for x in TF_CASES if x[0]["op"] == "forward"], ids=case_id)
def test_tf_forward(case, a):
    out = roi_ext.crop_and_resize(a["image"], a["boxes"], a["box_index"], case["crop_size"], case["method"],
                                  case["extrapolation_value"])
    expected = a["output"]
    if a["image"].dtype == F64:
        # float64 images compute in float64 (Part A4); TensorFlow computes in float32.
        assert out.dtype == F64
        torch.testing.assert_close(out, expected.double(), rtol=1e-6, atol=1e-5)
        # With the float32 pixels TensorFlow reads, the float32 path is exact.
        out = roi_ext.crop_and_resize(a["image"].float(), a["boxes"], a["box_index"], case["crop_size"],
                                      case["method"], case["extrapolation_value"])
    assert out.dtype == F32
    assert torch.equal(out, expected)


@pytest.mark.parametrize("case,a", [x for x in TF_CASES if x[0]["op"] == "grad_image"], ids=case_id)
def test_tf_grad_image(case, a):
    dtype = getattr(torch, case["dtype"])
    out = roi_ext.crop_and_resize_grad_image(a["grads"], a["boxes"], a["box_index"], case["image_size"],
                                             case["method"], dtype)
    assert out.dtype == dtype and out.shape == tuple(case["image_size"])
    if dtype == torch.float16:
        # Half outputs accumulate in float32 and round once (Part A3); TensorFlow
        # adds in half precision, so they agree within a few half ulps.
        exact = roi_ext.crop_and_resize_grad_image(a["grads"], a["boxes"], a["box_index"], case["image_size"],
                                                   case["method"], F32)
        assert torch.equal(out, exact.half())
        torch.testing.assert_close(out.float(), a["output"].float(), rtol=4e-3, atol=4e-3)
    else:
        assert torch.equal(out, a["output"])


@pytest.mark.parametrize("case,a", [x for x in TF_CASES if x[0]["op"] == "grad_boxes"], ids=case_id)
def test_tf_grad_boxes(case, a):
    out = roi_ext.crop_and_resize_grad_boxes(a["grads"], a["image"], a["boxes"], a["box_index"], case["method"])
    if a["image"].dtype == F64:
        assert out.dtype == F64
        torch.testing.assert_close(out, a["output"].double(), rtol=1e-5, atol=1e-3)
        out = roi_ext.crop_and_resize_grad_boxes(a["grads"], a["image"].float(), a["boxes"], a["box_index"])
    assert out.dtype == F32
    assert torch.equal(out, a["output"])


def test_tf_golden_covers_every_dtype_and_method():
    fwd = {(c["method"], c["dtype"]) for c, _ in TF_CASES if c["op"] == "forward"}
    for method, dtype in itertools.product(("bilinear", "nearest"), ("uint8", "int8", "int16", "int32", "int64",
                                                                     "float16", "float32", "float64")):
        assert (method, dtype) in fwd
    assert len([1 for c, _ in TF_CASES if c["op"] == "grad_boxes"]) >= 20


# ---------------------------------------------------------------------------
# MindSpore golden data: bilinear_v2 inside the image
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case,a", MS_CASES, ids=case_id)
def test_mindspore_bilinear_v2(case, a):
    out = roi_ext.CropAndResize("bilinear_v2")(a["image"], a["boxes"], a["box_index"], case["crop_size"])
    assert torch.equal(out, a["output"])


# ---------------------------------------------------------------------------
# SPEC §7 examples
# ---------------------------------------------------------------------------
I3 = torch.arange(1.0, 10.0).reshape(1, 3, 3, 1)
I4 = torch.arange(16.0).reshape(1, 4, 4, 1)
BOX4 = torch.tensor([[0, 0, 1, 1], [0.25, 0.25, 0.75, 0.75], [1, 0, 0, 1], [-0.5, -0.5, 1.5, 1.5]])
Z4 = torch.zeros(4, dtype=torch.int32)
ZERO1 = torch.tensor([0])


def t(values):
    return torch.tensor(values, dtype=F32)


def test_g10_g11_bilinear_nearest_flip_extrapolation():
    out = roi_ext.crop_and_resize(I3, BOX4, Z4, (3, 3), "bilinear", -1.0)[..., 0]
    assert torch.equal(out, t([[[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[3, 3.5, 4], [4.5, 5, 5.5], [6, 6.5, 7]],
                               [[7, 8, 9], [4, 5, 6], [1, 2, 3]], [[-1, -1, -1], [-1, 5, -1], [-1, -1, -1]]]))
    out = roi_ext.crop_and_resize(I3, BOX4, Z4, (3, 3), "nearest", -1.0)[..., 0]
    assert torch.equal(out, t([[[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[5, 5, 6], [5, 5, 6], [8, 8, 9]],
                               [[7, 8, 9], [4, 5, 6], [1, 2, 3]], [[-1, -1, -1], [-1, 5, -1], [-1, -1, -1]]]))


def test_g12_nearest_rounds_half_away_from_zero():
    out = roi_ext.crop_and_resize(I4, torch.tensor([[0.0, 0, 1, 1]]), ZERO1, (3, 3), "nearest")
    assert torch.equal(out[0, ..., 0], t([[0, 2, 3], [8, 10, 11], [12, 14, 15]]))


def test_g13_crop_size_one_samples_the_centre():
    assert torch.equal(roi_ext.crop_and_resize(I3, torch.tensor([[0.0, 0, 1, 1]]), ZERO1, (1, 1)), t([[[[5.0]]]]))


def test_g14_g15_bilinear_v2():
    out = roi_ext.crop_and_resize(I4, torch.tensor([[0, 0, 0.5, 0.5]]), ZERO1, (2, 2), "bilinear_v2")
    assert torch.equal(out[0, ..., 0], t([[1.25, 2.75], [7.25, 8.75]]))
    box = torch.tensor([[0.25, 0.25, 0.5, 0.75]])
    out = roi_ext.crop_and_resize(I4, box, ZERO1, (3, 3), "bilinear_v2")
    assert torch.equal(out[0, ..., 0], t([[5.0, 6.0, 6.9999995232], [7.0, 8.0, 9.0], [9.0, 10.0, 11.0]]))
    out = roi_ext.crop_and_resize(I4, box, ZERO1, (3, 3), "bilinear")  # G15'
    assert torch.equal(out[0, ..., 0], t([[3.75, 4.5, 5.25], [5.25, 6.0, 6.75], [6.75, 7.5, 8.25]]))


def test_bilinear_v2_full_box_stays_inside_the_image():
    # Part A7: [0, 0, 1, 1] makes MindSpore read row H; roi_ext clamps to H - 1.
    out = roi_ext.crop_and_resize(I4, torch.tensor([[0.0, 0, 1, 1]]), ZERO1, (5, 5), "bilinear_v2")
    expected = ref.crop_and_resize_forward(I4.numpy(), [[0.0, 0, 1, 1]], [0], (5, 5), "bilinear_v2", 0, np.float32)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert out.max() <= 15 and out.min() >= 0


def test_g16_g17_grad_image():
    g = roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 2, 1), torch.tensor([[0.25, 0.25, 0.75, 0.75]]), ZERO1,
                                           (1, 3, 3, 1))
    assert torch.equal(g[0, ..., 0], t([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]))
    g = roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 2, 1), torch.tensor([[0.25, 0.25, 0.75, 0.75]]), ZERO1,
                                           (1, 3, 3, 1), "nearest")
    assert torch.equal(g[0, ..., 0], t([[0, 0, 0], [0, 1, 1], [0, 1, 1]]))


def test_g18_g19_g20_grad_boxes():
    image = (torch.arange(9.0) ** 2).reshape(1, 3, 3, 1)
    box = torch.tensor([[0.1, 0.2, 0.7, 0.9]])
    g18 = t([[62.3999977112, 23.1999988556, 134.3999938965, 31.2000007629]])
    assert torch.equal(roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 1), image, box, ZERO1), g18)
    # TensorFlow's gradient for a nearest forward is the bilinear formula.
    assert torch.equal(roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 1), image, box, ZERO1, "nearest"), g18)
    assert torch.equal(roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 1, 1, 1), image, box, ZERO1),
                       t([[15.6000003815, 7.8000001907, 15.6000003815, 7.8000001907]]))
    assert torch.equal(
        roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 1), image, torch.tensor([[-0.5, 0.2, 0.7, 0.9]]), ZERO1),
        t([[0.0, 18.8000011444, 134.3999938965, 22.8000011444]]))


# ---------------------------------------------------------------------------
# The SPEC reference on random inputs (float32 and float64, every method)
# ---------------------------------------------------------------------------
def random_boxes(gen, n, lo=-0.3, hi=1.3):
    return torch.rand(n, 4, generator=gen, dtype=F64) * (hi - lo) + lo


@pytest.mark.parametrize("T,dtype", [(np.float32, F32), (np.float64, F64)])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("crop", [(3, 4), (1, 5), (4, 1), (1, 1)])
def test_reference_forward_and_grads(T, dtype, method, crop):
    gen = torch.Generator().manual_seed(hash((method, crop, str(dtype))) % 2**31)
    image = torch.randn(2, 5, 6, 2, generator=gen, dtype=dtype) * 4
    boxes = random_boxes(gen, 7).to(dtype)
    boxes[0] = torch.tensor([0.8, 0.9, 0.1, 0.2])  # flipped
    boxes[1, 2] = boxes[1, 0]  # degenerate
    boxes[2] = torch.tensor([0.1, 0.1, 0.95, 0.99])  # inside (bilinear_v2 window)
    box_index = torch.randint(0, 2, (7,), generator=gen)
    out = roi_ext.crop_and_resize(image, boxes, box_index, crop, method, -2.5)
    expected = ref.crop_and_resize_forward(image.numpy(), boxes.numpy(), box_index.numpy(), crop, method, -2.5, T)
    np.testing.assert_array_equal(out.numpy(), expected)

    grads = torch.randn(out.shape, generator=gen, dtype=dtype)
    gi = roi_ext.crop_and_resize_grad_image(grads, boxes, box_index, image.shape, method, dtype)
    np.testing.assert_array_equal(
        gi.numpy(), ref.crop_and_resize_grad_image(grads.numpy(), boxes.numpy(), box_index.numpy(),
                                                   tuple(image.shape), method, T))
    gb = roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index, method)
    if method == "bilinear_v2":
        assert torch.equal(gb, torch.zeros(7, 4, dtype=dtype))
    else:
        np.testing.assert_array_equal(
            gb.numpy(), ref.crop_and_resize_grad_boxes(grads.numpy(), image.numpy(), boxes.numpy(), box_index.numpy(),
                                                       T))


# ---------------------------------------------------------------------------
# Autograd
# ---------------------------------------------------------------------------
def smooth_boxes(gen, n, H, W, crop):
    """Boxes inside the image whose samples avoid integer pixel positions (where
    the TensorFlow box gradient is one-sided) and the border."""
    boxes = []
    while len(boxes) < n:
        b = torch.rand(4, generator=gen, dtype=F64) * 0.8 + 0.1
        ok = True
        for (c1, c2, size, cr) in ((b[0], b[2], H, crop[0]), (b[1], b[3], W, crop[1])):
            coords = [float(ref._axis_coord(c1.item(), c2.item(), i, size, cr, float)) for i in range(cr)]
            ok &= all(0.05 < c % 1 < 0.95 and 0.05 < c < size - 1.05 for c in coords)
        if ok:
            boxes.append(b)
    return torch.stack(boxes)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("crop", [(3, 4), (1, 3)])
def test_gradcheck(method, data_format, crop):
    gen = torch.Generator().manual_seed(21)
    image = torch.randn(2, 6, 7, 3, generator=gen, dtype=F64)
    boxes = smooth_boxes(gen, 4, 6, 7, crop)
    box_index = torch.tensor([0, 1, 1, 0])
    if data_format == "NCHW":
        image = image.permute(0, 3, 1, 2)  # a non-contiguous view, used in place
    image.requires_grad_()
    # TensorFlow's box gradient for nearest is the bilinear formula, not the
    # derivative of the (piecewise-constant) nearest forward: check the image only.
    boxes.requires_grad_(method != "nearest")

    def fn(img, bx):
        return roi_ext.crop_and_resize(img, bx, box_index, crop, method, 0.0, data_format)

    assert torch.autograd.gradcheck(fn, (image, boxes))


@pytest.mark.parametrize("method", METHODS)
def test_autograd_equals_explicit_gradient_ops(method):
    gen = torch.Generator().manual_seed(5)
    image = torch.randn(2, 8, 9, 3, generator=gen).requires_grad_()
    boxes = random_boxes(gen, 6).float().requires_grad_()
    box_index = torch.tensor([0, 1, 0, 1, 1, 0], dtype=torch.int32)
    out = roi_ext.crop_and_resize(image, boxes, box_index, (4, 5), method)
    grads = torch.randn(out.shape, generator=gen)
    out.backward(grads)
    assert torch.equal(image.grad, roi_ext.crop_and_resize_grad_image(grads, boxes, box_index, image.shape, method))
    assert torch.equal(boxes.grad, roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index, method))


def test_integer_image_gets_no_gradient_but_boxes_do():
    image = torch.randint(0, 255, (1, 6, 6, 2), dtype=torch.uint8)
    boxes = torch.tensor([[0.1, 0.2, 0.8, 0.7]], requires_grad=True)
    roi_ext.crop_and_resize(image, boxes, ZERO1, (3, 3)).sum().backward()
    expected = roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 3, 3, 2), image, boxes.detach(), ZERO1)
    assert torch.equal(boxes.grad, expected)


def test_float64_boxes_with_float32_image():
    image = torch.randn(1, 5, 5, 1, requires_grad=True)
    boxes = torch.tensor([[0.1, 0.2, 0.8, 0.7]], dtype=F64, requires_grad=True)
    out = roi_ext.crop_and_resize(image, boxes, ZERO1, (3, 3))
    assert out.dtype == F32
    assert torch.equal(out, roi_ext.crop_and_resize(image, boxes.float(), ZERO1, (3, 3)))
    out.sum().backward()
    assert boxes.grad.dtype == F64 and image.grad.dtype == F32


# ---------------------------------------------------------------------------
# Layouts, dtypes, threads, empty inputs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_nchw_equals_nhwc(method):
    gen = torch.Generator().manual_seed(3)
    image = torch.randn(2, 7, 9, 4, generator=gen)
    boxes = random_boxes(gen, 5).float()
    box_index = torch.tensor([1, 0, 1, 1, 0])
    nhwc = roi_ext.crop_and_resize(image, boxes, box_index, (3, 5), method, 1.5)
    image_nchw = image.permute(0, 3, 1, 2).contiguous()
    nchw = roi_ext.crop_and_resize(image_nchw, boxes, box_index, (3, 5), method, 1.5, "NCHW")
    assert nchw.shape == (5, 4, 3, 5) and nchw.is_contiguous()
    assert torch.equal(nchw.permute(0, 2, 3, 1), nhwc)
    grads = torch.randn(nhwc.shape, generator=gen)
    gi = roi_ext.crop_and_resize_grad_image(grads, boxes, box_index, image.shape, method)
    gi_nchw = roi_ext.crop_and_resize_grad_image(grads.permute(0, 3, 1, 2), boxes, box_index, image_nchw.shape,
                                                 method, F32, "NCHW")
    assert torch.equal(gi_nchw.permute(0, 2, 3, 1), gi)
    gb = roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index, method)
    gb_nchw = roi_ext.crop_and_resize_grad_boxes(grads.permute(0, 3, 1, 2), image_nchw, boxes, box_index, method,
                                                 "NCHW")
    assert torch.equal(gb_nchw, gb)


def test_strided_image_is_not_copied_and_gives_the_same_result():
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(2, 10, 12, 6, generator=gen)
    image = base[:, ::2, 1::2, ::3]  # non-contiguous view
    boxes = random_boxes(gen, 4).float()
    box_index = torch.tensor([0, 1, 1, 0])
    for method in METHODS:
        assert torch.equal(roi_ext.crop_and_resize(image, boxes, box_index, (3, 3), method),
                           roi_ext.crop_and_resize(image.contiguous(), boxes, box_index, (3, 3), method))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                                   torch.bfloat16, torch.float32])
def test_every_image_dtype_reads_pixels_as_float32(dtype):
    gen = torch.Generator().manual_seed(6)
    image = (torch.rand(2, 6, 7, 3, generator=gen) * 120).to(dtype)
    boxes = random_boxes(gen, 6).float()
    box_index = torch.tensor([0, 1, 0, 1, 0, 1], dtype=torch.int64)
    for method in METHODS:
        out = roi_ext.crop_and_resize(image, boxes, box_index, (4, 3), method, -1.0)
        assert out.dtype == F32
        assert torch.equal(out, roi_ext.crop_and_resize(image.float(), boxes, box_index, (4, 3), method, -1.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, F64])
def test_half_and_double_image_gradients(dtype):
    image = torch.randn(1, 6, 6, 2).to(dtype).requires_grad_()
    boxes = torch.tensor([[0.1, 0.2, 0.8, 0.7], [0.3, 0.1, 0.6, 0.9]], dtype=F32)
    out = roi_ext.crop_and_resize(image, boxes, torch.tensor([0, 0]), (4, 4))
    out.sum().backward()
    assert image.grad.dtype == dtype
    expected = roi_ext.crop_and_resize_grad_image(torch.ones(out.shape, dtype=out.dtype), boxes, torch.tensor([0, 0]),
                                                  image.shape, "bilinear", F32 if dtype != F64 else F64)
    assert torch.equal(image.grad, expected.to(dtype))


def test_deterministic_grad_image_with_overlapping_boxes():
    gen = torch.Generator().manual_seed(10)
    boxes = random_boxes(gen, 400, 0.0, 1.0).float()
    box_index = torch.randint(0, 2, (400,), generator=gen)
    grads = torch.randn(400, 7, 7, 5, generator=gen)
    image = torch.randn(2, 12, 12, 5, generator=gen)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append([roi_ext.crop_and_resize_grad_image(grads, boxes, box_index, (2, 12, 12, 5), m)
                            for m in METHODS] + [roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index)])
    finally:
        torch.set_num_threads(before)
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            assert torch.equal(a, b)
    expected = ref.crop_and_resize_grad_image(grads[:60].numpy(), boxes[:60].numpy(), box_index[:60].numpy(),
                                              (2, 12, 12, 5), "bilinear", np.float32)
    got = roi_ext.crop_and_resize_grad_image(grads[:60], boxes[:60], box_index[:60], (2, 12, 12, 5))
    np.testing.assert_array_equal(got.numpy(), expected)


def test_empty_boxes():
    image = torch.randn(2, 5, 5, 3)
    for method in METHODS:
        out = roi_ext.crop_and_resize(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int32), (4, 6), method)
        assert out.shape == (0, 4, 6, 3)
    out = roi_ext.crop_and_resize(image.permute(0, 3, 1, 2), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int32),
                                  (4, 6), data_format="NCHW")
    assert out.shape == (0, 3, 4, 6)
    img = image.clone().requires_grad_()
    roi_ext.crop_and_resize(img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int32), (4, 6)).sum().backward()
    assert torch.equal(img.grad, torch.zeros_like(img))
    assert roi_ext.crop_and_resize(torch.randn(2, 5, 5, 0), BOX4, Z4, (2, 2)).shape == (4, 2, 2, 0)


def test_non_finite_boxes_extrapolate():
    nan, inf = float("nan"), float("inf")
    boxes = torch.tensor([[nan, 0, 1, 1], [0, 0, inf, 1], [-inf, -inf, inf, inf], [0, nan, 1, nan], [1e30, 0, 2e30, 1]])
    image = torch.randn(1, 5, 5, 2, requires_grad=True)
    box_index = torch.zeros(5, dtype=torch.int32)
    for method in METHODS:
        bx = boxes.clone().requires_grad_()
        out = roi_ext.crop_and_resize(image, bx, box_index, (3, 3), method, 7.0)
        assert out.shape == (5, 3, 3, 2)
        assert torch.equal(out[0], torch.full((3, 3, 2), 7.0))  # NaN y1: every row out of range
        out.sum().backward()
        assert torch.isfinite(image.grad).all()


# ---------------------------------------------------------------------------
# opcheck and errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_opcheck(method, data_format):
    gen = torch.Generator().manual_seed(8)
    image = torch.randn(2, 6, 7, 3, generator=gen)
    if data_format == "NCHW":
        image = image.permute(0, 3, 1, 2).contiguous()
    boxes = random_boxes(gen, 4).float()
    box_index = torch.tensor([0, 1, 1, 0], dtype=torch.int32)
    torch.library.opcheck(torch.ops.roi_ext.crop_and_resize.default,
                          (image.requires_grad_(), boxes.requires_grad_(), box_index, 3, 4, method, 0.5, data_format))
    grads = torch.randn((4, 3, 3, 4) if data_format == "NCHW" else (4, 3, 4, 3), generator=gen)
    torch.library.opcheck(torch.ops.roi_ext.crop_and_resize_grad_image.default,
                          (grads, boxes.detach(), box_index, 2, 6, 7, 3, method, torch.float32, data_format))
    torch.library.opcheck(torch.ops.roi_ext.crop_and_resize_grad_boxes.default,
                          (grads, image.detach(), boxes.detach(), box_index, method, data_format))


IMG = torch.zeros(2, 4, 4, 3)
BX = torch.tensor([[0.0, 0, 1, 1]])
BI = torch.tensor([0])


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: roi_ext.crop_and_resize(IMG[0], BX, BI, (2, 2)), ValueError, "image must be a 4-D"),
        (lambda: roi_ext.crop_and_resize(torch.zeros(1, 0, 4, 1), BX, BI, (2, 2)), ValueError, "height and width"),
        (lambda: roi_ext.crop_and_resize(IMG.bool(), BX, BI, (2, 2)), TypeError, "image must be uint8"),
        (lambda: roi_ext.crop_and_resize(IMG.to(torch.complex64), BX, BI, (2, 2)), TypeError, "image must be"),
        (lambda: roi_ext.crop_and_resize(IMG, BX[0], BI, (2, 2)), ValueError, "boxes must be a 2-D"),
        (lambda: roi_ext.crop_and_resize(IMG, BX[:, :3], BI, (2, 2)), ValueError, "boxes must have 4 columns"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI[None], (2, 2)), ValueError, "box_index must be a 1-D"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, torch.tensor([0, 1]), (2, 2)), ValueError, "box_index has 2"),
        (lambda: roi_ext.crop_and_resize(IMG, BX.long(), BI, (2, 2)), TypeError, "boxes must be a floating"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI.float(), (2, 2)), TypeError, "box_index must be int32"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, torch.tensor([2]), (2, 2)), IndexError, r"box_index\[0\] = 2"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, torch.tensor([-1]), (2, 2)), IndexError, "box_index"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI, (0, 2)), ValueError, "crop_size must be positive"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI, (-1, 2)), ValueError, "crop_size must be positive"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI, (2,)), ValueError, "crop_size"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI, (2.5, 2)), TypeError, "crop_size"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI, torch.tensor([2.0, 2.0])), ValueError, "crop_size"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI, (2, 2), "area"), ValueError, "method"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI, (2, 2), data_format="NCDHW"), ValueError, "data_format"),
        (lambda: roi_ext.crop_and_resize(IMG, BX, BI, (2, 2), extrapolation_value="x"), TypeError,
         "extrapolation_value"),
        (lambda: roi_ext.crop_and_resize(IMG.numpy(), BX, BI, (2, 2)), TypeError, "image must be a Tensor"),
        # The op called directly raises RuntimeError (stable ABI), tagged with the type
        # the front-end re-raises it as.
        (lambda: torch.ops.roi_ext.crop_and_resize(IMG, BX, BI, 2, 2, "cubic", 0.0, "NHWC"), RuntimeError,
         "^ValueError: crop_and_resize: method"),
        (lambda: roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 2, 3), BX, torch.tensor([5]), (2, 4, 4, 3)),
         IndexError, "box_index"),
        (lambda: roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 2, 2), BX, BI, (2, 4, 4, 3)), ValueError,
         "depth"),
        (lambda: roi_ext.crop_and_resize_grad_image(torch.ones(2, 2, 2, 3), BX, BI, (2, 4, 4, 3)), ValueError,
         "grads has 2 crops"),
        (lambda: roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 2, 3), BX, BI, (2, 0, 4, 3)), ValueError,
         "image_size"),
        (lambda: roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 2, 3), BX, BI, (2, 4, 4)), ValueError,
         "image_size"),
        (lambda: roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 2, 3), BX, BI, (2, 4, 4, 3), dtype=torch.int32),
         TypeError, "dtype"),
        (lambda: roi_ext.crop_and_resize_grad_image(torch.ones(1, 2, 2, 3), torch.zeros(1, 3), BI, (2, 4, 4, 3)),
         ValueError, "boxes must have 4 columns"),
        (lambda: roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 3), IMG, BX, torch.tensor([9])), IndexError,
         "box_index"),
        (lambda: roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 5), IMG, BX, BI), ValueError, "depth"),
        (lambda: roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 2, 2, 3), IMG[0], BX, BI), ValueError,
         "image must be a 4-D"),
        (lambda: roi_ext.crop_and_resize_grad_boxes(torch.ones(1, 0, 2, 3), IMG, BX, BI), ValueError,
         "crop_size must be positive"),
        (lambda: roi_ext.CropAndResize("cubic"), ValueError, "method"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_nan_box_index_is_impossible_and_float_index_rejected():
    with pytest.raises(TypeError, match="box_index must be int32 or int64"):
        roi_ext.crop_and_resize(IMG, BX, torch.tensor([float("nan")]), (2, 2))


def test_module_and_repr():
    m = roi_ext.CropAndResize()
    assert repr(m) == "CropAndResize(method='bilinear', extrapolation_value=0.0, data_format='NHWC')"
    assert repr(roi_ext.CropAndResize("nearest", -1.0, "NCHW")) == (
        "CropAndResize(method='nearest', extrapolation_value=-1.0, data_format='NCHW')")
    out = m(I3, BOX4, Z4, torch.tensor([3, 3], dtype=torch.int32))
    assert torch.equal(out, roi_ext.crop_and_resize(I3, BOX4, Z4, [3, 3]))
    assert torch.equal(out, roi_ext.crop_and_resize(I3, BOX4, Z4, np.array([3, 3])))

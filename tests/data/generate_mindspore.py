"""Generate golden data from MindSpore's CPU kernels (CropAndResize bilinear_v2, ROIAlign, ROIAlign grad).

Runs in the MindSpore virtualenv (mindspore==2.10.0 with numpy 1.26.4; MindSpore 2.10.0's
autograd path fails to import under numpy 2.x, so the venv pins numpy<2):

    /work/venvs/ms/bin/python tests/data/generate_mindspore.py

CPU context, PyNative mode. Writes next to this script:
  mindspore_golden.json  {"mindspore_version": str, "cases": [{"case", "op", attributes...}]}
  mindspore_golden.npz   arrays keyed "<case>__<array>"
    op "crop_and_resize" (mindspore.ops.CropAndResize(method="bilinear_v2"), NHWC):
        arrays image, boxes (float32 [N,4]), box_index (int32 [N]), output (float32)
        attrs method ("bilinear_v2"), dtype (image dtype), crop_size [h, w], extrapolation_value (0.0)
        Boxes satisfy 0 <= y1 <= y2, trunc(f32(y2*H)) <= H-1 (same for x), so MindSpore never
        reads outside the image (it has no bounds check; see SPEC.md 1.8 item 3).
    op "roi_align" (mindspore.ops.ROIAlign(pooled_height, pooled_width, spatial_scale, sample_num,
        roi_end_mode)): arrays features (float32 [B,C,H,W]), rois (float32 [K,5], rows
        (batch, x1, y1, x2, y2)), output; attrs pooled_height, pooled_width, spatial_scale,
        sample_num, roi_end_mode.
    op "roi_align_grad": gradient w.r.t. features of ROIAlign(..., roi_end_mode=1) (mindspore.vjp;
        cross-checked against the ROIAlignGrad primitive): arrays features (for the shape), rois,
        dy, output (d features); same attrs (roi_end_mode always 1).
Cases "g1", "g2", "g14", "g15", "g24", "g26" are SPEC.md section 7 inputs; the script checks the
SPEC values (and G8, G9, G13, G25 without storing them) and prints a WARNING on a mismatch.
Seeds are fixed (numpy default_rng(4321)).
"""
import json
import os

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops
from mindspore.ops.operations import _grad_ops as G

ms.set_context(device_target="CPU", mode=ms.PYNATIVE_MODE)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_JSON = os.path.join(HERE, "mindspore_golden.json")
OUT_NPZ = os.path.join(HERE, "mindspore_golden.npz")

rng = np.random.default_rng(4321)
arrays = {}
cases = []
warnings = []
f32 = np.float32


def add(case, op, attrs, **arrs):
    assert case not in {c["case"] for c in cases}, case
    cases.append(dict({"case": case, "op": op}, **attrs))
    for k, v in arrs.items():
        arrays[f"{case}__{k}"] = np.ascontiguousarray(v)


def check(name, got, expected):
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    ok = got.shape == expected.shape and np.array_equal(
        np.float32(got), np.float32(expected), equal_nan=True)
    if ok:
        print(f"{name}: matches SPEC")
    else:
        msg = f"WARNING: {name}: MindSpore gives {got.tolist()}, SPEC says {expected.tolist()}"
        print(msg)
        warnings.append(msg)


# ----------------------------------------------------------------------------- crop_and_resize
def ms_crop_and_resize(image, boxes, box_index, crop_size, method="bilinear_v2"):
    op = ops.CropAndResize(method=method, extrapolation_value=0.0)
    out = op(Tensor(image), Tensor(boxes), Tensor(box_index), tuple(crop_size)).asnumpy()
    assert out.dtype == np.float32
    return out


def safe_axis(size, n):
    """n pairs (c1, c2), 0 <= c1 <= c2, trunc(fl(c2*size)) <= size-1."""
    out = []
    while len(out) < n:
        a, b = np.sort(rng.uniform(0.0, (size - 1) / size, size=2))
        a, b = f32(a), f32(b)
        if rng.random() < 0.1:
            b = a                                          # degenerate 1-pixel window
        if int(f32(b * f32(size))) <= size - 1 and 0 <= a <= b:
            out.append((a, b))
    return out


def safe_boxes(n, H, W):
    ys = safe_axis(H, n)
    xs = safe_axis(W, n)
    b = np.array([[y[0], x[0], y[1], x[1]] for y, x in zip(ys, xs)], np.float32)
    for y1, x1, y2, x2 in b:
        assert 0 <= y1 <= y2 and int(f32(y2 * f32(H))) <= H - 1
        assert 0 <= x1 <= x2 and int(f32(x2 * f32(W))) <= W - 1
    return b


def do_car(case, image, boxes, box_index, crop_size):
    out = ms_crop_and_resize(image, boxes, box_index, crop_size)
    add(case, "crop_and_resize", {"method": "bilinear_v2", "dtype": str(image.dtype),
                                  "crop_size": list(crop_size), "extrapolation_value": 0.0},
        image=image, boxes=boxes, box_index=box_index.astype(np.int32), output=out)
    return out


# ----------------------------------------------------------------------------- roi_align
def ms_roi_align(features, rois, ph, pw, scale, sample_num, mode):
    op = ops.ROIAlign(ph, pw, scale, sample_num, mode)
    return op(Tensor(features), Tensor(rois)).asnumpy()


def ms_roi_align_grad(features, rois, dy, ph, pw, scale, sample_num):
    op = ops.ROIAlign(ph, pw, scale, sample_num, 1)
    r = Tensor(rois)
    _, vjp = ms.vjp(lambda x: op(x, r), Tensor(features))
    dx = vjp(Tensor(dy))[0].asnumpy()
    dx2 = G.ROIAlignGrad(ph, pw, scale, sample_num)(Tensor(dy), r, tuple(features.shape)).asnumpy()
    if not np.array_equal(dx, dx2):
        msg = "WARNING: mindspore.vjp and ROIAlignGrad primitive disagree"
        print(msg)
        warnings.append(msg)
    return dx


def random_rois(k, B, H, W):
    rois = np.zeros((k, 5), np.float32)
    rois[:, 0] = rng.integers(0, B, size=k)
    x1 = rng.uniform(0.5, 8.0, size=k)
    y1 = rng.uniform(-1.0, 7.0, size=k)
    w = rng.uniform(0.5, 6.0, size=k)
    h = rng.uniform(0.5, 6.0, size=k)
    rois[:, 1] = x1
    rois[:, 2] = y1
    rois[:, 3] = x1 + w
    rois[:, 4] = y1 + h
    # skip rule avoided: x1 and x2 are >= 0.5
    assert np.all(np.abs(rois[:, 1]) > 0.01) and np.all(np.abs(rois[:, 3]) > 0.01)
    return rois


def roi_attrs(ph, pw, scale, sn, mode):
    return {"pooled_height": ph, "pooled_width": pw, "spatial_scale": scale, "sample_num": sn,
            "roi_end_mode": mode}


def main():
    # ---------------------------------------------------------------- a) crop_and_resize
    B, H, W, D = 2, 6, 8, 3
    k = 0
    specs = [("float32", cs) for cs in [(3, 4), (5, 5), (1, 3), (2, 1)] for _ in range(2)]
    specs += [("int32", (3, 4)), ("int32", (5, 5)), ("uint8", (3, 4)), ("uint8", (1, 3))]
    for dtype, cs in specs:
        if dtype == "float32":
            image = (rng.standard_normal((B, H, W, D)) * 10).astype(np.float32)
        elif dtype == "int32":
            image = rng.integers(-100000, 100001, size=(B, H, W, D)).astype(np.int32)
        else:
            image = rng.integers(0, 256, size=(B, H, W, D)).astype(np.uint8)
        boxes = safe_boxes(8, H, W)
        box_index = rng.integers(0, B, size=8).astype(np.int32)
        do_car(f"car{k:03d}", image, boxes, box_index, cs)
        k += 1

    X16 = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    out = do_car("g14", X16, np.array([[0, 0, 0.5, 0.5]], np.float32), np.zeros(1, np.int32), (2, 2))
    check("G14", out[0, ..., 0], [[1.25, 2.75], [7.25, 8.75]])
    out = do_car("g15", X16, np.array([[0.25, 0.25, 0.5, 0.75]], np.float32), np.zeros(1, np.int32), (3, 3))
    check("G15", out[0, ..., 0], [[5.0, 6.0, 6.9999995232], [7.0, 8.0, 9.0], [9.0, 10.0, 11.0]])
    I9 = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    out = ms_crop_and_resize(I9, np.array([[0, 0, 1, 1]], np.float32), np.zeros(1, np.int32), (1, 1),
                             method="bilinear")
    check("G13 (MindSpore bilinear, not stored)", out[0, ..., 0], [[5.0]])

    # ---------------------------------------------------------------- b) roi_align
    Bf, C, Hf, Wf = 2, 3, 9, 11
    k = 0
    for sn in (1, 2, 3):
        for mode in (0, 1):
            for scale in (1.0, 0.5, 0.25):
                for ph, pw in ((2, 2), (3, 4)):
                    feats = rng.standard_normal((Bf, C, Hf, Wf)).astype(np.float32)
                    rois = random_rois(10, Bf, Hf, Wf)
                    out = ms_roi_align(feats, rois, ph, pw, scale, sn, mode)
                    assert np.all(np.isfinite(out))
                    add(f"ra{k:03d}", "roi_align", roi_attrs(ph, pw, scale, sn, mode),
                        features=feats, rois=rois, output=out)
                    k += 1

    F = np.array([[[[1, 2], [3, 4]]]], np.float32)
    R = np.array([[0, 0.2, 0.3, 0.2, 0.3]], np.float32)
    out = ms_roi_align(F, R, 2, 2, 0.5, 2, 1)
    add("g1", "roi_align", roi_attrs(2, 2, 0.5, 2, 1), features=F, rois=R, output=out)
    check("G1", out, [[[[1.7749998569, 2.0250000954], [2.2750000954, 2.5250000954]]]])
    out = ms_roi_align(F, R, 3, 3, 0.25, 2, 0)
    add("g2", "roi_align", roi_attrs(3, 3, 0.25, 2, 0), features=F, rois=R, output=out)
    check("G2", out[0, 0], [[1.7000000477, 2.0333333015, 2.3666667938],
                            [2.3666667938, 2.7000000477, 3.0333335400],
                            [3.0333333015, 3.3666667938, 3.7000000477]])
    X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    R26 = np.array([[0, 0.0, 0.0, 0.5, 3.0]], np.float32)
    out = ms_roi_align(X, R26, 2, 2, 1.0, 2, 1)
    add("g26", "roi_align", roi_attrs(2, 2, 1.0, 2, 1), features=X, rois=R26, output=out)
    check("G26", out[0, 0], [[4.375, 5.125], [11.375, 12.125]])
    R8 = np.array([[0, 1, 1, 2, 2]], np.float32)
    check("G8 (adaptive floor, not stored)", ms_roi_align(X, R8, 2, 2, 1.0, 0, 1)[0, 0],
          [[7.5, 8.5], [11.5, 12.5]])
    check("G9 (NaN, not stored)", ms_roi_align(X, R8, 4, 4, 1.0, 0, 0)[0, 0], np.full((4, 4), np.nan))

    # ---------------------------------------------------------------- c) roi_align_grad (mode 1)
    k = 0
    for sn in (1, 2, 3):
        for scale in (1.0, 0.5, 0.25):
            for ph, pw in ((2, 2), (3, 4)):
                feats = rng.standard_normal((Bf, C, Hf, Wf)).astype(np.float32)
                rois = random_rois(10, Bf, Hf, Wf)
                dy = rng.standard_normal((10, C, ph, pw)).astype(np.float32)
                dx = ms_roi_align_grad(feats, rois, dy, ph, pw, scale, sn)
                add(f"rag{k:03d}", "roi_align_grad", roi_attrs(ph, pw, scale, sn, 1),
                    features=feats, rois=rois, dy=dy, output=dx)
                k += 1
    dy = np.ones((1, 1, 2, 2), np.float32)
    dx = ms_roi_align_grad(F, R, dy, 2, 2, 0.5, 2)
    add("g24", "roi_align_grad", roi_attrs(2, 2, 0.5, 2, 1), features=F, rois=R, dy=dy, output=dx)
    check("G24", dx[0, 0], [[1.5600000620, 0.8400000334], [1.0399998426, 0.5599999428]])
    # G25: the bprop of a roi_end_mode=0 forward uses mode-1 geometry (not stored)
    op0 = ops.ROIAlign(3, 3, 0.25, 2, 0)
    _, vjp = ms.vjp(lambda x: op0(x, Tensor(R)), Tensor(F))
    check("G25 (mode-0 bprop, not stored)", vjp(Tensor(np.ones((1, 1, 3, 3), np.float32)))[0].asnumpy()[0, 0],
          [[5.9400000572, 1.2600001097], [1.4849998951, 0.3149999678]])

    # ---------------------------------------------------------------- write
    meta = {"mindspore_version": ms.__version__, "cases": cases}
    with open(OUT_JSON, "w") as fh:
        json.dump(meta, fh, indent=1)
    np.savez_compressed(OUT_NPZ, **arrays)
    z = np.load(OUT_NPZ)
    assert set(z.files) == set(arrays)
    for key in z.files:
        assert np.array_equal(z[key], arrays[key], equal_nan=True), key
    counts = {}
    for c in cases:
        counts[c["op"]] = counts.get(c["op"], 0) + 1
    print(f"MindSpore {ms.__version__}: {len(cases)} cases {counts}; "
          f"{os.path.getsize(OUT_NPZ)} bytes npz, {os.path.getsize(OUT_JSON)} bytes json; "
          f"{len(warnings)} warnings")


if __name__ == "__main__":
    main()

"""Generate golden data for CropAndResize (+ GradImage, GradBoxes) from TensorFlow's CPU kernels.

Runs in the TensorFlow virtualenv (tensorflow-cpu==2.21.0, numpy):

    /work/venvs/tf/bin/python tests/data/generate_tf_crop_and_resize.py

Writes next to this script:
  tf_crop_and_resize.json  {"tensorflow_version": str, "cases": [{"case", "op", attributes...}]}
  tf_crop_and_resize.npz   arrays keyed "<case>__<array>"
    forward:    image, boxes (float32 [N,4]), box_index (int32 [N]), output (float32 [N,ch,cw,D])
                attrs: method, dtype (image dtype), crop_size [h, w], extrapolation_value
    grad_image: grads (float32), boxes, box_index, output (T [B,H,W,D])
                attrs: method, dtype (output T), image_size [B,H,W,D]
    grad_boxes: grads (float32), image, boxes, box_index, output (float32 [N,4])
                attrs: method ("bilinear"), dtype (image dtype)
Cases "g10".."g20" are the exact inputs of SPEC.md section 7 (G10-G13, G16-G20); the script
checks that TF reproduces the values printed there and prints a WARNING otherwise.
All data are NHWC. The ops run on CPU with tf.config.experimental.enable_op_determinism().
Random seeds are fixed (numpy default_rng(1234)), so the output is reproducible.
The larger cases use random images rounded to multiples of 1/4 and random grads rounded to
multiples of 1/4 (exact in float32) so that the npz compresses below 400 KB; the small cases
use unrounded random values.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.experimental.enable_op_determinism()

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_JSON = os.path.join(HERE, "tf_crop_and_resize.json")
OUT_NPZ = os.path.join(HERE, "tf_crop_and_resize.npz")

rng = np.random.default_rng(1234)
NL = 16  # boxes in the larger cases (40 would push the npz over 400 KB)
arrays = {}
cases = []

INT_RANGES = {
    "uint8": (0, 256),
    "int8": (-128, 128),
    "int16": (-32768, 32768),
    "int32": (-(2 ** 31), 2 ** 31),          # full range: values above 2**24 lose bits in float32
    "int64": (-(2 ** 62), 2 ** 62),
}
TF_DTYPES = {
    "uint8": tf.uint8, "int8": tf.int8, "int16": tf.int16, "int32": tf.int32, "int64": tf.int64,
    "float16": tf.float16, "float32": tf.float32, "float64": tf.float64,
}


def random_image(shape, dtype, int_ranges=INT_RANGES, quantize=False):
    if dtype in int_ranges:
        lo, hi = int_ranges[dtype]
        return rng.integers(lo, hi, size=shape, dtype=np.int64).astype(dtype)
    x = rng.standard_normal(shape) * 10
    if quantize:
        x = np.round(x * 4) / 4
    return x.astype(dtype)


def random_grads(shape, quantize=False):
    x = rng.standard_normal(shape)
    if quantize:
        x = np.round(x * 4) / 4
    return x.astype(np.float32)


def random_boxes(n, special=True, lo=-0.3, hi=1.3):
    b = rng.uniform(lo, hi, size=(n, 4))
    if special:
        b[0] = [0.0, 0.0, 1.0, 1.0]                       # exactly the full image
        b[1] = [0.9, 0.8, 0.15, 0.05]                     # flipped: y1 > y2 and x1 > x2
        b[2, 2] = b[2, 0]                                 # degenerate: y1 == y2
        b[3] = [1.05, -0.25, 1.25, -0.1]                  # fully outside [0, 1]
        perm = rng.permutation(n)
        b = b[perm]
    return b.astype(np.float32)


def add(case, op, attrs, **arrs):
    assert case not in {c["case"] for c in cases}, case
    cases.append(dict({"case": case, "op": op}, **attrs))
    for k, v in arrs.items():
        arrays[f"{case}__{k}"] = np.ascontiguousarray(v)


def tf_forward(image, boxes, box_index, crop_size, method, extrapolation_value):
    with tf.device("/CPU:0"):
        out = tf.raw_ops.CropAndResize(
            image=tf.constant(image), boxes=tf.constant(boxes, tf.float32),
            box_ind=tf.constant(box_index, tf.int32),
            crop_size=tf.constant(crop_size, tf.int32), method=method,
            extrapolation_value=float(extrapolation_value))
    out = out.numpy()
    assert out.dtype == np.float32
    return out


def tf_grad_image(grads, boxes, box_index, image_size, dtype, method):
    with tf.device("/CPU:0"):
        out = tf.raw_ops.CropAndResizeGradImage(
            grads=tf.constant(grads, tf.float32), boxes=tf.constant(boxes, tf.float32),
            box_ind=tf.constant(box_index, tf.int32),
            image_size=tf.constant(image_size, tf.int32), T=TF_DTYPES[dtype], method=method)
    out = out.numpy()
    assert out.dtype == np.dtype(dtype)
    return out


def tf_grad_boxes(grads, image, boxes, box_index, method="bilinear"):
    with tf.device("/CPU:0"):
        out = tf.raw_ops.CropAndResizeGradBoxes(
            grads=tf.constant(grads, tf.float32), image=tf.constant(image),
            boxes=tf.constant(boxes, tf.float32), box_ind=tf.constant(box_index, tf.int32),
            method=method)
    out = out.numpy()
    assert out.dtype == np.float32
    return out


def do_forward(case, image, boxes, box_index, crop_size, method, extrap):
    out = tf_forward(image, boxes, box_index, crop_size, method, extrap)
    add(case, "forward", {"method": method, "dtype": str(image.dtype), "crop_size": list(crop_size),
                          "extrapolation_value": float(extrap)},
        image=image, boxes=boxes, box_index=box_index.astype(np.int32), output=out)
    return out


def do_grad_image(case, grads, boxes, box_index, image_size, dtype, method):
    out = tf_grad_image(grads, boxes, box_index, image_size, dtype, method)
    add(case, "grad_image", {"method": method, "dtype": dtype, "image_size": list(image_size)},
        grads=grads, boxes=boxes, box_index=box_index.astype(np.int32), output=out)
    return out


def do_grad_boxes(case, grads, image, boxes, box_index):
    out = tf_grad_boxes(grads, image, boxes, box_index)
    add(case, "grad_boxes", {"method": "bilinear", "dtype": str(image.dtype)},
        grads=grads, image=image, boxes=boxes, box_index=box_index.astype(np.int32), output=out)
    return out


def all_integer_samples(box, H, W, ch, cw):
    """True if every sample coordinate of the box (GradBoxes formula) is an integer."""
    f = np.float32
    y1, x1, y2, x2 = [f(v) for v in box]

    def coords(c1, c2, size, n):
        if n > 1:
            r = f(f(size - 1) / f(n - 1))
            s = f(f(c2 - c1) * r)
            return [f(f(c1 * f(size - 1)) + f(f(i) * s)) for i in range(n)]
        return [f(0.5 * float(f(c1 + c2)) * (size - 1))]

    ys = coords(y1, y2, H, ch)
    xs = coords(x1, x2, W, cw)
    return all(float(v).is_integer() for v in ys) and all(float(v).is_integer() for v in xs)


warnings = []


def check(name, got, expected, exact=True):
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        ok = False
    elif exact:
        ok = np.array_equal(np.float32(got), np.float32(expected))
    else:
        ok = np.allclose(got, expected, rtol=0, atol=1e-6)
    if not ok:
        msg = f"WARNING: {name}: TF gives {got.tolist()}, SPEC says {expected.tolist()}"
        print(msg)
        warnings.append(msg)
    else:
        print(f"{name}: matches SPEC")


def main():
    # ------------------------------------------------------------------ forward
    crop_sizes = [(3, 4), (1, 5), (4, 1), (1, 1)]
    k = 0
    for method in ("bilinear", "nearest"):
        for dtype in ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"):
            for cs in crop_sizes:
                image = random_image((2, 5, 7, 3), dtype)
                boxes = random_boxes(10)
                box_index = rng.integers(0, 2, size=10).astype(np.int32)
                extrap = 0.0 if k % 2 == 0 else -1.5
                do_forward(f"fwd{k:03d}", image, boxes, box_index, cs, method, extrap)
                k += 1
    for j, method in enumerate(("bilinear", "nearest", "bilinear")):
        if True:
            image = random_image((2, 16, 20, 8), "float32", quantize=True)
            boxes = random_boxes(NL)
            box_index = rng.integers(0, 2, size=NL).astype(np.int32)
            extrap = [0.0, -1.5, 2.25][j]
            do_forward(f"fwd{k:03d}", image, boxes, box_index, (7, 9), method, extrap)
            k += 1

    # --------------------------------------------------------------- grad_image
    k = 0
    for method in ("bilinear", "nearest"):
        for dtype in ("float16", "float32", "float64"):
            for cs in [(3, 4), (1, 1)]:
                boxes = random_boxes(12)
                # several overlapping boxes on the same image
                boxes[4] = [0.1, 0.1, 0.8, 0.9]
                boxes[5] = [0.2, 0.05, 0.9, 0.7]
                boxes[6] = [0.15, 0.2, 0.85, 0.95]
                boxes[7] = [0.1, 0.1, 0.8, 0.9]
                box_index = rng.integers(0, 2, size=12).astype(np.int32)
                box_index[4:8] = 1
                grads = random_grads((12, cs[0], cs[1], 3))
                do_grad_image(f"gimg{k:03d}", grads, boxes, box_index, (2, 6, 8, 3), dtype, method)
                k += 1
    for method in ("bilinear", "nearest"):
        boxes = random_boxes(NL)
        box_index = rng.integers(0, 2, size=NL).astype(np.int32)
        grads = random_grads((NL, 7, 9, 8), quantize=True)
        do_grad_image(f"gimg{k:03d}", grads, boxes, box_index, (2, 16, 20, 8), "float32", method)
        k += 1

    # --------------------------------------------------------------- grad_boxes
    k = 0
    gb_ranges = dict(INT_RANGES, int32=(-100000, 100001))
    for dtype in ("uint8", "int32", "float16", "float32", "float64"):
        for cs in crop_sizes:
            image = random_image((2, 6, 8, 3), dtype, int_ranges=gb_ranges)
            while True:
                boxes = random_boxes(12, special=False)
                boxes[0] = [0.9, 0.85, 0.1, 0.2]          # one flipped box
                if not any(all_integer_samples(b, 6, 8, *cs) for b in boxes):
                    break
            box_index = rng.integers(0, 2, size=12).astype(np.int32)
            grads = random_grads((12, cs[0], cs[1], 3))
            do_grad_boxes(f"gbox{k:03d}", grads, image, boxes, box_index)
            k += 1
    for j in range(2):
        image = random_image((2, 16, 20, 8), "float32", quantize=True)
        boxes = random_boxes(NL, special=False)
        box_index = rng.integers(0, 2, size=NL).astype(np.int32)
        grads = random_grads((NL, 7, 9, 8), quantize=True)
        do_grad_boxes(f"gbox{k:03d}", grads, image, boxes, box_index)
        k += 1

    # ------------------------------------------------------- SPEC section 7 goldens
    I = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    b4 = np.array([[0, 0, 1, 1], [.25, .25, .75, .75], [1, 0, 0, 1], [-.5, -.5, 1.5, 1.5]], np.float32)
    bi4 = np.zeros(4, np.int32)
    out = do_forward("g10", I, b4, bi4, (3, 3), "bilinear", -1.0)
    check("G10", out[..., 0], [[[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[3, 3.5, 4], [4.5, 5, 5.5], [6, 6.5, 7]],
                               [[7, 8, 9], [4, 5, 6], [1, 2, 3]], [[-1, -1, -1], [-1, 5, -1], [-1, -1, -1]]])
    out = do_forward("g11", I, b4, bi4, (3, 3), "nearest", -1.0)
    check("G11", out[..., 0], [[[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[5, 5, 6], [5, 5, 6], [8, 8, 9]],
                               [[7, 8, 9], [4, 5, 6], [1, 2, 3]], [[-1, -1, -1], [-1, 5, -1], [-1, -1, -1]]])
    X16 = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    out = do_forward("g12", X16, np.array([[0, 0, 1, 1]], np.float32), np.zeros(1, np.int32), (3, 3),
                     "nearest", 0.0)
    check("G12", out[0, ..., 0], [[0, 2, 3], [8, 10, 11], [12, 14, 15]])
    out = do_forward("g13", I, np.array([[0, 0, 1, 1]], np.float32), np.zeros(1, np.int32), (1, 1),
                     "bilinear", 0.0)
    check("G13", out[0, ..., 0], [[5.0]])

    out = do_grad_image("g16", np.ones((1, 2, 2, 1), np.float32), np.array([[.25, .25, .75, .75]], np.float32),
                        np.zeros(1, np.int32), (1, 3, 3, 1), "float32", "bilinear")
    check("G16", out[0, ..., 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    out = do_grad_image("g17", np.ones((1, 2, 2, 1), np.float32), np.array([[.25, .25, .75, .75]], np.float32),
                        np.zeros(1, np.int32), (1, 3, 3, 1), "float32", "nearest")
    check("G17", out[0, ..., 0], [[0, 0, 0], [0, 1, 1], [0, 1, 1]])

    Isq = (np.arange(9, dtype=np.float32) ** 2).reshape(1, 3, 3, 1)
    out = do_grad_boxes("g18", np.ones((1, 2, 2, 1), np.float32), Isq, np.array([[.1, .2, .7, .9]], np.float32),
                        np.zeros(1, np.int32))
    check("G18", out, [[62.3999977112, 23.1999988556, 134.3999938965, 31.2000007629]])
    out = do_grad_boxes("g19", np.ones((1, 1, 1, 1), np.float32), Isq, np.array([[.1, .2, .7, .9]], np.float32),
                        np.zeros(1, np.int32))
    check("G19", out, [[15.6000003815, 7.8000001907, 15.6000003815, 7.8000001907]])
    out = do_grad_boxes("g20", np.ones((1, 2, 2, 1), np.float32), Isq, np.array([[-.5, .2, .7, .9]], np.float32),
                        np.zeros(1, np.int32))
    check("G20", out, [[0.0, 18.8000011444, 134.3999938965, 22.8000011444]])

    # ------------------------------------------------------------------- write
    meta = {"tensorflow_version": tf.__version__, "cases": cases}
    with open(OUT_JSON, "w") as f:
        json.dump(meta, f, indent=1)
    np.savez_compressed(OUT_NPZ, **arrays)
    # sanity: reload
    z = np.load(OUT_NPZ)
    assert set(z.files) == set(arrays)
    for key in z.files:
        assert np.array_equal(z[key], arrays[key], equal_nan=True), key
    counts = {}
    for c in cases:
        counts[c["op"]] = counts.get(c["op"], 0) + 1
    print(f"TF {tf.__version__}: {len(cases)} cases {counts}; "
          f"{os.path.getsize(OUT_NPZ)} bytes npz, {os.path.getsize(OUT_JSON)} bytes json; "
          f"{len(warnings)} SPEC mismatches")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Large random cross-check of roi_ext against the real upstream kernels.

Compares, case by case and bit for bit (see SPEC.md Part A):

* TensorFlow ``CropAndResize`` / ``CropAndResizeGradImage`` / ``CropAndResizeGradBoxes`` (CPU,
  op determinism on) with ``roi_ext.crop_and_resize*`` (and, as an extra, roi_ext's autograd);
* MindSpore ``ops.CropAndResize(method="bilinear_v2")`` and ``ops.ROIAlign`` (+ its gradient for
  ``roi_end_mode=1``) with ``roi_ext`` (CPU, PyNative);
* torchvision ``ops.roi_align`` forward and input gradient with ``roi_ext.roi_align`` (in process).

TensorFlow and MindSpore live in their own virtualenvs: inputs are generated here with numpy,
written to an ``.npz``, the upstream side runs in a subprocess with the other venv's python (the
worker code is embedded below and passed with ``-c``) and writes its outputs to another ``.npz``.
torch is never imported in those subprocesses.

Usage::

    .venv/bin/python scripts/crosscheck_upstream.py [--cases 300] [--seed 0] [--only tf_car,ms_ra]
        [--tf-python /work/venvs/tf/bin/python] [--ms-python /work/venvs/ms/bin/python]
        [--workdir DIR] [--show 3]

Exit status: 0 when every strict row is bit-identical, 1 otherwise.  The only non-strict row is
``CropAndResizeGradImage`` with ``T=float16`` (TF accumulates in half precision, roi_ext in float32 and
rounds once, SPEC A3): it is reported in half ulps only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict

import numpy as np

# --------------------------------------------------------------------------------------------
# Upstream worker (runs in the TF or MindSpore venv; never imports torch)
# --------------------------------------------------------------------------------------------
WORKER = r'''
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_v", "3")
import numpy as np

src, dst, which = sys.argv[1], sys.argv[2], sys.argv[3]
data = np.load(src)
cases = {}
for key in data.files:
    op, i, name = key.split("__", 2)
    cases.setdefault(op, {}).setdefault(int(i), {})[name] = data[key]
out = {}

def put(op, i, name, value):
    out["%s__%d__%s" % (op, i, name)] = np.asarray(value)

def run(op, fn):
    for i, c in sorted(cases.get(op, {}).items()):
        try:
            for name, value in fn(c).items():
                put(op, i, name, value)
        except Exception as e:  # recorded and reported by the driver
            put(op, i, "err", "%s: %s" % (type(e).__name__, str(e)[:300]))

t0 = time.time()
if which == "tf":
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    T = {"float16": tf.float16, "float32": tf.float32, "float64": tf.float64}

    def car(c):
        r = tf.raw_ops.CropAndResize(image=c["image"], boxes=c["boxes"], box_ind=c["box_ind"],
                                     crop_size=c["crop"], method=str(c["method"]),
                                     extrapolation_value=float(c["extrap"]))
        return {"out": r.numpy()}

    def gi(c):
        r = tf.raw_ops.CropAndResizeGradImage(grads=c["grads"], boxes=c["boxes"], box_ind=c["box_ind"],
                                              image_size=c["image_size"], T=T[str(c["T"])],
                                              method=str(c["method"]))
        return {"out": r.numpy()}

    def gb(c):
        r = tf.raw_ops.CropAndResizeGradBoxes(grads=c["grads"], image=c["image"], boxes=c["boxes"],
                                              box_ind=c["box_ind"], method="bilinear")
        return {"out": r.numpy()}

    run("tf_car", car)
    run("tf_gi", gi)
    run("tf_gb", gb)
elif which == "ms":
    import mindspore as ms
    from mindspore import ops, Tensor
    try:
        ms.set_device("CPU")
    except Exception:
        pass
    ms.set_context(mode=ms.PYNATIVE_MODE)

    def v2(c):
        op = ops.CropAndResize(method="bilinear_v2", extrapolation_value=float(c["extrap"]))
        r = op(Tensor(c["image"]), Tensor(c["boxes"]), Tensor(c["box_ind"]),
               (int(c["crop"][0]), int(c["crop"][1])))
        return {"out": r.asnumpy()}

    def ra(c):
        ph, pw, sn, mode = (int(v) for v in c["ints"])
        op = ops.ROIAlign(ph, pw, float(c["scale"]), sn, mode)
        rois = Tensor(c["rois"])
        feat = Tensor(c["feat"])
        res = {"out": op(feat, rois).asnumpy()}
        if mode == 1:
            y, vjp = ms.vjp(lambda f: op(f, rois), feat)
            res["grad"] = vjp(Tensor(c["dy"]))[0].asnumpy()
        return res

    run("ms_v2", v2)
    run("ms_ra", ra)
np.savez(dst, **out)
print("%s worker: %.1fs" % (which, time.time() - t0))
'''

OPS_TF = ("tf_car", "tf_gi", "tf_gb")
OPS_MS = ("ms_v2", "ms_ra")
OPS_TV = ("tv_ra",)
ALL_OPS = OPS_TF + OPS_MS + OPS_TV

# --------------------------------------------------------------------------------------------
# Case generation (numpy only)
# --------------------------------------------------------------------------------------------


def _coords(rng, n, size, lo=-0.5, hi=1.5):
    """n normalized coordinate pairs (c1, c2) for an axis of `size` pixels, a mix of hard cases."""
    c = rng.uniform(lo, hi, size=(n, 2))
    kind = rng.random(n)
    for j in range(n):
        k = kind[j]
        if k < 0.10:                                   # ordered, inside [0, 1]
            c[j] = np.sort(rng.random(2))
        elif k < 0.22:                                 # on the pixel grid (integer sample positions)
            den = max(size - 1, 1) if rng.random() < 0.7 else size
            c[j] = rng.integers(-den // 2, den + den // 2 + 1, size=2) / den
        elif k < 0.27:                                 # degenerate c1 == c2
            c[j, 1] = c[j, 0]
        elif k < 0.33:                                 # special values
            c[j] = rng.choice([0.0, 1.0, 0.5, -0.5, 1.5, 0.25, 0.75], size=2)
    return c.astype(np.float32)


def _boxes(rng, n, h, w, lo=-0.5, hi=1.5):
    y = _coords(rng, n, h, lo, hi)
    x = _coords(rng, n, w, lo, hi)
    return np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1).astype(np.float32)


def _image(rng, shape, dtype):
    if dtype == "uint8":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if dtype == "int32":
        hi = int(rng.choice([100, 2 ** 24, 2 ** 31 - 1]))
        return rng.integers(-hi, hi, size=shape, dtype=np.int64).astype(np.int32)
    scale = 10.0 ** rng.uniform(-2, 3 if dtype == "float16" else 6)
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _common_cr(rng):
    b, h, w, d = int(rng.integers(1, 4)), int(rng.integers(1, 21)), int(rng.integers(1, 21)), int(rng.integers(1, 9))
    n = int(rng.integers(0, 31))
    crop = rng.integers(1, 10, size=2).astype(np.int32)
    return b, h, w, d, n, crop


def gen_tf_car(rng, count):
    dtypes = ["uint8", "int32", "float16", "float32", "float64"]
    for i in range(count):
        b, h, w, d, n, crop = _common_cr(rng)
        dt = dtypes[i % len(dtypes)]
        yield {
            "image": _image(rng, (b, h, w, d), dt),
            "boxes": _boxes(rng, n, h, w),
            "box_ind": rng.integers(0, b, size=n).astype(np.int32),
            "crop": crop,
            "method": np.array(["bilinear", "nearest"][(i // len(dtypes)) % 2]),
            "extrap": np.array(rng.choice([0.0, -1.0, rng.uniform(-1e3, 1e3)])),  # a double, rounded by both
            "fmt": np.array(["NHWC", "NHWC", "NHWC", "NCHW"][int(rng.integers(0, 4))]),
            "bi64": np.array(bool(rng.integers(0, 2))),
        }


def _clustered_boxes(rng, n, h, w):
    """Many overlapping boxes: jitter around one random box, some flipped / partly outside."""
    base = _boxes(rng, 1, h, w, -0.2, 1.2)[0]
    jit = rng.normal(scale=0.08, size=(n, 4)).astype(np.float32)
    bx = (base[None, :] + jit).astype(np.float32)
    mix = rng.random(n) < 0.25                          # some fully random boxes
    if mix.any():
        bx[mix] = _boxes(rng, int(mix.sum()), h, w)
    return bx


def gen_tf_gi(rng, count):
    for i in range(count):
        b, h, w, d, n, crop = _common_cr(rng)
        b = int(rng.integers(1, 3))
        n = int(rng.integers(0, 31))
        yield {
            "grads": (rng.standard_normal((n, crop[0], crop[1], d)) * 10.0 ** rng.uniform(-2, 3)).astype(np.float32),
            "boxes": _clustered_boxes(rng, n, h, w),
            "box_ind": rng.integers(0, b, size=n).astype(np.int32),
            "image_size": np.array([b, h, w, d], np.int32),
            "T": np.array(["float32", "float64", "float16"][i % 3]),
            "method": np.array(["bilinear", "nearest"][(i // 3) % 2]),
            "fmt": np.array(["NHWC", "NHWC", "NHWC", "NCHW"][int(rng.integers(0, 4))]),
        }


def gen_tf_gb(rng, count):
    for i in range(count):
        b, h, w, d, n, crop = _common_cr(rng)
        dt = ["float32", "uint8"][i % 2]
        yield {
            "grads": (rng.standard_normal((n, crop[0], crop[1], d)) * 10.0 ** rng.uniform(-2, 2)).astype(np.float32),
            "image": _image(rng, (b, h, w, d), dt),
            "boxes": _boxes(rng, n, h, w) if rng.random() < 0.6 else _clustered_boxes(rng, n, h, w),
            "box_ind": rng.integers(0, b, size=n).astype(np.int32),
            "fmt": np.array(["NHWC", "NHWC", "NHWC", "NCHW"][int(rng.integers(0, 4))]),
        }


def _ms_axis(rng, size):
    """(c1, c2) that MindSpore's bilinear_v2 reads in bounds: 0 <= c1 <= c2, trunc(f32(c2*size)) <= size-1."""
    f = np.float32
    while True:
        r = rng.random()
        if r < 0.15:                                    # exact pixel multiples k/size
            c = np.sort(rng.integers(0, size, size=2) / size)
        elif r < 0.25:
            c = np.array([0.0, rng.uniform(0.0, 1.0)])
        else:
            c = np.sort(rng.random(2))
        c = c.astype(np.float32)
        if 0 <= c[0] <= c[1] and int(f(c[1]) * f(size)) <= size - 1 and int(f(c[0]) * f(size)) <= size - 1:
            return c


def gen_ms_v2(rng, count):
    for i in range(count):
        b, h, w, d, n, crop = _common_cr(rng)
        bx = np.zeros((n, 4), np.float32)
        for j in range(n):
            y, x = _ms_axis(rng, h), _ms_axis(rng, w)
            bx[j] = [y[0], x[0], y[1], x[1]]
        yield {
            "image": _image(rng, (b, h, w, d), "float32"),
            "boxes": bx,
            "box_ind": rng.integers(0, b, size=n).astype(np.int32),
            "crop": crop,
            "extrap": np.array(float(rng.choice([0.0, -3.0, 7.5]))),
        }


SCALES = [1.0, 0.5, 0.25, 0.125, 1.0 / 16]


def _ra_common(rng):
    b, c, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 21)), int(rng.integers(1, 21))
    k = int(rng.integers(0, 31))
    ph, pw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    return b, c, h, w, k, ph, pw


def gen_ms_ra(rng, count):
    for i in range(count):
        b, c, h, w, k, ph, pw = _ra_common(rng)
        s = float(rng.choice(SCALES + [1.0 / 3, 0.7]))
        mode, sn = i % 2, int(rng.integers(1, 5))
        x = rng.uniform(0.01, 1.3 * w / s, size=(k, 2))
        y = rng.uniform(-0.3 * h / s, 1.3 * h / s, size=(k, 2))
        order = rng.random(k) < 0.8                     # mostly x1 <= x2, y1 <= y2; some inverted
        x[order] = np.sort(x[order], axis=1)
        y[order] = np.sort(y[order], axis=1)
        small = rng.random(k) < 0.15                    # small rois (sub-pixel)
        x[small, 1] = x[small, 0] + rng.uniform(0, 1.5 / s, size=int(small.sum()))
        y[small, 1] = y[small, 0] + rng.uniform(0, 1.5 / s, size=int(small.sum()))
        rois = np.stack([rng.integers(0, b, size=k), x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).astype(np.float32)
        yield {
            "feat": (rng.standard_normal((b, c, h, w)) * 10.0 ** rng.uniform(-2, 3)).astype(np.float32),
            "rois": rois,
            "scale": np.array(s),
            "ints": np.array([ph, pw, sn, mode], np.int64),
            "dy": rng.standard_normal((k, c, ph, pw)).astype(np.float32),
        }


def gen_tv_ra(rng, count):
    for i in range(count):
        b, c, h, w, k, ph, pw = _ra_common(rng)
        s = float(rng.choice(SCALES))
        dt = ["float32", "float64"][i % 2]
        aligned = bool((i // 2) % 2)
        sr = int(rng.integers(-1, 5))
        x = rng.uniform(-0.2 * w / s, 1.2 * w / s, size=(k, 2))
        y = rng.uniform(-0.2 * h / s, 1.2 * h / s, size=(k, 2))
        order = np.ones(k, bool) if (aligned and sr <= 0) else rng.random(k) < 0.7
        x[order] = np.sort(x[order], axis=1)
        y[order] = np.sort(y[order], axis=1)
        small = rng.random(k) < 0.15
        x[small, 1] = x[small, 0] + rng.uniform(0, 1.5 / s, size=int(small.sum()))
        y[small, 1] = y[small, 0] + rng.uniform(0, 1.5 / s, size=int(small.sum()))
        bi = rng.integers(0, b, size=k).astype(np.float64)
        if rng.random() < 0.2:                          # fractional batch indices (truncated)
            bi = bi + rng.uniform(0, 0.99, size=k)
        yield {
            "feat": (rng.standard_normal((b, c, h, w)) * 10.0 ** rng.uniform(-2, 3)).astype(dt),
            "rois": np.stack([bi, x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).astype(dt),
            "scale": np.array(s),
            "ints": np.array([ph, pw, sr, int(aligned)], np.int64),
            "form": np.array(["tensor", "list"][int(rng.integers(0, 2))]),
            "cl": np.array(bool(rng.random() < 0.25)),  # roi_ext input in channels_last memory format
            "dy": rng.standard_normal((k, c, ph, pw)).astype(dt),
        }


GENERATORS = {"tf_car": gen_tf_car, "tf_gi": gen_tf_gi, "tf_gb": gen_tf_gb,
              "ms_v2": gen_ms_v2, "ms_ra": gen_ms_ra, "tv_ra": gen_tv_ra}

# --------------------------------------------------------------------------------------------
# Comparison helpers
# --------------------------------------------------------------------------------------------
_INT = {2: np.int16, 4: np.int32, 8: np.int64}
_MAG = {2: 0x7FFF, 4: 0x7FFFFFFF, 8: 0x7FFFFFFFFFFFFFFF}


def _ordered(a):
    i = a.view(_INT[a.itemsize]).astype(np.int64)
    return np.where(i < 0, -(i & _MAG[a.itemsize]), i)


def compare(ours, ref):
    """-> (identical, max_abs, max_ulp, n_diff, first_diff_index) for arrays of the same float dtype."""
    if ours.shape != ref.shape or ours.dtype != ref.dtype:
        return False, float("inf"), float("inf"), -1, None
    if ours.size == 0:
        return True, 0.0, 0, 0, None
    o = np.ascontiguousarray(ours)
    r = np.ascontiguousarray(ref)
    both_nan = np.isnan(o) & np.isnan(r)
    diff = (o.view(_INT[o.itemsize]) != r.view(_INT[r.itemsize])) & ~both_nan
    n = int(diff.sum())
    if n == 0:
        return True, 0.0, 0, 0, None
    od, rd = o[diff], r[diff]
    with np.errstate(invalid="ignore", over="ignore"):
        ad = np.abs(od.astype(np.float64) - rd.astype(np.float64))
    max_abs = float(np.nanmax(ad)) if not np.isnan(ad).all() else float("nan")
    if np.isnan(od).any() or np.isnan(rd).any():
        max_ulp = float("inf")
    else:
        max_ulp = max(abs(int(a) - int(b)) for a, b in zip(_ordered(od), _ordered(rd)))
    first = tuple(int(v) for v in np.argwhere(diff)[0])
    return False, max_abs, max_ulp, n, first


class Row:
    def __init__(self, name, strict=True, unit=""):
        self.name, self.strict, self.unit = name, strict, unit
        self.cases = self.identical = self.errors = 0
        self.max_abs, self.max_ulp = 0.0, 0
        self.examples = []

    def add(self, ok, max_abs, max_ulp, detail):
        self.cases += 1
        if ok:
            self.identical += 1
            return
        self.max_abs = max(self.max_abs, max_abs) if not np.isnan(max_abs) else float("nan")
        self.max_ulp = max(self.max_ulp, max_ulp)
        self.examples.append((max_ulp, detail))

    def error(self, detail):
        self.cases += 1
        self.errors += 1
        self.examples.append((float("inf"), detail))

    @property
    def failed(self):
        return self.strict and (self.identical != self.cases)


def _fmt(v):
    return repr(float(v)) if np.ndim(v) == 0 else np.array2string(np.asarray(v), precision=9, separator=",")


# --------------------------------------------------------------------------------------------
# roi_ext side
# --------------------------------------------------------------------------------------------


def run_roi_ext(op, c, rows, i, up):
    import torch
    import roi_ext

    T = torch.from_numpy

    def check(row, ours, ref, what):
        ok, ma, mu, n, first = compare(ours, ref)
        if ok:
            rows[row].add(True, 0, 0, None)
            return
        if first is None:
            detail = f"case {i} {what}: shape/dtype mismatch roi_ext {ours.shape} {ours.dtype} vs upstream {ref.shape} {ref.dtype}"
        else:
            detail = (f"case {i} {what}: {n}/{ours.size} elements differ, max ulp {mu}; first at {first}: "
                      f"roi_ext={ours[first]!r} upstream={ref[first]!r}")
        rows[row].add(False, ma, mu, detail)

    def upstream(name="out"):
        e = up.get("err")
        if e is not None:
            raise RuntimeError(f"upstream raised: {e}")
        return up[name]

    if op == "tf_car":
        dt = str(c["image"].dtype)
        row = f"TF CropAndResize   img={dt}"
        img = c["image"].astype(np.float32) if dt == "float64" else c["image"]
        t = T(img)
        if str(c["fmt"]) == "NCHW":
            t = t.permute(0, 3, 1, 2)                 # strided NCHW view
        bi = T(c["box_ind"].astype(np.int64 if bool(c["bi64"]) else np.int32))
        out = roi_ext.crop_and_resize(t, T(c["boxes"]), bi, tuple(int(v) for v in c["crop"]), str(c["method"]),
                                      float(c["extrap"]), data_format=str(c["fmt"]))
        if str(c["fmt"]) == "NCHW":
            out = out.permute(0, 2, 3, 1)
        check(row, out.numpy(), upstream(), f"{c['method']} {c['fmt']}")
    elif op == "tf_gi":
        tname = str(c["T"])
        row = f"TF GradImage       T={tname}"
        dtype = getattr(torch, tname)
        g = T(c["grads"])
        size = [int(v) for v in c["image_size"]]
        fmt = str(c["fmt"])
        if fmt == "NCHW":
            g = g.permute(0, 3, 1, 2)
            size = [size[0], size[3], size[1], size[2]]
        out = roi_ext.crop_and_resize_grad_image(g, T(c["boxes"]), T(c["box_ind"]), size, str(c["method"]), dtype,
                                                 data_format=fmt)
        if fmt == "NCHW":
            out = out.permute(0, 2, 3, 1)
        ref = upstream()
        check(row, out.contiguous().numpy(), ref, f"{c['method']} {fmt}")
        if tname == "float16":
            # SPEC A3: half output = float32 accumulation rounded once
            o32 = roi_ext.crop_and_resize_grad_image(g, T(c["boxes"]), T(c["box_ind"]), size, str(c["method"]),
                                                     torch.float32, data_format=fmt)
            if fmt == "NCHW":
                o32 = o32.permute(0, 2, 3, 1)
            check("  roi_ext f16 == f16(roi_ext f32)", out.contiguous().numpy(), o32.half().contiguous().numpy(),
                  f"{c['method']} {fmt} rounding")
        if tname == "float32":
            # extra: roi_ext autograd of its own forward == TF GradImage
            b, h, w, d = (int(v) for v in c["image_size"])
            img = torch.zeros((b, h, w, d), dtype=torch.float32, requires_grad=True)
            crop = (c["grads"].shape[1], c["grads"].shape[2])
            y = roi_ext.crop_and_resize(img, T(c["boxes"]), T(c["box_ind"]), crop, str(c["method"]), 0.0)
            y.backward(T(c["grads"]))
            check("  roi_ext autograd d(image) vs TF GradImage f32", img.grad.numpy(), ref, f"{c['method']} autograd")
    elif op == "tf_gb":
        dt = str(c["image"].dtype)
        row = f"TF GradBoxes       img={dt}"
        fmt = str(c["fmt"])
        g, im = T(c["grads"]), T(c["image"])
        if fmt == "NCHW":
            g, im = g.permute(0, 3, 1, 2), im.permute(0, 3, 1, 2)
        out = roi_ext.crop_and_resize_grad_boxes(g, im, T(c["boxes"]), T(c["box_ind"]), "bilinear", data_format=fmt)
        ref = upstream()
        check(row, out.numpy(), ref, fmt)
        # extra: roi_ext autograd d(boxes) (bilinear and nearest forward; TF uses the bilinear formula for both)
        boxes = T(c["boxes"].copy()).requires_grad_(True)
        crop = (c["grads"].shape[1], c["grads"].shape[2])
        method = "nearest" if i % 4 >= 2 else "bilinear"
        y = roi_ext.crop_and_resize(T(c["image"]), boxes, T(c["box_ind"]), crop, method, 0.0)
        y.backward(T(c["grads"]))
        check("  roi_ext autograd d(boxes) vs TF GradBoxes", boxes.grad.numpy(), ref, f"{method} autograd")
    elif op == "ms_v2":
        row = "MS CropAndResize   bilinear_v2"
        out = roi_ext.crop_and_resize(T(c["image"]), T(c["boxes"]), T(c["box_ind"]),
                                      tuple(int(v) for v in c["crop"]), "bilinear_v2", float(c["extrap"]))
        check(row, out.numpy(), upstream(), "")
    elif op == "ms_ra":
        ph, pw, sn, mode = (int(v) for v in c["ints"])
        row = f"MS ROIAlign fwd    mode={mode}"
        feat = T(c["feat"].copy()).requires_grad_(mode == 1)
        m = roi_ext.ROIAlign(ph, pw, float(c["scale"]), sn, mode)
        out = m(feat, T(c["rois"]))
        what = f"pooled=({ph},{pw}) scale={float(c['scale'])} sample_num={sn}"
        check(row, out.detach().numpy(), upstream(), what)
        if mode == 1:
            out.backward(T(c["dy"]))
            grad = feat.grad if feat.grad is not None else torch.zeros_like(feat)
            check("MS ROIAlign grad   mode=1", grad.numpy(), upstream("grad"), what)
    elif op == "tv_ra":
        import torchvision

        ph, pw, sr, aligned = (int(v) for v in c["ints"])
        aligned = bool(aligned)
        dt = str(c["feat"].dtype)
        s = float(c["scale"])
        what = f"pooled=({ph},{pw}) scale={s} sampling_ratio={sr} aligned={aligned} form={c['form']} cl={bool(c['cl'])}"
        rois = T(c["rois"])
        if str(c["form"]) == "list":
            b = c["feat"].shape[0]
            idx = rois[:, 0].long()
            boxes = [rois[idx == j, 1:] for j in range(b)]
        else:
            boxes = rois
        ft = T(c["feat"].copy()).requires_grad_(True)
        try:
            ref = torchvision.ops.roi_align(ft, boxes, (ph, pw), s, sr, aligned)
            ref.backward(T(c["dy"]))
            ref_g = ft.grad if ft.grad is not None else torch.zeros_like(ft)
        except Exception as e:
            raise RuntimeError(f"torchvision raised: {type(e).__name__}: {e}")
        fo = T(c["feat"].copy())
        if bool(c["cl"]):
            fo = fo.contiguous(memory_format=torch.channels_last)
        fo.requires_grad_(True)
        out = roi_ext.roi_align(fo, boxes, (ph, pw), s, sr, aligned)
        out.backward(T(c["dy"]))
        og = fo.grad if fo.grad is not None else torch.zeros_like(fo)
        check(f"torchvision roi_align fwd {dt}", out.detach().contiguous().numpy(), ref.detach().numpy(), what)
        check(f"torchvision roi_align bwd {dt}", og.contiguous().numpy(), ref_g.numpy(), what)


ROW_ORDER = [
    "TF CropAndResize   img=uint8", "TF CropAndResize   img=int32", "TF CropAndResize   img=float16",
    "TF CropAndResize   img=float32", "TF CropAndResize   img=float64",
    "TF GradImage       T=float32", "  roi_ext autograd d(image) vs TF GradImage f32", "TF GradImage       T=float64",
    "TF GradImage       T=float16", "  roi_ext f16 == f16(roi_ext f32)",
    "TF GradBoxes       img=float32", "TF GradBoxes       img=uint8", "  roi_ext autograd d(boxes) vs TF GradBoxes",
    "MS CropAndResize   bilinear_v2", "MS ROIAlign fwd    mode=0", "MS ROIAlign fwd    mode=1", "MS ROIAlign grad   mode=1",
    "torchvision roi_align fwd float32", "torchvision roi_align bwd float32",
    "torchvision roi_align fwd float64", "torchvision roi_align bwd float64",
]


def row_for_error(op, c):
    if op == "tf_car":
        return f"TF CropAndResize   img={c['image'].dtype}"
    if op == "tf_gi":
        return f"TF GradImage       T={c['T']}"
    if op == "tf_gb":
        return f"TF GradBoxes       img={c['image'].dtype}"
    if op == "ms_v2":
        return "MS CropAndResize   bilinear_v2"
    if op == "ms_ra":
        return f"MS ROIAlign fwd    mode={int(c['ints'][3])}"
    return f"torchvision roi_align fwd {c['feat'].dtype}"


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=300, help="random cases per op (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="", help="comma-separated subset of " + ",".join(ALL_OPS))
    p.add_argument("--tf-python", default="/work/venvs/tf/bin/python")
    p.add_argument("--ms-python", default="/work/venvs/ms/bin/python")
    p.add_argument("--workdir", default=None, help="keep the .npz files here (default: a removed temp dir)")
    p.add_argument("--show", type=int, default=3, help="discrepancies printed per row")
    args = p.parse_args(argv)
    t_start = time.time()

    ops = [o for o in ALL_OPS if not args.only or o in args.only.split(",")]
    notes = []
    for pyexe, group, label in ((args.tf_python, OPS_TF, "TensorFlow"), (args.ms_python, OPS_MS, "MindSpore")):
        if any(o in ops for o in group) and not (os.path.isfile(pyexe) and os.access(pyexe, os.X_OK)):
            notes.append(f"NOTE: {label} python {pyexe!r} not found: skipping {', '.join(group)}")
            ops = [o for o in ops if o not in group]

    # 1. generate
    cases = {}
    for k, op in enumerate(ops):
        rng = np.random.default_rng([args.seed, k + 1000 * ALL_OPS.index(op)])
        cases[op] = list(GENERATORS[op](rng, args.cases))

    workdir = args.workdir or tempfile.mkdtemp(prefix="roi_ext_crosscheck_")
    os.makedirs(workdir, exist_ok=True)
    try:
        # 2. upstream subprocesses (run concurrently with the in-process torchvision/roi_ext work)
        procs = {}
        for which, group, pyexe in (("tf", OPS_TF, args.tf_python), ("ms", OPS_MS, args.ms_python)):
            mine = [o for o in ops if o in group]
            if not mine:
                continue
            src, dst = os.path.join(workdir, f"{which}_in.npz"), os.path.join(workdir, f"{which}_out.npz")
            np.savez(src, **{f"{op}__{i}__{name}": v for op in mine for i, c in enumerate(cases[op])
                             for name, v in c.items()})
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GLOG_v="3", PYTHONWARNINGS="ignore")
            env.pop("PYTHONPATH", None)
            procs[which] = (subprocess.Popen([pyexe, "-c", WORKER, src, dst, which], stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, env=env), dst, mine)

        import torch  # noqa: F401  (after the subprocesses are started)
        import roi_ext  # noqa: F401

        half_gi = "TF GradImage       T=float16"
        rows = OrderedDict((name, Row(name, strict=name != half_gi, unit="half ulp" if name == half_gi else ""))
                           for name in ROW_ORDER)

        def compare_op(op, up_all):
            index = {}
            if up_all is not None:
                for key in up_all.files:
                    o, j, name = key.split("__", 2)
                    if o == op:
                        index.setdefault(int(j), {})[name] = key
            for i, c in enumerate(cases[op]):
                up = {}
                if up_all is not None:
                    up = {name: up_all[key] for name, key in index.get(i, {}).items()}
                    if "err" in up:
                        up["err"] = str(up["err"])
                try:
                    run_roi_ext(op, c, rows, i, up)
                except Exception as e:
                    rows[row_for_error(op, c)].error(f"case {i}: {type(e).__name__}: {str(e)[:300]}")

        if "tv_ra" in ops:
            t0 = time.time()
            compare_op("tv_ra", None)
            notes.append(f"torchvision + roi_ext (tv_ra): {time.time() - t0:.1f}s")
        failed_upstream = []
        for which, (proc, dst, mine) in procs.items():
            so, se = proc.communicate()
            if proc.returncode != 0 or not os.path.exists(dst):
                failed_upstream.append(which)
                notes.append(f"ERROR: {which} worker failed (rc={proc.returncode}):\n" + se[-2000:])
                continue
            notes.append(so.strip())
            up_all = np.load(dst)
            t0 = time.time()
            for op in mine:
                compare_op(op, up_all)
            notes.append(f"roi_ext side ({which} ops): {time.time() - t0:.1f}s")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    # 4. report
    print(f"roi_ext cross-check vs upstream: seed={args.seed}, {args.cases} cases per op, ops={','.join(ops)}")
    for n in notes:
        print(n)
    hdr = f"{'op':50s} {'cases':>5s} {'bit-id':>6s} {'max abs diff':>12s} {'max ulp':>8s}"
    print(hdr)
    print("-" * len(hdr))
    bad = bool(failed_upstream)
    for r in rows.values():
        if r.cases == 0:
            continue
        flag = "" if r.identical == r.cases else ("  FAIL" if r.strict else f"  (report only, {r.unit})")
        if r.errors:
            flag += f"  [{r.errors} errors]"
        print(f"{r.name:50s} {r.cases:5d} {r.identical:6d} {r.max_abs:12.4g} {r.max_ulp:8}{flag}")
        bad |= r.failed
    shown = False
    for r in rows.values():
        if r.examples and args.show > 0:
            if not shown:
                print("\nDiscrepancies (largest first):")
                shown = True
            for _, d in sorted(r.examples, key=lambda e: -e[0])[: args.show]:
                print(f"  [{r.name.strip()}] {d}")
    print(f"\ntotal runtime {time.time() - t_start:.1f}s -> {'FAIL' if bad else 'OK'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

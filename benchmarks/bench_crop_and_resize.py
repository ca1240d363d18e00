#!/usr/bin/env python
"""Benchmark: roi_ext.crop_and_resize and its gradient ops vs TensorFlow (and kornia) on the CPU.

Not a test. Contenders, all bilinear, extrapolation_value 0:

  op          roi_ext                                   TensorFlow (own process)
  forward     roi_ext.crop_and_resize                   tf.raw_ops.CropAndResize
  grad_image  roi_ext.crop_and_resize_grad_image        tf.raw_ops.CropAndResizeGradImage
  grad_boxes  roi_ext.crop_and_resize_grad_boxes        tf.raw_ops.CropAndResizeGradBoxes
  fwd+bwd     crop_and_resize + autograd w.r.t. image   (not timed)

TensorFlow runs in a worker process started with --tf-python (its own virtualenv; torch
is never imported there), limited to the same thread count (intra-op = --threads,
inter-op = 1, set before any op). The worker gets its inputs as .npz files in a temp
dir, converts them to tf tensors once, and times eager calls of the raw op in a loop
(no tf.function; CPU eager ops are synchronous, and neither side calls .numpy() in the
timed loop). Timings come back as JSON lines over a pipe; the worker stays up, so the
contenders can still alternate round by round.

kornia.geometry.transform.crop_and_resize is timed "where it applies": forward and
forward+backward w.r.t. the image only, on an NCHW image, against roi_ext with
data_format="NCHW" on the same NCHW image (ratio kornia/roi_ext[NCHW]). kornia needs one
image per box, so every box gets a stride-0 expanded view of its image (no copy in the
forward); its backward however materialises a full-image gradient per box (boxes x C x H
x W floats), so fwd+bwd is skipped when that exceeds --kornia-bwd-max-gb and computed in
chunks of at most --kornia-chunk-gb. kornia is a different op (grid_sample, no
extrapolation value), so nothing is checked for equality against it.

Workload groups (--only):
  main     image [4,256,256,64] NHWC float32, 1000 boxes, crop 14x14
  boxes    100, 300, 1000, 3000 boxes (crop 14x14)
  crop     crop 7, 14, 28 (1000 boxes)
  threads  the main workload at each of --thread-sweep

Once per workload, roi_ext's float32 forward is compared bit for bit with TensorFlow's
(WARNING when not equal); the gradient ops are compared too (reported in "check"). Note:
TensorFlow 2.21's CPU CropAndResizeGradImage is not deterministic with more than one
intra-op thread (two identical calls differed by ~7e-2 relative here), so the grad_image
comparison is only meaningful at 1 thread (marked "(TF racy)" otherwise).

Examples:
  .venv/bin/python benchmarks/bench_crop_and_resize.py --quick
  .venv/bin/python benchmarks/bench_crop_and_resize.py --out crop_and_resize.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import roi_ext  # noqa: E402
from _bench_utils import (  # noqa: E402
    Stopwatch,
    core_count,
    fmt_ms,
    fmt_ratio,
    local,
    machine_info,
    machine_info_string,
    measure,
    parse_int_list,
    print_table,
    ratio,
    write_json,
)

try:
    from kornia.geometry.transform import crop_and_resize as kornia_crop_and_resize
except ImportError:  # reported in the header; the kornia columns stay empty
    kornia_crop_and_resize = None

GROUPS = ("main", "boxes", "crop", "threads")
IMAGE_SHAPE = (4, 256, 256, 64)  # NHWC
BASE_BOXES = 1000
BASE_CROP = 14
OPS = ("forward", "grad_image", "grad_boxes", "fwd+bwd")
DEFAULT_TF_PYTHON = "/work/venvs/tf/bin/python"

HEADERS = ("workload", "op", "roi_ext ms", "TF ms", "TF/roi_ext", "roi_ext[NCHW] ms", "kornia ms",
           "kornia/roi_ext[NCHW]", "check")

# --------------------------------------------------------------------------------------
# TensorFlow worker: runs under --tf-python with `-c`; argv[1] = thread count.
# Protocol: one JSON object per line on stdin, one JSON reply per line on the original
# stdout (fd 1 is pointed at stderr so that nothing TF prints can corrupt the replies).
TF_WORKER = r'''
import gc, json, os, sys, time
reply_file = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
threads = int(sys.argv[1])
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
data = {}

def reply(**kw):
    reply_file.write(json.dumps(kw) + "\n")
    reply_file.flush()

def op_fn(key, op):
    d = data[key]
    if op == "forward":
        return lambda: tf.raw_ops.CropAndResize(image=d["image"], boxes=d["boxes"], box_ind=d["box_index"],
                                                crop_size=d["crop_size"], method="bilinear",
                                                extrapolation_value=0.0)
    if op == "grad_image":
        return lambda: tf.raw_ops.CropAndResizeGradImage(grads=d["grads"], boxes=d["boxes"],
                                                         box_ind=d["box_index"], image_size=d["image_size"],
                                                         T=tf.float32, method="bilinear")
    if op == "grad_boxes":
        return lambda: tf.raw_ops.CropAndResizeGradBoxes(grads=d["grads"], image=d["image"], boxes=d["boxes"],
                                                         box_ind=d["box_index"], method="bilinear")
    raise ValueError("unknown op " + op)

for line in sys.stdin:
    msg = json.loads(line)
    try:
        cmd = msg["cmd"]
        if cmd == "info":
            reply(ok=True, tensorflow=tf.__version__,
                  intra=tf.config.threading.get_intra_op_parallelism_threads(),
                  inter=tf.config.threading.get_inter_op_parallelism_threads())
        elif cmd == "load":
            with np.load(msg["npz"]) as z:
                data[msg["key"]] = {k: tf.constant(z[k]) for k in z.files}
            reply(ok=True)
        elif cmd == "drop":
            data.pop(msg["key"], None)
            gc.collect()
            reply(ok=True)
        elif cmd == "time":
            fn = op_fn(msg["key"], msg["op"])
            reps = int(msg["reps"])
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            sec = time.perf_counter() - t0
            gc.enable()
            reply(ok=True, sec=sec)
        elif cmd == "outputs":
            outs = {op: op_fn(msg["key"], op)().numpy() for op in msg["ops"]}
            np.savez(msg["out"], **outs)
            reply(ok=True)
        elif cmd == "quit":
            reply(ok=True)
            break
        else:
            reply(ok=False, error="unknown cmd " + cmd)
    except Exception as e:
        reply(ok=False, error=repr(e))
'''


class TFWorker:
    def __init__(self, python: str, threads: int, tmpdir: str):
        self.threads = threads
        self.log_path = os.path.join(tmpdir, f"tf_worker_t{threads}.log")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="2")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([python, "-c", TF_WORKER, str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.info = self.call(cmd="info")

    def call(self, **msg) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.log.flush()
            with open(self.log_path) as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"TensorFlow worker died (threads={self.threads}); its log ends with:\n{tail}")
        rep = json.loads(line)
        if not rep.get("ok"):
            raise RuntimeError(f"TensorFlow worker: {rep.get('error')}")
        return rep

    def contender(self, key: str, op: str):
        return lambda reps: self.call(cmd="time", key=key, op=op, reps=reps)["sec"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call(cmd="quit")
            except Exception:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Workers:
    """One TF worker at a time, restarted when the thread count changes."""

    def __init__(self, python: str, tmpdir: str):
        self.python, self.tmpdir, self.worker = python, tmpdir, None

    def get(self, threads: int) -> TFWorker:
        if self.worker is None or self.worker.threads != threads:
            self.close()
            self.worker = TFWorker(self.python, threads, self.tmpdir)
        return self.worker

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None


# --------------------------------------------------------------------------------------
def make_boxes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Normalised [y1, x1, y2, x2]: ~80% inside [0, 1], ~10% flipped, ~10% reaching outside."""
    size = np.exp(rng.uniform(np.log(0.03), np.log(0.7), size=(n, 2)))
    start = rng.uniform(0.0, 1.0 - size)
    kind = rng.uniform(size=n)
    outside = kind >= 0.9
    start[outside] = rng.uniform(-0.3, 1.0, size=(outside.sum(), 2))
    size[outside] *= 1.5
    y1, x1 = start[:, 0], start[:, 1]
    y2, x2 = y1 + size[:, 0], x1 + size[:, 1]
    boxes = np.stack([y1, x1, y2, x2], axis=1)
    flipped = (kind >= 0.8) & (kind < 0.9)
    mode = rng.integers(0, 3, size=n)  # 0: y flipped, 1: x flipped, 2: both
    flip_y = flipped & (mode != 1)
    flip_x = flipped & (mode != 0)
    boxes[flip_y] = boxes[flip_y][:, [2, 1, 0, 3]]
    boxes[flip_x] = boxes[flip_x][:, [0, 3, 2, 1]]
    return boxes.astype(np.float32)


def kornia_points(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[N, 4, 2] corner points (x, y) in pixels: TL, TR, BR, BL, as kornia wants them."""
    y1, x1, y2, x2 = (boxes[:, i] for i in range(4))
    y1, y2 = y1 * (h - 1), y2 * (h - 1)
    x1, x2 = x1 * (w - 1), x2 * (w - 1)
    return torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                        torch.stack([x2, y2], -1), torch.stack([x1, y2], -1)], dim=1).contiguous()


def kornia_call(img_nchw, pts, groups, crop, chunk):
    """kornia on every box: a stride-0 expanded view of its image per box, split per image
    (and in chunks of at most `chunk` boxes), outputs concatenated (ordered by image)."""
    outs = []
    for b, idx in groups:
        img_b = img_nchw[b:b + 1]
        for s in range(0, idx.numel(), chunk):
            sel = idx[s:s + chunk]
            outs.append(kornia_crop_and_resize(img_b.expand(sel.numel(), -1, -1, -1), pts[sel], crop,
                                               mode="bilinear", padding_mode="zeros", align_corners=True))
    return torch.cat(outs, 0)


def compare(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape == b.shape and np.array_equal(a, b):
        return "=="
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    scale = float(np.abs(b).max()) or 1.0
    return f"~{float(np.abs(a - b).max()) / scale:.0e}"


def run_case(group, n_boxes, crop_hw, threads, args, workers, results, rows, tmpdir):
    torch.set_num_threads(threads)
    B, H, W, D = IMAGE_SHAPE
    ch, cw = crop_hw
    rng = np.random.default_rng(args.seed + 1009 * n_boxes + ch)
    image_np = rng.standard_normal(IMAGE_SHAPE, dtype=np.float32)
    boxes_np = make_boxes(n_boxes, rng)
    box_index_np = rng.integers(0, B, size=n_boxes).astype(np.int32)
    grads_np = rng.standard_normal((n_boxes, ch, cw, D), dtype=np.float32)
    key = f"{group}_{n_boxes}_{ch}x{cw}_t{threads}"
    label = f"{group}: img[{B},{H},{W},{D}] N={n_boxes} crop={ch}x{cw} t={threads}"

    tf_worker = None
    if not args.no_tf:
        tf_worker = workers.get(threads)
        npz = os.path.join(tmpdir, key + ".npz")
        np.savez(npz, image=image_np, boxes=boxes_np, box_index=box_index_np, grads=grads_np,
                 crop_size=np.array([ch, cw], np.int32), image_size=np.array(IMAGE_SHAPE, np.int32))
        tf_worker.call(cmd="load", key=key, npz=npz)
        os.remove(npz)

    image = torch.from_numpy(image_np)
    boxes = torch.from_numpy(boxes_np)
    box_index = torch.from_numpy(box_index_np)
    grads = torch.from_numpy(grads_np)
    image_nchw = image.permute(0, 3, 1, 2).contiguous()
    grads_nchw = grads.permute(0, 3, 1, 2).contiguous()

    # ---- checks, once per workload
    out = roi_ext.crop_and_resize(image, boxes, box_index, (ch, cw))
    gi = roi_ext.crop_and_resize_grad_image(grads, boxes, box_index, IMAGE_SHAPE)
    gb = roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index)
    check, notes = {}, []
    if tf_worker is not None:
        out_npz = os.path.join(tmpdir, key + "_out.npz")
        tf_worker.call(cmd="outputs", key=key, ops=["forward", "grad_image", "grad_boxes"], out=out_npz)
        with np.load(out_npz) as z:
            tf_out = {k: z[k] for k in z.files}
        os.remove(out_npz)
        for op, mine in (("forward", out), ("grad_image", gi), ("grad_boxes", gb)):
            check[op] = compare(mine.numpy(), tf_out[op])
        if check["forward"] != "==":
            print(f"WARNING: float32 forward differs from TensorFlow ({label}): {check['forward']}", flush=True)
        notes.append("vs TF: " + " ".join(f"{op.replace('grad_', 'd')}{check[op]}" for op in check))
        if threads > 1 and check["grad_image"] != "==":
            notes.append("(dimage: TF racy at >1 thread)")
    out_nchw = roi_ext.crop_and_resize(image_nchw, boxes, box_index, (ch, cw), data_format="NCHW")
    check["nchw_forward_equals_nhwc"] = bool(torch.equal(out_nchw.permute(0, 2, 3, 1), out))
    if not check["nchw_forward_equals_nhwc"]:
        notes.append("NCHW!=NHWC")

    # ---- kornia set-up
    use_kornia = kornia_crop_and_resize is not None and not args.no_kornia
    per_box_bytes = D * H * W * 4
    kornia_bwd_ok = use_kornia and n_boxes * per_box_bytes <= args.kornia_bwd_max_gb * 2**30
    chunk = max(1, int(args.kornia_chunk_gb * 2**30 // per_box_bytes))
    if use_kornia:
        pts = kornia_points(boxes, H, W)
        groups = [(b, torch.nonzero(box_index == b).flatten()) for b in range(B)]
        order = torch.cat([idx for _, idx in groups])
        grads_kornia = grads_nchw[order].contiguous()
        crop = (ch, cw)

    for op in OPS:
        contenders = {}
        if op == "forward":
            contenders["roi_ext"] = local(lambda: roi_ext.crop_and_resize(image, boxes, box_index, (ch, cw)))
            if tf_worker is not None:
                contenders["tensorflow"] = tf_worker.contender(key, op)
            contenders["roi_ext_nchw"] = local(lambda: roi_ext.crop_and_resize(
                image_nchw, boxes, box_index, (ch, cw), data_format="NCHW"))
            if use_kornia:
                contenders["kornia"] = local(lambda: kornia_call(image_nchw, pts, groups, crop, n_boxes))
        elif op == "grad_image":
            contenders["roi_ext"] = local(lambda: roi_ext.crop_and_resize_grad_image(
                grads, boxes, box_index, IMAGE_SHAPE))
            if tf_worker is not None:
                contenders["tensorflow"] = tf_worker.contender(key, op)
        elif op == "grad_boxes":
            contenders["roi_ext"] = local(lambda: roi_ext.crop_and_resize_grad_boxes(
                grads, image, boxes, box_index))
            if tf_worker is not None:
                contenders["tensorflow"] = tf_worker.contender(key, op)
        else:  # fwd+bwd w.r.t. the image through autograd
            def roi_ext_fb(img=image, g=grads, fmt="NHWC"):
                x = img.detach().requires_grad_(True)
                y = roi_ext.crop_and_resize(x, boxes, box_index, (ch, cw), data_format=fmt)
                return torch.autograd.grad(y, x, g)[0]

            contenders["roi_ext"] = local(roi_ext_fb)
            contenders["roi_ext_nchw"] = local(lambda: roi_ext_fb(image_nchw, grads_nchw, "NCHW"))
            if kornia_bwd_ok:
                def kornia_fb():
                    x = image_nchw.detach().requires_grad_(True)
                    y = kornia_call(x, pts, groups, crop, chunk)
                    return torch.autograd.grad(y, x, grads_kornia)[0]

                contenders["kornia"] = local(kornia_fb)
        m = measure(contenders, rounds=args.rounds, target_s=args.target_ms / 1e3,
                    max_reps=args.max_reps, warmup_reps=args.warmup)
        med = {name: v["median_ms"] for name, v in m.items()}
        ratios = {
            "tensorflow/roi_ext": ratio(med.get("tensorflow"), med["roi_ext"]),
            "kornia/roi_ext_nchw": ratio(med.get("kornia"), med.get("roi_ext_nchw")),
            "kornia/roi_ext": ratio(med.get("kornia"), med["roi_ext"]),
        }
        note = ""
        if op == "forward":
            note = " ".join(notes)
        elif op == "fwd+bwd" and use_kornia and not kornia_bwd_ok:
            note = (f"kornia skipped: its grad needs {n_boxes * per_box_bytes / 2**30:.1f} GiB "
                    f"> --kornia-bwd-max-gb {args.kornia_bwd_max_gb:g}")
        results.append({
            "bench": "crop_and_resize", "group": group, "image_shape": list(IMAGE_SHAPE), "layout": "NHWC",
            "boxes": n_boxes, "crop": [ch, cw], "threads": threads, "op": op, "method": "bilinear",
            "median_ms": med,
            "min_ms": {name: v["min_ms"] for name, v in m.items()},
            "samples_ms": {name: v["samples_ms"] for name, v in m.items()},
            "reps": {name: v["reps"] for name, v in m.items()},
            "ratios": ratios,
            "check": check if op == "forward" else {},
            "note": note,
        })
        row = (label, op, fmt_ms(med["roi_ext"]), fmt_ms(med.get("tensorflow")),
               fmt_ratio(ratios["tensorflow/roi_ext"]), fmt_ms(med.get("roi_ext_nchw")),
               fmt_ms(med.get("kornia")), fmt_ratio(ratios["kornia/roi_ext_nchw"]), note)
        rows.append(row)
        print(" | ".join(str(c) for c in row), flush=True)

    if tf_worker is not None:
        tf_worker.call(cmd="drop", key=key)


def build_cases(args):
    cases = []
    t = args.threads
    crop = (BASE_CROP, BASE_CROP)
    if "main" in args.only:
        cases.append(("main", BASE_BOXES, crop, t))
    if "boxes" in args.only:
        for n in ([100, 1000] if args.quick else [100, 300, 1000, 3000]):
            cases.append(("boxes", n, crop, t))
    if "crop" in args.only:
        for c in ([7, 28] if args.quick else [7, 14, 28]):
            cases.append(("crop", BASE_BOXES, (c, c), t))
    if "threads" in args.only:
        for th in args.thread_sweep:
            cases.append(("threads", BASE_BOXES, crop, th))
    # group by thread count so the TF worker restarts as rarely as possible
    return sorted(cases, key=lambda c: c[3] != t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny repetition counts and few sweep points (smoke test)")
    p.add_argument("--threads", type=int, default=core_count(),
                   help="threads (torch and TF intra-op) for all groups but 'threads' (default: usable cores)")
    p.add_argument("--thread-sweep", type=parse_int_list, default=[1, 2],
                   help="thread counts of the 'threads' group (default 1,2)")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups out of {','.join(GROUPS)}")
    p.add_argument("--out", help="write all medians (and samples) to this JSON file")
    p.add_argument("--tf-python", default=os.environ.get("TF_PYTHON", DEFAULT_TF_PYTHON),
                   help=f"python of the TensorFlow virtualenv (default {DEFAULT_TF_PYTHON} or $TF_PYTHON)")
    p.add_argument("--no-tf", action="store_true", help="skip TensorFlow")
    p.add_argument("--no-kornia", action="store_true", help="skip kornia")
    p.add_argument("--kornia-bwd-max-gb", type=float, default=2.0,
                   help="skip kornia fwd+bwd when its per-box image gradients exceed this (GiB, default 2)")
    p.add_argument("--kornia-chunk-gb", type=float, default=0.5,
                   help="kornia fwd+bwd runs in chunks of boxes whose gradients fit in this (GiB, default 0.5)")
    p.add_argument("--rounds", type=int, help="alternating rounds (default 5, --quick 2)")
    p.add_argument("--target-ms", type=float, help="time per contender per round (default 200, --quick 10)")
    p.add_argument("--warmup", type=int, help="warm-up calls per contender (default 2, --quick 1)")
    p.add_argument("--max-reps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in args.only if g not in GROUPS]
    if unknown:
        p.error(f"unknown group(s) {unknown}; choose from {GROUPS}")
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.target_ms = args.target_ms or (10.0 if args.quick else 200.0)
    args.warmup = args.warmup or (1 if args.quick else 2)
    if args.quick:
        args.max_reps = min(args.max_reps, 3)
    if not args.no_tf and not os.path.exists(args.tf_python):
        p.error(f"--tf-python {args.tf_python} not found (or pass --no-tf)")

    watch = Stopwatch()
    results, rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench_crop_and_resize_") as tmpdir:
        workers = Workers(args.tf_python, tmpdir)
        try:
            extra = {}
            if not args.no_tf:
                info = workers.get(args.threads).info
                extra["tensorflow"] = info["tensorflow"]
            info = machine_info(extra)
            print(f"# crop_and_resize benchmark: {machine_info_string(info)}")
            if kornia_crop_and_resize is None and not args.no_kornia:
                print("# kornia is not installed: its columns stay empty")
            print(f"# rounds={args.rounds} target/round={args.target_ms:.0f} ms threads={args.threads} "
                  f"groups={','.join(args.only)}{' (QUICK: smoke numbers, not measurements)' if args.quick else ''}")
            print("# columns: " + " | ".join(HEADERS), flush=True)
            payload = {"bench": "crop_and_resize", "machine": info, "args": vars(args),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results}
            for case in build_cases(args):
                run_case(*case, args=args, workers=workers, results=results, rows=rows, tmpdir=tmpdir)
                if args.out:
                    write_json(args.out, payload)
        finally:
            workers.close()
    print()
    print_table(HEADERS, rows)
    payload["elapsed_s"] = watch.elapsed()
    if args.out:
        write_json(args.out, payload)
        print(f"\nwrote {args.out}")
    print(f"elapsed {watch.elapsed():.1f} s")


if __name__ == "__main__":
    main()

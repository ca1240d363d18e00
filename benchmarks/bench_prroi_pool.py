#!/usr/bin/env python
"""Benchmark: roi_ext.prroi_pool (Precise RoI Pooling) against roi_ext.roi_align on
the CPU, on the Mask R-CNN box-head workload (not a test).

Workload (bench_roi_align.py's "maskrcnn" group): features [2,256,50,68] and
[1,256,100,136], 512 rois (log-uniform sizes 8-300 px, spatial_scale 1/4), 7x7 bins;
float32, contiguous and channels_last. roi_align runs with sampling_ratio 2 and
aligned=True (Mask R-CNN's setting) and with adaptive sampling (-1).

Timed, each as the median per call over alternating rounds (_bench_utils.measure):
  fwd           the forward
  fwd+bwd(x)    forward + gradient w.r.t. the features
  fwd+bwd(x,r)  forward + gradients w.r.t. the features and the roi coordinates
                (prroi_pool; roi_align with box_grad=True when this roi_ext has it)
torchvision.ops.roi_align's forward and fwd+bwd(x) are listed for scale when
torchvision is installed.

Examples:
  .venv/bin/python benchmarks/bench_prroi_pool.py
  .venv/bin/python benchmarks/bench_prroi_pool.py --threads 2 --out prroi_pool.json
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import roi_ext  # noqa: E402
from _bench_utils import (  # noqa: E402
    fmt_ms,
    fmt_ratio,
    local,
    machine_info,
    machine_info_string,
    measure,
    print_table,
    ratio,
    write_json,
)
from bench_roi_align import make_rois  # noqa: E402

try:
    import torchvision  # noqa: E402
except ImportError:  # pragma: no cover
    torchvision = None

OUTPUT_SIZE = (7, 7)
SPATIAL_SCALE = 0.25
SHAPES = ((2, 256, 50, 68), (1, 256, 100, 136))
NUM_ROIS = 512
HAS_BOX_GRAD = "box_grad" in inspect.signature(roi_ext.roi_align).parameters


def prroi(x, rois):
    return roi_ext.prroi_pool(x, rois, OUTPUT_SIZE, SPATIAL_SCALE)


def roi_align(sampling_ratio, box_grad=False):
    def op(x, rois):
        kwargs = {"box_grad": True} if box_grad else {}
        return roi_ext.roi_align(x, rois, OUTPUT_SIZE, SPATIAL_SCALE, sampling_ratio, True, **kwargs)

    return op


def tv_roi_align(x, rois):
    return torchvision.ops.roi_align(x, rois, OUTPUT_SIZE, SPATIAL_SCALE, 2, True)


def fwd(op, x, rois):
    return lambda: op(x, rois)


def fwd_bwd(op, x, rois, grad, wrt_rois):
    def call():
        xg = x.detach().requires_grad_(True)
        if wrt_rois:
            coords = rois[:, 1:].detach().requires_grad_(True)
            out = op(xg, torch.cat([rois[:, :1], coords], dim=1))
            return torch.autograd.grad(out, (xg, coords), grad)
        return torch.autograd.grad(op(xg, rois), xg, grad)[0]

    return call


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--target-ms", type=float, default=200.0)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info()
    print(machine_info_string(info))
    print(f"threads: {args.threads}; roi_align box_grad available: {HAS_BOX_GRAD}\n")

    gen = torch.Generator().manual_seed(0)
    rows, results = [], []
    for shape in SHAPES:
        for layout in ("contiguous", "channels_last"):
            x = torch.randn(shape, generator=gen)
            if layout == "channels_last":
                x = x.to(memory_format=torch.channels_last)
            rois = make_rois(shape[0], shape[2], shape[3], NUM_ROIS, gen)
            grad = torch.randn(NUM_ROIS, shape[1], *OUTPUT_SIZE, generator=gen)
            grad = grad.contiguous(memory_format=torch.channels_last if layout == "channels_last"
                                   else torch.contiguous_format)
            contenders = {
                "prroi_pool fwd": fwd(prroi, x, rois),
                "prroi_pool fwd+bwd(x)": fwd_bwd(prroi, x, rois, grad, False),
                "prroi_pool fwd+bwd(x,r)": fwd_bwd(prroi, x, rois, grad, True),
                "roi_align(sr=2) fwd": fwd(roi_align(2), x, rois),
                "roi_align(sr=2) fwd+bwd(x)": fwd_bwd(roi_align(2), x, rois, grad, False),
                "roi_align(sr=-1) fwd": fwd(roi_align(-1), x, rois),
                "roi_align(sr=-1) fwd+bwd(x)": fwd_bwd(roi_align(-1), x, rois, grad, False),
            }
            if HAS_BOX_GRAD:
                contenders["roi_align(sr=2) fwd+bwd(x,r)"] = fwd_bwd(roi_align(2, True), x, rois, grad, True)
                contenders["roi_align(sr=-1) fwd+bwd(x,r)"] = fwd_bwd(roi_align(-1, True), x, rois, grad, True)
            if torchvision is not None:
                contenders["torchvision roi_align(sr=2) fwd"] = fwd(tv_roi_align, x, rois)
                contenders["torchvision roi_align(sr=2) fwd+bwd(x)"] = fwd_bwd(tv_roi_align, x, rois, grad, False)
            timed = measure({k: local(v) for k, v in contenders.items()}, rounds=args.rounds,
                            target_s=args.target_ms / 1000.0)
            workload = f"{list(shape)} {layout}"
            ms = {k: v["median_ms"] for k, v in timed.items()}
            for what in ("fwd", "fwd+bwd(x)", "fwd+bwd(x,r)"):
                pr = ms.get(f"prroi_pool {what}")
                ra2 = ms.get(f"roi_align(sr=2) {what}")
                raa = ms.get(f"roi_align(sr=-1) {what}")
                rows.append((workload, what, fmt_ms(pr), fmt_ms(ra2), fmt_ratio(ratio(pr, ra2)), fmt_ms(raa),
                             fmt_ratio(ratio(pr, raa)), fmt_ms(ms.get(f"torchvision roi_align(sr=2) {what}"))))
            results.append({"shape": list(shape), "layout": layout, "num_rois": NUM_ROIS, "ms": ms})
            print(f"done: {workload}", flush=True)
    print()
    print_table(("workload", "timed", "prroi_pool ms", "roi_align sr=2 ms", "prroi/ra2", "roi_align sr=-1 ms",
                 "prroi/ra-1", "torchvision sr=2 ms"), rows)
    if args.out:
        write_json(args.out, {"machine": info, "threads": args.threads, "results": results})


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark: roi_ext.MultiScaleRoIAlign vs torchvision.ops.MultiScaleRoIAlign on the CPU,
alone and inside torchvision's Mask R-CNN training step (not a test).

Workloads (float32, both in this process, same torch thread count):
  box pooler   4 FPN levels of an 800 x 1000 image pair ([2, 256, 200, 250] ... [2, 256, 25, 32]),
               --box-rois rois (default 1000, 500 per image, all sizes), 7 x 7, sampling_ratio 2
  mask pooler  the same levels, --mask-rois rois (default 32), 14 x 14, sampling_ratio 2
  each NCHW (what the FPN produces) and channels_last; forward, and forward + backward
  (torch.autograd.grad w.r.t. every level with a fixed output gradient)
  Mask R-CNN   maskrcnn_resnet50_fpn(weights=None, weights_backbone=None), 2 images of
               --image-size, one training step (forward + losses + backward); the model
               with roi_ext's poolers vs the unmodified one (same weights, same inputs)

Method: warm-up, then --rounds alternating rounds (each contender timed over enough
repetitions to last about --target-ms per round); medians per call are reported, with
the speed-up torchvision / roi_ext.

  .venv/bin/python benchmarks/bench_multiscale.py
  .venv/bin/python benchmarks/bench_multiscale.py --quick
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torchvision  # noqa: E402

import roi_ext  # noqa: E402
from _bench_utils import fmt_ms, fmt_ratio, local, machine_info, machine_info_string, measure, print_table, ratio  # noqa: E402,E501

NAMES = ["0", "1", "2", "3"]


def pyramid(gen, image_hw, channels, batch, channels_last):
    x = OrderedDict()
    for i, name in enumerate(NAMES):
        s = 4 * 2**i
        t = torch.randn(batch, channels, -(-image_hw[0] // s), -(-image_hw[1] // s), generator=gen)
        x[name] = t.contiguous(memory_format=torch.channels_last) if channels_last else t
    return x


def boxes_for(gen, n, image_hw):
    """Proposal-like boxes: log-uniform sizes 16 .. 600 px (all four levels get rois)."""
    h, w = image_hw
    size = torch.exp(torch.empty(n, 2).uniform_(2.8, 6.4, generator=gen))
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) - size / 2
    return torch.cat([xy, xy + size], 1).clamp(min=0).minimum(torch.tensor([w, h, w, h]) - 1.0)


def pooler_rows(args):
    gen = torch.Generator().manual_seed(0)
    image_hw = (800, 1000)
    shapes = [image_hw, image_hw]
    rows = []
    for label, n_rois, out in (("box 7x7", args.box_rois, 7), ("mask 14x14", args.mask_rois, 14)):
        boxes = [boxes_for(gen, n_rois // 2, image_hw), boxes_for(gen, n_rois - n_rois // 2, image_hw)]
        for channels_last in (False, True):
            x = pyramid(gen, image_hw, 256, 2, channels_last)
            ours = roi_ext.MultiScaleRoIAlign(NAMES, out, 2)
            ref = torchvision.ops.MultiScaleRoIAlign(NAMES, out, 2)
            assert torch.equal(ours(x, boxes, shapes), ref(x, boxes, shapes))
            xg = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
            g = torch.randn(n_rois, 256, out, out, generator=gen)

            def fwd(m):
                return lambda: m(x, boxes, shapes)

            def fwd_bwd(m):
                return lambda: torch.autograd.grad(m(xg, boxes, shapes), list(xg.values()), g)

            layout = "channels_last" if channels_last else "NCHW"
            for mode, make in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
                res = measure({"tv": local(make(ref)), "ours": local(make(ours))}, rounds=args.rounds,
                              target_s=args.target_ms / 1000)
                tv, us = res["tv"]["median_ms"], res["ours"]["median_ms"]
                rows.append([f"{label}, {n_rois} rois", layout, mode, fmt_ms(tv), fmt_ms(us), fmt_ratio(ratio(tv, us))])
                print("  ".join(map(str, rows[-1])), flush=True)
    return rows


def mask_rcnn_rows(args):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    h, w = args.image_size
    ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=min(h, w), max_size=max(h, w))
    ours = copy.deepcopy(ref)
    for attr in ("box_roi_pool", "mask_roi_pool"):
        tv = getattr(ours.roi_heads, attr)
        setattr(ours.roi_heads, attr, roi_ext.MultiScaleRoIAlign(tv.featmap_names, tv.output_size, tv.sampling_ratio))
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, h, w, generator=gen) for _ in range(2)]
    targets = []
    for _ in images:
        xy = torch.rand(4, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        boxes = torch.cat([xy, xy + 40 + torch.rand(4, 2, generator=gen) * 200], 1)
        masks = torch.zeros(4, h, w, dtype=torch.uint8)
        for i, b in enumerate(boxes.round().long()):
            masks[i, b[1]:b[3], b[0]:b[2]] = 1
        targets.append({"boxes": boxes, "labels": torch.randint(1, 91, (4,), generator=gen), "masks": masks})

    def step(model):
        def run():
            torch.manual_seed(2)
            losses = model(images, targets)
            model.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
        return run

    ref.train()
    ours.train()
    res = measure({"tv": local(step(ref)), "ours": local(step(ours))}, rounds=args.rounds,
                  target_s=args.target_ms / 1000, warmup_reps=1)
    tv, us = res["tv"]["median_ms"], res["ours"]["median_ms"]
    row = [f"Mask R-CNN train step, 2 x {h}x{w}", "NCHW", "fwd+bwd", fmt_ms(tv), fmt_ms(us), fmt_ratio(ratio(tv, us))]
    print("  ".join(map(str, row)), flush=True)
    return [row]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--target-ms", type=float, default=300.0)
    p.add_argument("--box-rois", type=int, default=1000)
    p.add_argument("--mask-rois", type=int, default=32)
    p.add_argument("--image-size", type=int, nargs=2, default=(800, 1000), metavar=("H", "W"))
    p.add_argument("--only", default="pooler,maskrcnn", help="comma-separated: pooler, maskrcnn")
    p.add_argument("--quick", action="store_true", help="3 rounds, shorter rounds, 512x640 Mask R-CNN images")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.target_ms, args.image_size = 3, 100.0, (512, 640)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info_string(machine_info()), flush=True)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    rows = []
    only = set(args.only.split(","))
    if "pooler" in only:
        rows += pooler_rows(args)
    if "maskrcnn" in only:
        rows += mask_rcnn_rows(args)
    print()
    print_table(["workload", "layout", "pass", "torchvision ms", "roi_ext ms", "speed-up"], rows)


if __name__ == "__main__":
    main()

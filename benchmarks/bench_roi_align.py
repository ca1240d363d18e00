#!/usr/bin/env python
"""Benchmark: roi_ext.roi_align vs torchvision.ops.roi_align on the CPU (not a test).

Both run in this process with the same torch thread count (torch.set_num_threads).
Timed: the forward, and forward + backward w.r.t. the input (torch.autograd.grad with
a fixed random output gradient in the output's memory format, so nothing accumulates
into .grad between calls).

Workload groups (--only):
  maskrcnn  features [2,256,50,68] and [1,256,100,136], 512 rois, 7x7, sampling_ratio 2,
            aligned, spatial_scale 1/4; float32 and bfloat16; contiguous and channels_last
  rois      number of rois 64, 256, 1024, 4096 on [2,256,50,68] (float32, both layouts)
  channels  channels 16, 64, 256, 512 on [2,C,50,68], 512 rois (float32, both layouts)
  threads   thread counts from --thread-sweep on [2,256,50,68], 512 rois (float32, both layouts)
  fewrois   the mask-pooler regime: a large map [2,256,200,272] and 1, 2, 4, ..., 128 rois
            (float32, both layouts): roi_ext must not be slower than torchvision at any count

Reference for the speed-up column (torchvision / roi_ext): torchvision on the *contiguous
float32* tensor. torchvision makes a channels_last input contiguous internally, so for
channels_last rows it is also timed on the channels_last tensor itself (column
"tv(same in)"); its CPU kernel has no bfloat16, so bfloat16 rows time roi_ext alone and
compare it with torchvision float32.

Method: warm-up, then --rounds alternating rounds (each contender timed over enough
repetitions to last about --target-ms per round); medians per call are reported.

Examples:
  .venv/bin/python benchmarks/bench_roi_align.py --quick
  .venv/bin/python benchmarks/bench_roi_align.py --out roi_align.json
  .venv/bin/python benchmarks/bench_roi_align.py --only rois,threads --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torchvision  # noqa: E402

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

GROUPS = ("maskrcnn", "rois", "channels", "threads", "fewrois")
OUTPUT_SIZE = (7, 7)
SPATIAL_SCALE = 0.25
SAMPLING_RATIO = 2
ALIGNED = True
BASE_SHAPE = (2, 256, 50, 68)
BASE_ROIS = 512

HEADERS = ("workload", "op", "roi_ext ms", "torchvision ms", "tv/roi_ext", "tv(same in) ms", "check")


def make_rois(n: int, h: int, w: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """Random boxes in image coordinates (image = feature map / spatial_scale).

    Widths and heights log-uniform in [8, min(300, image side)] px; about 90% of the
    boxes are moved inside the image, the rest may stick out of it.
    """
    img_h, img_w = h / SPATIAL_SCALE, w / SPATIAL_SCALE
    lo = torch.log(torch.tensor(8.0))

    def sizes(side):
        hi = torch.log(torch.tensor(min(300.0, side)))
        return torch.exp(lo + (hi - lo) * torch.rand(k, generator=gen))

    bw, bh = sizes(img_w), sizes(img_h)
    cx = torch.rand(k, generator=gen) * img_w
    cy = torch.rand(k, generator=gen) * img_h
    x1, y1 = cx - bw / 2, cy - bh / 2
    inside = torch.rand(k, generator=gen) < 0.9
    x1 = torch.where(inside, x1.clamp(0, None).clamp(None, img_w - bw), x1)
    y1 = torch.where(inside, y1.clamp(0, None).clamp(None, img_h - bh), y1)
    idx = torch.randint(0, n, (k,), generator=gen).float()
    return torch.stack([idx, x1, y1, x1 + bw, y1 + bh], dim=1).contiguous()


def roi_ext_op(x, rois):
    return roi_ext.roi_align(x, rois, OUTPUT_SIZE, SPATIAL_SCALE, SAMPLING_RATIO, ALIGNED)


def tv_op(x, rois):
    return torchvision.ops.roi_align(x, rois, OUTPUT_SIZE, SPATIAL_SCALE, SAMPLING_RATIO, ALIGNED)


def fwd_bwd(op, x, rois, grad):
    def call():
        xg = x.detach().requires_grad_(True)
        out = op(xg, rois)
        return torch.autograd.grad(out, xg, grad)[0]

    return call


def check_case(x_case, x_ref, rois, dtype, layout):
    """Once per workload: do roi_ext and torchvision agree?"""
    notes = []
    out = roi_ext_op(x_case, rois)
    if dtype == torch.float32:
        ref = tv_op(x_ref, rois)
        fwd_equal = torch.equal(out, ref)
        if not fwd_equal:
            diff = (out - ref).abs().max().item()
            print(f"WARNING: float32 forward differs from torchvision ({layout}): max |diff| = {diff:.3g}",
                  flush=True)
        notes.append("fwd==" if fwd_equal else "FWD!=")
        g = torch.randn_like(ref)
        ga = fwd_bwd(roi_ext_op, x_case, rois, g.contiguous(memory_format=_fmt(out)))()
        gb = fwd_bwd(tv_op, x_ref, rois, g)()
        if torch.equal(ga, gb):
            notes.append("bwd==")
        else:
            d = (ga - gb).abs().max().item()
            scale = gb.abs().max().item() or 1.0
            notes.append(f"bwd~{d / scale:.0e}")
        return {"forward_equal": fwd_equal}, " ".join(notes)
    # bfloat16: the README promises float32 arithmetic rounded once at the end.
    ref = tv_op(x_case.float().contiguous(), rois).to(dtype)
    fwd_equal = torch.equal(out, ref)
    if not fwd_equal:
        d = (out.float() - ref.float()).abs().max().item()
        print(f"note: {dtype} forward != round(torchvision float32) ({layout}): max |diff| = {d:.3g}", flush=True)
    return {"forward_equal_rounded_f32": fwd_equal}, ("fwd==rnd(f32)" if fwd_equal else "fwd!=rnd(f32)")


def _fmt(t):
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def run_case(group, shape, k, dtype, layout, threads, args, results, rows):
    torch.set_num_threads(threads)
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(args.seed + 7919 * k + 31 * c + h)
    x_ref = torch.randn(shape, generator=gen)  # contiguous float32: torchvision's reference input
    rois = make_rois(n, h, w, k, gen)
    mf = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x_case = x_ref.to(dtype).contiguous(memory_format=mf)
    label = f"{group}: [{n},{c},{h},{w}] K={k} {str(dtype).replace('torch.', '')} {layout} t={threads}"

    check, check_note = check_case(x_case, x_ref, rois, dtype, layout)

    out_case = roi_ext_op(x_case, rois)
    g_case = torch.randn(out_case.shape, generator=gen).to(dtype).contiguous(memory_format=_fmt(out_case))
    g_ref = g_case.float().contiguous()
    g_same = g_case.float().contiguous(memory_format=_fmt(out_case))

    for op in ("forward", "fwd+bwd"):
        if op == "forward":
            contenders = {
                "roi_ext": local(lambda: roi_ext_op(x_case, rois)),
                "torchvision": local(lambda: tv_op(x_ref, rois)),
            }
            if dtype == torch.float32 and layout == "channels_last":
                contenders["torchvision_same_input"] = local(lambda: tv_op(x_case, rois))
        else:
            contenders = {
                "roi_ext": local(fwd_bwd(roi_ext_op, x_case, rois, g_case)),
                "torchvision": local(fwd_bwd(tv_op, x_ref, rois, g_ref)),
            }
            if dtype == torch.float32 and layout == "channels_last":
                contenders["torchvision_same_input"] = local(fwd_bwd(tv_op, x_case, rois, g_same))
        m = measure(contenders, rounds=args.rounds, target_s=args.target_ms / 1e3,
                    max_reps=args.max_reps, warmup_reps=args.warmup)
        med = {name: v["median_ms"] for name, v in m.items()}
        speedup = ratio(med["torchvision"], med["roi_ext"])
        results.append({
            "bench": "roi_align", "group": group, "shape": list(shape), "rois": k, "channels": c,
            "dtype": str(dtype).replace("torch.", ""), "layout": layout, "threads": threads, "op": op,
            "output_size": list(OUTPUT_SIZE), "sampling_ratio": SAMPLING_RATIO, "aligned": ALIGNED,
            "spatial_scale": SPATIAL_SCALE,
            "reference": "torchvision on the contiguous float32 tensor",
            "median_ms": med,
            "min_ms": {name: v["min_ms"] for name, v in m.items()},
            "samples_ms": {name: v["samples_ms"] for name, v in m.items()},
            "reps": {name: v["reps"] for name, v in m.items()},
            "speedup_torchvision_over_roi_ext": speedup,
            "check": check,
        })
        row = (label, op, fmt_ms(med["roi_ext"]), fmt_ms(med["torchvision"]), fmt_ratio(speedup),
               fmt_ms(med.get("torchvision_same_input")), check_note if op == "forward" else "")
        rows.append(row)
        print(" | ".join(str(c) for c in row), flush=True)


def build_cases(args):
    cases = []
    t = args.threads
    if "maskrcnn" in args.only:
        shapes = [BASE_SHAPE] if args.quick else [BASE_SHAPE, (1, 256, 100, 136)]
        for shape in shapes:
            for dtype in (torch.float32, torch.bfloat16):
                for layout in ("contiguous", "channels_last"):
                    cases.append(("maskrcnn", shape, BASE_ROIS, dtype, layout, t))
    if "rois" in args.only:
        for k in ([64, 1024] if args.quick else [64, 256, 1024, 4096]):
            for layout in ("contiguous", "channels_last"):
                cases.append(("rois", BASE_SHAPE, k, torch.float32, layout, t))
    if "channels" in args.only:
        for c in ([16, 256] if args.quick else [16, 64, 256, 512]):
            for layout in ("contiguous", "channels_last"):
                cases.append(("channels", (2, c, 50, 68), BASE_ROIS, torch.float32, layout, t))
    if "fewrois" in args.only:
        for k in ([1, 16] if args.quick else [1, 2, 4, 8, 16, 32, 64, 128]):
            for layout in ("contiguous", "channels_last"):
                cases.append(("fewrois", (2, 256, 200, 272), k, torch.float32, layout, t))
    if "threads" in args.only:
        for th in args.thread_sweep:
            for layout in ("contiguous", "channels_last"):
                cases.append(("threads", BASE_SHAPE, BASE_ROIS, torch.float32, layout, th))
    return cases


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny repetition counts and few sweep points (smoke test)")
    p.add_argument("--threads", type=int, default=core_count(),
                   help="torch threads for all groups but 'threads' (default: usable cores)")
    p.add_argument("--thread-sweep", type=parse_int_list, default=[1, 2],
                   help="thread counts of the 'threads' group (default 1,2)")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups out of {','.join(GROUPS)}")
    p.add_argument("--out", help="write all medians (and samples) to this JSON file")
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

    info = machine_info()
    print(f"# roi_align benchmark: {machine_info_string(info)}")
    print(f"# rounds={args.rounds} target/round={args.target_ms:.0f} ms threads={args.threads} "
          f"groups={','.join(args.only)}{' (QUICK: smoke numbers, not measurements)' if args.quick else ''}")
    print("# columns: " + " | ".join(HEADERS), flush=True)
    watch = Stopwatch()
    results, rows = [], []
    payload = {"bench": "roi_align", "machine": info, "args": {k: v for k, v in vars(args).items()},
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results}
    for case in build_cases(args):
        run_case(*case, args=args, results=results, rows=rows)
        if args.out:
            write_json(args.out, payload)
    print()
    print_table(HEADERS, rows)
    payload["elapsed_s"] = watch.elapsed()
    if args.out:
        write_json(args.out, payload)
        print(f"\nwrote {args.out}")
    print(f"elapsed {watch.elapsed():.1f} s")


if __name__ == "__main__":
    main()

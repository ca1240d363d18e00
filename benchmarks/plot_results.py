#!/usr/bin/env python
"""Plot the JSON written by bench_roi_align.py / bench_crop_and_resize.py (--out) as PNGs.

One figure per sweep, one panel per op, log-log axes, one line per contender (and layout):
  roi_align        time vs number of rois   (group "rois")      -> roi_align_vs_rois.png
                   time vs channels         (group "channels")  -> roi_align_vs_channels.png
  crop_and_resize  time vs number of boxes  (group "boxes")     -> crop_and_resize_vs_boxes.png
                   time vs crop pixels      (group "crop")      -> crop_and_resize_vs_crop.png

Usage:
  .venv/bin/python benchmarks/plot_results.py roi_align.json crop_and_resize.json --outdir plots/
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {  # contender -> (label, colour)
    "roi_ext": ("roi_ext", "tab:blue"),
    "torchvision": ("torchvision (contiguous f32)", "tab:orange"),
    "torchvision_same_input": ("torchvision (same input)", "tab:red"),
    "tensorflow": ("TensorFlow", "tab:orange"),
    "roi_ext_nchw": ("roi_ext NCHW", "tab:cyan"),
    "kornia": ("kornia (NCHW)", "tab:green"),
}
LINESTYLE = {"contiguous": "-", "channels_last": "--"}


def _xvalue(rec, xkey):
    if xkey == "crop_pixels":
        return rec["crop"][0] * rec["crop"][1]
    return rec[xkey]


def plot_sweep(data, group, xkey, xlabel, path, series_key):
    recs = [r for r in data["results"] if r["group"] == group]
    if not recs:
        return None
    ops = list(dict.fromkeys(r["op"] for r in recs))
    fig, axes = plt.subplots(1, len(ops), figsize=(5.2 * len(ops), 4.2), squeeze=False)
    for ax, op in zip(axes[0], ops):
        lines = {}
        for r in recs:
            if r["op"] != op:
                continue
            variant = r.get(series_key, "")
            for name, ms in r["median_ms"].items():
                if name == "torchvision" and variant == "channels_last":
                    continue  # the contiguous reference again; drawn once, from the contiguous rows
                lines.setdefault((name, variant), []).append((_xvalue(r, xkey), ms))
        for (name, variant), pts in sorted(lines.items()):
            pts.sort()
            label, colour = STYLE.get(name, (name, None))
            if variant and series_key == "layout":
                label += f" [{variant}]"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colour,
                    linestyle=LINESTYLE.get(variant, "-"), label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median time per call (ms)")
        ax.set_title(op)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    info = data.get("machine", {})
    threads = sorted({r["threads"] for r in recs})
    quick = " - QUICK SMOKE RUN, NOT A MEASUREMENT" if data.get("args", {}).get("quick") else ""
    fig.suptitle(f"{data['bench']} ({group} sweep), threads={threads}, {info.get('cpu', '?')}{quick}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="+", help="result files of the benchmark scripts")
    p.add_argument("--outdir", default=None, help="folder for the PNGs (default: next to the first JSON)")
    args = p.parse_args(argv)
    outdir = args.outdir or os.path.dirname(os.path.abspath(args.json[0]))
    os.makedirs(outdir, exist_ok=True)
    written = []
    for path in args.json:
        with open(path) as f:
            data = json.load(f)
        bench = data.get("bench")
        if bench == "roi_align":
            specs = [("rois", "rois", "number of rois", "layout"),
                     ("channels", "channels", "channels", "layout")]
        elif bench == "crop_and_resize":
            specs = [("boxes", "boxes", "number of boxes", None),
                     ("crop", "crop_pixels", "crop pixels (h x w)", None)]
        else:
            print(f"{path}: not a benchmark result (bench={bench!r}), skipped", file=sys.stderr)
            continue
        for group, xkey, xlabel, series_key in specs:
            out = plot_sweep(data, group, xkey, xlabel, os.path.join(outdir, f"{bench}_vs_{group}.png"),
                             series_key or "_none")
            if out:
                written.append(out)
            else:
                print(f"{path}: no '{group}' results, no plot", file=sys.stderr)
    for w in written:
        print("wrote", w)


if __name__ == "__main__":
    main()

"""GPU benchmarks: roi_ext against torchvision.ops.roi_align on CUDA, and
roi_ext's CropAndResize ops, with each op's time set against its memory floor.

Timing: CUDA events, warm-up, median of many repetitions; contenders are
alternated. The floor of an op is the fewest bytes it must move (each input
read once, each output written once) over the device's measured copy bandwidth.
Run on a GPU machine (benchmarks/gpu_check.sh does); prints a table last.
"""
import argparse
import json
import statistics

import torch

import roi_ext

try:
    import torchvision
except ImportError:  # pragma: no cover
    torchvision = None


def cuda_time(fn, reps=50, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def alternate(contenders, rounds=5, reps=20):
    """Median ms per contender over alternating rounds."""
    results = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            results[name].append(cuda_time(fn, reps=reps, warmup=2))
    return {name: statistics.median(v) for name, v in results.items()}


def copy_bandwidth():
    """Device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda").normal_()
    dst = torch.empty_like(src)
    ms = cuda_time(lambda: dst.copy_(src), reps=20)
    return 2 * src.numel() * 4 / (ms * 1e-3)


def rois_for(batch, height, width, scale, num, gen):
    img_h, img_w = height / scale, width / scale
    w = torch.rand(num, generator=gen) * 0.5 * img_w + 8
    h = torch.rand(num, generator=gen) * 0.5 * img_h + 8
    x1 = torch.rand(num, generator=gen) * (img_w - w)
    y1 = torch.rand(num, generator=gen) * (img_h - h)
    b = torch.randint(0, batch, (num,), generator=gen).float()
    return torch.stack([b, x1, y1, x1 + w, y1 + h], 1).cuda()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    bw = copy_bandwidth()
    rows = []

    def row(name, ms, floor_bytes, peer_ms=None):
        floor_ms = floor_bytes / bw * 1e3
        rows.append({"op": name, "ms": ms, "floor_ms": floor_ms, "of_floor": floor_ms / ms,
                     "peer_ms": peer_ms, "speedup": (peer_ms / ms) if peer_ms else None})

    for shape in ((2, 256, 50, 68), (1, 256, 100, 136)):
        for fmt in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(shape, device="cuda").contiguous(memory_format=fmt)
            rois = rois_for(shape[0], shape[2], shape[3], 0.25, 512, gen)
            args_ = ((7, 7), 0.25, 2, True)
            tag = f"roi_align {list(shape)} {'NHWC' if fmt == torch.channels_last else 'NCHW'}"
            out_bytes = 512 * shape[1] * 49 * 4
            # Floor: each roi reads at most its own area once; bounded by the map.
            in_bytes = min(x.numel() * 4, out_bytes * 4)
            fwd = alternate({"roi_ext": lambda: roi_ext.roi_align(x, rois, *args_),
                             "torchvision": lambda: torchvision.ops.roi_align(x, rois, *args_)})
            row(f"{tag} fwd", fwd["roi_ext"], in_bytes + out_bytes, fwd["torchvision"])
            g = torch.randn(512, shape[1], 7, 7, device="cuda").contiguous(memory_format=fmt)
            xr = x.clone().requires_grad_()

            def step(fn):
                xr.grad = None
                fn(xr, rois, *args_).backward(g)

            both = alternate({"roi_ext": lambda: step(roi_ext.roi_align),
                              "torchvision": lambda: step(torchvision.ops.roi_align)})
            row(f"{tag} fwd+bwd", both["roi_ext"], 2 * (in_bytes + out_bytes) + x.numel() * 4,
                both["torchvision"])
            torch.use_deterministic_algorithms(True)
            try:
                det = alternate({"roi_ext": lambda: step(roi_ext.roi_align)})
            finally:
                torch.use_deterministic_algorithms(False)
            row(f"{tag} fwd+bwd deterministic", det["roi_ext"], 2 * (in_bytes + out_bytes) + x.numel() * 4,
                both["torchvision"])

    image = torch.randn(4, 256, 256, 64, device="cuda")
    boxes = torch.rand(1000, 4, generator=gen).cuda()
    box_index = torch.randint(0, 4, (1000,), generator=gen, dtype=torch.int32).cuda()
    crops = roi_ext.crop_and_resize(image, boxes, box_index, (14, 14))
    grads = torch.randn_like(crops)
    crop_bytes = crops.numel() * 4
    t = alternate({"fwd": lambda: roi_ext.crop_and_resize(image, boxes, box_index, (14, 14))})
    row("crop_and_resize fwd [4,256,256,64] 1000x14x14", t["fwd"], 2 * crop_bytes)
    t = alternate({"gi": lambda: roi_ext.crop_and_resize_grad_image(grads, boxes, box_index, image.shape)})
    row("crop_and_resize grad_image", t["gi"], crop_bytes + image.numel() * 4)
    torch.use_deterministic_algorithms(True)
    try:
        t = alternate({"gi": lambda: roi_ext.crop_and_resize_grad_image(grads, boxes, box_index, image.shape)})
    finally:
        torch.use_deterministic_algorithms(False)
    row("crop_and_resize grad_image deterministic", t["gi"], crop_bytes + image.numel() * 4)
    t = alternate({"gb": lambda: roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index)}, reps=5)
    row("crop_and_resize grad_boxes", t["gb"], 2 * crop_bytes)
    # One box: its 14 x 14 x 64 terms are shared by a block (one thread per box before issue 14).
    t = alternate({"gb": lambda: roi_ext.crop_and_resize_grad_boxes(grads[:1], image, boxes[:1], box_index[:1])})
    row("crop_and_resize grad_boxes, 1 box", t["gb"], 2 * crop_bytes / 1000)

    print(f"\ndevice: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"torchvision {getattr(torchvision, '__version__', '-')}  copy bandwidth {bw / 1e12:.2f} TB/s")
    print(f"{'op':58s} {'roi_ext ms':>10s} {'tv ms':>8s} {'speed-up':>8s} {'floor ms':>8s} {'% floor':>7s}")
    for r in rows:
        peer = f"{r['peer_ms']:8.3f}" if r["peer_ms"] else f"{'-':>8s}"
        sp = f"{r['speedup']:7.2f}x" if r["speedup"] else f"{'-':>8s}"
        print(f"{r['op']:58s} {r['ms']:10.3f} {peer} {sp} {r['floor_ms']:8.3f} {100 * r['of_floor']:6.1f}%")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "bandwidth": bw, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

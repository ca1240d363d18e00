"""GPU checks of every roi_ext CUDA kernel, driven by benchmarks/gpu_check.sh.

  python benchmarks/gpu_checks.py sweep       # every op, dtype, method, layout, both backward paths
  python benchmarks/gpu_checks.py sync        # the sweep under torch.cuda.set_sync_debug_mode("error")
  python benchmarks/gpu_checks.py graph       # every op captured in a torch.cuda.graph, replayed, == eager

`sweep` is what the compute-sanitizer tools run (memcheck with PYTORCH_NO_CUDA_MEMORY_CACHING=1,
so every tensor is its own allocation and an overrun is not hidden inside a cached block;
initcheck; synccheck): small shapes, every kernel launched at least once per configuration,
including bad indices (which must read nothing), empty shapes and stride-0 gradients.
Exit status 0 when every check passed; failures are printed.
"""
import argparse
import itertools
import sys

import torch

import roi_ext

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
METHODS = ("bilinear", "nearest", "bilinear_v2")
IMAGE_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, F16, BF16, F32, F64)
OPS = torch.ops.roi_ext


def _det(flag):
    torch.use_deterministic_algorithms(flag)


def roi_align_cases():
    """(name, thunk) for every dtype x layout x mode x backward path of roi_align."""
    gen = torch.Generator().manual_seed(0)
    for dtype, layout, (aligned, mode, sr), det in itertools.product(
            (F16, BF16, F32, F64), ("contiguous", "channels_last", "strided"),
            ((False, 0, -1), (True, 0, 2), (False, 1, 2), (True, 1, 0)), (False, True)):
        x = torch.randn(2, 6, 11, 13, generator=gen).to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.cuda()
        if layout == "strided":
            x = x.transpose(2, 3).contiguous().transpose(2, 3)[:, ::2]
        rois = torch.tensor([[0.0, 1, 1, 9, 9], [1.0, -3, 2, 14, 11], [1.0, 5, 5, 4, 4], [2.0, 0, 0, 3, 3],
                             [float("nan"), 0, 0, 3, 3], [0.0, -1e9, -1e9, 1e9, 1e9]], device="cuda")
        rois = rois.to(dtype if dtype in (F32, F64) else F32)
        args = (1.0, 3, 4, sr, aligned, mode)
        channels = x.shape[1]

        def run(x=x, rois=rois, args=args, det=det, dtype=dtype, channels=channels):
            out = OPS.roi_align(x, rois, *args)
            # Gradients that are a function of the output: the same in eager and captured runs.
            for grad in (out * 0.5 + 1, torch.ones((), dtype=dtype, device="cuda").expand(out.shape)):
                OPS._roi_align_backward(grad, rois, args[0], args[1], args[2], 2, channels, 11, 13,
                                        args[3], args[4], args[5], det)
            OPS.roi_align(x, rois[:0], *args)  # no rois
            OPS._roi_align_backward(out[:0], rois[:0], args[0], args[1], args[2], 2, channels, 11, 13,
                                    args[3], args[4], args[5], det)
            return out

        yield f"roi_align {dtype} {layout} aligned={aligned} mode={mode} sr={sr} det={det}", run


def crop_and_resize_cases():
    gen = torch.Generator().manual_seed(1)
    for dtype, method, data_format, det in itertools.product(IMAGE_DTYPES, METHODS, ("NHWC", "NCHW", "NCHW-view"),
                                                             (False, True)):
        image = (torch.rand(3, 11, 13, 5, generator=gen) * 100).to(dtype).cuda()
        fmt = "NCHW" if data_format.startswith("NCHW") else "NHWC"
        if data_format == "NCHW":
            image = image.permute(0, 3, 1, 2).contiguous()
        elif data_format == "NCHW-view":
            image = image.permute(0, 3, 1, 2)
        boxes = torch.tensor([[0.1, 0.2, 0.8, 0.9], [-0.3, 0.5, 1.4, 0.2], [0.5, 0.5, 0.5, 0.5],
                              [float("nan"), 0, 1, 1], [0.0, 0.0, 1.0, 1.0], [0.2, 0.1, 0.9, 0.7]], device="cuda")
        index = torch.tensor([0, 2, 1, 0, 3, -1], device="cuda")  # 3 and -1: bad, read nothing
        b, h, w, d = (3, 11, 13, 5)
        out_dtype = F64 if dtype == F64 else F32

        def run(image=image, boxes=boxes, index=index, method=method, fmt=fmt, det=det, out_dtype=out_dtype):
            results = []
            for crop in ((4, 3), (1, 1)):
                out = OPS.crop_and_resize(image, boxes, index, *crop, method, -1.0, fmt)
                for grads in (out * 0.5 + 1, torch.ones((), dtype=out.dtype, device="cuda").expand(out.shape)):
                    for gdtype in (out_dtype, F16, BF16):
                        results.append(OPS.crop_and_resize_grad_image(grads, boxes, index, b, h, w, d, method, gdtype,
                                                                      fmt, det))
                    results.append(OPS.crop_and_resize_grad_boxes(grads, image, boxes, index, method, fmt))
                results.append(out)
            results.append(OPS.crop_and_resize(image, boxes[:0], index[:0], 2, 2, method, 0.0, fmt))
            return results

        yield f"crop_and_resize {dtype} {method} {data_format} det={det}", run


def prroi_pool_cases():
    """(name, thunk) for every dtype x layout x backward path of prroi_pool."""
    gen = torch.Generator().manual_seed(2)
    for dtype, layout, det in itertools.product((F16, BF16, F32, F64), ("contiguous", "channels_last", "strided"),
                                                (False, True)):
        x = torch.randn(2, 6, 11, 13, generator=gen).to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.cuda()
        if layout == "strided":
            x = x.transpose(2, 3).contiguous().transpose(2, 3)[:, ::2]
        rois = torch.tensor([[0.0, 1, 1, 9, 9], [1.0, -3, 2, 14, 11], [1.0, 5, 5, 4, 4], [2.0, 0, 0, 3, 3],
                             [float("nan"), 0, 0, 3, 3], [0.0, -1e9, -1e9, 1e9, 1e9], [1.0, 2.2, 3.1, 2.4, 3.3]],
                            device="cuda")
        rois = rois.to(dtype if dtype in (F32, F64) else F32)
        channels = x.shape[1]

        def run(x=x, rois=rois, det=det, dtype=dtype, channels=channels):
            out = OPS.prroi_pool(x, rois, 0.9, 3, 4)
            for grad in (out * 0.5 + 1, torch.ones((), dtype=dtype, device="cuda").expand(out.shape)):
                OPS._prroi_pool_backward(grad, rois, 0.9, 3, 4, 2, channels, 11, 13, det)
                OPS._prroi_pool_backward_rois(grad, x, rois, 0.9, 3, 4)
            OPS.prroi_pool(x, rois[:0], 0.9, 3, 4)  # no rois
            OPS._prroi_pool_backward(out[:0], rois[:0], 0.9, 3, 4, 2, channels, 11, 13, det)
            return out

        yield f"prroi_pool {dtype} {layout} det={det}", run


def every_case():
    yield from roi_align_cases()
    yield from crop_and_resize_cases()
    yield from prroi_pool_cases()


def sweep(sync_debug=False):
    failures = 0
    count = 0
    for name, run in every_case():
        count += 1
        try:
            if sync_debug:
                torch.cuda.set_sync_debug_mode("error")
            run()
        except Exception as e:  # noqa: BLE001 - report every failing configuration
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    print(f"{'sync-debug ' if sync_debug else ''}sweep: {count} configurations, {failures} failed")
    return failures


def graph():
    """Every case captured in a CUDA graph (no host synchronisation may happen during capture),
    replayed, and compared with its eager run."""
    failures = 0
    count = 0
    for name, run in every_case():
        count += 1
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                eager = run()  # warm-up outside the capture
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                captured = run()
            g.replay()
            torch.cuda.synchronize()
            eager = eager if isinstance(eager, list) else [eager]
            captured = captured if isinstance(captured, list) else [captured]
            for a, c in zip(eager, captured):
                torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5, equal_nan=True)
        except Exception as e:  # noqa: BLE001
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"graph capture: {count} configurations, {failures} failed")
    return failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("sweep", "sync", "graph"))
    args = parser.parse_args()
    assert torch.cuda.is_available(), "needs a GPU"
    # Deterministic paths are chosen by the ops' own flag here; keep torch's mode off so
    # torch's own ops (randn_like, ...) never complain.
    _det(False)
    if args.what == "sweep":
        failures = sweep()
    elif args.what == "sync":
        failures = sweep(sync_debug=True)
    else:
        failures = graph()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

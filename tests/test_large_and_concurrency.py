"""Large tensors (more than 2^31 elements: 64-bit index arithmetic everywhere),
ops called from several Python threads at once, and memory staying flat over
10,000 calls."""
import os
import threading

import numpy as np
import pytest
import torch

import roi_ext
import reference as ref


def available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


big_memory = pytest.mark.skipif(available_gib() < 12, reason="needs about 12 GiB of free memory")
SIDE = 46341  # SIDE * SIDE > 2^31


@big_memory
def test_crop_and_resize_on_an_image_of_more_than_2_31_pixels():
    image = torch.zeros(1, SIDE, SIDE, 1, dtype=torch.uint8)
    assert image.numel() > 2**31
    gen = torch.Generator().manual_seed(0)
    image[0, -40:, -40:, 0] = torch.randint(0, 255, (40, 40), generator=gen, dtype=torch.uint8)
    # Boxes in the bottom-right corner: every pixel read lies past element 2^31.
    boxes = torch.tensor([[0.9995, 0.9993, 0.99999, 1.0], [1.0, 0.9996, 0.9992, 0.99991]])
    box_index = torch.zeros(2, dtype=torch.int32)
    for method in ("bilinear", "nearest", "bilinear_v2"):
        out = roi_ext.crop_and_resize(image, boxes, box_index, (5, 6), method)
        expected = ref.crop_and_resize_forward(image.numpy(), boxes.numpy(), [0, 0], (5, 6), method, 0.0, np.float32)
        np.testing.assert_array_equal(out.numpy(), expected)
        assert out.abs().sum() > 0
    grads = torch.randn(2, 5, 6, 1, generator=gen)
    gb = roi_ext.crop_and_resize_grad_boxes(grads, image, boxes, box_index)
    np.testing.assert_array_equal(
        gb.numpy(), ref.crop_and_resize_grad_boxes(grads.numpy(), image.numpy(), boxes.numpy(), [0, 0], np.float32))


@big_memory
def test_roi_align_on_an_input_of_more_than_2_31_elements():
    x = torch.zeros(1, 1, SIDE, SIDE, dtype=torch.float16)
    assert x.numel() > 2**31
    gen = torch.Generator().manual_seed(1)
    x[0, 0, -64:, -64:] = torch.randn(64, 64, generator=gen).half()
    # Roi sizes divisible by the output size (and starts on a 1/4 grid) keep every
    # float32 step exact at both magnitudes, so the result on the big map equals
    # the result on the corner slice with shifted rois.
    off = SIDE - 64
    rois = torch.tensor([[0, off + 3.5, off + 10.25, off + 39.5, off + 62.25],
                         [0, off + 20.0, off + 1.5, off + 62.0, off + 33.5]])
    out = roi_ext.roi_align(x, rois, (4, 3), 1.0, 2, False)
    shifted = rois - torch.tensor([0, off, off, off, off], dtype=torch.float32)
    expected = roi_ext.roi_align(x[:, :, off:, off:].contiguous(), shifted, (4, 3), 1.0, 2, False)
    assert torch.equal(out, expected) and out.abs().sum() > 0


def test_ops_from_several_python_threads():
    gen = torch.Generator().manual_seed(2)
    inputs = []
    for _ in range(8):
        x = torch.randn(2, 16, 20, 20, generator=gen)
        rois = torch.cat([torch.randint(0, 2, (30, 1), generator=gen).float(),
                          torch.rand(30, 2, generator=gen) * 10, 10 + torch.rand(30, 2, generator=gen) * 9], 1)
        image = torch.randn(2, 20, 20, 8, generator=gen)
        boxes = torch.rand(30, 4, generator=gen)
        box_index = torch.randint(0, 2, (30,), generator=gen)
        inputs.append((x, rois, image, boxes, box_index))

    def run(x, rois, image, boxes, box_index):
        xg = x.clone().requires_grad_()
        out = roi_ext.roi_align(xg, rois, 4, 1.0, 2, True)
        out.backward(torch.ones_like(out))
        crops = roi_ext.crop_and_resize(image, boxes, box_index, (5, 5))
        gi = roi_ext.crop_and_resize_grad_image(crops, boxes, box_index, image.shape)
        gb = roi_ext.crop_and_resize_grad_boxes(crops, image, boxes, box_index)
        return out.detach(), xg.grad, crops, gi, gb

    expected = [run(*args) for args in inputs]
    errors = []
    results = {}

    def worker(i):
        try:
            for _ in range(20):
                got = run(*inputs[i])
                if not all(torch.equal(a, b) for a, b in zip(got, expected[i])):
                    results[i] = False
                    return
            results[i] = True
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(results.get(i) for i in range(len(inputs)))


def rss_mib():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer's quarantine holds freed memory on purpose")
def test_memory_stays_flat_over_10000_calls():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 16, 16, generator=gen, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 12.0, 10.0], [1, 3.0, 2.0, 15.0, 15.0]])
    image = torch.randn(2, 16, 16, 4, generator=gen)
    boxes = torch.rand(6, 4, generator=gen, requires_grad=True)
    box_index = torch.tensor([0, 1, 0, 1, 0, 1])

    def step():
        out = roi_ext.roi_align(x, rois, 3, 1.0, 2, True)
        crops = roi_ext.crop_and_resize(image, boxes, box_index, (4, 4))
        (out.sum() + crops.sum()).backward()

    for _ in range(500):
        step()
    before = rss_mib()
    for _ in range(10_000):
        step()
    grown = rss_mib() - before
    assert grown < 16, f"resident memory grew by {grown:.1f} MiB over 10,000 calls"

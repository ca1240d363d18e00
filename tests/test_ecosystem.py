"""roi_ext inside the PyTorch ecosystem: torch.compile (static and dynamic
shapes, forward and backward, no graph break), torch.export, TorchScript of
every module, autocast, DistributedDataParallel, and the docstring examples."""
import doctest
import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import roi_ext


class EveryOp(nn.Module):
    """A small model that uses every operator and module."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.crop = roi_ext.Cropping2D(((1, 1), (2, 0)))
        self.tv_pool = roi_ext.RoIAlign((4, 4), 0.5, 2, aligned=True)
        self.ms_pool = roi_ext.ROIAlign(3, 3, 0.5, 2)
        self.crop_resize = roi_ext.CropAndResize("bilinear", 0.5, "NCHW")
        self.crop1d = roi_ext.Cropping1D((1, 2))
        self.crop3d = roi_ext.Cropping3D(((0, 1), (1, 0), (0, 0)))

    def forward(self, x, rois, boxes, box_index):
        f = self.crop(self.conv(x))
        a = self.tv_pool(f, rois)
        b = self.ms_pool(f, rois)
        c = self.crop_resize(f, boxes, box_index, [5, 6])
        d = roi_ext.crop_and_resize(f.permute(0, 2, 3, 1), boxes, box_index, (3, 3), "nearest")
        e = self.crop1d(a.flatten(2))
        g = self.crop3d(b.unsqueeze(2).expand(-1, -1, 2, -1, -1))
        return a, b, c, d, e, g


def make_inputs(batch=2, height=14, width=15, num=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, height, width, generator=gen)
    rois = torch.cat([torch.randint(0, batch, (num, 1), generator=gen).float(),
                      torch.rand(num, 2, generator=gen) * 8, 8 + torch.rand(num, 2, generator=gen) * 12], 1)
    boxes = torch.rand(num, 4, generator=gen) * 1.2 - 0.1
    box_index = torch.randint(0, batch, (num,), generator=gen, dtype=torch.int32)
    return x, rois, boxes, box_index


def run_with_grads(model, inputs):
    model.zero_grad()
    x = inputs[0].clone().requires_grad_()
    boxes = inputs[2].clone().requires_grad_()
    outs = model(x, inputs[1], boxes, inputs[3])
    sum(o.float().pow(2).sum() for o in outs).backward()
    return [o.detach() for o in outs] + [x.grad, boxes.grad] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph_forward_and_backward(dynamic):
    torch._dynamo.reset()
    model = EveryOp()
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
    for seed, shape in enumerate([(2, 14, 15, 5), (3, 16, 13, 7)]):
        inputs = make_inputs(*shape, seed=seed)
        eager = run_with_grads(model, inputs)
        got = run_with_grads(compiled, inputs)
        for a, b in zip(got, eager):
            # roi_ext's ops are exact; the compiled convolution may round differently.
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_torch_export():
    model = EveryOp()
    inputs = make_inputs()
    program = torch.export.export(model, inputs)
    assert any("roi_ext" in str(node.target) for node in program.graph.nodes)
    for a, b in zip(program.module()(*inputs), model(*inputs)):
        torch.testing.assert_close(a, b)
    other = make_inputs(seed=3)
    for a, b in zip(program.module()(*other), model(*other)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("module", [
    roi_ext.RoIAlign((4, 4), 0.5, 2, aligned=True),
    roi_ext.RoIAlign(3, 1, -1),
    roi_ext.ROIAlign(3, 3, 0.5),
    roi_ext.CropAndResize("nearest", -1.0),
    roi_ext.CropAndResize("bilinear_v2", 0, "NCHW"),
    roi_ext.Cropping1D(1),
    roi_ext.Cropping2D(((1, 2), (0, 1))),
    roi_ext.Cropping3D(1, "channels_last"),
], ids=repr)
def test_torchscript_every_module(module):
    scripted = torch.jit.script(module)
    x, rois, boxes, box_index = make_inputs()
    if isinstance(module, roi_ext.RoIAlign):
        cases = [(x, rois), (x, [rois[rois[:, 0] == i, 1:] for i in range(2)])]
    elif isinstance(module, roi_ext.ROIAlign):
        cases = [(x, rois)]
    elif isinstance(module, roi_ext.CropAndResize):
        image = x if module.data_format == "NCHW" else x.permute(0, 2, 3, 1).contiguous()
        cases = [(image, boxes, box_index, [4, 3])]
    else:
        rank = {roi_ext.Cropping1D: 3, roi_ext.Cropping2D: 4, roi_ext.Cropping3D: 5}[type(module)]
        cases = [(torch.randn([2, 6, 7, 8, 3][:rank]),)]
    for args in cases:
        assert torch.equal(scripted(*args), module(*args))


def test_autocast_cpu_mixed_dtypes():
    """Under autocast the ops take mixed input/box dtypes, compute in float32 and
    return the dtype they give outside autocast (torchvision's roi_align: the
    input's dtype), never the autocast dtype."""
    x, rois, boxes, box_index = make_inputs()
    ref_ra = roi_ext.roi_align(x, rois, 4, 0.5, 2, True)
    ref_cr = roi_ext.crop_and_resize(x.permute(0, 2, 3, 1), boxes, box_index, (4, 4))
    xg = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ra = roi_ext.roi_align(xg, rois.bfloat16(), 4, 0.5, 2, True)  # float32 input, bfloat16 rois
        cr = roi_ext.crop_and_resize(x.bfloat16().permute(0, 2, 3, 1), boxes, box_index, (4, 4))  # the reverse
        ms = roi_ext.ROIAlign(3, 3, 0.5)(xg.bfloat16(), rois)
        grad_image = roi_ext.crop_and_resize_grad_image(torch.ones(5, 4, 4, 3).bfloat16(), boxes, box_index, (2, 8, 9, 3))
    assert ra.dtype == torch.float32  # the input's dtype, as torchvision
    assert cr.dtype == torch.float32  # crop_and_resize's rule: float32 for every image dtype but float64
    assert ms.dtype == torch.bfloat16
    assert grad_image.dtype == torch.float32
    torch.testing.assert_close(ra, roi_ext.roi_align(x, rois.bfloat16().float(), 4, 0.5, 2, True), rtol=0, atol=0)
    torch.testing.assert_close(ra, ref_ra, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(cr, ref_cr, rtol=5e-2, atol=5e-2)
    (ra.sum() + ms.float().sum()).backward()
    assert xg.grad.dtype == torch.float32 and torch.isfinite(xg.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float64 is left alone, as in torchvision
        assert roi_ext.roi_align(x.double(), rois.double(), 2).dtype == torch.float64


def test_autocast_matches_torchvision_dtype():
    tv = pytest.importorskip("torchvision")
    x, rois, _, _ = make_inputs()
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours = roi_ext.roi_align(x.to(dtype), rois.to(dtype), 3, 0.5, 2, True)
            theirs = tv.ops.roi_align(x.to(dtype), rois.to(dtype), 3, 0.5, 2, True)
        assert ours.dtype == theirs.dtype == dtype


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist
    from torch import nn
    import roi_ext

    def head():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = roi_ext.RoIAlign(3, 0.5, 2, aligned=True)
            self.fc = nn.Linear(4 * 9, 2)
        def forward(self, x, rois):
            return self.fc(self.pool(self.conv(x), rois).flatten(1))

    def data():
        g = torch.Generator().manual_seed(1)
        x = torch.randn(4, 3, 16, 16, generator=g)
        boxes = [torch.cat([torch.rand(3, 2, generator=g) * 10, 12 + torch.rand(3, 2, generator=g) * 18], 1)
                 for _ in range(4)]
        return x, boxes

    mode, out = sys.argv[1], sys.argv[2]
    x, boxes = data()
    if mode == "single":
        model = Head()
        model(x, boxes).pow(2).mean().backward()
        torch.save([p.grad for p in model.parameters()], out)
    else:
        rank = int(os.environ["RANK"])
        # A file rendezvous: no TCP port to race for.
        dist.init_process_group("gloo", init_method="file://" + sys.argv[3], rank=rank, world_size=2)
        model = nn.parallel.DistributedDataParallel(Head())
        part = slice(2 * rank, 2 * rank + 2)
        model(x[part], boxes[part]).pow(2).mean().backward()
        if rank == 0:
            torch.save([p.grad for p in model.module.parameters()], out)
        dist.barrier()
        dist.destroy_process_group()
        # gloo's threads occasionally abort ("terminate called without an active
        # exception") in interpreter teardown after the work is done: leave at once.
        sys.stdout.flush()
        os._exit(0)
    """
)


def test_distributed_data_parallel_matches_single_process(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    single = tmp_path / "single.pt"
    subprocess.run([sys.executable, str(script), "single", str(single)], check=True, timeout=300)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = tmp_path / "ddp.pt"
    rendezvous = tmp_path / "rendezvous"
    procs = [subprocess.Popen([sys.executable, str(script), "ddp", str(ddp), str(rendezvous)],
                              env={**env, "RANK": str(r)}) for r in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    for a, b in zip(torch.load(ddp), torch.load(single)):
        # Each rank averages over half of the batch; DDP averages the two halves.
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["roi_align", "crop_and_resize", "cropping"])
def test_docstring_examples(name):
    module = importlib.import_module("roi_ext." + name)  # roi_ext.roi_align is the function
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0

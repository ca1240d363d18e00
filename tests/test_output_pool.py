"""The opt-in output pool (ROI_EXT_CPU_CACHE_MB): off by default; when set, freed
large CPU outputs are reused by the next call of the same size, within the limit,
and results are unchanged. Runs in child processes (the pool reads the variable once)."""
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import json, torch, roi_ext
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 64, 64, 32, generator=g)
    boxes = torch.rand(300, 4, generator=g)
    bi = torch.randint(0, 2, (300,), generator=g)
    x = torch.randn(2, 32, 20, 24, generator=g).contiguous(memory_format=torch.channels_last)
    rois = torch.tensor([[0, 1.0, 1, 60, 70], [1, 5, 3, 40, 50]] * 100)
    a = roi_ext.crop_and_resize(img, boxes, bi, (14, 14))  # 300*14*14*32*4 = 7.5 MB
    ptr = a.data_ptr()
    ref = a.clone()
    del a
    b = roi_ext.crop_and_resize(img, boxes, bi, (14, 14))
    r = roi_ext.roi_align(x, rois, 7, 0.25, 2, True)  # channels_last output, 2.5 MB
    out = {"reused": b.data_ptr() == ptr, "equal": bool(torch.equal(b, ref)),
           "roi_align_channels_last": r.is_contiguous(memory_format=torch.channels_last),
           "roi_align": r.double().sum().item(), "crop": b.double().sum().item()}
    print(json.dumps(out))
    """
)


def run(env_value):
    env = {k: v for k, v in os.environ.items() if k != "ROI_EXT_CPU_CACHE_MB"}
    if env_value is not None:
        env["ROI_EXT_CPU_CACHE_MB"] = env_value
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir(), timeout=300)
    assert out.returncode == 0, out.stderr
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pool_is_opt_in_and_changes_no_result():
    off = run(None)
    on = run("64")
    assert on["reused"], "with ROI_EXT_CPU_CACHE_MB set, a freed output is reused by the next call of its size"
    assert on["equal"] and off["equal"]
    assert on["roi_align_channels_last"] and off["roi_align_channels_last"]
    assert on["roi_align"] == off["roi_align"] and on["crop"] == off["crop"]

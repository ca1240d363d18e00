"""torchvision's own RoIAlign tests, ported to run against roi_ext (issue 13: "torchvision's
own roi_align tests would pass with roi_ext swapped in").

Upstream: repository pytorch/vision, file test/test_ops.py, at commit
11927fa16e669c290927a764690ecb21b0b15aea (classes ``RoIOpTester`` and ``TestRoIAlign``, the
helpers ``bilinear_interpolate``, ``DeterministicGuard``, ``RoIOpTesterModuleWrapper``,
``PoolWrapper``, ``_helper_boxes_shape`` and ``_helper_jit_boxes_list``), plus the module-level
``test_roi_opcheck`` of a later version of the same file (the version with the
``@pytest.mark.opcheck_only_one()`` marks; the code index that served it does not name its
commit). Commit 00673be3960268a837860cd6a05373d9861221d3 has the same RoIAlign cases without
``test_autocast_cpu``. The cases, inputs, tolerances and expectations are torchvision's; the code
is written anew, with the op under test being ``roi_ext.roi_align`` / ``roi_ext.RoIAlign``.

Ported cases (upstream name -> here):
  RoIOpTester/TestRoIAlign.test_forward   -> test_forward (every aligned x dtype x layout x
                                             deterministic x device; layouts add channels_last
                                             and dtypes add bfloat16, see below)
  TestRoIAlign.test_autocast (CUDA)       -> test_autocast          (skips without a GPU)
  TestRoIAlign.test_autocast_cpu          -> test_autocast_cpu
  TestRoIAlign.test_backward (gradcheck, eager and scripted)
                                          -> test_backward
  RoIOpTester.test_is_leaf_node           -> test_is_leaf_node (torchvision's
                                             get_graph_node_names; skips without torchvision)
                                             and test_is_leaf_node_plain_fx (same property,
                                             plain torch.fx, runs everywhere)
  RoIOpTester.test_torch_fx_trace         -> test_torch_fx_trace
  RoIOpTester.test_mps_error_inputs       -> test_mps_error_inputs  (skipped: no MPS kernels)
  TestRoIAlign.test_boxes_shape           -> test_boxes_shape
  TestRoIAlign.test_jit_boxes_list        -> test_jit_boxes_list
  TestRoIAlign.test_qroialign             -> test_qroialign          (skipped: no quantized
                                             kernels) + test_quantized_input_is_rejected
  TestRoIAlign.test_qroi_align_multiple_images
                                          -> test_qroi_align_multiple_images (skipped, same)
  test_roi_opcheck (roi_align entries)    -> test_roi_opcheck
  (sanity of the port's reference)        -> test_reference_matches_torchvision (skips without
                                             torchvision)

Deliberate differences of roi_ext (SPEC.md Part A, README "Errors"), kept as cases that assert
roi_ext's documented behaviour:
  * float16/bfloat16 are computed in float32 and rounded once (SPEC A3). torchvision's reference
    is evaluated in the half dtype itself (per-operation rounding, mimicking torchvision's
    kernel); here it is evaluated in float64 and rounded once, with torchvision's tolerances.
  * bfloat16 inputs are accepted outside autocast (torchvision's CPU kernel is dispatched for
    float16/32/64 only), so test_forward also covers bfloat16, with the tolerance torchvision
    uses for bfloat16 under autocast (5e-3).
  * bad ``boxes`` shapes raise ``ValueError`` naming the argument (README "Errors"), where
    torchvision's ``check_roi_boxes_shape`` raises ``AssertionError``.
"""
import math

import pytest
import torch
from torch import Tensor, nn
from torch.autograd import gradcheck
from typing import List

import roi_ext

try:  # torchvision is optional: only the cases that use torchvision itself need it
    import torchvision
    from torchvision.models.feature_extraction import get_graph_node_names
except ImportError:  # pragma: no cover - CI also runs without torchvision
    torchvision = None
    get_graph_node_names = None

pytestmark = [
    # torchvision's tests script the op; torch >= 2.13 flags torch.jit.script as deprecated.
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
]

needs_torchvision = pytest.mark.skipif(torchvision is None, reason="torchvision is not installed")


def _cuda_usable() -> bool:
    return torch.cuda.is_available() and torch._C._dispatch_has_kernel_for_dispatch_key(
        "roi_ext::roi_align", "CUDA"
    )


needs_cuda = pytest.mark.skipif(not _cuda_usable(), reason="no CUDA device (or roi_ext built without CUDA)")
needs_mps = pytest.mark.skip(reason="roi_ext has no MPS kernels")


def cpu_and_cuda():
    return ("cpu", pytest.param("cuda", marks=needs_cuda))


def cpu_and_cuda_and_mps():
    return cpu_and_cuda() + (pytest.param("mps", marks=needs_mps),)


# torchvision's optests list (test_roi_opcheck runs opcheck with these utilities).
OPTESTS = ["test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"]

# The rois of torchvision's forward tests (xyxy after the batch index).
FORWARD_ROIS = [[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]]
BACKWARD_ROIS = [[0, 0, 0, 4, 4], [0, 0, 2, 3, 4], [0, 2, 2, 4, 4]]


class DeterministicGuard:
    """Sets torch.use_deterministic_algorithms for a block and restores the previous setting."""

    def __init__(self, deterministic, *, warn_only=False):
        self.deterministic = deterministic
        self.warn_only = warn_only

    def __enter__(self):
        self._saved = (torch.are_deterministic_algorithms_enabled(),
                       torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.warn_only)

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self._saved[0], warn_only=self._saved[1])


class RoIOpTesterModuleWrapper(nn.Module):
    """torchvision's wrapper for the fx-leaf test: calls the op, returns nothing."""

    def __init__(self, obj):
        super().__init__()
        self.layer = obj
        self.n_inputs = 2

    def forward(self, a, b):
        self.layer(a, b)


class PoolWrapper(nn.Module):
    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, imgs: Tensor, boxes: List[Tensor]) -> Tensor:
        return self.pool(imgs, boxes)


# ---------------------------------------------------------------------------------------------
# The reference: torchvision's pure-Python RoIAlign (bilinear_interpolate with border snapping,
# adaptive grid ceil(bin size)), vectorised over channels, evaluated in float64.
# ---------------------------------------------------------------------------------------------
def bilinear_interpolate(data, y, x, snap_border=False):
    """data: [C, H, W]; the value at (y, x) of every channel, torchvision's rule: coordinates
    in (-1, 0] snap to 0 and in [size-1, size) to size-1; corners outside contribute 0."""
    height, width = data.shape[-2:]
    if snap_border:
        if -1 < y <= 0:
            y = 0
        elif height - 1 <= y < height:
            y = height - 1
        if -1 < x <= 0:
            x = 0
        elif width - 1 <= x < width:
            x = width - 1

    y_low, x_low = int(math.floor(y)), int(math.floor(x))
    y_high, x_high = y_low + 1, x_low + 1
    wy_h, wx_h = y - y_low, x - x_low
    wy_l, wx_l = 1 - wy_h, 1 - wx_h

    val = torch.zeros(data.shape[0], dtype=data.dtype, device=data.device)
    for wx, xp in ((wx_l, x_low), (wx_h, x_high)):
        for wy, yp in ((wy_l, y_low), (wy_h, y_high)):
            if 0 <= yp < height and 0 <= xp < width:
                val += wx * wy * data[:, yp, xp]
    return val


def expected_fn(in_data, rois, pool_h, pool_w, spatial_scale=1, sampling_ratio=-1, aligned=False,
                device=None, dtype=torch.float64):
    """torchvision's TestRoIAlign.expected_fn. Computed in float64 whatever the input dtype
    (roi_ext computes half types in float32 and rounds once, SPEC A3); `dtype` is the dtype of
    the returned tensor."""
    if device is None:
        device = torch.device("cpu")
    data = in_data.detach().to(device="cpu", dtype=torch.float64)
    rois = rois.detach().to(device="cpu", dtype=torch.float64)
    n_channels = data.size(1)
    out_data = torch.zeros(rois.size(0), n_channels, pool_h, pool_w, dtype=torch.float64)
    offset = 0.5 if aligned else 0.0

    for r, roi in enumerate(rois.tolist()):
        batch_idx = int(roi[0])
        j_begin, i_begin, j_end, i_end = (c * spatial_scale - offset for c in roi[1:])
        bin_h = (i_end - i_begin) / pool_h
        bin_w = (j_end - j_begin) / pool_w
        plane = data[batch_idx]
        for i in range(pool_h):
            start_h = i_begin + i * bin_h
            grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bin_h))
            for j in range(pool_w):
                start_w = j_begin + j * bin_w
                grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bin_w))
                val = torch.zeros(n_channels, dtype=torch.float64)
                for iy in range(grid_h):
                    y = start_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = start_w + (ix + 0.5) * bin_w / grid_w
                        val += bilinear_interpolate(plane, y, x, snap_border=True)
                out_data[r, :, i, j] = val / (grid_h * grid_w)
    return out_data.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# The op under test (torchvision's TestRoIAlign.fn / make_obj / get_script_fn)
# ---------------------------------------------------------------------------------------------
def fn(x, rois, pool_h, pool_w, spatial_scale=1, sampling_ratio=-1, aligned=False):
    return roi_ext.RoIAlign((pool_h, pool_w), spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                            aligned=aligned)(x, rois)


def make_obj(pool_h=5, pool_w=5, spatial_scale=1, sampling_ratio=-1, aligned=False, wrap=False):
    obj = roi_ext.RoIAlign((pool_h, pool_w), spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                           aligned=aligned)
    return RoIOpTesterModuleWrapper(obj) if wrap else obj


def get_script_fn(rois, pool_size):
    scripted = torch.jit.script(roi_ext.roi_align)
    return lambda x: scripted(x, rois, pool_size)


def _seed(*key) -> torch.Generator:
    return torch.Generator().manual_seed(abs(hash(tuple(str(k) for k in key))) % 2**31)


def _layout(x, layout):
    if layout == "transposed":  # torchvision's contiguous=False: x.permute(0, 1, 3, 2)
        return x.permute(0, 1, 3, 2)
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _forward_case(device, layout, x_dtype, rois_dtype=None, deterministic=False, aligned=False):
    """torchvision's RoIOpTester.test_forward for RoIAlign."""
    rois_dtype = x_dtype if rois_dtype is None else rois_dtype
    tol = 1e-5
    if x_dtype is torch.half:
        tol = 4e-3
    elif x_dtype is torch.bfloat16:
        tol = 5e-3

    pool_size = 5
    n_channels = 2 * (pool_size**2)
    gen = _seed("forward", device, layout, x_dtype, rois_dtype, deterministic, aligned)
    x = torch.rand(2, n_channels, 10, 10, dtype=torch.float64, generator=gen).to(device=device, dtype=x_dtype)
    x = _layout(x, layout)
    rois = torch.tensor(FORWARD_ROIS, dtype=rois_dtype, device=device)

    with DeterministicGuard(deterministic):
        y = fn(x, rois, pool_size, pool_size, spatial_scale=1, sampling_ratio=-1, aligned=aligned)
    # torchvision: "the following should be true whether we're running an autocast test or not."
    assert y.dtype == x.dtype
    gt_y = expected_fn(x, rois, pool_size, pool_size, spatial_scale=1, sampling_ratio=-1, aligned=aligned,
                       device=device)
    torch.testing.assert_close(gt_y.to(y), y, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deterministic", (True, False))
@pytest.mark.parametrize("layout", ("contiguous", "transposed", "channels_last"))
@pytest.mark.parametrize(
    "x_dtype",
    # bfloat16: not in torchvision's list (its kernels have no bfloat16 outside autocast);
    # roi_ext accepts it (SPEC A3), checked with torchvision's bfloat16 tolerance.
    (torch.float16, torch.bfloat16, torch.float32, torch.float64),
    ids=str,
)
@pytest.mark.parametrize("device", cpu_and_cuda_and_mps())
@pytest.mark.parametrize("aligned", (True, False))
def test_forward(device, layout, deterministic, aligned, x_dtype):
    if deterministic and device == "cpu":
        pytest.skip("cpu is always deterministic, don't retest")  # as torchvision (and SPEC A15)
    _forward_case(device, layout, x_dtype, deterministic=deterministic, aligned=aligned)


@needs_cuda
@pytest.mark.parametrize("rois_dtype", (torch.float, torch.half), ids=str)
@pytest.mark.parametrize("x_dtype", (torch.float, torch.half), ids=str)
@pytest.mark.parametrize("deterministic", (True, False))
@pytest.mark.parametrize("aligned", (True, False))
def test_autocast(aligned, deterministic, x_dtype, rois_dtype):
    with torch.autocast("cuda"):  # torchvision: torch.cuda.amp.autocast() (float16)
        _forward_case("cuda", "transposed", x_dtype, rois_dtype, deterministic=deterministic, aligned=aligned)


@pytest.mark.parametrize("rois_dtype", (torch.float, torch.bfloat16), ids=str)
@pytest.mark.parametrize("x_dtype", (torch.float, torch.bfloat16), ids=str)
@pytest.mark.parametrize("deterministic", (True, False))
@pytest.mark.parametrize("aligned", (True, False))
def test_autocast_cpu(aligned, deterministic, x_dtype, rois_dtype):
    with torch.autocast("cpu"):  # torchvision: torch.cpu.amp.autocast() (bfloat16)
        _forward_case("cpu", "transposed", x_dtype, rois_dtype, deterministic=deterministic, aligned=aligned)


# ---------------------------------------------------------------------------------------------
# Backward: gradcheck of the eager module and of the scripted function
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deterministic", (True, False))
@pytest.mark.parametrize("contiguous", (True, False))
@pytest.mark.parametrize("device", cpu_and_cuda_and_mps())
@pytest.mark.parametrize("seed", range(10))
def test_backward(seed, device, contiguous, deterministic):
    if deterministic and device == "cpu":
        pytest.skip("cpu is always deterministic, don't retest")
    atol = 1e-05
    dtype = torch.float64
    pool_size = 2
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 2 * (pool_size**2), 5, 5, dtype=dtype, generator=gen).to(device).requires_grad_()
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    rois = torch.tensor(BACKWARD_ROIS, dtype=dtype, device=device)

    def func(z):
        return fn(z, rois, pool_size, pool_size, spatial_scale=1, sampling_ratio=1)

    script_func = get_script_fn(rois, pool_size)

    with DeterministicGuard(deterministic):
        assert gradcheck(func, (x,), atol=atol)
    assert gradcheck(script_func, (x,), atol=atol)


@needs_mps
def test_mps_error_inputs():
    # torchvision checks that its MPS backward refuses float16; roi_ext has no MPS backend.
    pass


# ---------------------------------------------------------------------------------------------
# torch.fx: the op is a leaf (one node), and a traced module gives the eager result
# ---------------------------------------------------------------------------------------------
@needs_torchvision
@pytest.mark.parametrize("device", cpu_and_cuda())
def test_is_leaf_node(device):
    op_obj = make_obj(wrap=True).to(device=device)
    graph_node_names = get_graph_node_names(op_obj)

    assert len(graph_node_names) == 2
    assert len(graph_node_names[0]) == len(graph_node_names[1])
    assert len(graph_node_names[0]) == 1 + op_obj.n_inputs


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_is_leaf_node_plain_fx(device):
    # The property torchvision's test checks, without torchvision's tracer: tracing the wrapper
    # records the inputs and exactly one call of roi_ext's roi_align, nothing from inside it.
    op_obj = make_obj(wrap=True).to(device=device)
    graph = torch.fx.symbolic_trace(op_obj).graph
    nodes = [n for n in graph.nodes if n.op != "output"]
    assert len(nodes) == 1 + op_obj.n_inputs, graph
    calls = [n for n in nodes if n.op != "placeholder"]
    assert len(calls) == 1 and calls[0].op == "call_function", graph
    assert calls[0].target is roi_ext.roi_align, graph


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_torch_fx_trace(device, x_dtype=torch.float, rois_dtype=torch.float):
    op_obj = make_obj().to(device=device)
    graph_module = torch.fx.symbolic_trace(op_obj)
    pool_size = 5
    n_channels = 2 * (pool_size**2)
    x = torch.rand(2, n_channels, 5, 5, dtype=x_dtype, generator=_seed("fx")).to(device)
    rois = torch.tensor(FORWARD_ROIS, dtype=rois_dtype, device=device)
    output_gt = op_obj(x, rois)
    assert output_gt.dtype == x.dtype
    output_fx = graph_module(x, rois)
    assert output_fx.dtype == x.dtype
    tol = 1e-5
    torch.testing.assert_close(output_gt, output_fx, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------
# Boxes: shapes and TorchScript with a list of boxes
# ---------------------------------------------------------------------------------------------
def test_boxes_shape():
    # torchvision expects AssertionError (torch._assert in check_roi_boxes_shape); roi_ext's
    # Python API raises ValueError naming the argument (README "Errors"): asserted here.
    # Boxes as Tensor[N, 5], given 4 columns:
    a = torch.linspace(1, 8 * 8, 8 * 8).reshape(1, 1, 8, 8)
    boxes = torch.tensor([[0, 0, 3, 3]], dtype=a.dtype)
    with pytest.raises(ValueError, match="boxes"):
        roi_ext.roi_align(a, boxes, output_size=(2, 2))
    with pytest.raises(ValueError, match="boxes"):
        roi_ext.RoIAlign((2, 2), 1.0, -1)(a, boxes)

    # Boxes as List[Tensor[N, 4]], given 3 columns (torchvision's test calls ops.roi_pool here
    # for every op; the roi_align case is what it means to check).
    boxes = torch.tensor([[0, 0, 3]], dtype=a.dtype)
    with pytest.raises(ValueError, match="boxes"):
        roi_ext.roi_align(a, [boxes], output_size=(2, 2))
    with pytest.raises(ValueError, match="boxes"):
        roi_ext.RoIAlign((2, 2), 1.0, -1)(a, [boxes])


def test_jit_boxes_list():
    model = PoolWrapper(roi_ext.RoIAlign(output_size=[3, 3], spatial_scale=1.0, sampling_ratio=-1))
    x = torch.rand(2, 1, 10, 10, generator=_seed("jit"))
    roi = torch.tensor(FORWARD_ROIS, dtype=torch.float).t()  # 5 boxes of 4 coordinates
    rois = [roi, roi]
    scripted = torch.jit.script(model)
    y = scripted(x, rois)
    assert y.shape == (10, 1, 3, 3)
    torch.testing.assert_close(y, model(x, rois), rtol=0, atol=0)  # scripted == eager


# ---------------------------------------------------------------------------------------------
# Quantized RoIAlign: not supported by roi_ext
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("qdtype", (torch.qint8, torch.quint8, torch.qint32), ids=str)
@pytest.mark.parametrize("scale, zero_point", ((1, 0), (2, 10), (0.1, 50)))
@pytest.mark.parametrize("aligned", (True, False))
def test_qroialign(aligned, scale, zero_point, qdtype):
    pytest.skip("roi_ext has no quantized RoIAlign kernel (dtypes: float16, bfloat16, float32, float64)")


def test_qroi_align_multiple_images():
    pytest.skip("roi_ext has no quantized RoIAlign kernel, so no 'one image per batch' rule to check")


def test_quantized_input_is_rejected():
    # Not from torchvision: the quantized case above is unsupported, so it must fail loudly.
    x = torch.randint(50, 100, size=(1, 2, 10, 10), generator=_seed("q")).to(torch.float)
    qx = torch.quantize_per_tensor(x, scale=1.0, zero_point=0, dtype=torch.quint8)
    rois = torch.tensor([[0, 0, 0, 4, 4]], dtype=torch.float)
    with pytest.raises((NotImplementedError, RuntimeError, TypeError, ValueError)):
        roi_ext.roi_align(qx, rois, output_size=5)


# ---------------------------------------------------------------------------------------------
# opcheck (torchvision's test_roi_opcheck, roi_align entries)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("requires_grad", (True, False))
@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", (torch.float16, torch.float32, torch.float64), ids=str)
def test_roi_opcheck(dtype, device, requires_grad):
    rois = torch.tensor(FORWARD_ROIS, dtype=dtype, device=device, requires_grad=requires_grad)
    pool_size = 5
    num_channels = 2 * (pool_size**2)
    x = torch.rand(2, num_channels, 10, 10, dtype=torch.float64, generator=_seed("opcheck", dtype))
    x = x.to(device=device, dtype=dtype)
    kwargs = dict(rois=rois, spatial_scale=1, pooled_height=pool_size, pooled_width=pool_size,
                  sampling_ratio=-1, aligned=True,
                  roi_end_mode=0)  # roi_ext's extra argument; 0 is torchvision's convention
    torch.library.opcheck(torch.ops.roi_ext.roi_align.default, args=(x,), kwargs=kwargs, test_utils=OPTESTS)


# ---------------------------------------------------------------------------------------------
# The port's reference against torchvision itself (where installed)
# ---------------------------------------------------------------------------------------------
@needs_torchvision
@pytest.mark.parametrize("aligned", (True, False))
def test_reference_matches_torchvision(aligned):
    x = torch.rand(2, 6, 10, 10, dtype=torch.float64, generator=_seed("ref", aligned))
    rois = torch.tensor(FORWARD_ROIS, dtype=torch.float64)
    ref = expected_fn(x, rois, 5, 5, aligned=aligned)
    tv = torchvision.ops.RoIAlign((5, 5), spatial_scale=1, sampling_ratio=-1, aligned=aligned)(x, rois)
    torch.testing.assert_close(ref, tv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fn(x, rois, 5, 5, aligned=aligned), tv, rtol=0, atol=0)

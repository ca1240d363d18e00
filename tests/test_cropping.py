"""Cropping1D/2D/3D against Keras 3 golden data (tests/data/keras_cropping.json,
made by tests/data/generate_keras_cropping.py), plus views, autograd, layouts,
torch.compile, TorchScript and the error matrix."""
import ast
import json
import re
import pathlib

import numpy as np
import pytest
import torch

import roi_ext

DATA = pathlib.Path(__file__).parent / "data" / "keras_cropping.json"
GOLDEN = json.loads(DATA.read_text()) if DATA.exists() else {"cases": [], "errors": []}
MODULES = {"Cropping1D": roi_ext.Cropping1D, "Cropping2D": roi_ext.Cropping2D, "Cropping3D": roi_ext.Cropping3D}
FUNCTIONS = {"Cropping1D": roi_ext.cropping1d, "Cropping2D": roi_ext.cropping2d, "Cropping3D": roi_ext.cropping3d}


def decode(record):
    """The argument exactly as it was passed to Keras (tuples stay tuples): the
    generator stores its Python repr in "cropping_repr"."""
    if "cropping_repr" in record:
        return ast.literal_eval(record["cropping_repr"])
    arg = record["cropping"]
    if isinstance(arg, dict) and "py" in arg:
        return ast.literal_eval(arg["py"])
    return arg


def to_tuples(v):
    return tuple(to_tuples(e) for e in v) if isinstance(v, (list, tuple)) else v


def keras_layout(case):
    # Keras's default data_format is channels_last (roi_ext's is channels_first);
    # Cropping1D always works on [B, L, C].
    return (case["data_format"] or "channels_last").lower()


def test_golden_file_present():
    assert DATA.exists(), "tests/data/keras_cropping.json is missing"
    assert len(GOLDEN["cases"]) >= 50 and len(GOLDEN["errors"]) >= 20


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{c['layer']}-{c['cropping']}-{c['data_format']}")
def test_keras_golden_case(case):
    layout = keras_layout(case)
    shape = case["input_shape"]
    x = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape)
    expected = torch.tensor(case["output"], dtype=torch.float32).reshape(case["output_shape"])
    module = MODULES[case["layer"]](decode(case), data_format=layout)
    assert module.get_config()["cropping"] == to_tuples(case["normalized"])
    out = module(x)
    assert torch.equal(out, expected)
    assert out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()  # a view, no copy
    assert torch.equal(FUNCTIONS[case["layer"]](x, decode(case), layout), expected)

    # The other layout gives the same crop of the permuted tensor.
    rank = x.dim() - 2
    if layout == "channels_last":
        to_other = [0, rank + 1] + list(range(1, rank + 1))
        other = "channels_first"
    else:
        to_other = [0] + list(range(2, rank + 2)) + [1]
        other = "channels_last"
    out_other = FUNCTIONS[case["layer"]](x.permute(to_other), decode(case), other)
    assert torch.equal(out_other, expected.permute(to_other))


def _keras_message(message):
    """Keras wraps errors raised in call() with context lines and ANSI bold; the
    line of its own message is what roi_ext reproduces. Its rank error names an
    auto-numbered layer instance ('cropping2d_77'): compare from 'is incompatible'."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    for line in message.splitlines():
        line = line.strip()
        if line.startswith(("Values in", "`cropping`", "The `", "Input 0")):
            return line[line.index("is incompatible"):] if line.startswith("Input 0") else line
    return message.strip()


def _is_non_integer_entry(err):
    # Keras 3.15 accepts non-integer entries such as 1.5 at construction and fails
    # when slicing (a TensorFlow TypeError); roi_ext rejects them up front with
    # Keras's standardize_tuple ValueError (the issue asks for a ValueError).
    return err["error_type"] == "TypeError" and "valid indices" in err["message"]


@pytest.mark.parametrize("err", GOLDEN["errors"], ids=lambda e: f"{e['layer']}-{e['cropping']}-{e['stage']}")
def test_keras_golden_error(err):
    layout = err["data_format"] if err["data_format"] is not None else "channels_last"
    cropping = decode(err)
    with pytest.raises(ValueError) as info:
        module = MODULES[err["layer"]](cropping, data_format=layout)
        if err["stage"] == "call":
            module(torch.zeros(err["input_shape"]))
    if _is_non_integer_entry(err):
        assert "must be a tuple of 2 integers" in str(info.value) and "including element" in str(info.value)
        return
    assert err["error_type"] == "ValueError"
    expected = _keras_message(err["message"])
    actual = str(info.value)
    if expected.startswith("is incompatible"):
        actual = actual[actual.index("is incompatible"):]
    assert actual == expected


# ---------------------------------------------------------------------------
# Explicit cases
# ---------------------------------------------------------------------------
def test_seed_example_channels_last():
    x = torch.randn(5, 28, 28, 3)
    out = roi_ext.Cropping2D(((2, 2), (4, 4)), data_format="channels_last")(x)
    assert out.shape == (5, 24, 20, 3)
    assert torch.equal(out, x[:, 2:26, 4:24, :])


def test_golden_g21_and_g22():
    x = torch.arange(40.0).reshape(2, 4, 5, 1)
    out = roi_ext.cropping2d(x, ((1, 0), (1, 2)), "channels_last")
    assert torch.equal(out[0, :, :, 0], torch.tensor([[6.0, 7], [11, 12], [16, 17]]))
    assert roi_ext.Cropping2D(1).get_config()["cropping"] == ((1, 1), (1, 1))
    assert roi_ext.Cropping2D((1, 2)).get_config()["cropping"] == ((1, 1), (2, 2))
    assert roi_ext.Cropping2D(((1, 2), (3, 4))).get_config()["cropping"] == ((1, 2), (3, 4))
    assert roi_ext.Cropping2D([[1, 2], 3]).get_config()["cropping"] == ((1, 2), (3, 3))


def test_defaults_and_reprs():
    assert roi_ext.Cropping1D().get_config() == {"cropping": (1, 1), "data_format": "channels_first"}
    assert roi_ext.Cropping2D().get_config()["cropping"] == ((0, 0), (0, 0))
    assert roi_ext.Cropping3D().get_config()["cropping"] == ((1, 1), (1, 1), (1, 1))
    assert repr(roi_ext.Cropping2D(((2, 2), (4, 4)), "channels_last")) == (
        "Cropping2D(cropping=((2, 2), (4, 4)), data_format='channels_last')")
    assert repr(roi_ext.Cropping1D(3)) == "Cropping1D(cropping=(3, 3), data_format='channels_first')"
    assert roi_ext.Cropping3D(data_format="CHANNELS_LAST").data_format == "channels_last"


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_view_storage_and_gradients(layout):
    x = torch.randn(2, 6, 9, 8, 7, requires_grad=True)
    out = roi_ext.cropping3d(x, ((1, 2), (0, 3), (2, 2)), layout)
    assert out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    g = torch.randn(out.shape)
    out.backward(g)
    expected = torch.zeros_like(x)
    if layout == "channels_first":
        expected[:, :, 1:7, 0:5, 2:5] = g
    else:
        expected[:, 1:4, 0:6, 2:6, :] = g
    assert torch.equal(x.grad, expected)


def test_large_input_is_not_copied():
    x = torch.empty(1, 1, 8192, 8192, dtype=torch.uint8)  # 64 MiB
    out = roi_ext.cropping2d(x, ((100, 100), (200, 200)))
    assert out.shape == (1, 1, 7992, 7792)
    assert out.data_ptr() == x[:, :, 100:, 200:].data_ptr()


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph(dynamic):
    model = torch.nn.Sequential(roi_ext.Cropping2D(((1, 2), (3, 0))), torch.nn.ReLU())
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
    for shape in ((2, 3, 10, 11), (1, 2, 12, 9)):
        x = torch.randn(shape, requires_grad=True)
        x2 = x.detach().clone().requires_grad_()
        out = compiled(x)
        assert torch.equal(out, model(x2))
        out.sum().backward()
        model(x2).sum().backward()
        assert torch.equal(x.grad, x2.grad)


@pytest.mark.parametrize("module", [roi_ext.Cropping1D((1, 2)), roi_ext.Cropping2D(((1, 2), (0, 1)), "channels_last"),
                                    roi_ext.Cropping3D(1)])
def test_torchscript(module):
    scripted = torch.jit.script(module)
    x = torch.randn([2, 4, 6, 7, 8][: module._pairs.__len__() + 2])
    assert torch.equal(scripted(x), module(x))
    with pytest.raises(Exception, match="cropping"):
        scripted(torch.zeros([1, 1, 2, 2, 2][: len(module._pairs) + 2]))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: roi_ext.Cropping2D(-1), "`cropping` cannot be negative"),
        (lambda: roi_ext.Cropping2D((1, 2, 3)), "`cropping` should have two elements"),
        (lambda: roi_ext.Cropping2D(((1, 2), (3, -4))), "2nd entry of cropping"),
        (lambda: roi_ext.Cropping2D(1.0), "`cropping` should be either an int"),
        (lambda: roi_ext.Cropping2D(None), "`cropping` should be either an int"),
        (lambda: roi_ext.Cropping2D(((1.5, 2), 3)), "1st entry of cropping"),
        (lambda: roi_ext.Cropping3D((1, 2)), "`cropping` should have 3 elements"),
        (lambda: roi_ext.Cropping1D(-2), "The `cropping` argument must be a tuple of 2 integers"),
        (lambda: roi_ext.Cropping1D((1, 2, 3)), "The `cropping` argument must be a tuple of 2 integers"),
        (lambda: roi_ext.Cropping2D(1, data_format="nhwc"), "data_format"),
        (lambda: roi_ext.cropping2d(torch.zeros(1, 1, 4, 4), ((2, 2), (0, 0))), "smaller than"),
        (lambda: roi_ext.cropping2d(torch.zeros(1, 1, 4, 4), ((2, 3), (0, 0))), "smaller than"),
        (lambda: roi_ext.cropping1d(torch.zeros(1, 1, 4), (2, 2)), "smaller than"),
        (lambda: roi_ext.cropping3d(torch.zeros(1, 1, 4, 4, 2), 1), "smaller than"),
        (lambda: roi_ext.cropping2d(torch.zeros(1, 4, 4), 1), "expected ndim=4, found ndim=3"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_tensor_input():
    with pytest.raises(TypeError, match="x must be a Tensor"):
        roi_ext.cropping2d(np.zeros((1, 1, 4, 4)), 1)

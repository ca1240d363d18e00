"""Generate golden data for Keras 3 Cropping1D / Cropping2D / Cropping3D.

Runs in the TensorFlow virtualenv (tensorflow-cpu==2.21.0, which brings Keras 3.15.1):

    /work/venvs/tf/bin/python tests/data/generate_keras_cropping.py

Writes keras_cropping.json next to this script:
    {"keras_version": str, "cases": [...], "errors": [...]}
Case: layer, cropping (constructor argument, JSON; tuples become lists), cropping_repr (python
repr of the argument), data_format (null = not passed), input_shape, normalized
(get_config()["cropping"] as nested lists), config_data_format, output_shape, output (flat list;
input = np.arange(prod(input_shape), dtype=float32).reshape(input_shape)).
Error: layer, cropping (JSON, or {"py": repr} when the argument holds anything other than
ints / tuples / lists of ints), cropping_repr, data_format, input_shape (null for init errors),
stage ("init" | "call"), error_type, message.
If Keras does not raise for a case listed as a potential error, it is stored as a normal case.
"""
import json
import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "keras_cropping.json")

assert keras.config.image_data_format() == "channels_last", keras.config.image_data_format()

LAYERS = {
    "Cropping1D": (keras.layers.Cropping1D, 1),
    "Cropping2D": (keras.layers.Cropping2D, 2),
    "Cropping3D": (keras.layers.Cropping3D, 3),
}


def is_plain(arg):
    """True if arg is an int (not bool) or a (nested) tuple/list of such."""
    if isinstance(arg, bool):
        return False
    if isinstance(arg, int):
        return True
    if isinstance(arg, (tuple, list)):
        return all(is_plain(a) for a in arg)
    return False


def to_lists(v):
    if isinstance(v, (tuple, list)):
        return [to_lists(a) for a in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def encode_arg(arg):
    return to_lists(arg) if is_plain(arg) else {"py": repr(arg)}


def make_layer(name, cropping, data_format):
    cls, _ = LAYERS[name]
    if name == "Cropping1D" or data_format is None:
        return cls(cropping=cropping)
    return cls(cropping=cropping, data_format=data_format)


def run_case(name, cropping, data_format, input_shape):
    """Returns ("case", dict) or ("error", dict)."""
    base = {
        "layer": name,
        "cropping": encode_arg(cropping),
        "cropping_repr": repr(cropping),
        "data_format": data_format,
    }
    try:
        layer = make_layer(name, cropping, data_format)
    except Exception as e:  # noqa: BLE001
        d = dict(base, input_shape=None, stage="init", error_type=type(e).__name__, message=str(e))
        return "error", d
    if input_shape is None:
        raise RuntimeError(f"layer constructed but no input shape given: {base}")
    x = np.arange(int(np.prod(input_shape)), dtype=np.float32).reshape(input_shape)
    try:
        y = np.asarray(layer(x))
    except Exception as e:  # noqa: BLE001
        d = dict(base, input_shape=list(input_shape), stage="call", error_type=type(e).__name__,
                 message=str(e))
        return "error", d
    cfg = layer.get_config()
    d = dict(base, input_shape=list(input_shape), normalized=to_lists(cfg["cropping"]),
             config_data_format=cfg.get("data_format"), output_shape=list(y.shape),
             output=[float(v) for v in y.reshape(-1)])
    assert y.dtype == np.float32
    return "case", d


def spatial_axes(rank, data_format):
    # rank = number of spatial dims; returns indices of spatial axes in the full input shape
    if data_format == "channels_first":
        return list(range(2, 2 + rank))
    return list(range(1, 1 + rank))


def make_shape(rng, rank, data_format, spatial):
    b = rng.randint(1, 2)
    c = rng.randint(1, 3)
    if data_format == "channels_first":
        return [b, c] + list(spatial)
    return [b] + list(spatial) + [c]


def random_cropping(rng, rank, spatial):
    """A random valid cropping argument in one of the accepted forms."""
    def pair(n):
        a = rng.randint(0, n - 1)
        b = rng.randint(0, n - 1 - a)
        return (a, b)

    def sym(n):
        return rng.randint(0, (n - 1) // 2)

    aslist = rng.random() < 0.3
    wrap = list if aslist else tuple
    if rank == 1:
        form = rng.choice(["int", "pair"])
        if form == "int":
            return sym(spatial[0])
        return wrap(pair(spatial[0]))
    form = rng.choice(["int", "sym", "pairs", "pairs", "mixed"])
    if form == "int":
        return rng.randint(0, (min(spatial) - 1) // 2)
    if form == "sym":
        return wrap(sym(n) for n in spatial)
    if form == "pairs":
        inner = list if rng.random() < 0.3 else tuple
        return wrap(inner(pair(n)) for n in spatial)
    # mixed: some entries pairs, some ints
    entries = []
    for n in spatial:
        if rng.random() < 0.5:
            entries.append(sym(n))
        else:
            inner = list if rng.random() < 0.3 else tuple
            entries.append(inner(pair(n)))
    if all(isinstance(e, int) for e in entries):
        entries[0] = tuple(pair(spatial[0]))
    return wrap(entries)


def main():
    rng = random.Random(20240607)
    cases, errors = [], []

    def add(name, cropping, data_format, input_shape):
        kind, d = run_case(name, cropping, data_format, input_shape)
        (cases if kind == "case" else errors).append(d)
        return kind

    # ---- seed example (Keras docs) and SPEC G21
    add("Cropping2D", ((2, 2), (4, 4)), None, (2, 28, 28, 3))
    assert cases[-1]["output_shape"] == [2, 24, 20, 3]
    add("Cropping2D", ((1, 0), (1, 2)), "channels_last", (2, 4, 5, 1))
    g21 = np.array(cases[-1]["output"]).reshape(cases[-1]["output_shape"])[0, :, :, 0]
    if g21.tolist() != [[6, 7], [11, 12], [16, 17]]:
        print("WARNING: G21 mismatch", g21.tolist())

    # ---- zero croppings
    add("Cropping1D", (0, 0), None, (2, 5, 3))
    add("Cropping1D", 0, None, (1, 4, 2))
    for df in ("channels_last", "channels_first"):
        add("Cropping2D", 0, df, (2, 3, 4, 2))
        add("Cropping2D", ((0, 0), (0, 0)), df, (1, 5, 2, 3))
        add("Cropping3D", 0, df, (1, 3, 2, 4, 2))
        add("Cropping3D", ((0, 0), (0, 0), (0, 0)), df, (2, 2, 3, 2, 1))
    # default constructor argument of 2D via explicit default-like args
    add("Cropping2D", [[0, 0], [0, 0]], None, (1, 3, 3, 1))

    # ---- SPEC G22 normalisation + documented forms
    add("Cropping2D", 1, "channels_last", (1, 4, 5, 2))
    add("Cropping2D", (1, 2), "channels_first", (1, 2, 4, 6))
    add("Cropping2D", ((1, 2), (3, 4)), "channels_last", (1, 5, 9, 1))
    add("Cropping2D", ((1, 2), 3), "channels_first", (2, 1, 6, 8))
    add("Cropping3D", ((1, 0), 2, [0, 1]), "channels_last", (1, 3, 6, 4, 2))
    add("Cropping1D", [2, 1], None, (1, 6, 2))
    # bools are ints in Python (Keras accepts them)
    add("Cropping2D", True, "channels_last", (1, 3, 4, 1))
    add("Cropping1D", (True, False), None, (1, 4, 1))
    # data_format is lower-cased by Keras
    add("Cropping2D", ((1, 0), (0, 1)), "Channels_First", (1, 2, 3, 4))
    add("Cropping3D", 1, "CHANNELS_LAST", (1, 3, 4, 5, 1))

    # ---- random valid cases
    n_random = 80
    for i in range(n_random):
        name = ["Cropping1D", "Cropping2D", "Cropping3D"][i % 3]
        rank = LAYERS[name][1]
        if rank == 1:
            df = None
        else:
            df = rng.choice(["channels_last", "channels_first", None])
        hi = 9 if rank < 3 else 6
        spatial = [rng.randint(1, hi) for _ in range(rank)]
        shape = make_shape(rng, rank, df or "channels_last", spatial)
        cropping = random_cropping(rng, rank, spatial)
        kind = add(name, cropping, df, tuple(shape))
        if kind != "case":
            print("WARNING: random case raised:", errors[-1])

    # ---- init-time errors
    init_err = [
        # negative
        ("Cropping1D", -1), ("Cropping1D", (-1, 0)), ("Cropping1D", (0, -2)),
        ("Cropping2D", -1), ("Cropping2D", (-1, 2)), ("Cropping2D", ((1, -2), (0, 0))),
        ("Cropping2D", ((0, 0), -1)), ("Cropping2D", ((0, 0), (-3, 0))),
        ("Cropping3D", -1), ("Cropping3D", (1, -1, 0)), ("Cropping3D", ((0, 0), (0, 0), (0, -1))),
        ("Cropping3D", ((-1, 0), 1, 1)),
        # wrong arity
        ("Cropping1D", (1, 2, 3)), ("Cropping1D", (1,)), ("Cropping1D", ()),
        ("Cropping1D", ((1, 1),)),
        ("Cropping2D", (1,)), ("Cropping2D", (1, 2, 3)), ("Cropping2D", (1, 2, 3, 4)),
        ("Cropping2D", [[1, 1]]), ("Cropping2D", ((1, 2, 3), (0, 0))), ("Cropping2D", ((1,), (0, 0))),
        ("Cropping2D", ()),
        ("Cropping3D", (1, 2)), ("Cropping3D", (1, 2, 3, 4)), ("Cropping3D", ((1, 1), (1, 1))),
        ("Cropping3D", ((1, 1), (1, 1), (1, 1), (1, 1))), ("Cropping3D", ((1, 1), (1, 1), (1, 2, 3))),
        # non-integer
        ("Cropping1D", 1.5), ("Cropping1D", "1"), ("Cropping1D", None), ("Cropping1D", 1.0),
        ("Cropping1D", (1.5, 2)),
        ("Cropping2D", 1.5), ("Cropping2D", "1"), ("Cropping2D", None), ("Cropping2D", 1.0),
        ("Cropping2D", (1.5, 2)), ("Cropping2D", ((1.5, 2), (0, 0))), ("Cropping2D", ((1, 2), "ab")),
        ("Cropping2D", (None, 1)),
        ("Cropping3D", 1.5), ("Cropping3D", "1"), ("Cropping3D", None), ("Cropping3D", 1.0),
        ("Cropping3D", (1.5, 2)), ("Cropping3D", (1.5, 2, 1)), ("Cropping3D", ((1, 1), (1, 1), (1.0, 1))),
    ]
    for name, crop in init_err:
        rank = LAYERS[name][1]
        shape = (1,) + (7,) * rank + (1,)
        kind = add(name, crop, None, shape)
        if kind == "case":
            print("NOTE: Keras accepted", name, repr(crop))
    # invalid data_format strings
    for name in ("Cropping2D", "Cropping3D"):
        for df in ("nhwc", "NCHW", "channels", "", "channels_middle"):
            rank = LAYERS[name][1]
            kind = add(name, 1, df, (1,) + (5,) * rank + (1,))
            if kind == "case":
                print("NOTE: Keras accepted data_format", repr(df))

    # ---- call-time errors: excess cropping (a+b == n and a+b > n), per layer & layout
    add("Cropping1D", (2, 3), None, (1, 5, 2))       # == n
    add("Cropping1D", (3, 3), None, (1, 5, 2))       # > n
    add("Cropping1D", 3, None, (2, 6, 1))            # == n via int
    add("Cropping1D", (0, 4), None, (1, 4, 1))       # == n, one side
    add("Cropping1D", (9, 0), None, (1, 4, 1))       # > n, one side
    for df in ("channels_last", "channels_first"):
        sp = (4, 6)
        shape = make_shape(random.Random(1), 2, df, sp)
        add("Cropping2D", ((2, 2), (0, 0)), df, tuple(shape))   # H: == n
        add("Cropping2D", ((0, 0), (3, 3)), df, tuple(shape))   # W: == n
        add("Cropping2D", ((1, 4), (0, 0)), df, tuple(shape))   # H: > n
        add("Cropping2D", ((0, 0), (6, 1)), df, tuple(shape))   # W: > n
        add("Cropping2D", 2, df, tuple(shape))                  # int, H == n
        add("Cropping2D", (1, 3), df, tuple(shape))             # sym, W == n
        sp3 = (3, 4, 5)
        shape3 = make_shape(random.Random(2), 3, df, sp3)
        add("Cropping3D", ((1, 2), (0, 0), (0, 0)), df, tuple(shape3))  # D == n
        add("Cropping3D", ((0, 0), (2, 2), (0, 0)), df, tuple(shape3))  # H == n
        add("Cropping3D", ((0, 0), (0, 0), (3, 2)), df, tuple(shape3))  # W == n
        add("Cropping3D", ((2, 2), (0, 0), (0, 0)), df, tuple(shape3))  # D > n
        add("Cropping3D", ((0, 0), (0, 5), (0, 0)), df, tuple(shape3))  # H > n
        add("Cropping3D", ((0, 0), (0, 0), (3, 3)), df, tuple(shape3))  # W > n
        add("Cropping3D", 2, df, tuple(shape3))                          # int, D > n
    # wrong input rank
    add("Cropping1D", (1, 1), None, (5, 2))
    add("Cropping1D", (1, 1), None, (1, 5, 2, 1))
    add("Cropping2D", ((1, 1), (1, 1)), "channels_last", (1, 5, 5))
    add("Cropping2D", ((1, 1), (1, 1)), "channels_first", (1, 2, 5, 5, 5))
    add("Cropping2D", 1, None, (5, 5))
    add("Cropping3D", 1, "channels_last", (1, 5, 5, 5))
    add("Cropping3D", 1, "channels_first", (1, 1, 5, 5, 5, 5))

    data = {"keras_version": keras.__version__, "cases": cases, "errors": errors}
    with open(OUT, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    print(f"wrote {OUT}: {len(cases)} cases, {len(errors)} errors, "
          f"{os.path.getsize(OUT)} bytes, keras {keras.__version__}")


if __name__ == "__main__":
    main()

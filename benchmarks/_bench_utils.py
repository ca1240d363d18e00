"""Shared helpers for the benchmark scripts in this folder (not a test; never run by CI).

* ``measure``: warm up every contender, then alternate them for several rounds (each
  round times each contender over a few repetitions) and report per-call medians.
  Alternating spreads slow drifts of the machine (frequency, other load) over all
  contenders instead of penalising whichever ran last.
* ``local``: wraps an in-process callable as a contender.
* ``print_table`` / ``fmt_ms`` / ``ratio``: plain-text tables.
* ``machine_info``: CPU model, core count, library versions.
* ``write_json``: the results file read by ``plot_results.py``.
"""
from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

# A contender is a function ``run(reps) -> seconds`` that calls the op ``reps`` times
# back to back and returns the total wall time of those calls (measured by whoever
# runs them: this process for torch, the worker process for TensorFlow).
Contender = Callable[[int], float]


def local(fn: Callable[[], object]) -> Contender:
    """An in-process contender: ``fn()`` is one call of the op."""

    def run(reps: int) -> float:
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return time.perf_counter() - t0
        finally:
            if gc_was_enabled:
                gc.enable()

    return run


def measure(
    contenders: Dict[str, Contender],
    rounds: int = 5,
    target_s: float = 0.2,
    min_reps: int = 1,
    max_reps: int = 1000,
    warmup_reps: int = 2,
    pause_s: float = 0.05,
) -> Dict[str, dict]:
    """Median per-call time of each contender over ``rounds`` alternating rounds.

    The warm-up (``warmup_reps`` calls of each contender) also estimates the cost of one
    call, from which the repetitions per round are chosen so that one round of one
    contender takes about ``target_s`` seconds (between ``min_reps`` and ``max_reps``).
    The order of the contenders is rotated from round to round. ``pause_s`` seconds of
    sleep between contenders let spinning worker threads (OpenMP, Eigen) of the previous
    one go idle before the next one starts.

    Returns ``{name: {"median_ms", "min_ms", "samples_ms", "reps"}}``.
    """
    names = list(contenders)
    reps: Dict[str, int] = {}
    for name in names:
        run = contenders[name]
        run(1)  # first call: allocations, lazy initialisation
        per_call = run(max(1, warmup_reps)) / max(1, warmup_reps)
        n = int(math.ceil(target_s / per_call)) if per_call > 0 else max_reps
        reps[name] = max(min_reps, min(max_reps, n))
        time.sleep(pause_s)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            gc.collect()
            total = contenders[name](reps[name])
            samples[name].append(1e3 * total / reps[name])
            time.sleep(pause_s)
    return {
        name: {
            "median_ms": statistics.median(s),
            "min_ms": min(s),
            "samples_ms": [round(v, 6) for v in s],
            "reps": reps[name],
        }
        for name, s in samples.items()
    }


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def fmt_ms(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ratio(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], file=None) -> None:
    """Print a left-aligned text table (first column) with right-aligned numbers."""
    file = file or sys.stdout
    rows = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            out.append(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(headers), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for row in rows:
        print(line(row), file=file)
    file.flush()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.lower().startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def torch_versions() -> Dict[str, str]:
    versions = {}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        import torchvision

        versions["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    for mod in ("roi_ext", "kornia"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", "installed")
        except ImportError:
            pass
    return versions


def machine_info(extra_versions: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """CPU model, core count and library versions (``extra_versions`` e.g. TensorFlow's,
    reported by its own process)."""
    versions = torch_versions()
    versions.update(extra_versions or {})
    versions["python"] = platform.python_version()
    return {
        "cpu": cpu_model(),
        "cores": core_count(),
        "platform": platform.platform(),
        "versions": versions,
    }


def machine_info_string(info: Dict[str, object]) -> str:
    v = ", ".join(f"{k} {val}" for k, val in info["versions"].items())
    return f"{info['cpu']}, {info['cores']} cores usable; {v}"


def parse_int_list(text: str) -> List[int]:
    return [int(t) for t in text.replace(" ", "").split(",") if t]


def write_json(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

"""No leaks under load (GitHub issue 6).

Every public function, in every flavour a binding path distinguishes (output
arrays, upstream gradients, per-class alpha, class axis not last, non-contiguous
inputs that are copied, error paths that raise from Python and from the
kernels), is called a few hundred thousand times in total on small inputs. The
resident set size must stay flat after a warm-up: a leaked array, buffer or
exception per call would show as megabytes. A leaked reference to an input
would not (the arrays are the same every call), so the reference counts of all
inputs and outputs must not change either.
"""

from __future__ import annotations

import gc
import sys
import time

import focal_native as fn
import numpy as np
import pytest

psutil = pytest.importorskip("psutil")

TOTAL_CALLS = 600_000
WARMUP_CALLS = 60_000
MAX_GROWTH_MB = 10.0
TIME_BUDGET_S = 30.0


def _calls():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(6, 5)).astype(np.float32)
    z64 = z.astype(np.float64)
    hard = rng.random((6, 5)) < 0.5
    soft = rng.random((6, 5)).astype(np.float32)
    lab = rng.integers(0, 5, size=6)
    lab[0] = -100
    dense = rng.dirichlet(np.ones(5), size=6)
    z3 = rng.normal(size=(2, 5, 3))
    lab3 = rng.integers(0, 5, size=(2, 3)).astype(np.uint8)
    up = rng.normal(size=(6, 5)).astype(np.float32)
    up_pos = rng.normal(size=6)
    alpha = np.linspace(0.1, 1.0, 5)
    out_el = np.empty((6, 5), np.float32)
    out_el64 = np.empty((6, 5))
    out_pos = np.empty(6)
    zt = z64.T  # non-contiguous: copied
    bad_lab = lab.copy()
    bad_lab[3] = 9
    bad_hard = hard.astype(np.int8)
    bad_hard[2, 2] = 3

    def raises(f, *a, **k):
        try:
            f(*a, **k)
        except (ValueError, TypeError):
            return
        raise AssertionError("expected an error")

    arrays = [z, z64, hard, soft, lab, dense, z3, lab3, up, up_pos, alpha, out_el, out_el64,
              out_pos, zt, bad_lab, bad_hard]
    return arrays, [
        lambda: fn.sigmoid_focal_loss(z, hard),
        lambda: fn.sigmoid_focal_loss(z, hard, reduction="mean"),
        lambda: fn.sigmoid_focal_loss(z, soft, out=out_el),
        lambda: fn.sigmoid_focal_loss(z64, lab, reduction="sum", normalizer=2.0),
        lambda: fn.sigmoid_focal_loss_grad(z, hard, grad_output=up),
        lambda: fn.sigmoid_focal_loss_grad(z64, lab, reduction="mean", out=out_el64),
        lambda: fn.sigmoid_focal_loss_grad(zt, hard.T),
        lambda: fn.sigmoid_focal_loss_with_grad(z, hard),
        lambda: fn.sigmoid_focal_loss_with_grad(z64, soft, reduction="none", alpha=None),
        lambda: fn.softmax_focal_loss(z64, lab),
        lambda: fn.softmax_focal_loss(z64, lab, alpha=alpha, out=out_pos),
        lambda: fn.softmax_focal_loss(z3, lab3, axis=1, reduction="sum"),
        lambda: fn.softmax_focal_loss_grad(z64, lab, grad_output=up_pos),
        lambda: fn.softmax_focal_loss_grad(z64, dense, label_smoothing=0.1, out=out_el64),
        lambda: fn.softmax_focal_loss_grad(z, lab, reduction="mean"),
        lambda: fn.softmax_focal_loss_with_grad(z64, dense),
        lambda: fn.softmax_focal_loss_with_grad(z3, lab3, axis=1, label_smoothing=0.2),
        lambda: fn.softmax_focal_loss_with_grad(z64, lab, reduction="none", out=out_pos),
        lambda: raises(fn.softmax_focal_loss, z64, bad_lab),  # found by the kernel
        lambda: raises(fn.sigmoid_focal_loss_grad, z, bad_hard),  # found by the kernel
        lambda: raises(fn.sigmoid_focal_loss, z, hard, gamma=-1.0),  # found in Python
        lambda: raises(fn.softmax_focal_loss, z, lab, alpha=[1.0, 2.0]),
        lambda: raises(fn.sigmoid_focal_loss, z.astype(np.float16), hard),
        lambda: raises(fn.softmax_focal_loss_grad, z64, lab, out=out_el),
    ]


def _rss_mb():
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def _run(calls, n):
    k = len(calls)
    for i in range(n):
        calls[i % k]()


@pytest.mark.slow
def test_resident_memory_stays_flat(request):
    arrays, calls = _calls()
    t0 = time.perf_counter()
    _run(calls, WARMUP_CALLS)
    rss0 = _rss_mb()
    refs0 = [sys.getrefcount(a) for a in arrays]
    checkpoints = []
    rounds = 4
    per_round = (TOTAL_CALLS - WARMUP_CALLS) // rounds
    for _ in range(rounds):
        _run(calls, per_round)
        checkpoints.append(_rss_mb())
        assert time.perf_counter() - t0 < 3 * TIME_BUDGET_S, "soak test far over its budget"
    elapsed = time.perf_counter() - t0
    growth = checkpoints[-1] - rss0
    line = (f"soak: {WARMUP_CALLS + rounds * per_round} calls of {len(calls)} kinds in "
            f"{elapsed:.1f} s; RSS after warm-up {rss0:.1f} MiB, then "
            + ", ".join(f"{c:.1f}" for c in checkpoints) + f" MiB (growth {growth:+.2f} MiB)")
    _report(request.config, line)
    assert growth < MAX_GROWTH_MB, line
    assert [sys.getrefcount(a) for a in arrays] == refs0, "reference counts of inputs changed"


def _report(config, line):
    """Add a line to the "reliability figures" section (shared with the other files)."""

    class _Figures:
        def __init__(self):
            self.lines = []

        def pytest_terminal_summary(self, terminalreporter):
            if self.lines:
                terminalreporter.section("reliability figures")
                for text in self.lines:
                    terminalreporter.write_line(text)

    plugin = config.pluginmanager.get_plugin("focal-native-reliability-figures")
    if plugin is None:
        plugin = _Figures()
        config.pluginmanager.register(plugin, "focal-native-reliability-figures")
    plugin.lines.append(line)

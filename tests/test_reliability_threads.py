"""Thread safety (GitHub issue 6).

The kernels release the GIL, so Python threads really run them concurrently,
and each call may itself open an OpenMP region. Eight Python threads call every
public function (small inputs and inputs large enough to be threaded; loss,
gradient, fused; reductions; ``out=``; error paths) on their own inputs, in
their own order, while a ninth thread keeps changing ``set_num_threads``. Every
result must be bitwise identical to the one computed serially beforehand: the
library promises results independent of the thread count, so a changing thread
count must not show either.
"""

from __future__ import annotations

import random
import threading
import time

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest

N_WORKERS = 8
ROUNDS = 6
TIMEOUT = 120


def _jobs():
    """(name, call(out_buffers) -> result) for every public function and several inputs."""
    rng = np.random.default_rng(7)
    jobs = []
    for n_rows, classes, dtype in [(50, 7, np.float64), (300, 5, np.float32),
                                   (12_000, 8, np.float32), (9_000, 6, np.float64)]:
        z = rng.normal(scale=5.0, size=(n_rows, classes)).astype(dtype)
        hard = rng.random((n_rows, classes)) < 0.4
        soft = rng.random((n_rows, classes)).astype(dtype)
        labels = rng.integers(0, classes, size=n_rows).astype(np.int32)
        labels[::13] = -100
        bg = rng.integers(0, classes + 1, size=n_rows).astype(np.uint8)
        dense = rng.dirichlet(np.ones(classes), size=n_rows).astype(dtype)
        up = rng.normal(size=n_rows).astype(dtype)
        up_el = rng.normal(size=(n_rows, classes)).astype(dtype)
        # NCHW-like layout: class axis 1, positions after it.
        z4 = np.ascontiguousarray(z[: n_rows // 10 * 10].reshape(-1, 10, classes)
                                  .transpose(0, 2, 1))
        lab4 = labels[: n_rows // 10 * 10].reshape(-1, 10)
        alpha_vec = np.linspace(0.2, 1.0, classes)
        bad = labels.copy()
        bad[n_rows * 3 // 4] = classes  # invalid for softmax
        tag = f"{n_rows}x{classes}/{np.dtype(dtype).name}"

        def add(name, f, tag=tag):
            jobs.append((f"{name} {tag}", f))

        add("sig loss none", lambda o, z=z, t=hard: fn.sigmoid_focal_loss(z, t))
        add("sig loss out", lambda o, z=z, t=hard: fn.sigmoid_focal_loss(
            z, t, out=o.get("sig", z.shape, z.dtype)))
        add("sig loss sum soft", lambda o, z=z, t=soft: fn.sigmoid_focal_loss(
            z, t, reduction="sum", gamma=1.5))
        add("sig grad mean", lambda o, z=z, t=hard: fn.sigmoid_focal_loss_grad(
            z, t, reduction="mean", alpha=None))
        add("sig grad up", lambda o, z=z, t=hard, u=up_el: fn.sigmoid_focal_loss_grad(
            z, t, grad_output=u))
        add("sig with_grad labels", lambda o, z=z, t=bg: fn.sigmoid_focal_loss_with_grad(
            z, t, reduction="mean", normalizer=3.0))
        add("sig with_grad outs", lambda o, z=z, t=labels: fn.sigmoid_focal_loss_with_grad(
            z, t, reduction="none", out=o.get("sl", z.shape, z.dtype),
            grad_out=o.get("sg", z.shape, z.dtype)))
        add("smx loss none", lambda o, z=z, t=labels: fn.softmax_focal_loss(z, t))
        add("smx loss alpha", lambda o, z=z, t=labels, a=alpha_vec: fn.softmax_focal_loss(
            z, t, alpha=a, reduction="sum"))
        add("smx loss axis1", lambda o, z=z4, t=lab4: fn.softmax_focal_loss(
            z, t, axis=1, reduction="mean"))
        add("smx grad smooth", lambda o, z=z, t=labels: fn.softmax_focal_loss_grad(
            z, t, reduction="mean", label_smoothing=0.1))
        add("smx grad up", lambda o, z=z, t=labels, u=up: fn.softmax_focal_loss_grad(
            z, t, grad_output=u))
        add("smx grad out", lambda o, z=z, t=dense: fn.softmax_focal_loss_grad(
            z, t, out=o.get("xg", z.shape, z.dtype)))
        add("smx with_grad dense", lambda o, z=z, t=dense: fn.softmax_focal_loss_with_grad(
            z, t, reduction="sum", gamma=0.5))
        add("smx with_grad axis1", lambda o, z=z4, t=lab4: fn.softmax_focal_loss_with_grad(
            z, t, axis=1, reduction="none"))
        add("smx bad label", lambda o, z=z, t=bad: fn.softmax_focal_loss(z, t, reduction="sum"))
        bad_soft = np.where(soft > 0.99, 1.5, soft).astype(dtype)
        add("sig bad soft", lambda o, z=z, t=bad_soft: fn.sigmoid_focal_loss_grad(z, t))
    return jobs


class _Buffers:
    """Per-thread output buffers (a thread never shares an out array)."""

    def __init__(self):
        self._b = {}

    def get(self, key, shape, dtype):
        k = (key, shape, np.dtype(dtype))
        if k not in self._b:
            self._b[k] = np.empty(shape, dtype=dtype)
        return self._b[k]


def _call(job, bufs):
    """Run a job; return a tuple of copies of its results, or the error it raised."""
    try:
        r = job(bufs)
    except ValueError as exc:
        return ("ValueError", str(exc))
    parts = r if isinstance(r, tuple) else (r,)
    return tuple(np.array(p, copy=True) for p in parts)


def _same(a, b):
    if isinstance(a[0], str) or isinstance(b[0], str):
        return a == b
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        if x.tobytes() != y.tobytes():
            return False
    return True


def test_concurrent_calls_are_bitwise_identical_to_serial(request):
    jobs = _jobs()
    serial_bufs = _Buffers()
    with ft.num_threads(1):
        expected = [_call(f, serial_bufs) for _, f in jobs]
    # Same answers with the default thread count, before any concurrency.
    expected_default = [_call(f, serial_bufs) for _, f in jobs]
    for (name, _), a, b in zip(jobs, expected, expected_default):
        assert _same(a, b), f"{name}: 1 thread and the default thread count differ"
    assert sum(isinstance(e[0], str) for e in expected) == 8  # the error jobs do raise

    start = threading.Barrier(N_WORKERS + 1)
    done = threading.Event()
    mismatches, errors, calls = [], [], [0] * N_WORKERS
    toggles = [0]

    def worker(w):
        rnd = random.Random(w)
        bufs = _Buffers()
        order = list(range(len(jobs)))
        try:
            start.wait(TIMEOUT)
            for _ in range(ROUNDS):
                rnd.shuffle(order)
                for i in order:
                    got = _call(jobs[i][1], bufs)
                    calls[w] += 1
                    if not _same(got, expected[i]):
                        mismatches.append((w, jobs[i][0]))
        except BaseException as exc:  # reported by the main thread
            errors.append((w, repr(exc)))

    def toggler():
        rnd = random.Random(99)
        start.wait(TIMEOUT)
        while not done.is_set():
            fn.set_num_threads(rnd.choice([0, 1, 2, 3, 4]))
            toggles[0] += 1
            time.sleep(0.0005)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(N_WORKERS)]
    tog = threading.Thread(target=toggler)
    t0 = time.perf_counter()
    try:
        for t in threads:
            t.start()
        tog.start()
        for t in threads:
            t.join(TIMEOUT)
    finally:
        done.set()
        tog.join(TIMEOUT)
        fn.set_num_threads(0)
    elapsed = time.perf_counter() - t0
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors
    assert not mismatches, f"{len(mismatches)} results differ from serial: {mismatches[:10]}"
    assert sum(calls) == N_WORKERS * ROUNDS * len(jobs)
    report = _report_fn()
    report(request.config, f"threads: {N_WORKERS} Python threads x {ROUNDS} rounds x "
                           f"{len(jobs)} jobs = {sum(calls)} calls in {elapsed:.1f} s, "
                           f"{toggles[0]} set_num_threads changes meanwhile: all bitwise equal")


def test_set_num_threads_from_many_threads_is_consistent():
    """Concurrent set/get never yields a value nobody set."""
    stop = threading.Event()
    seen = set()

    def setter(v):
        while not stop.is_set():
            fn.set_num_threads(v)

    def getter():
        while not stop.is_set():
            seen.add(fn.get_num_threads())

    ts = [threading.Thread(target=setter, args=(v,)) for v in (1, 2, 3)]
    ts.append(threading.Thread(target=getter))
    for t in ts:
        t.start()
    time.sleep(0.3)
    stop.set()
    for t in ts:
        t.join(TIMEOUT)
    fn.set_num_threads(0)
    assert seen and seen <= {1, 2, 3}, seen


def _report_fn():
    """The figures reporter of test_fuzz_api (shared plugin name), defined locally."""

    class _Figures:
        def __init__(self):
            self.lines = []

        def pytest_terminal_summary(self, terminalreporter):
            if self.lines:
                terminalreporter.section("reliability figures")
                for line in self.lines:
                    terminalreporter.write_line(line)

    def report(config, line):
        plugin = config.pluginmanager.get_plugin("focal-native-reliability-figures")
        if plugin is None:
            plugin = _Figures()
            config.pluginmanager.register(plugin, "focal-native-reliability-figures")
        plugin.lines.append(line)

    return report


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    fn.set_num_threads(0)

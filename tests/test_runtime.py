"""Runtime behaviour: zero-copy inputs, GIL release, threads, build facts, CLI."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest
from focal_native import _core


def run_python(code, env_extra=None, timeout=120, args=None):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "FOCAL_NATIVE_ISA", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(k, None)
    env.update(env_extra or {})
    cmd = [sys.executable] + (args if args is not None else ["-c", textwrap.dedent(code)])
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


# --------------------------------------------------------------------------
# Zero copy: memory traced during a call
# --------------------------------------------------------------------------

N = 1_000_000
SMALL = 64 * 1024


def traced_peak(call):
    """Peak of traced allocations (bytes) above the level before `call`."""
    call()  # warm-up: lazy imports, caches
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - base


def _targets(kind, dtype, shape):
    bits = np.arange(int(np.prod(shape))).reshape(shape) % 2
    if kind == "soft":
        return (bits * 0.5 + 0.25).astype(dtype)
    return bits.astype(kind)


TARGET_KINDS = ["bool", "uint8", "int8", "uint16", "int32", "int64", "uint64", "soft"]


@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_no_allocation_with_out(dtype, kind):
    z = np.linspace(-8, 8, N, dtype=dtype)
    t = _targets(kind, dtype, z.shape)
    w = np.ones_like(z)
    out = np.empty_like(z)
    gout = np.empty_like(z)
    calls = {
        "loss": lambda: fn.sigmoid_focal_loss(z, t, out=out),
        "loss-mean": lambda: fn.sigmoid_focal_loss(z, t, reduction="mean"),
        "grad": lambda: fn.sigmoid_focal_loss_grad(z, t, out=gout),
        "grad-vjp": lambda: fn.sigmoid_focal_loss_grad(z, t, grad_output=w, out=gout),
        "with_grad": lambda: fn.sigmoid_focal_loss_with_grad(
            z, t, reduction="none", out=out, grad_out=gout
        ),
        "with_grad-sum": lambda: fn.sigmoid_focal_loss_with_grad(
            z, t, reduction="sum", grad_out=gout
        ),
    }
    for name, call in calls.items():
        peak = traced_peak(call)
        assert peak < SMALL, f"{name}: {peak} bytes allocated during the call"


@pytest.mark.parametrize("ldtype", [np.uint8, np.int32, np.int64])
def test_no_allocation_with_class_indices(ldtype):
    z = np.linspace(-8, 8, N, dtype=np.float32).reshape(-1, 10)
    lab = (np.arange(z.shape[0]) % 11).astype(ldtype)
    gout = np.empty_like(z)
    peak = traced_peak(lambda: fn.sigmoid_focal_loss_grad(z, lab, reduction="mean", out=gout))
    assert peak < SMALL, peak
    z3 = z.reshape(100, 10, -1)
    lab3 = (np.arange(100 * z3.shape[2]).reshape(100, -1) % 11).astype(ldtype)
    peak = traced_peak(
        lambda: fn.sigmoid_focal_loss_with_grad(z3, lab3, axis=1, grad_out=gout.reshape(z3.shape))
    )
    assert peak < SMALL, peak


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_allocation_without_out_is_the_outputs(dtype):
    z = np.linspace(-8, 8, N, dtype=dtype)
    t = _targets("uint8", dtype, z.shape)
    nbytes = z.nbytes
    cases = {
        "loss": (lambda: fn.sigmoid_focal_loss(z, t), nbytes),
        "grad": (lambda: fn.sigmoid_focal_loss_grad(z, t), nbytes),
        "with_grad-none": (
            lambda: fn.sigmoid_focal_loss_with_grad(z, t, reduction="none"),
            2 * nbytes,
        ),
        "with_grad-mean": (lambda: fn.sigmoid_focal_loss_with_grad(z, t), nbytes),
        "loss-sum": (lambda: fn.sigmoid_focal_loss(z, t, reduction="sum"), 0),
    }
    for name, (call, expected) in cases.items():
        peak = traced_peak(call)
        assert expected <= peak < expected + SMALL, f"{name}: {peak} bytes, outputs {expected}"


def test_non_contiguous_input_is_copied_once():
    z = np.linspace(-8, 8, 2 * N)[::2]
    t = _targets("uint8", np.float64, (2 * N,))[::2]
    peak = traced_peak(lambda: fn.sigmoid_focal_loss(z, t, reduction="mean"))
    expected = z.size * (8 + 1)  # one contiguous copy of each
    assert expected <= peak < expected + SMALL, peak


# --------------------------------------------------------------------------
# The GIL is released during the kernel
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_gil_is_released_during_a_long_call():
    n = 20_000_000
    z = np.linspace(-10.0, 10.0, n)
    t = np.zeros(n, dtype=np.bool_)
    t[::3] = True
    gout = np.empty_like(z)
    fn.sigmoid_focal_loss_with_grad(z[:1000], t[:1000])  # warm-up
    stamps = []
    stop = threading.Event()

    def worker():
        count = 0
        while not stop.is_set():
            count += 1
            if count % 200 == 0:
                stamps.append(time.perf_counter())

    th = threading.Thread(target=worker, daemon=True)
    th.start()
    try:
        while not stamps:
            time.sleep(0.001)
        with ft.num_threads(1):
            t0 = time.perf_counter()
            loss, _ = fn.sigmoid_focal_loss_with_grad(z, t, grad_out=gout)
            t1 = time.perf_counter()
    finally:
        stop.set()
        th.join()
    assert np.isfinite(loss)
    span = t1 - t0
    assert span > 0.05, f"the call took only {span:.3f} s: too short to tell"
    lo, hi = t0 + 0.2 * span, t1 - 0.2 * span
    inside = sum(lo <= s <= hi for s in stamps)
    # With the GIL held no Python bytecode runs in the middle of the call.
    assert inside > 0, f"the other thread made no progress during a {span:.3f} s call"


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------


def test_set_and_get_num_threads():
    default = fn.get_num_threads()
    assert default >= 1
    try:
        for n in (1, 3, 2, 64):
            fn.set_num_threads(n)
            assert fn.get_num_threads() == (n if fn.build_info()["openmp"] else 1)
            assert fn.build_info()["num_threads"] == fn.get_num_threads()
        # A call with more threads than cores gives the same bits as 1 thread.
        z = np.linspace(-9, 9, 100_003)
        t = np.arange(z.size) % 5 == 0
        fn.set_num_threads(64)
        many = fn.sigmoid_focal_loss_with_grad(z, t, reduction="sum")
        fn.set_num_threads(1)
        one = fn.sigmoid_focal_loss_with_grad(z, t, reduction="sum")
        ft.assert_bitwise_equal(np.asarray(many[0]), np.asarray(one[0]))
        ft.assert_bitwise_equal(many[1], one[1])
        fn.set_num_threads(0)
        assert fn.get_num_threads() == default
    finally:
        fn.set_num_threads(0)


@pytest.mark.parametrize(
    ("bad", "exc"),
    [(-1, ValueError), (-100, ValueError), (1.5, TypeError), ("2", TypeError), (None, TypeError)],
)
def test_set_num_threads_rejects(bad, exc):
    before = fn.get_num_threads()
    with pytest.raises(exc, match=r"\bn\b"):
        fn.set_num_threads(bad)
    assert fn.get_num_threads() == before


def test_omp_num_threads_is_respected():
    if not fn.build_info()["openmp"]:
        pytest.skip("built without OpenMP")
    code = """
        import numpy as np, focal_native as fn
        n = fn.get_num_threads()
        z = np.linspace(-5, 5, 200_000)
        fn.sigmoid_focal_loss(z, z > 0, reduction="sum")
        print(n, fn.build_info()["num_threads"], fn.get_num_threads())
    """
    for value, expected in (("1", 1), ("3", 3)):
        proc = run_python(code, {"OMP_NUM_THREADS": value})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [str(expected)] * 3, proc.stdout
    # set_num_threads overrides it, 0 restores it.
    proc = run_python(
        """
        import focal_native as fn
        fn.set_num_threads(2); a = fn.get_num_threads()
        fn.set_num_threads(0); b = fn.get_num_threads()
        print(a, b)
        """,
        {"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "1"]


def test_openmp_is_loaded_with_passive_waiting_unless_the_user_chose():
    """Busy-waiting OpenMP threads stall a loaded machine (see _core_loader)."""
    if not fn.build_info()["openmp"]:
        pytest.skip("built without OpenMP")
    code = """
        import os, focal_native
        print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
    """
    # libgomp prints its settings when it is loaded with OMP_DISPLAY_ENV set.
    for extra, policy, env_after in (
        ({}, "PASSIVE", "None None"),
        ({"OMP_WAIT_POLICY": "active"}, "ACTIVE", "active None"),
        ({"GOMP_SPINCOUNT": "1000"}, None, "None 1000"),
    ):
        env = {"OMP_DISPLAY_ENV": "TRUE", **extra}
        proc = run_python(code, env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == env_after, proc.stdout  # environment restored
        shown = [ln for ln in proc.stderr.splitlines() if "OMP_WAIT_POLICY" in ln]
        if shown and policy is not None:  # (a libgomp that prints nothing is not checked)
            assert policy in shown[0], shown


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_serially_and_does_not_hang():
    if not fn.build_info()["openmp"]:
        pytest.skip("built without OpenMP")
    code = """
        import os, sys, numpy as np, focal_native as fn
        fn.set_num_threads(2)
        z = np.linspace(-5, 5, 500_000)
        t = z > 0
        parent = fn.sigmoid_focal_loss_with_grad(z, t, reduction="sum")
        pid = os.fork()
        if pid == 0:
            try:
                n = fn.get_num_threads()
                child = fn.sigmoid_focal_loss_with_grad(z, t, reduction="sum")
                ok = n == 1 and child[0] == parent[0] and np.array_equal(child[1], parent[1])
                os._exit(0 if ok else 3)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), fn.get_num_threads())
    """
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "2"], proc.stdout


# --------------------------------------------------------------------------
# Build facts, instruction sets, CLI
# --------------------------------------------------------------------------


def test_build_info():
    info = fn.build_info()
    assert set(info) == {
        "version",
        "openmp",
        "isa",
        "compiled_isas",
        "supported_isas",
        "num_threads",
    }
    assert info["version"] == fn.__version__ == importlib.metadata.version("focal_native")
    assert isinstance(info["openmp"], bool)
    assert isinstance(info["num_threads"], int) and info["num_threads"] >= 1
    assert "baseline" in info["compiled_isas"] and "baseline" in info["supported_isas"]
    assert set(info["compiled_isas"]) <= {"baseline", "avx2", "avx512"}
    # Supported: the compiled ones this CPU runs, in the same (best-first) order.
    assert info["supported_isas"] == [
        i for i in info["compiled_isas"] if i in info["supported_isas"]
    ]
    assert info["isa"] == info["supported_isas"][0] == _core.get_isa()
    for name in ft.ISAS:
        with ft.use_isa(name):
            assert fn.build_info()["isa"] == name


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="bogus"):
        _core._set_isa("bogus")
    assert _core.get_isa() == ft.ISAS[0]
    _core._set_isa("")  # '' means auto
    assert _core.get_isa() == ft.ISAS[0]


def test_focal_native_isa_environment_variable():
    proc = run_python(
        "import focal_native as fn; print(fn.build_info()['isa'])", {"FOCAL_NATIVE_ISA": "baseline"}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "baseline"
    proc = run_python("import focal_native", {"FOCAL_NATIVE_ISA": "sse9"})
    assert proc.returncode != 0
    assert "FOCAL_NATIVE_ISA" in proc.stderr and "sse9" in proc.stderr


def test_command_line_paths():
    proc = run_python(
        None, args=["-m", "focal_native", "--cmakedir", "--include-dir", "--includes"]
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, lines
    inc_flag, inc_dir, cmake_dir = lines[0], lines[1], lines[2]
    cmake = pathlib.Path(cmake_dir)
    assert cmake.is_dir() and (cmake / "focal_nativeConfig.cmake").is_file()
    assert (cmake / "focal_nativeConfigVersion.cmake").is_file()
    assert str(cmake) == fn.get_cmake_dir()
    inc = pathlib.Path(inc_dir)
    assert (inc / "focal_native" / "focal_native.hpp").is_file()
    assert (inc / "focal_native" / "sigmoid.hpp").is_file()
    assert inc_flag == f"-I{inc}" and str(inc) == fn.get_include()


def test_command_line_version_and_info():
    proc = run_python(None, args=["-m", "focal_native", "--version"])
    assert proc.returncode == 0 and proc.stdout.strip() == fn.__version__
    proc = run_python(None, args=["-m", "focal_native"])
    assert proc.returncode == 0, proc.stderr
    keys = {line.split(":")[0] for line in proc.stdout.splitlines()}
    assert keys == set(fn.build_info())

"""Shared fixtures and helpers for the focal_native test suite.

Fixtures
--------
isa
    Runs the test once per instruction set this CPU supports
    (``focal_native._core.supported_isas()``), forced with ``_core._set_isa``;
    "auto" is restored afterwards. The value is the ISA name.
threads
    Returns a context manager ``threads(n)`` that sets ``set_num_threads(n)``
    and restores the default (0) afterwards.

Helpers
-------
Test modules cannot import a conftest by name under ``--import-mode=importlib``,
so this module also registers itself as ``focal_testing``::

    import focal_testing as ft

    ft.ISAS, ft.use_isa(name), ft.num_threads(n)
    ft.RTOL[dtype], ft.ATOL[dtype], ft.tol(dtype)
    ft.assert_close(actual, desired, rtol=..., atol=..., scale=...)
    ft.assert_bitwise_equal(a, b)
    ft.load_mp_reference()            # tests/mp_reference.py as a module
    ft.record_ulps(key, value)        # max ulps per key, printed at the end

Tolerances compare a native result with the float64 pure-Python oracle
(``focal_native.reference``): float32 results are computed in double and
rounded once, so 2e-6 relative is generous; float64 results agree with the
oracle to about 1e-14, so 1e-13 relative. The absolute floor is a few times
the dtype's smallest normal number, because the kernels flush subnormal
results to zero.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import pathlib
import sys

import focal_native
import numpy as np
import pytest
from focal_native import _core

sys.modules.setdefault("focal_testing", sys.modules[__name__])

HERE = pathlib.Path(__file__).resolve().parent


def pytest_configure(config):
    # Hypothesis' failure explanation imports a module that warns on import
    # (mypy_extensions.TypedDict); with warnings as errors that turns every
    # hypothesis failure report into an INTERNALERROR. Ignore only that one.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )


# --------------------------------------------------------------------------
# Instruction sets and threads
# --------------------------------------------------------------------------

ISAS: list[str] = list(_core.supported_isas())
# "auto" unless FOCAL_NATIVE_ISA forced another one at import.
_INITIAL_ISA = _core.get_isa()
_INITIAL_THREADS = focal_native.get_num_threads()


def _restore_isa():
    _core._set_isa("auto")
    if _core.get_isa() != _INITIAL_ISA:
        _core._set_isa(_INITIAL_ISA)


@contextlib.contextmanager
def use_isa(name):
    """Force instruction set `name` for the duration of the block."""
    _core._set_isa(name)
    try:
        assert _core.get_isa() == name
        yield name
    finally:
        _restore_isa()


@contextlib.contextmanager
def num_threads(n):
    """Set the library's thread count to `n` for the block; restore the default after."""
    focal_native.set_num_threads(n)
    try:
        yield n
    finally:
        focal_native.set_num_threads(0)


@pytest.fixture(params=ISAS, ids=[f"isa={name}" for name in ISAS])
def isa(request):
    """Run the test under every supported instruction set."""
    with use_isa(request.param):
        yield request.param


@pytest.fixture
def threads():
    """A context manager factory: ``with threads(1): ...``."""
    try:
        yield num_threads
    finally:
        focal_native.set_num_threads(0)


@pytest.fixture(autouse=True)
def _library_state_is_restored():
    """Every test starts and ends with the automatic ISA and default threads."""
    yield
    isa_now, threads_now = _core.get_isa(), focal_native.get_num_threads()
    _restore_isa()
    focal_native.set_num_threads(0)
    if isa_now != _INITIAL_ISA:
        pytest.fail(f"the test left instruction set {isa_now!r} forced")
    if threads_now != _INITIAL_THREADS:
        pytest.fail(f"the test left num_threads at {threads_now}")


# --------------------------------------------------------------------------
# Tolerances
# --------------------------------------------------------------------------

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
DTYPES = (F32, F64)

RTOL = {F32: 2e-6, F64: 1e-13}
ATOL = {F32: 16 * float(np.finfo(np.float32).tiny), F64: 16 * float(np.finfo(np.float64).tiny)}


def tol(dtype):
    """(rtol, atol) for comparing results of `dtype` with the float64 oracle."""
    d = np.dtype(dtype)
    return RTOL[d], ATOL[d]


def assert_close(actual, desired, *, rtol=None, atol=None, scale=None, err_msg=""):
    """|actual - desired| <= rtol * (|desired| + scale) + atol, elementwise.

    NaNs must sit at the same positions and infinities must match exactly.
    `rtol` / `atol` default to the tolerances of actual's dtype; `scale`
    (array or scalar, default 0) widens the relative part where the exact
    value is the small difference of larger terms.
    """
    a = np.asarray(actual)
    d = np.asarray(desired, dtype=np.float64)
    dt = a.dtype if a.dtype in DTYPES else F64
    r, t = tol(dt)
    rtol = r if rtol is None else rtol
    atol = t if atol is None else atol
    assert a.shape == d.shape, f"shape {a.shape} != {d.shape}. {err_msg}"
    a64 = a.astype(np.float64)
    nan_a, nan_d = np.isnan(a64), np.isnan(d)
    bad_nan = nan_a != nan_d
    inf_d = np.isinf(d) | np.isinf(a64)
    bad_inf = inf_d & ~(a64 == d)
    fin = ~(nan_a | nan_d | inf_d)
    s = 0.0 if scale is None else np.broadcast_to(np.asarray(scale, dtype=np.float64), d.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(fin, np.abs(a64 - d), 0.0)
        bound = rtol * (np.abs(d) + s) + atol
    bad = bad_nan | bad_inf | (fin & (err > bound))
    if np.any(bad):
        idx = np.flatnonzero(bad.ravel())
        af, df = a64.ravel(), d.ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(af[idx] - df[idx]) / np.abs(df[idx])
        rel = np.where(np.isnan(rel), np.inf, rel)
        lines = [
            f"  [{np.unravel_index(i, d.shape) if d.ndim else ()}] actual={af[i]!r} "
            f"desired={df[i]!r} rel={rel[j]:.3g}"
            for j, i in enumerate(idx[:10])
        ]
        pytest.fail(
            f"{idx.size} of {d.size} values differ beyond rtol={rtol:g}, atol={atol:g} "
            f"(max rel {np.max(rel):.3g}). {err_msg}\n" + "\n".join(lines)
        )


def assert_bitwise_equal(a, b, err_msg=""):
    """Same dtype, shape and bits (so -0.0 != +0.0), NaN in the same places.

    A NaN's sign and payload are not compared: IEEE 754 leaves them
    unspecified, and they follow the operand order the compiler picked, which
    differs between the kernels of one call and another (seen: exp of a NaN
    logit in the baseline build's loss+gradient and gradient-only kernels).
    """
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.dtype == b.dtype, f"dtype {a.dtype} != {b.dtype}. {err_msg}"
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}. {err_msg}"
    if a.dtype.kind == "f":
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            idx = np.flatnonzero((nan_a != nan_b).ravel())
            pytest.fail(f"NaN at different places, first at flat {idx[0]}. {err_msg}")
        a = np.where(nan_a, a.dtype.type(np.nan), a)
        b = np.where(nan_b, b.dtype.type(np.nan), b)
    ua = np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")
    ub = np.ascontiguousarray(b).view(f"u{b.dtype.itemsize}")
    if not np.array_equal(ua, ub):
        idx = np.flatnonzero((ua != ub).ravel())
        pytest.fail(
            f"{idx.size} of {a.size} values differ bitwise, first at flat {idx[0]}: "
            f"{a.ravel()[idx[0]]!r} vs {b.ravel()[idx[0]]!r}. {err_msg}"
        )


# --------------------------------------------------------------------------
# The 50-digit reference and the ulp summary
# --------------------------------------------------------------------------

_MP = None


def load_mp_reference():
    """tests/mp_reference.py, loaded once by path."""
    global _MP
    if _MP is None:
        spec = importlib.util.spec_from_file_location("mp_reference", HERE / "mp_reference.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MP = module
    return _MP


ULP_RECORDS: dict = {}


def record_ulps(key, value):
    """Keep the maximum ulp error seen under `key` (a tuple of labels)."""
    value = float(value)
    old = ULP_RECORDS.get(key)
    if old is None or value > old or (math.isnan(value) and not math.isnan(old)):
        ULP_RECORDS[key] = value


def pytest_terminal_summary(terminalreporter):
    if not ULP_RECORDS:
        return
    terminalreporter.section("max ulp error vs 50-digit mpmath reference")
    for key in sorted(ULP_RECORDS, key=lambda k: tuple(str(x) for x in k)):
        terminalreporter.write_line(
            f"  {' / '.join(str(x) for x in key):60s} {ULP_RECORDS[key]:8.3f}"
        )

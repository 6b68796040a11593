"""Arrays of more than 2**31 elements (GitHub issue 6): sizes, offsets and
counts are 64-bit.

Opt-in: ``python -m pytest -m bigmem tests/test_reliability_bigmem.py`` (about
12 GiB of memory, a few minutes on 2 cores). The tests are skipped unless
``bigmem`` is selected explicitly with ``-m``, and when less memory is
available than they need.

One float32 buffer of 2**31 + 4 logits (8 GiB) is viewed as every layout in
turn. Each reduction over the whole array is compared with the same reduction
computed in chunks of fewer than 2**31 elements (each chunk is a separate,
already tested call) and summed in double: a 32-bit size, offset or count
anywhere would give a wildly different sum, a wrong mean, or a crash. Last, the
gradient is written in place over the 8 GiB of logits and elements past 2**31
are checked against the oracle.
"""

from __future__ import annotations

import math

import focal_native as fn
import numpy as np
import pytest
from focal_native import reference as ref

pytestmark = [pytest.mark.bigmem, pytest.mark.slow]

N = 2**31 + 4  # > 2**31, divisible by 4 (classes) but not a power of two
C = 4
R = N // C  # 2**29 + 1 rows
CHUNK = 1 << 26
PERIOD = 1_000_003  # logits repeat with this (prime) period
NEEDED_GIB = 12.5


@pytest.fixture(scope="module", autouse=True)
def _explicitly_selected(request):
    expr = request.config.getoption("markexpr") or ""
    if "bigmem" not in expr or "not bigmem" in expr:
        pytest.skip("bigmem tests run only when selected with -m bigmem")
    try:
        import psutil

        avail = psutil.virtual_memory().available / 2**30
    except ImportError:  # pragma: no cover - psutil is in the test extra
        avail = math.inf
    if avail < NEEDED_GIB:
        pytest.skip(f"needs {NEEDED_GIB} GiB of available memory, {avail:.1f} GiB available")


def _pattern(start, stop):
    """The logit at flat indices [start, stop): a periodic pattern in [-8, 8)."""
    i = np.arange(start, stop, dtype=np.int64)
    return (((i % PERIOD) * 16.0) / PERIOD - 8.0).astype(np.float32)


def _hard(start, stop):
    i = np.arange(start, stop, dtype=np.int64)
    return ((i * 7) % 11 < 3).astype(np.uint8)


def _labels(start, stop, classes):
    """Row labels in [0, classes], as uint8."""
    i = np.arange(start, stop, dtype=np.int64)
    return ((i * 5) % (classes + 1)).astype(np.uint8)


@pytest.fixture(scope="module")
def big():
    z = np.empty(N, dtype=np.float32)
    t = np.empty(N, dtype=np.uint8)
    for s in range(0, N, CHUNK):
        e = min(s + CHUNK, N)
        z[s:e] = _pattern(s, e)
        t[s:e] = _hard(s, e)
    return z, t


def _chunked(func, z, t, rows_axis_len, slicer, **kw):
    """sum over chunks (each < 2**31 elements) of func(..., reduction='sum'), in double."""
    total = 0.0
    step = CHUNK // max(1, z.size // rows_axis_len)
    for s in range(0, rows_axis_len, step):
        e = min(s + step, rows_axis_len)
        zz, tt = slicer(z, t, s, e)
        total += float(func(zz, tt, reduction="sum", **kw))
    return total


def test_sigmoid_elementwise_sum_and_mean(big):
    z, t = big
    fn.set_num_threads(0)
    full = float(fn.sigmoid_focal_loss(z, t, reduction="sum"))
    mean = float(fn.sigmoid_focal_loss(z, t, reduction="mean"))
    chunked = _chunked(fn.sigmoid_focal_loss, z, t, N, lambda z, t, s, e: (z[s:e], t[s:e]))
    assert math.isclose(full, chunked, rel_tol=1e-6), (full, chunked)
    assert math.isclose(mean, chunked / N, rel_tol=1e-6), (mean, chunked / N)
    loss, _ = fn.sigmoid_focal_loss_with_grad(z[: 1 << 20], t[: 1 << 20])  # sanity: same API
    assert np.isfinite(loss)


def test_softmax_rows_and_columns(big):
    z, _ = big
    lab = np.empty(R, dtype=np.uint8)
    for s in range(0, R, CHUNK):
        e = min(s + CHUNK, R)
        lab[s:e] = _labels(s, e, C - 1)  # in [0, C)
    rows = z.reshape(R, C)  # class axis last: row offsets up to 2**31 + 3
    full = float(fn.softmax_focal_loss(rows, lab, reduction="sum"))
    chunked = _chunked(fn.softmax_focal_loss, rows, lab, R, lambda z, t, s, e: (z[s:e], t[s:e]))
    assert math.isclose(full, chunked, rel_tol=1e-6), (full, chunked)
    mean = float(fn.softmax_focal_loss(rows, lab, reduction="mean"))
    assert math.isclose(mean, chunked / R, rel_tol=1e-6)

    cols = z.reshape(C, R)  # class axis first: element (k, i) at k * R + i > 2**31
    full = float(fn.softmax_focal_loss(cols, lab, axis=0, reduction="sum"))
    chunked = _chunked(fn.softmax_focal_loss, cols, lab, R,
                       lambda z, t, s, e: (z[:, s:e], t[s:e]), axis=0)
    assert math.isclose(full, chunked, rel_tol=1e-6), (full, chunked)


def test_sigmoid_labels_and_in_place_gradient(big):
    z, t = big
    lab = np.empty(R, dtype=np.uint8)
    for s in range(0, R, CHUNK):
        e = min(s + CHUNK, R)
        lab[s:e] = _labels(s, e, C)  # in [0, C], C = background
    rows = z.reshape(R, C)
    full = float(fn.sigmoid_focal_loss(rows, lab, reduction="sum"))
    chunked = _chunked(fn.sigmoid_focal_loss, rows, lab, R, lambda z, t, s, e: (z[s:e], t[s:e]))
    assert math.isclose(full, chunked, rel_tol=1e-6), (full, chunked)

    # Last (destroys the logits): the mean's gradient, in place over all 2**31 + 4.
    sample = np.r_[0:4, 2**31 - 4 : 2**31 + 4, N - 8 : N]
    z_sample = np.array([_pattern(int(i), int(i) + 1)[0] for i in sample], dtype=np.float32)
    t_sample = t[sample].copy()
    g = fn.sigmoid_focal_loss_grad(z, t, reduction="mean", out=z)
    assert g is z
    expected = ref.sigmoid_focal_loss_grad(z_sample, t_sample, reduction="none") / N
    np.testing.assert_allclose(g[sample], expected, rtol=2e-6, atol=1e-30)

"""A call whose gradient goes in place over the logits (``out=logits`` /
``grad_out=logits``) and fails on a bad target leaves every array as it was:
the logits, the loss ``out=``, the targets. Such a call checks its targets
before it writes (the kernels otherwise find bad targets in the pass that
writes). The error is the one an out-of-place call raises, naming the same
first bad position, on every instruction set and thread count, for arrays
small enough to run serially and large enough to run in parallel blocks.
"""

from __future__ import annotations

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest

DTYPES = [np.float32, np.float64]
# Elements: serial (under the 2**15 parallel grain) and many blocks.
SIZES = {"small": 1200, "large": 240_000}


def _logits(shape, dtype, seed=3):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * 3).astype(dtype)


def _message(call, z, t, **kw):
    with pytest.raises(ValueError) as info:
        call(z, t, **kw)
    return str(info.value)


def _check(func, z, t, *, loss_shape=None, **kw):
    """The failing call out of place, then in place: same message, nothing written.

    With ``loss_shape`` the call also gets a loss ``out=`` (reduction 'none').
    """
    expected = _message(func, z.copy(), t, **kw)
    assert "targets" in expected, expected
    before, t_before = z.copy(), t.copy()
    zi = z.copy()
    if loss_shape is not None:
        loss_out = np.full(loss_shape, 7, dtype=z.dtype)
        got = _message(func, zi, t, out=loss_out, grad_out=zi, **kw)
        assert np.all(loss_out == 7), "loss out= written by a failed call"
    else:
        got = _message(func, zi, t, out=zi, **kw)
    assert got == expected
    ft.assert_bitwise_equal(zi, before, "logits overwritten by a failed in-place call")
    ft.assert_bitwise_equal(t, t_before, "targets changed")


def _place_bad(t, bad_value, where, rng):
    """Set one target (first/middle/last flat position) and a later one to bad values."""
    flat = t.reshape(-1)
    i = {"first": 0, "middle": flat.size // 2 + 1, "last": flat.size - 1}[where]
    flat[i] = bad_value
    if i + 5 < flat.size:
        flat[rng.integers(i + 1, flat.size)] = bad_value
    return t


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("kind", ["int64", "int8", "uint8", "soft", "soft-nan"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_elementwise(isa, threads, dtype, kind, where, size):
    n = SIZES[size]
    z = _logits((n // 40, 40), dtype)
    rng = np.random.default_rng(1)
    if kind.startswith("soft"):
        t = rng.random(z.shape).astype(dtype)
        bad = np.nan if kind == "soft-nan" else 1.25
    else:
        t = rng.integers(0, 2, size=z.shape).astype(kind)
        bad = {"int64": -1, "int8": 3, "uint8": 2}[kind]
    _place_bad(t, bad, where, rng)
    for nt in (1, 2):
        with threads(nt):
            _check(fn.sigmoid_focal_loss_grad, z, t, reduction="mean")
            _check(fn.sigmoid_focal_loss_with_grad, z, t, reduction="none",
                   loss_shape=z.shape)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("layout", ["rows", "nchw"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_class_indices(isa, threads, dtype, layout, where, size):
    n, C = SIZES[size], 6
    rng = np.random.default_rng(2)
    if layout == "rows":
        z, axis = _logits((n // C, C), dtype), -1
        t = rng.integers(0, C + 1, size=n // C)
    else:
        z, axis = _logits((2, C, n // (2 * C)), dtype), 1
        t = rng.integers(0, C + 1, size=(2, n // (2 * C)))
    _place_bad(t, C + 1, where, rng)
    with threads(2):
        _check(fn.sigmoid_focal_loss_grad, z, t, axis=axis)
        _check(fn.sigmoid_focal_loss_with_grad, z, t, axis=axis,
               reduction="none", loss_shape=z.shape)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("layout", ["rows80", "rows10", "nchw"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_class_indices(isa, threads, dtype, layout, where, size):
    n = SIZES[size]
    rng = np.random.default_rng(4)
    if layout == "nchw":
        C, axis = 5, 1
        z = _logits((2, C, n // (2 * C)), dtype)
        t = rng.integers(0, C, size=(2, n // (2 * C)))
        loss_shape = t.shape
    else:
        C, axis = (80 if layout == "rows80" else 10), -1
        z = _logits((n // C, C), dtype)
        t = rng.integers(0, C, size=n // C)
        loss_shape = t.shape
    t[::7] = -100  # ignored positions stay valid
    _place_bad(t, C, where, rng)
    with threads(2):
        _check(fn.softmax_focal_loss_grad, z, t, axis=axis, reduction="mean")
        _check(fn.softmax_focal_loss_with_grad, z, t, axis=axis,
               reduction="none", label_smoothing=0.1, loss_shape=loss_shape)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("layout", ["rows", "nchw"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_dense(isa, threads, dtype, layout, where, size):
    n = SIZES[size]
    rng = np.random.default_rng(5)
    if layout == "nchw":
        z, axis = _logits((2, 8, n // 16), dtype), 1
        loss_shape = (2, n // 16)
    else:
        z, axis = _logits((n // 40, 40), dtype), -1
        loss_shape = (n // 40,)
    t = rng.random(z.shape).astype(dtype)
    t /= t.sum(axis=axis, keepdims=True)
    _place_bad(t, -0.5, where, rng)
    with threads(2):
        _check(fn.softmax_focal_loss_grad, z, t, axis=axis)
        _check(fn.softmax_focal_loss_with_grad, z, t, axis=axis,
               reduction="none", loss_shape=loss_shape)


def test_valid_in_place_calls_are_unchanged_by_the_check():
    """The check before an in-place call must not change a valid call's results."""
    rng = np.random.default_rng(6)
    z = _logits((3000, 40), np.float32)
    for func, t, kw in [
        (fn.sigmoid_focal_loss_grad, rng.integers(0, 2, size=z.shape), {}),
        (fn.sigmoid_focal_loss_grad, rng.random(z.shape).astype(np.float32), {}),
        (fn.softmax_focal_loss_grad, rng.integers(0, 40, size=3000), {"reduction": "sum"}),
        (fn.softmax_focal_loss_grad, np.eye(40, dtype=np.float32)[rng.integers(0, 40, 3000)], {}),
    ]:
        want = func(z, t, **kw)
        zi = z.copy()
        assert func(zi, t, out=zi, **kw) is zi
        ft.assert_bitwise_equal(zi, want)

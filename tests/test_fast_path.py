"""The compiled fast path (_core.sigmoid_fast / softmax_fast) against the checked path.

The public functions first offer their arguments to the fast path, which
handles the common cases itself and declines (returns None) everything else.
Here every case it accepts must give bitwise the result of the checked Python
path (`_run`), and every unusual or invalid argument must be declined, so that
the Python layer's checks and messages still apply.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import focal_native as fn
from focal_native import _sigmoid, _softmax
from focal_native._core_loader import core

LOSS, GRAD, BOTH = 1, 2, 3


def same(a, b):
    """Bitwise equality of results: type, dtype, shape and every bit (NaNs too)."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(same, a, b))
    if type(a) is not type(b):
        return False
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def sig_fast(mode, z, t, alpha=0.25, gamma=2.0, reduction="mean", normalizer=None, axis=-1,
             ignore_index=-100, out=None, grad_out=None):
    return core().sigmoid_fast(mode, z, t, alpha, gamma, reduction, normalizer, axis,
                               ignore_index, out, grad_out)


def sig_checked(mode, z, t, alpha=0.25, gamma=2.0, reduction="mean", normalizer=None, axis=-1,
                ignore_index=-100, out=None, grad_out=None):
    loss, grad = _sigmoid._run("f", z, t, alpha, gamma, reduction, normalizer, axis,
                               ignore_index, bool(mode & LOSS), bool(mode & GRAD), out,
                               grad_out, None)
    return {LOSS: loss, GRAD: grad, BOTH: (loss, grad)}[mode]


def sm_fast(mode, z, t, alpha=None, gamma=2.0, reduction="mean", axis=-1, ignore_index=-100,
            label_smoothing=0.0, normalizer=None, out=None, grad_out=None):
    return core().softmax_fast(mode, z, t, alpha, gamma, reduction, axis, ignore_index,
                               label_smoothing, normalizer, out, grad_out)


def sm_checked(mode, z, t, alpha=None, gamma=2.0, reduction="mean", axis=-1, ignore_index=-100,
               label_smoothing=0.0, normalizer=None, out=None, grad_out=None):
    loss, grad = _softmax._run("f", z, t, alpha, gamma, reduction, axis, ignore_index,
                               label_smoothing, normalizer, bool(mode & LOSS), bool(mode & GRAD),
                               out, grad_out, None)
    return {LOSS: loss, GRAD: grad, BOTH: (loss, grad)}[mode]


def _binary_targets(kind, z, rng, axis):
    if kind == "labels":
        classes = z.shape[axis]
        shape = z.shape[:axis % z.ndim] + z.shape[axis % z.ndim + 1:]
        lab = rng.integers(0, classes + 1, size=shape)
        lab.reshape(-1)[::7] = -100
        return lab
    y = rng.random(z.shape) < 0.3
    if kind == "float":
        soft = rng.random(z.shape).astype(z.dtype)
        return np.where(rng.random(z.shape) < 0.5, y.astype(z.dtype), soft)
    return y.astype(kind)


SIG_TARGETS = ["bool", "uint8", "int8", "int16", "int32", "uint64", "float", "labels"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tkind", SIG_TARGETS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("mode", [LOSS, GRAD, BOTH])
def test_sigmoid_fast_matches_checked(dtype, tkind, reduction, mode):
    rng = np.random.default_rng(zlib.crc32(repr((tkind, reduction, mode)).encode()))
    for shape, axis in [((37,), -1), ((5, 33), -1), ((4, 3, 17), 1), ((0, 3), -1), ((1,), 0)]:
        z = (rng.standard_normal(shape) * 6).astype(dtype)
        t = _binary_targets(tkind, z, rng, axis)
        if tkind == "labels":
            t = t.astype(np.int64 if shape[0] % 2 else np.int32)
        for alpha, gamma, norm in [(0.25, 2.0, None), (None, 0, 3.5), (-1, 1.5, None),
                                   (1, 0.5, 1e-3)]:
            kw = dict(alpha=alpha, gamma=gamma, reduction=reduction, normalizer=norm, axis=axis)
            got = sig_fast(mode, z, t, **kw)
            assert got is not None, (shape, tkind, kw)
            assert same(got, sig_checked(mode, z, t, **kw))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_fast_outputs_and_in_place(dtype):
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((9, 31)) * 4).astype(dtype)
    y = rng.random(z.shape) < 0.2
    want_loss, want_grad = sig_checked(BOTH, z, y, reduction="none")
    lo, go = np.full_like(z, np.nan), np.full_like(z, np.nan)
    loss, grad = sig_fast(BOTH, z, y, reduction="none", out=lo, grad_out=go)
    assert loss is lo and grad is go
    assert same((loss, grad), (want_loss, want_grad))
    g2 = np.empty_like(z)
    assert sig_fast(GRAD, z, y, reduction="sum", grad_out=g2) is g2
    # The gradient over the logits themselves.
    zc = z.copy()
    _, grad = sig_fast(BOTH, zc, y, reduction="none", grad_out=zc)
    assert grad is zc and same(grad, want_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tkind", ["int64", "int32", "uint8", "dense"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("mode", [LOSS, GRAD, BOTH])
def test_softmax_fast_matches_checked(dtype, tkind, reduction, mode):
    rng = np.random.default_rng(zlib.crc32(repr((tkind, reduction, mode)).encode()))
    for shape, axis in [((37, 5), -1), ((3, 4, 6, 5), 1), ((1, 1), 0), ((0, 4), -1),
                        ((200, 3), -1)]:
        z = (rng.standard_normal(shape) * 5).astype(dtype)
        classes = shape[axis]
        pos = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
        if tkind == "dense":
            t = rng.random(shape).astype(dtype)
            t /= np.maximum(t.sum(axis=axis, keepdims=True), 1)
        else:
            t = rng.integers(0, classes, size=pos).astype(tkind)
            if tkind != "uint8":
                t.reshape(-1)[::5] = -100
        for alpha, gamma, eps, norm in [(None, 2.0, 0.0, None), (0.5, 0, 0.0, 2.0),
                                        (2, 1.5, 0.1, None), (None, 0.25, 0.0, 1e-2)]:
            if tkind == "dense" and eps:
                continue
            kw = dict(alpha=alpha, gamma=gamma, reduction=reduction, axis=axis,
                      label_smoothing=eps, normalizer=norm)
            got = sm_fast(mode, z, t, **kw)
            assert got is not None, (shape, tkind, kw)
            assert same(got, sm_checked(mode, z, t, **kw))


def test_softmax_fast_outputs():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((2, 5, 7)).astype(np.float32)
    t = rng.integers(0, 5, size=(2, 7))
    want = sm_checked(BOTH, z, t, reduction="none", axis=1)
    lo, go = np.empty((2, 7), np.float32), np.empty_like(z)
    got = sm_fast(BOTH, z, t, reduction="none", axis=1, out=lo, grad_out=go)
    assert got[0] is lo and got[1] is go and same(got, want)
    zc = z.copy()
    assert same(sm_fast(GRAD, zc, t, reduction="none", axis=1, grad_out=zc), want[1])


def _sig_declined():
    z = np.linspace(-3, 3, 24, dtype=np.float32).reshape(4, 6)
    y = np.zeros(z.shape, bool)
    lab = np.zeros(4, np.int64)
    ro = np.empty_like(z)
    ro.flags.writeable = False

    class Sub(np.ndarray):
        pass

    cases = {
        "list logits": dict(z=z.tolist()),
        "float16 logits": dict(z=z.astype(np.float16)),
        "int logits": dict(z=z.astype(np.int32)),
        "strided logits": dict(z=np.asfortranarray(z)),
        "byte-swapped logits": dict(z=z.astype(">f4")),
        "ndarray subclass": dict(z=z.view(Sub)),
        "list targets": dict(t=y.tolist()),
        "float64 targets for float32 logits": dict(t=y.astype(np.float64)),
        "int16 labels": dict(t=lab.astype(np.int16)),
        "labels with a bad axis": dict(t=np.zeros(6, np.int64), axis=5),
        "labels with a float axis": dict(t=np.zeros(6, np.int64), axis=0.0),
        "shape mismatch": dict(t=np.zeros((4, 5), bool)),
        "alpha > 1": dict(alpha=1.5),
        "alpha NaN": dict(alpha=float("nan")),
        "numpy alpha": dict(alpha=np.float32(0.25)),
        "bool gamma": dict(gamma=True),
        "negative gamma": dict(gamma=-1.0),
        "infinite gamma": dict(gamma=float("inf")),
        "huge int gamma": dict(gamma=10**400),
        "bad reduction": dict(reduction="avg"),
        "zero normalizer": dict(normalizer=0.0),
        "NaN normalizer": dict(normalizer=float("nan")),
        "float ignore_index": dict(ignore_index=-100.0),
        "ignore_index beyond int64": dict(ignore_index=2**70),
        "out with a reduction": dict(reduction="mean", out=np.empty_like(z)),
        "out of another dtype": dict(reduction="none", out=np.empty(z.shape)),
        "out of another shape": dict(reduction="none", out=np.empty(24, np.float32)),
        "read-only grad_out": dict(grad_out=ro),
        "grad_out over the targets": dict(t=y.view(np.uint8), grad_out=None, overlap=True),
        "loss out over the logits": dict(reduction="none", out="logits"),
        "a bad target value": dict(t=np.full(z.shape, 2, np.int64)),
        "byte-swapped targets": dict(t=y.astype(np.int32).astype(">i4")),
        "strided targets": dict(t=np.zeros((4, 12), bool)[:, ::2]),
        "unaligned logits": dict(z="unaligned"),
        "grad_out partly over the logits": dict(grad_out="shifted"),
        "out is grad_out": dict(reduction="none", out="same"),
        "Python bool alpha": dict(alpha=True),
        "Python bool ignore_index": dict(ignore_index=True),
    }
    return z, y, cases


@pytest.mark.parametrize("name", list(_sig_declined()[2]))
def test_sigmoid_fast_declines(name):
    z, y, cases = _sig_declined()
    kw = dict(cases[name])
    zz, t = kw.pop("z", z), kw.pop("t", y)
    if kw.pop("overlap", False):
        buf = np.zeros(z.size * 4, np.uint8)
        t = buf[: z.size].reshape(z.shape)
        kw["grad_out"] = buf.view(np.float32).reshape(z.shape)
    if isinstance(zz, str):  # float32 data one byte into a buffer
        zz = np.zeros(z.size * 4 + 1, np.uint8)[1:].view(np.float32).reshape(z.shape)
        zz[...] = z
        assert not zz.flags.aligned
    spec_out, spec_grad = kw.get("out"), kw.get("grad_out")
    if isinstance(spec_out, str) and spec_out == "logits":
        kw["out"] = zz
    if isinstance(spec_out, str) and spec_out == "same":
        kw["out"] = kw["grad_out"] = np.empty_like(z)
    if isinstance(spec_grad, str):  # "shifted"
        big = np.concatenate([z.ravel(), z.ravel()])
        zz, kw["grad_out"] = big[:z.size].reshape(z.shape), big[1:z.size + 1].reshape(z.shape)
    assert sig_fast(BOTH, zz, t, **kw) is None
    # The same arguments through the loss-only and gradient-only mappings.
    assert sig_fast(LOSS, zz, t, **{**kw, "grad_out": None}) is None or "grad_out" in kw
    assert sig_fast(GRAD, zz, t, **{**kw, "out": None}) is None or "out" in kw


@pytest.mark.parametrize(
    "kw",
    [dict(alpha=[1.0, 2.0, 3.0]), dict(alpha=np.ones(3)), dict(alpha=-1.0), dict(alpha=float("inf")),
     dict(label_smoothing=1.0), dict(label_smoothing=-0.1), dict(axis=2), dict(axis=None),
     dict(t="int16"), dict(t="dense-smoothed"), dict(t="dense-float64"), dict(t="bool-dense"),
     dict(z="zero classes"), dict(gamma=float("nan")), dict(reduction=None),
     dict(t="bad label"), dict(out="over targets")],
    ids=str,
)
def test_softmax_fast_declines(kw):
    kw = dict(kw)
    z = np.zeros((4, 3), np.float32)
    t = np.zeros(4, np.int64)
    spec_t, spec_z, spec_out = kw.pop("t", None), kw.pop("z", None), kw.pop("out", None)
    if spec_t == "int16":
        t = t.astype(np.int16)
    elif spec_t == "dense-smoothed":
        t, kw["label_smoothing"] = np.zeros_like(z), 0.1
    elif spec_t == "dense-float64":
        t = np.zeros(z.shape)
    elif spec_t == "bool-dense":
        t = np.zeros(z.shape, bool)
    elif spec_t == "bad label":
        t = np.full(4, 3, np.int64)
    if spec_z == "zero classes":
        z = np.zeros((4, 0), np.float32)
    if spec_out == "over targets":
        buf = np.zeros(4, np.float64)
        t = buf.view(np.int64)
        kw.update(reduction="none", out=buf[:4].view(np.float32)[:4])
    assert sm_fast(BOTH, z, t, **kw) is None


def test_declined_calls_still_raise_their_messages():
    z = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="alpha must be in"):
        fn.sigmoid_focal_loss_with_grad(z, np.zeros(4, bool), alpha=1.5)
    with pytest.raises(ValueError, match=r"targets\[2\] = 3 is not a binary label"):
        fn.sigmoid_focal_loss_with_grad(z, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="is not a valid class index"):
        fn.softmax_focal_loss_with_grad(z.reshape(2, 2), np.array([0, 5]))
    # In place: the logits are overwritten, the error is still the target's.
    zc = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"targets\[3\] = 7"):
        fn.sigmoid_focal_loss_grad(zc, np.array([0, 1, 0, 7]), out=zc)


def _spy(monkeypatch, module, real, calls):
    """Route `module`'s fast path through a recorder of accepted (non-None) calls."""

    def spy(*args):
        r = real(*args)
        calls.append(r is not None)
        return r

    monkeypatch.setattr(module, "_FAST", spy)  # the cached _core entry point


def test_public_functions_take_the_fast_path(monkeypatch):
    """The public functions return the fast path's objects (not a recomputation)."""
    z = np.linspace(-2, 2, 10, dtype=np.float32)
    y = z > 0
    calls = []
    _spy(monkeypatch, _sigmoid, core().sigmoid_fast, calls)
    fn.sigmoid_focal_loss(z, y)
    fn.sigmoid_focal_loss_grad(z, y, out=np.empty_like(z))
    fn.sigmoid_focal_loss_with_grad(z, y)
    assert calls == [True, True, True]

    zs = z.reshape(5, 2)
    lab = np.array([0, 1, 1, 0, 1])
    calls.clear()
    _spy(monkeypatch, _softmax, core().softmax_fast, calls)
    fn.softmax_focal_loss(zs, lab)
    fn.softmax_focal_loss_grad(zs, lab, out=np.empty_like(zs))
    fn.softmax_focal_loss_with_grad(zs, lab)
    assert calls == [True, True, True]


def test_fast_path_leaves_inputs_alone():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((7, 9)).astype(np.float32)
    y = rng.random(z.shape) < 0.3
    lab = rng.integers(0, 9, size=7)
    z0, y0, lab0 = z.copy(), y.copy(), lab.copy()
    sig_fast(BOTH, z, y, reduction="none")
    sm_fast(BOTH, z, lab, reduction="none")
    assert same(z, z0) and same(y, y0) and same(lab, lab0)


def test_scalar_result_overflow_is_inf_without_warning():
    z = np.full(4, -3e38, np.float32)  # loss ~ 3e38 * 0.25 each; the sum overflows float32
    y = np.ones(4, bool)
    with np.errstate(all="raise"):
        loss = sig_fast(LOSS, z, y, alpha=1.0, gamma=0.0, reduction="sum")
    assert type(loss) is np.float32 and loss == np.inf
    assert same(loss, sig_checked(LOSS, z, y, alpha=1.0, gamma=0.0, reduction="sum"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixed_cases_agree(dtype):
    """Every combination of output arguments, in place or not, through the public API."""
    rng = np.random.default_rng(11)
    z = (rng.standard_normal((6, 10)) * 3).astype(dtype)
    y = rng.random(z.shape) < 0.4
    for reduction, give_out, give_grad in itertools.product(["none", "sum"], [0, 1], [0, 1]):
        out = np.empty_like(z) if give_out and reduction == "none" else None
        gout = np.empty_like(z) if give_grad else None
        got = fn.sigmoid_focal_loss_with_grad(z, y, reduction=reduction, out=out, grad_out=gout)
        want = sig_checked(BOTH, z, y, reduction=reduction)
        assert same(got, want)


def test_fast_entry_points_check_their_argument_count():
    # They are plain METH_FASTCALL functions (no pybind11 dispatcher): a wrong
    # number of arguments is a TypeError, not a crash or an out-of-bounds read.
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="expected 12 positional arguments, got 1"):
        core().softmax_fast(BOTH)
    with pytest.raises(TypeError, match="expected 11 positional arguments, got 2"):
        core().sigmoid_fast(BOTH, z)
    with pytest.raises(TypeError, match="got 13"):
        core().softmax_fast(BOTH, z, np.array([0, 1]), *([None] * 10))
    with pytest.raises(TypeError):
        core().sigmoid_fast(mode=BOTH)


@pytest.mark.parametrize("mode", [0, 4, -1, 2**70, True, 3.0, "3", None, np.int64(3)])
def test_fast_entry_points_decline_a_bad_mode(mode):
    z = np.zeros((2, 3), np.float32)
    assert sm_fast(mode, z, np.array([0, 1])) is None
    assert sig_fast(mode, z, np.zeros((2, 3), bool)) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_scalar_behaves_like_numpy_scalar(dtype):
    # The reduced loss is built directly as a NumPy scalar: it must be a full
    # NumPy scalar of the logits' dtype, with the float32 rounding of the sum.
    rng = np.random.default_rng(5)
    z = rng.standard_normal((33, 5)).astype(dtype)
    lab = rng.integers(0, 5, size=33)
    loss = sm_fast(LOSS, z, lab, reduction="sum")
    assert type(loss) is np.dtype(dtype).type and loss.dtype == dtype
    assert same(loss, sm_checked(LOSS, z, lab, reduction="sum"))
    assert same(loss, dtype(float(loss)))
    assert same(loss * dtype(2), dtype(2 * float(loss))) and np.isfinite(loss)
    assert loss.shape == () and hash(loss) == hash(float(loss))


@pytest.mark.parametrize("tail, want", [(2.0**102, np.finfo(np.float32).max), (2.0**103, np.inf)])
def test_float32_scalar_rounds_like_ieee_at_the_top_of_the_range(tail, want):
    # The double sum FLT_MAX + tail lies below (-> FLT_MAX) or on (-> inf) the
    # midpoint between FLT_MAX and 2^128; the fast path rounds it as NumPy does.
    z = np.array([-np.finfo(np.float32).max, -tail], np.float32)
    y = np.ones(2, bool)
    with np.errstate(over="ignore"):
        loss = sig_fast(LOSS, z, y, alpha=1.0, gamma=0.0, reduction="sum")
        checked = sig_checked(LOSS, z, y, alpha=1.0, gamma=0.0, reduction="sum")
    assert type(loss) is np.float32 and loss == np.float32(want)
    assert same(loss, checked)

"""Every error path of the softmax focal loss: the exception type and a message
that names the offending argument (and, for bad targets, the first offending
position and value). Also: no failing call modifies its inputs or outputs.
"""

from __future__ import annotations

import re

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest

FUNCS = {
    "loss": fn.softmax_focal_loss,
    "grad": fn.softmax_focal_loss_grad,
    "with_grad": fn.softmax_focal_loss_with_grad,
}
F_IDS = list(FUNCS)
F_LIST = list(FUNCS.values())

Z = np.linspace(-3, 3, 12).reshape(3, 4)  # 3 positions, C = 4
T = np.array([0, 3, 1])
D = np.full((3, 4), 0.25)  # dense targets


class raises:
    """pytest.raises that also checks every regex in `patterns` against the message,
    and that the call left its array arguments unchanged."""

    def __init__(self, exc, *patterns, watch=()):
        self.exc, self.patterns = exc, patterns
        self.watch = [(a, a.copy()) for a in watch if isinstance(a, np.ndarray)]

    def __enter__(self):
        self._cm = pytest.raises(self.exc)
        self._info = self._cm.__enter__()
        return self._info

    def __exit__(self, *args):
        suppressed = self._cm.__exit__(*args)
        msg = str(self._info.value)
        for p in self.patterns:
            assert re.search(p, msg), f"{p!r} not found in message: {msg!r}"
        for arr, before in self.watch:
            ft.assert_bitwise_equal(arr, before, "an argument was modified by a failing call")
        return suppressed


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_shape_mismatch_shows_the_shapes(func):
    z, t = Z.copy(), T.reshape(3, 1)
    with raises(
        ValueError,
        "targets",
        re.escape("(3, 1)"),
        re.escape("(3,)"),
        re.escape("(3, 4)"),
        watch=(z, t),
    ):
        func(z, t)
    with raises(ValueError, "targets", re.escape("(4,)"), re.escape("(3,)")):
        func(Z, np.array([0, 1, 2, 3]))
    # dense targets of the wrong shape
    with raises(ValueError, "targets", re.escape("(4, 3)"), re.escape("(3, 4)")):
        func(Z, np.full((4, 3), 0.25))
    # with axis=0 the positions are the 4 columns
    with raises(ValueError, "targets", re.escape("(3,)"), re.escape("(4,)")):
        func(Z, T, axis=0)
    # float targets of the positions' shape are not class indices
    with raises(ValueError, "targets", re.escape("(3,)"), "float64"):
        func(Z, T.astype(np.float64))


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("tdtype", [np.int8, np.int32, np.int64, np.uint8])
def test_integer_targets_with_the_logits_full_shape(func, tdtype):
    t = np.zeros(Z.shape, dtype=tdtype)
    with raises(
        ValueError,
        "targets",
        re.escape("(3, 4)"),
        "integer class indices",
        re.escape("(3,)"),
        watch=(t,),
    ):
        func(Z, t)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_zero_dimensional_logits(func):
    with raises(ValueError, "logits", "dimension"):
        func(np.float64(1.0), np.array(0))


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_zero_classes(func):
    for z, t, kw in (
        (np.zeros((3, 0)), np.zeros(3, dtype=np.int64), {}),
        (np.zeros((2, 0, 5)), np.zeros((2, 5), dtype=np.int64), dict(axis=1)),
        (np.zeros((3, 0)), np.zeros((3, 0)), {}),
        (np.zeros((3, 0)), np.zeros(3, dtype=np.int64), dict(label_smoothing=0.1)),
        (np.zeros(0), np.array(0), {}),
    ):
        with raises(ValueError, "0 classes", ">= 1"):
            func(z, t, **kw)


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", ["avg", "MEAN", "", "none ", None, 0, 1.0, ["mean"]])
def test_bad_reduction(func, bad):
    with raises(ValueError, "reduction", "'none'", "'mean'", "'sum'"):
        func(Z, T, reduction=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", [-1.0, -1e-300, float("nan"), float("inf"), -float("inf")])
def test_bad_gamma_value(func, bad):
    with raises(ValueError, "gamma", ">= 0"):
        func(Z, T, gamma=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", ["2", None, True, [2.0], 1j])
def test_bad_gamma_type(func, bad):
    with raises(TypeError, "gamma", "real number"):
        func(Z, T, gamma=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", [-0.25, -1e-300, float("nan"), float("inf"), -float("inf")])
def test_bad_scalar_alpha(func, bad):
    with raises(ValueError, "alpha", ">= 0"):
        func(Z, T, alpha=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_bad_alpha_vector(func):
    for k, bad in ((2, -0.5), (0, float("nan")), (3, float("inf")), (1, -float("inf"))):
        a = np.ones(4)
        a[k] = bad
        with raises(ValueError, rf"alpha\[{k}\]", watch=(a,)):
            func(Z, T, alpha=a)
        with raises(ValueError, rf"alpha\[{k}\]"):
            func(Z, T, alpha=a.tolist())
    for bad in (
        np.ones(3),
        np.ones(5),
        [1.0],
        [],
        np.ones((1, 4)),
        np.ones((4, 1)),
        np.ones((2, 4)),
    ):
        shape = np.shape(bad)
        with raises(ValueError, "alpha", "4 per-class weights", re.escape(str(shape))):
            func(Z, T, alpha=bad)
    for bad in (
        np.array([True, False, True, True]),
        np.array(["a"] * 4),
        np.ones(4, dtype=complex),
        np.array([None] * 4, dtype=object),
    ):
        with raises(TypeError, "alpha", re.escape(str(bad.dtype))):
            func(Z, T, alpha=bad)
    for bad in (True, "0.25", 1j):
        with raises(TypeError, "alpha"):
            func(Z, T, alpha=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", [0.0, -0.0, -1.0, float("nan"), float("inf"), 1e-310])
def test_bad_normalizer(func, bad):
    with raises(ValueError, "normalizer"):
        func(Z, T, normalizer=bad)
    with raises(TypeError, "normalizer"):
        func(Z, T, normalizer="2")


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", [-0.1, -1e-300, 1.0, 1.5, float("nan"), float("inf")])
def test_bad_label_smoothing(func, bad):
    for t in (T, D):
        with raises(ValueError, "label_smoothing", re.escape("[0, 1)")):
            func(Z, t, label_smoothing=bad)
    with raises(TypeError, "label_smoothing"):
        func(Z, T, label_smoothing=None)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_bad_axis(func):
    for bad in (2, -3, 100):
        with raises(ValueError, "axis", str(bad), "out of bounds"):
            func(Z, T, axis=bad)
    for bad in (1.0, "1", None, [1], np.float64(1.0)):
        with raises(TypeError, "axis", "integer"):
            func(Z, T, axis=bad)
    # numpy integers are fine
    func(Z, T, axis=np.int16(-1))


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_bad_ignore_index(func):
    for bad in (1.5, "x", None):
        with raises(TypeError, "ignore_index", "integer"):
            func(Z, T, ignore_index=bad)
    for bad in (2**63, -(2**63) - 1, 2**70):
        with raises(ValueError, "ignore_index", "64-bit"):
            func(Z, T, ignore_index=bad)


# --------------------------------------------------------------------------
# Target values
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize(
    ("ldtype", "bad", "ignore"),
    [
        (np.int64, 4, -100),
        (np.int64, -1, -100),
        (np.int64, -100, -1),
        (np.int64, 2**62, -100),
        (np.int64, -(2**63), -100),
        (np.int32, 5, -100),
        (np.int32, -(2**31), -100),
        (np.int16, 300, -100),
        (np.int8, -3, -100),
        (np.int8, 127, -100),
        (np.uint8, 200, -100),
        (np.uint8, 4, 255),
        (np.uint16, 65535, -100),
        (np.uint32, 4, -100),
        (np.uint64, 5, -100),
        (np.uint64, 2**63, -100),
        (np.uint64, 2**64 - 1, -100),
    ],
)
def test_bad_class_index(func, ldtype, bad, ignore):
    t = np.array([0, 3, 1, 2], dtype=ldtype)
    t[2] = bad
    z = np.zeros((4, 4))
    with raises(ValueError, "targets", r"\[2\]", rf"= {bad}\b", watch=(z, t)):
        func(z, t, ignore_index=ignore)
    # the same value in a multi-dimensional position array (axis 1)
    z4 = np.zeros((2, 4, 3))
    t4 = np.zeros((2, 3), dtype=ldtype)
    t4[1, 2] = bad
    with raises(ValueError, "targets", r"\[1, 2\]", rf"= {bad}\b"):
        func(z4, t4, axis=1, ignore_index=ignore)
    # and with label smoothing
    with raises(ValueError, "targets", r"\[2\]"):
        func(z, t, ignore_index=ignore, label_smoothing=0.1)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_class_index_message_states_the_valid_range(func):
    with raises(ValueError, r"targets\[1\] = 7", "0 <= target < 4", "ignore_index=-100"):
        func(Z, np.array([0, 7, 1]))
    with raises(ValueError, r"targets\[\(\)\] = 4", "< 4"):
        func(Z[0], np.array(4))


@pytest.mark.parametrize("n_threads", [1, 2])
def test_first_bad_class_index_in_a_threaded_array(n_threads):
    """The message names the lowest bad position, not the one a thread met first.

    C = 4: blocks of 1024 positions. A bad label early in a late block, a bad
    label late in an earlier block, and the lowest one in between.
    """
    n = 300_000
    z = np.zeros((n, 4), dtype=np.float32)
    lab = np.zeros(n, dtype=np.int64)
    lab[[250_000, 200_703, 123_457, 299_999]] = [11, 12, 13, -5]
    with ft.num_threads(n_threads):
        for func in F_LIST:
            with raises(ValueError, r"targets\[123457\] = 13\b"):
                func(z, lab)
        lab[123_457] = 0
        with raises(ValueError, r"targets\[200703\] = 12\b"):
            fn.softmax_focal_loss_with_grad(z, lab, label_smoothing=0.1)
        # columns layout: positions (4, 30000), flat order of the positions
        z3 = np.zeros((4, 5, 30_000), dtype=np.float64)
        lab3 = np.zeros((4, 30_000), dtype=np.int32)
        lab3[2, 17_000] = 6
        lab3[1, 29_999] = -7
        lab3[3, 5] = 9
        with raises(ValueError, r"targets\[1, 29999\] = -7"):
            fn.softmax_focal_loss_grad(z3, lab3, axis=1)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "bad", [-0.5, 1.5, -1e-30, 1.0 + 2**-20, float("nan"), float("inf"), -float("inf")]
)
def test_dense_targets_outside_unit_interval(func, dtype, bad):
    t = np.full(Z.shape, 0.25, dtype=dtype)
    t[2, 3] = bad
    shown = f"({re.escape(str(dtype(bad)))}|{re.escape(repr(float(dtype(bad))))})"
    z = Z.astype(dtype)
    for eps in (0.0, 0.2):
        with raises(
            ValueError, "targets", re.escape("[2, 3]"), shown, re.escape("[0, 1]"), watch=(z, t)
        ):
            func(z, t, label_smoothing=eps)


@pytest.mark.parametrize("bad", [1.0 + 1e-10, -1e-50, -5e-324])
def test_dense_float64_targets_with_float32_logits_are_checked_before_rounding(bad):
    t = np.full(Z.shape, 0.5)
    t[0, 1] = bad
    with raises(ValueError, "targets", re.escape("[0, 1]")):
        fn.softmax_focal_loss(Z.astype(np.float32), t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_subnormal_dense_target_is_rejected(dtype):
    t = np.full(Z.shape, 0.5, dtype=dtype)
    t[1, 2] = -np.finfo(dtype).smallest_subnormal
    with raises(ValueError, "targets", re.escape("[1, 2]")):
        fn.softmax_focal_loss(Z.astype(dtype), t)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_first_bad_dense_target_in_a_threaded_array(n_threads):
    """Lowest flat index of the targets, also where it is not in the first bad position."""
    with ft.num_threads(n_threads):
        z = np.zeros((100_000, 4), dtype=np.float32)
        t = np.zeros(z.shape, dtype=np.float32)
        t[[90_000, 61_234, 70_000], [0, 3, 1]] = [2.0, -1.0, np.nan]
        for func in F_LIST:
            with raises(ValueError, r"targets\[61234, 3\] = -1"):
                func(z, t)
        # axis=1: flat order is (n, c, i); position (0, i=7) has its bad value in
        # class 3, position (1, i=2) in class 0: the flat index of (0, 3, 7) is lower.
        z3 = np.zeros((2, 4, 50_000))
        t3 = np.zeros(z3.shape)
        t3[1, 0, 2] = 5.0
        t3[0, 3, 7] = -2.0
        with raises(ValueError, r"targets\[0, 3, 7\] = -2"):
            fn.softmax_focal_loss(z3, t3, axis=1)


# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize(
    "dtype",
    [
        np.float16,
        np.longdouble,
        np.complex64,
        np.complex128,
        object,
        np.int32,
        np.int64,
        np.bool_,
        "U3",
    ],
)
def test_unsupported_logits_dtype(func, dtype):
    if np.dtype(dtype) == np.dtype(np.float64):  # longdouble may be double
        pytest.skip("longdouble is double on this platform")
    z = np.zeros(Z.shape, dtype=dtype)
    with raises(TypeError, "logits", re.escape(str(np.dtype(dtype))), "float32", "float64"):
        func(z, T)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize(
    "dtype", [np.complex64, np.complex128, object, "U1", "S1", "datetime64[s]", "timedelta64[s]"]
)
def test_unsupported_targets_dtype(func, dtype):
    for shape in (Z.shape, (3,)):
        t = np.zeros(shape, dtype=dtype)
        with raises(TypeError, "targets", re.escape(str(np.dtype(dtype)))):
            func(Z, t)
    with raises(TypeError, "targets"):
        func(Z, ["a", "b", "c"])


@pytest.mark.parametrize("dtype", [np.complex128, object, "U2", np.bool_])
def test_unsupported_grad_output_dtype(dtype):
    with raises(TypeError, "grad_output", re.escape(str(np.dtype(dtype)))):
        fn.softmax_focal_loss_grad(Z, T, grad_output=np.zeros(3, dtype=dtype))


def test_grad_output_shape_and_reduction():
    with raises(ValueError, "grad_output", re.escape("(4,)"), re.escape("(3,)")):
        fn.softmax_focal_loss_grad(Z, T, grad_output=np.ones(4))
    with raises(ValueError, "grad_output", re.escape("(3, 4)"), re.escape("(3,)")):
        fn.softmax_focal_loss_grad(Z, T, grad_output=np.ones((3, 4)))  # the logits' shape
    for red in ("mean", "sum"):
        with raises(ValueError, "grad_output", "reduction", red):
            fn.softmax_focal_loss_grad(Z, T, reduction=red, grad_output=np.ones(3))


# --------------------------------------------------------------------------
# out= / grad_out=
# --------------------------------------------------------------------------


def _out_cases():
    """(function name, keyword, bad value, exception, patterns)."""
    cases = []
    for fname, key, shape in (
        ("loss", "out", (3,)),
        ("grad", "out", (3, 4)),
        ("with_grad", "out", (3,)),
        ("with_grad", "grad_out", (3, 4)),
    ):
        wrong = (4,) if shape == (3,) else (4, 3)
        cases += [
            (fname, key, ("zeros", shape, np.float32), TypeError, ["dtype", "float32", "float64"]),
            (fname, key, ("zeros", shape, np.int64), TypeError, ["dtype", "int64"]),
            (
                fname,
                key,
                ("zeros", wrong, np.float64),
                ValueError,
                ["shape", re.escape(str(wrong)), re.escape(str(shape))],
            ),
            (fname, key, ("zeros", (12,), np.float64), ValueError, ["shape"]),
            (fname, key, ("strided", shape, np.float64), ValueError, ["C-contiguous"]),
            (fname, key, ("readonly", shape, np.float64), ValueError, ["read-only"]),
            (fname, key, ("list", shape, np.float64), TypeError, ["ndarray", "list"]),
            (fname, key, 3.0, TypeError, ["ndarray", "float"]),
        ]
    return cases


def _make_out(spec):
    if not isinstance(spec, tuple):
        return spec
    how, shape, dtype = spec
    if how == "zeros":
        return np.zeros(shape, dtype=dtype)
    if how == "strided":
        return np.zeros(shape[:-1] + (shape[-1] * 2,), dtype=dtype)[..., ::2]
    if how == "readonly":
        a = np.zeros(shape, dtype=dtype)
        a.flags.writeable = False
        return a
    return np.zeros(shape).tolist()


@pytest.mark.parametrize(
    ("fname", "key", "bad", "exc", "patterns"),
    _out_cases(),
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_out(fname, key, bad, exc, patterns):
    bad = _make_out(bad)
    kw = {key: bad}
    if fname == "with_grad":
        kw["reduction"] = "none"
    z, t = Z.copy(), T.copy()
    with raises(exc, rf"\b{key}\b", *patterns, watch=(z, t, bad)):
        FUNCS[fname](z, t, **kw)


def test_out_with_a_reduction_is_rejected():
    for red in ("mean", "sum"):
        with raises(ValueError, r"\bout\b", "reduction"):
            fn.softmax_focal_loss(Z, T, reduction=red, out=np.zeros(3))
        with raises(ValueError, r"\bout\b", "reduction"):
            fn.softmax_focal_loss_with_grad(Z, T, reduction=red, out=np.zeros(3))


def test_out_overlapping_an_input_is_rejected():
    z = Z.copy()
    d = D.copy()
    w = np.ones(3)
    # the loss over the start of the logits (contiguous, the loss' shape)
    with raises(ValueError, r"\bout\b", "overlaps", watch=(z,)):
        fn.softmax_focal_loss(z, T, out=z.reshape(-1)[:3])
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.softmax_focal_loss_with_grad(z, T, reduction="none", out=z.reshape(-1)[5:8])
    # over the class indices (an int64 buffer viewed as float64)
    t = T.copy()
    with raises(ValueError, r"\bout\b", "overlaps", watch=(t,)):
        fn.softmax_focal_loss(z, t, out=t.view(np.float64))
    # the gradient over the dense targets, over grad_output, over part of the logits
    with raises(ValueError, r"\bout\b", "overlaps", watch=(d,)):
        fn.softmax_focal_loss_grad(z, d, out=d)
    with raises(ValueError, "grad_out", "overlaps", watch=(d,)):
        fn.softmax_focal_loss_with_grad(z, d, grad_out=d)
    big = np.zeros(40)
    gw = big[:3]
    gw[...] = 1.0
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.softmax_focal_loss_grad(z, T, grad_output=gw, out=big[2:14].reshape(3, 4))
    big = np.zeros(24)
    zv = big[:12].reshape(3, 4)
    zv[...] = Z
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.softmax_focal_loss_grad(zv, T, out=big[6:18].reshape(3, 4))
    # grad_out over the loss out (C = 1: the shapes (3,) and (3, 1) share the memory)
    z1 = np.zeros((3, 1))
    g1 = np.zeros((3, 1))
    with raises(ValueError, "grad_out", "overlaps"):
        fn.softmax_focal_loss_with_grad(
            z1, np.zeros(3, dtype=np.int64), reduction="none", out=g1.reshape(3), grad_out=g1
        )
    # the in-place gradient needs the logits to be C-contiguous themselves
    zt = np.zeros((4, 3)).T
    with raises(ValueError, r"\bout\b", "C-contiguous"):
        fn.softmax_focal_loss_grad(zt, T, out=zt)
    assert w.sum() == 3


def test_in_place_over_a_same_memory_view_is_allowed():
    """Exactly the logits' memory (another view object of it) counts as in place."""
    z = Z.copy()
    expected = fn.softmax_focal_loss_grad(Z, T)
    v = z.view()
    assert fn.softmax_focal_loss_grad(z, T, out=v) is v
    ft.assert_bitwise_equal(z, expected)


# --------------------------------------------------------------------------
# Inputs are never modified by successful calls either
# --------------------------------------------------------------------------


def test_successful_calls_leave_inputs_unchanged():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(2, 4, 40))
    lab = rng.integers(0, 4, size=(2, 40))
    lab[0, :5] = -100
    d = rng.random(size=z.shape)
    alpha = np.array([0.5, 1.0, 2.0, 0.25])
    w = rng.normal(size=(2, 40))
    args = (z, lab, d, alpha, w)
    before = [a.copy() for a in args]
    for t in (lab, d):
        for f in F_LIST:
            for red in ("none", "mean", "sum"):
                f(z, t, alpha=alpha, axis=1, reduction=red, label_smoothing=0.1)
        fn.softmax_focal_loss_grad(z, t, alpha=alpha, axis=1, grad_output=w)
    for a, b in zip(args, before):
        ft.assert_bitwise_equal(a, b)

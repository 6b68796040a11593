"""Every error path of the binary focal loss: the exception type and a message
that names the offending argument (and, for bad targets, the first offending
position and value). Also: no call ever modifies its inputs.
"""

from __future__ import annotations

import re

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest

FUNCS = {
    "loss": fn.sigmoid_focal_loss,
    "grad": fn.sigmoid_focal_loss_grad,
    "with_grad": fn.sigmoid_focal_loss_with_grad,
}
F_IDS = list(FUNCS)
F_LIST = list(FUNCS.values())

Z = np.linspace(-3, 3, 12).reshape(3, 4)
T = (np.arange(12).reshape(3, 4) % 2).astype(np.int64)


def raises(exc, *patterns):
    """pytest.raises that also checks that every regex in `patterns` is in the message."""

    class _Check:
        def __enter__(self):
            self._cm = pytest.raises(exc)
            self._info = self._cm.__enter__()
            return self._info

        def __exit__(self, *args):
            suppressed = self._cm.__exit__(*args)
            msg = str(self._info.value)
            for p in patterns:
                assert re.search(p, msg), f"{p!r} not found in message: {msg!r}"
            return suppressed

    return _Check()


# --------------------------------------------------------------------------
# Shapes, reduction, parameters
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_shape_mismatch_names_both_shapes(func):
    with raises(ValueError, "targets", re.escape("(4, 3)"), re.escape("(3, 4)")):
        func(Z, T.reshape(4, 3))
    with raises(ValueError, "targets", re.escape("(12,)"), re.escape("(3, 4)")):
        func(Z, np.zeros(12))
    # Float targets of the class-index shape are not class indices.
    with raises(ValueError, "targets", re.escape("(3,)"), re.escape("(3, 4)")):
        func(Z, np.zeros(3))
    # Integer targets that fit neither shape: both alternatives are named.
    with raises(ValueError, "targets", re.escape("(5,)"), re.escape("(3, 4)"), re.escape("(3,)")):
        func(Z, np.zeros(5, dtype=np.int64))
    # 0-d logits with non-scalar targets.
    with raises(ValueError, "targets", re.escape("(2,)"), re.escape("()")):
        func(np.float64(1.0), np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", ["avg", "Mean", "", None, 1, "none "])
def test_unknown_reduction_lists_the_valid_ones(func, bad):
    with raises(ValueError, "reduction", "'none'", "'mean'", "'sum'", re.escape(repr(bad))):
        func(Z, T, reduction=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", [-1.0, -1e-300, float("nan"), float("inf"), -float("inf")])
def test_bad_gamma(func, bad):
    with raises(ValueError, "gamma"):
        func(Z, T, gamma=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", [1.0000001, 2.0, float("nan"), float("inf")])
def test_bad_alpha(func, bad):
    with raises(ValueError, "alpha"):
        func(Z, T, alpha=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("bad", [0.0, -0.0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_bad_normalizer(func, bad):
    with raises(ValueError, "normalizer"):
        func(Z, T, normalizer=bad)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("gamma", "2"),
        ("gamma", [2.0]),
        ("gamma", True),
        ("alpha", "0.25"),
        ("alpha", 1j),
        ("normalizer", "3"),
        ("normalizer", np.ones(2)),
        ("ignore_index", 1.5),
        ("ignore_index", "x"),
        ("axis", 1.0),
    ],
)
def test_parameters_of_the_wrong_type(func, name, value):
    with raises(TypeError, name):
        func(
            Z,
            np.zeros(3, dtype=np.int64) if name in ("axis", "ignore_index") else T,
            **{name: value},
        )


def test_numpy_scalar_parameters_are_accepted():
    ref = fn.sigmoid_focal_loss(Z, T, alpha=0.5, gamma=1.5, normalizer=2.0, reduction="sum")
    got = fn.sigmoid_focal_loss(
        Z, T, alpha=np.float32(0.5), gamma=np.array(1.5), normalizer=np.int64(2), reduction="sum"
    )
    assert got == ref


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
def test_axis_out_of_range_for_class_indices(func):
    with raises(ValueError, "axis", "2"):
        func(Z, np.zeros(4, dtype=np.int64), axis=2)
    with raises(ValueError, "axis", "-3"):
        func(Z, np.zeros(3, dtype=np.int64), axis=-3)


# --------------------------------------------------------------------------
# Targets outside their domain
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize(
    ("tdtype", "bad"),
    [
        (np.int8, -1),
        (np.int8, 2),
        (np.uint8, 2),
        (np.uint8, 255),
        (np.int16, -1),
        (np.int16, 256),
        (np.int16, 257),
        (np.uint16, 2),
        (np.int32, -1),
        (np.int32, 2**31 - 1),
        (np.uint32, 2**32 - 1),
        (np.int64, -(2**63)),
        (np.int64, 2),
        (np.uint64, 2**64 - 1),
    ],
)
def test_integer_targets_outside_zero_one(func, tdtype, bad):
    t = T.astype(tdtype)
    t[1, 2] = bad
    with raises(ValueError, "targets", re.escape("[1, 2]"), rf"= {bad}\b", "0 or 1"):
        func(Z, t)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "bad", [-0.5, 1.5, -1e-30, 1.0 + 2**-20, float("nan"), float("inf"), -float("inf")]
)
def test_soft_targets_outside_unit_interval(func, dtype, bad):
    t = np.full(Z.shape, 0.5, dtype=dtype)
    t[2, 3] = bad
    # The value as numpy prints it, or as the exact double (f-strings of numpy
    # float32 scalars give the latter).
    shown = f"({re.escape(str(dtype(bad)))}|{re.escape(repr(float(dtype(bad))))})"
    with raises(ValueError, "targets", re.escape("[2, 3]"), shown, re.escape("[0, 1]")):
        func(Z.astype(dtype), t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_subnormal_soft_target_is_rejected(dtype):
    t = np.full(Z.shape, 0.5, dtype=dtype)
    t[0, 1] = -np.finfo(dtype).smallest_subnormal
    with raises(ValueError, "targets", re.escape("[0, 1]")):
        fn.sigmoid_focal_loss(Z.astype(dtype), t)


@pytest.mark.parametrize("bad", [1.0 + 1e-10, -1e-50])
def test_out_of_range_float64_target_with_float32_logits_is_rejected(bad):
    t = np.full(Z.shape, 0.5)
    t[0, 0] = bad
    with raises(ValueError, "targets", re.escape("[0, 0]")):
        fn.sigmoid_focal_loss(Z.astype(np.float32), t)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("tdtype", [np.int64, np.uint8, np.int16, np.float32, np.float64])
def test_first_bad_target_deep_in_a_threaded_array(tdtype, n_threads):
    """The message reports the lowest bad index, not the one some thread met first.

    With 2 threads the second half of the blocks belongs to the other thread,
    which may well finish its share (and its bad values) first.
    """
    n = 1_000_003
    t = np.zeros(n, dtype=tdtype)
    z = np.zeros(n, dtype=t.dtype if t.dtype.kind == "f" else np.float32)
    if t.dtype.kind == "f":
        bad = {499_999: 1.5, 500_001: -2.0, 500_003: np.nan, 999_999: 7.0, 1_000_002: -0.5}
        first = (499_999, "1.5")
    else:
        bad = {499_999: 3, 500_001: 7, 750_000: 5, 1_000_002: 9}
        first = (499_999, "3")
    for k, v in bad.items():
        t[k] = v
    with ft.num_threads(n_threads):
        for func in F_LIST:
            with raises(ValueError, rf"targets\[{first[0]}\] = {re.escape(first[1])}(?!\d)"):
                func(z, t)
        # The position as a multi-index.
        with raises(ValueError, r"targets\[499, 999\]"):
            fn.sigmoid_focal_loss(
                z[:1_000_000].reshape(1000, 1000), t[:1_000_000].reshape(1000, 1000)
            )


# --------------------------------------------------------------------------
# Class-index labels
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize(
    ("ldtype", "bad", "ignore"),
    [
        (np.int64, 5, -100),
        (np.int64, -1, -100),
        (np.int64, -100, -1),
        (np.int32, 6, -100),
        (np.int32, -(2**31), -100),
        (np.uint8, 200, -100),
        (np.uint8, 5, 255),
        (np.int16, 7, -100),
        (np.int8, -3, -100),
        (np.uint64, 5, -100),
        *[(np.uint64, v, -100) for v in (2**63, 2**64 - 1)],
    ],
)
def test_bad_class_index(func, ldtype, bad, ignore):
    z = np.zeros((6, 4))  # C = 4: labels 0..3, 4 = background
    lab = np.array([0, 4, 1, 3, 2, 0], dtype=ldtype)
    lab[3] = bad
    with raises(ValueError, "targets", r"\[3\]", rf"= {bad}\b"):
        func(z, lab, ignore_index=ignore)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_first_bad_class_index_in_threaded_layouts(n_threads):
    with ft.num_threads(n_threads):
        z = np.zeros((4, 5, 30_000), dtype=np.float32)  # axis 1: positions (4, 30000)
        lab = np.zeros((4, 30_000), dtype=np.int32)
        lab[2, 17_000] = 6
        lab[1, 29_999] = -7
        lab[3, 5] = 9
        with raises(ValueError, r"targets\[1, 29999\] = -7", "class index"):
            fn.sigmoid_focal_loss_with_grad(z, lab, axis=1)
        lab2 = np.zeros(300_000, dtype=np.int64)
        lab2[[250_000, 123_457, 299_999]] = [11, 12, 13]
        with raises(ValueError, r"targets\[123457\] = 12"):
            fn.sigmoid_focal_loss(np.zeros((300_000, 3)), lab2)


# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize(
    "dtype",
    [
        np.float16,
        np.complex64,
        np.complex128,
        object,
        np.int64,
        np.int32,
        np.bool_,
        np.longdouble,
        "U3",
    ],
)
def test_unsupported_logits_dtype(func, dtype):
    if np.dtype(dtype) == np.longdouble and np.finfo(np.longdouble).bits == 64:
        pytest.skip("longdouble is float64 here")
    z = np.zeros((3, 4), dtype=dtype)
    with raises(TypeError, "logits", re.escape(str(np.dtype(dtype))), "float32", "float64"):
        func(z, T)


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize(
    "dtype", [np.complex64, np.complex128, object, "U1", "S1", "datetime64[s]", "timedelta64[s]"]
)
def test_unsupported_targets_dtype(func, dtype):
    t = np.zeros((3, 4), dtype=dtype)
    with raises(TypeError, "targets", re.escape(str(np.dtype(dtype))), "bool", "float32"):
        func(Z, t)
    with raises(TypeError, "targets"):
        func(Z, [["a", "b", "c", "d"]] * 3)


@pytest.mark.parametrize("dtype", [np.complex128, object, "U2", np.bool_])
def test_unsupported_grad_output_dtype(dtype):
    with raises(TypeError, "grad_output", re.escape(str(np.dtype(dtype)))):
        fn.sigmoid_focal_loss_grad(Z, T, grad_output=np.zeros(Z.shape, dtype=dtype))


def test_grad_output_shape_and_reduction():
    with raises(ValueError, "grad_output", re.escape("(4, 3)"), re.escape("(3, 4)")):
        fn.sigmoid_focal_loss_grad(Z, T, grad_output=np.ones((4, 3)))
    for red in ("mean", "sum"):
        with raises(ValueError, "grad_output", "reduction", red):
            fn.sigmoid_focal_loss_grad(Z, T, reduction=red, grad_output=np.ones(Z.shape))


# --------------------------------------------------------------------------
# out= / grad_out=
# --------------------------------------------------------------------------


def _out_cases():
    """(function name, keyword, bad value, exception, patterns)."""
    cases = []
    for fname, key in (
        ("loss", "out"),
        ("grad", "out"),
        ("with_grad", "out"),
        ("with_grad", "grad_out"),
    ):
        cases += [
            (fname, key, np.zeros(Z.shape, np.float32), TypeError, ["dtype", "float32", "float64"]),
            (
                fname,
                key,
                np.zeros((4, 3)),
                ValueError,
                ["shape", re.escape("(4, 3)"), re.escape("(3, 4)")],
            ),
            (fname, key, np.zeros(12), ValueError, ["shape"]),
            (fname, key, np.zeros((4, 3)).T, ValueError, ["C-contiguous"]),
            (fname, key, np.zeros((3, 8))[:, ::2], ValueError, ["C-contiguous"]),
            (fname, key, "readonly", ValueError, ["read-only"]),
            (fname, key, [[0.0] * 4] * 3, TypeError, ["ndarray", "list"]),
            (fname, key, 3.0, TypeError, ["ndarray", "float"]),
        ]
    return cases


@pytest.mark.parametrize(
    ("fname", "key", "bad", "exc", "patterns"),
    _out_cases(),
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_out(fname, key, bad, exc, patterns):
    if isinstance(bad, str) and bad == "readonly":
        bad = np.zeros(Z.shape)
        bad.flags.writeable = False
    kw = {key: bad}
    if fname == "with_grad":
        kw["reduction"] = "none"
    with raises(exc, rf"\b{key}\b", *patterns):
        FUNCS[fname](Z, T, **kw)


def test_out_with_a_reduction_is_rejected():
    for red in ("mean", "sum"):
        with raises(ValueError, r"\bout\b", "reduction"):
            fn.sigmoid_focal_loss(Z, T, reduction=red, out=np.zeros(Z.shape))
        with raises(ValueError, r"\bout\b", "reduction"):
            fn.sigmoid_focal_loss_with_grad(Z, T, reduction=red, out=np.zeros(Z.shape))


def test_out_overlapping_an_input_is_rejected():
    z = Z.copy()
    zf = np.ascontiguousarray(np.linspace(-2, 2, 12).reshape(3, 4))
    tf = np.full((3, 4), 0.5)
    w = np.ones((3, 4))
    # Loss out= over the logits (not allowed: only the gradient may be in place).
    with raises(ValueError, r"\bout\b", "overlaps", "logits"):
        fn.sigmoid_focal_loss(z, T, out=z)
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.sigmoid_focal_loss_with_grad(z, T, reduction="none", out=z)
    # Over float targets, over grad_output, over part of the logits.
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.sigmoid_focal_loss(zf, tf, out=tf)
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.sigmoid_focal_loss_grad(zf, tf, out=tf)
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.sigmoid_focal_loss_grad(zf, tf, grad_output=w, out=w)
    big = np.zeros(24)
    zv = big[:12].reshape(3, 4)
    zv[...] = Z
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.sigmoid_focal_loss(zv, T, out=big[6:18].reshape(3, 4))
    with raises(ValueError, r"\bout\b", "overlaps"):
        fn.sigmoid_focal_loss_grad(zv, T, out=big[6:18].reshape(3, 4))
    # grad_out over the loss out, and a gradient "in place" over a view of
    # the logits that is not exactly the logits array.
    out = np.zeros((3, 4))
    with raises(ValueError, "grad_out", "overlaps"):
        fn.sigmoid_focal_loss_with_grad(z, T, reduction="none", out=out, grad_out=out)
    # The in-place gradient needs the logits to be C-contiguous themselves.
    zt = np.zeros((4, 3)).T
    with raises(ValueError, r"\bout\b", "C-contiguous"):
        fn.sigmoid_focal_loss_grad(zt, T, out=zt)


# --------------------------------------------------------------------------
# Inputs are never modified
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", F_LIST, ids=F_IDS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_inputs_are_not_modified(isa, func, reduction):
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        z = rng.normal(scale=5, size=(50, 7)).astype(dtype)
        cases = [
            (z, rng.random(z.shape).astype(dtype), {}),
            (z, (rng.random(z.shape) < 0.5), {}),
            (z, rng.integers(0, 2, size=z.shape).astype(np.int16), {}),
            (z, rng.integers(-1, 8, size=50).astype(np.int32), dict(ignore_index=-1)),
            (z[::2, ::-1], rng.random(z.shape)[::2, ::-1].astype(dtype), {}),
            (z.T, rng.integers(0, 8, size=50).astype(np.uint8), dict(axis=0)),
        ]
        for zz, tt, kw in cases:
            z_before, t_before = zz.copy(), tt.copy()
            extra = {}
            if func is fn.sigmoid_focal_loss_grad and reduction == "none":
                w = rng.normal(size=zz.shape).astype(dtype)
                extra["grad_output"] = w
                w_before = w.copy()
            func(zz, tt, reduction=reduction, **kw, **extra)
            ft.assert_bitwise_equal(zz, z_before, "logits modified")
            ft.assert_bitwise_equal(tt, t_before, "targets modified")
            if extra:
                ft.assert_bitwise_equal(extra["grad_output"], w_before, "grad_output modified")


def test_calls_rejected_before_the_kernel_do_not_write_out():
    z = Z.copy()
    out = np.full(Z.shape, 7.0)
    with raises(ValueError, "gamma"):
        fn.sigmoid_focal_loss(z, T, gamma=-1, out=out)
    assert np.all(out == 7.0)
    with raises(ValueError, "alpha"):
        fn.sigmoid_focal_loss_grad(z, T, alpha=3.0, out=z)
    ft.assert_bitwise_equal(z, Z)


def test_failed_in_place_call_keeps_the_logits():
    # (test_failed_in_place.py covers every target kind, layout, size and ISA.)
    z = Z.copy()
    t = T.copy()
    t[2, 2] = 5
    with raises(ValueError, "targets"):
        fn.sigmoid_focal_loss_grad(z, t, out=z)
    ft.assert_bitwise_equal(z, Z, "logits changed by a failed in-place call")

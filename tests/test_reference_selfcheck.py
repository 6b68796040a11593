"""Self-checks of the pure-Python oracle (focal_native.reference).

The oracle is compared with independent computations only: the 50-digit
mpmath reference (textbook chain-rule derivatives), central finite
differences of its own loss, explicit one-hot expansions and NumPy reductions
of its unreduced output.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib

import numpy as np
import pytest
from mpmath import mp

_HERE = pathlib.Path(__file__).resolve().parent
_ROOT = _HERE.parent


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


try:
    from focal_native import reference as ref
except Exception:  # noqa: BLE001  package unusable (e.g. _core not built): load the file
    ref = _load("focal_native_reference", _ROOT / "python" / "focal_native" / "reference.py")

mpr = _load("mp_reference", _HERE / "mp_reference.py")

GAMMAS = [0.0, 0.5, 2.0]
RTOL = 1e-12


def assert_close(computed, exact, rtol=RTOL, atol=0.0, what=""):
    computed = float(computed)
    exact = float(exact)
    err = abs(computed - exact)
    assert err <= rtol * abs(exact) + atol, (
        f"{what}: computed {computed!r}, exact {exact!r}, rel err {err / abs(exact or 1.0):.3g}"
    )


# --------------------------------------------------------------------------
# Against the 50-digit reference
# --------------------------------------------------------------------------

Z_VALUES = [-60.0, -30.0, -5.0, -0.7, 0.0, 0.3, 4.0, 25.0, 60.0]


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("target_dtype", [np.int64, np.float64, np.bool_])
def test_sigmoid_hard_matches_mp(gamma, alpha, target_dtype):
    z = np.array(Z_VALUES * 2)
    y = np.array([1] * len(Z_VALUES) + [0] * len(Z_VALUES)).astype(target_dtype)
    loss = ref.sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma)
    grad = ref.sigmoid_focal_loss_grad(z, y, alpha=alpha, gamma=gamma)
    for i in range(z.size):
        exact_loss, exact_grad = mpr.sigmoid_hard(z[i], int(y[i]), alpha, gamma)
        assert_close(loss[i], exact_loss, what=f"loss z={z[i]} y={y[i]}")
        assert_close(grad[i], exact_grad, what=f"grad z={z[i]} y={y[i]}")


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("y", [0.1, 0.5, 0.93])
def test_sigmoid_soft_matches_mp(gamma, alpha, y):
    z = np.array([-30.0, -5.0, -1.3, 0.4, 2.0, 7.0, 35.0])
    t = np.full(z.shape, y)
    loss = ref.sigmoid_focal_loss(z, t, alpha=alpha, gamma=gamma)
    grad = ref.sigmoid_focal_loss_grad(z, t, alpha=alpha, gamma=gamma)
    for i in range(z.size):
        exact_loss, exact_grad = mpr.sigmoid_soft(z[i], y, alpha, gamma)
        assert_close(loss[i], exact_loss, what=f"loss z={z[i]}")
        assert_close(grad[i], exact_grad, what=f"grad z={z[i]}")


def test_mp_soft_at_hard_values_equals_mp_hard():
    for z in (-8.0, -0.5, 0.0, 3.0, 40.0):
        for y in (0, 1):
            for alpha in (None, 0.3):
                hard = mpr.sigmoid_hard(z, y, alpha, 1.5)
                soft = mpr.sigmoid_soft(z, float(y), alpha, 1.5)
                with mp.workdps(50):
                    assert abs(hard[0] - soft[0]) <= mp.mpf("1e-45") * abs(hard[0])
                    assert abs(hard[1] - soft[1]) <= mp.mpf("1e-45") * abs(hard[1])


def _mp_central_diff(f, x):
    """Central difference at 50 digits: step 1e-15, error ~1e-30."""
    with mp.workdps(50):
        x = mp.mpf(x)
        h = mp.mpf("1e-15")
        return (f(x + h) - f(x - h)) / (2 * h)


def test_mp_gradients_are_derivatives_of_mp_losses():
    with mp.workdps(50):
        for z, y in ((1.5, 1), (-2.0, 0), (0.3, 0)):
            d = _mp_central_diff(lambda t, y=y: mpr.sigmoid_hard(t, y, 0.25, 0.5)[0], z)
            assert abs(d - mpr.sigmoid_hard(z, y, 0.25, 0.5)[1]) < mp.mpf("1e-25")
        d = _mp_central_diff(lambda t: mpr.sigmoid_soft(t, 0.3, 0.25, 2.0)[0], 0.7)
        assert abs(d - mpr.sigmoid_soft(0.7, 0.3, 0.25, 2.0)[1]) < mp.mpf("1e-25")
        row = [0.5, -1.0, 2.0]
        for j in range(3):

            def f_index(t, j=j):
                r = list(row)
                r[j] = t
                return mpr.softmax_index(r, 1, 0.7, 0.5)[0]

            def f_dense(t, j=j):
                r = list(row)
                r[j] = t
                return mpr.softmax_dense(r, [0.2, 0.5, 0.3], [1.0, 0.5, 2.0], 2.0)[0]

            d = _mp_central_diff(f_index, row[j])
            assert abs(d - mpr.softmax_index(row, 1, 0.7, 0.5)[1][j]) < mp.mpf("1e-25")
            d = _mp_central_diff(f_dense, row[j])
            exact = mpr.softmax_dense(row, [0.2, 0.5, 0.3], [1.0, 0.5, 2.0], 2.0)[1][j]
            assert abs(d - exact) < mp.mpf("1e-25")


SOFTMAX_ROWS = [
    [1.0, 2.0, 3.0, -1.0],
    [10.0, -3.0, 0.5, 2.0],
    [0.0, 0.0, 0.0, 0.0],
    [30.0, 0.0, -5.0, 1.0],  # confident: 1 - p_0 ~ 1e-13 needs the S_o form
    [-2.0, 45.0, 44.5, -40.0],
]


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.5, [0.25, 1.0, 2.0, 0.75]])
def test_softmax_index_matches_mp(gamma, alpha):
    rows = np.array(SOFTMAX_ROWS)
    for c in range(4):
        t = np.full(rows.shape[0], c, dtype=np.int64)
        loss = ref.softmax_focal_loss(rows, t, alpha=alpha, gamma=gamma)
        grad = ref.softmax_focal_loss_grad(rows, t, alpha=alpha, gamma=gamma)
        alpha_c = None if alpha is None else (alpha if np.ndim(alpha) == 0 else alpha[c])
        for r, row in enumerate(SOFTMAX_ROWS):
            exact_loss, exact_grad = mpr.softmax_index(row, c, alpha_c, gamma)
            assert_close(loss[r], exact_loss, what=f"loss row {r} c={c}")
            scale = max(abs(float(g)) for g in exact_grad)
            for k in range(4):
                assert_close(
                    grad[r, k], exact_grad[k], atol=1e-15 * scale, what=f"grad row {r} c={c} k={k}"
                )


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, [0.25, 1.0, 2.0, 0.75]])
def test_softmax_dense_matches_mp(gamma, alpha):
    rng = np.random.default_rng(1)
    rows = np.array(SOFTMAX_ROWS)
    y = rng.random(rows.shape)
    y /= y.sum(axis=1, keepdims=True)
    y[0] = [0.0, 0.0, 1.0, 0.0]  # a one-hot row
    y[3] = [1.0, 0.0, 0.0, 0.0]  # one-hot on a confident row: 1 - p_0 ~ 1e-13
    loss = ref.softmax_focal_loss(rows, y, alpha=alpha, gamma=gamma)
    grad = ref.softmax_focal_loss_grad(rows, y, alpha=alpha, gamma=gamma)
    for r, row in enumerate(SOFTMAX_ROWS):
        exact_loss, exact_grad = mpr.softmax_dense(row, y[r].tolist(), alpha, gamma)
        assert_close(loss[r], exact_loss, what=f"loss row {r}")
        scale = max(abs(float(g)) for g in exact_grad)
        for k in range(4):
            assert_close(grad[r, k], exact_grad[k], atol=1e-14 * scale, what=f"grad {r},{k}")


@pytest.mark.parametrize("gamma", GAMMAS)
def test_label_smoothing_matches_mp_and_explicit_dense(gamma):
    eps = 0.1
    rows = np.array(SOFTMAX_ROWS)
    t = np.array([2, 0, 1, 0, 1])
    alpha = [0.25, 1.0, 2.0, 0.75]
    loss = ref.softmax_focal_loss(rows, t, alpha=alpha, gamma=gamma, label_smoothing=eps)
    grad = ref.softmax_focal_loss_grad(rows, t, alpha=alpha, gamma=gamma, label_smoothing=eps)
    y = np.full(rows.shape, eps / 4)
    y[np.arange(5), t] += 1 - eps
    for r, row in enumerate(SOFTMAX_ROWS):
        exact_loss, exact_grad = mpr.softmax_dense(row, y[r].tolist(), alpha, gamma)
        assert_close(loss[r], exact_loss, what=f"loss row {r}")
        scale = max(abs(float(g)) for g in exact_grad)
        for k in range(4):
            assert_close(grad[r, k], exact_grad[k], atol=1e-14 * scale, what=f"grad {r},{k}")
    dense_loss = ref.softmax_focal_loss(rows, y, alpha=alpha, gamma=gamma)
    np.testing.assert_allclose(loss, dense_loss, rtol=1e-14)


# --------------------------------------------------------------------------
# Reductions, ignore_index, class-index sigmoid, grad_output
# --------------------------------------------------------------------------


def test_sigmoid_reductions_and_normalizer():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=3.0, size=(6, 5))
    y = rng.random((6, 5))
    y[0] = 1.0
    none = ref.sigmoid_focal_loss(z, y, reduction="none")
    assert none.shape == z.shape and none.dtype == np.float64
    total = ref.sigmoid_focal_loss(z, y, reduction="sum")
    mean = ref.sigmoid_focal_loss(z, y, reduction="mean", normalizer=4.0)
    assert isinstance(total, float) and isinstance(mean, float)
    assert_close(total, np.sum(none), rtol=1e-13)
    assert_close(mean, np.sum(none) / 4.0 / z.size, rtol=1e-13)
    g_none = ref.sigmoid_focal_loss_grad(z, y)
    g_mean = ref.sigmoid_focal_loss_grad(z, y, reduction="mean", normalizer=4.0)
    np.testing.assert_allclose(g_mean, g_none / 4.0 / z.size, rtol=1e-14)
    l2, g2 = ref.sigmoid_focal_loss_with_grad(z, y)
    assert_close(l2, np.mean(none), rtol=1e-13)
    np.testing.assert_allclose(g2, g_none / z.size, rtol=1e-14)
    w = rng.normal(size=z.shape)
    g_vjp = ref.sigmoid_focal_loss_grad(z, y, grad_output=w)
    np.testing.assert_allclose(g_vjp, g_none * w, rtol=1e-14)


def test_empty_reductions():
    z = np.zeros((0, 3))
    assert ref.sigmoid_focal_loss(z, z, reduction="sum") == 0.0
    assert math.isnan(ref.sigmoid_focal_loss(z, z, reduction="mean"))
    assert ref.softmax_focal_loss(z, np.zeros(0, dtype=np.int64), reduction="sum") == 0.0
    assert math.isnan(ref.softmax_focal_loss(z, np.zeros(0, dtype=np.int64), reduction="mean"))


@pytest.mark.parametrize("axis", [-1, 1])
def test_sigmoid_class_index_equals_one_hot(axis):
    rng = np.random.default_rng(3)
    num_classes = 4
    shape = (3, num_classes, 5) if axis == 1 else (3, 5, num_classes)
    z = rng.normal(scale=4.0, size=shape)
    pos_shape = (3, 5)
    t = rng.integers(0, num_classes + 1, size=pos_shape)  # includes background C
    t[0, 0] = num_classes
    t[1, 2] = -100
    t[2, 4] = -100
    one_hot = (np.arange(num_classes) == t[..., None]).astype(np.float64)  # (3, 5, C)
    if axis == 1:
        one_hot = np.moveaxis(one_hot, -1, 1)
    kept = np.expand_dims(t != -100, axis)
    kw = dict(alpha=0.25, gamma=2.0, axis=axis)
    loss_idx = ref.sigmoid_focal_loss(z, t, **kw)
    loss_hot = ref.sigmoid_focal_loss(z, one_hot, **kw)
    np.testing.assert_array_equal(loss_idx, np.where(kept, loss_hot, 0.0))
    grad_idx = ref.sigmoid_focal_loss_grad(z, t, **kw)
    grad_hot = ref.sigmoid_focal_loss_grad(z, one_hot, **kw)
    np.testing.assert_array_equal(grad_idx, np.where(kept, grad_hot, 0.0))
    n_kept = int(np.sum(t != -100))
    mean_idx = ref.sigmoid_focal_loss(z, t, reduction="mean", **kw)
    assert_close(mean_idx, np.sum(np.where(kept, loss_hot, 0.0)) / (n_kept * num_classes))
    g_mean = ref.sigmoid_focal_loss_grad(z, t, reduction="mean", **kw)
    np.testing.assert_allclose(g_mean, grad_idx / (n_kept * num_classes), rtol=1e-14)


def test_softmax_ignore_index_and_axis():
    rng = np.random.default_rng(4)
    z = rng.normal(scale=3.0, size=(2, 3, 4))  # class axis 1: C = 3, positions (2, 4)
    t = rng.integers(0, 3, size=(2, 4))
    t[0, 1] = -1
    t[1, 3] = -1
    alpha = [0.5, 1.0, 2.0]
    kw = dict(alpha=alpha, gamma=2.0, axis=1, ignore_index=-1)
    loss = ref.softmax_focal_loss(z, t, **kw)
    grad = ref.softmax_focal_loss_grad(z, t, **kw)
    assert loss.shape == (2, 4)
    # Each kept position equals the same row evaluated alone along the last axis.
    for b in range(2):
        for i in range(4):
            row = z[b, :, i]
            if t[b, i] == -1:
                assert loss[b, i] == 0.0
                assert np.all(grad[b, :, i] == 0.0)
                continue
            exact_loss, exact_grad = mpr.softmax_index(
                row.tolist(), int(t[b, i]), alpha[t[b, i]], 2
            )
            assert_close(loss[b, i], exact_loss)
            np.testing.assert_allclose(grad[b, :, i], [float(g) for g in exact_grad], rtol=1e-12)
    mean = ref.softmax_focal_loss(z, t, reduction="mean", **kw)
    assert_close(mean, np.sum(loss) / 6)
    g_mean = ref.softmax_focal_loss_grad(z, t, reduction="mean", normalizer=2.0, **kw)
    np.testing.assert_allclose(g_mean, grad / 6 / 2.0, rtol=1e-14)
    all_ignored = np.full((2, 4), -1)
    assert math.isnan(ref.softmax_focal_loss(z, all_ignored, reduction="mean", **kw))
    w = rng.normal(size=(2, 4))
    g_vjp = ref.softmax_focal_loss_grad(z, t, grad_output=w, **kw)
    np.testing.assert_allclose(g_vjp, grad * w[:, None, :], rtol=1e-14)


# --------------------------------------------------------------------------
# Gradient == central finite differences of the oracle's own loss
# --------------------------------------------------------------------------


def _check_fd(loss_fn, grad, z, rtol=1e-6):
    flat = z.ravel()
    num = np.zeros_like(flat)
    for j in range(flat.size):
        h = 1e-6 * max(1.0, abs(flat[j]))
        zp = flat.copy()
        zm = flat.copy()
        zp[j] += h
        zm[j] -= h
        num[j] = (loss_fn(zp.reshape(z.shape)) - loss_fn(zm.reshape(z.shape))) / (2 * h)
    scale = np.max(np.abs(num))
    np.testing.assert_allclose(grad.ravel(), num, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
def test_sigmoid_grad_matches_finite_differences(gamma):
    rng = np.random.default_rng(5)
    z = rng.normal(scale=2.5, size=(4, 3))
    hard = rng.integers(0, 2, size=(4, 3))
    soft = rng.random((4, 3))
    w = rng.normal(size=(4, 3))
    for t in (hard, soft):
        kw = dict(alpha=0.3, gamma=gamma, normalizer=3.0)
        grad = ref.sigmoid_focal_loss_grad(z, t, reduction="mean", **kw)
        _check_fd(
            lambda x, t=t, kw=kw: ref.sigmoid_focal_loss(x, t, reduction="mean", **kw), grad, z
        )
        grad = ref.sigmoid_focal_loss_grad(z, t, grad_output=w, **kw)
        _check_fd(
            lambda x, t=t, kw=kw: float(np.sum(w * ref.sigmoid_focal_loss(x, t, **kw))), grad, z
        )
    t_idx = np.array([0, 3, 1, -100])  # (4,) class indices for axis=1, C = 3 (3 = background)
    kw = dict(alpha=0.25, gamma=gamma, axis=1)
    grad = ref.sigmoid_focal_loss_grad(z, t_idx, reduction="sum", **kw)
    _check_fd(lambda x: ref.sigmoid_focal_loss(x, t_idx, reduction="sum", **kw), grad, z)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_grad_matches_finite_differences(gamma):
    rng = np.random.default_rng(6)
    z = rng.normal(scale=2.0, size=(3, 4, 2))  # class axis 1
    t = np.array([[0, 3], [2, -100], [1, 1]])
    y = rng.random(z.shape)
    w = rng.normal(size=(3, 2))
    alpha = [0.25, 1.0, 0.5, 2.0]
    cases = [
        (t, dict(alpha=alpha)),
        (t, dict(alpha=0.7, label_smoothing=0.2)),
        (y, dict(alpha=alpha)),
        (y, dict(label_smoothing=0.05)),
    ]
    for targets, extra in cases:
        kw = dict(gamma=gamma, axis=1, normalizer=2.0, **extra)
        grad = ref.softmax_focal_loss_grad(z, targets, reduction="mean", **kw)
        _check_fd(
            lambda x, tg=targets, kw=kw: ref.softmax_focal_loss(x, tg, reduction="mean", **kw),
            grad,
            z,
        )
        grad = ref.softmax_focal_loss_grad(z, targets, grad_output=w, **kw)
        _check_fd(
            lambda x, tg=targets, kw=kw: float(np.sum(w * ref.softmax_focal_loss(x, tg, **kw))),
            grad,
            z,
        )


# --------------------------------------------------------------------------
# Special values
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_special_values(gamma):
    z = np.array([np.inf, -np.inf, np.inf, -np.inf, 800.0, -800.0, np.nan])
    y = np.array([1.0, 1.0, 0.3, 0.3, 1.0, 1.0, 1.0])
    loss = ref.sigmoid_focal_loss(z, y, alpha=0.25, gamma=gamma)
    grad = ref.sigmoid_focal_loss_grad(z, y, alpha=0.25, gamma=gamma)
    assert loss[0] == 0.0 and grad[0] == 0.0
    assert loss[1] == np.inf and grad[1] == -0.25
    assert loss[2] == np.inf
    a_t = 0.25 * 0.3 + 0.75 * 0.7
    assert_close(grad[2], a_t * 0.7**gamma * 0.7, rtol=1e-15)
    assert loss[3] == np.inf
    assert_close(grad[3], -a_t * 0.3**gamma * 0.3, rtol=1e-15)
    assert loss[4] == 0.0 and grad[4] == 0.0
    assert_close(loss[5], 0.25 * 800.0, rtol=1e-15)
    assert_close(grad[5], -0.25, rtol=1e-15)
    assert np.isnan(loss[6]) and np.isnan(grad[6])
    assert not np.any(np.isnan(loss[:6])) and not np.any(np.isnan(grad[:6]))


def test_softmax_special_values():
    z = np.array(
        [
            [np.inf, 0.0, 1.0],
            [np.inf, 0.0, 1.0],
            [1e4, 0.0, -1e4],
            [np.nan, 0.0, 1.0],
            [-np.inf, 0.0, 1.0],
        ]
    )
    t = np.array([0, 1, 0, 0, 2])
    for gamma in (0.0, 0.5, 2.0):
        loss = ref.softmax_focal_loss(z, t, gamma=gamma)
        grad = ref.softmax_focal_loss_grad(z, t, gamma=gamma)
        assert loss[0] == 0.0 and np.all(grad[0] == 0.0)
        assert loss[1] == np.inf
        np.testing.assert_array_equal(grad[1], [1.0, -1.0, 0.0])
        assert loss[2] == 0.0 and np.all(grad[2] == 0.0)
        assert np.isnan(loss[3]) and np.all(np.isnan(grad[3]))
        exact_loss, exact_grad = mpr.softmax_index([0.0, 1.0], 1, None, gamma)
        assert_close(loss[4], exact_loss)
        np.testing.assert_allclose(grad[4], [0.0] + [float(g) for g in exact_grad], rtol=1e-12)


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(reduction="avg"), "reduction"),
        (dict(gamma=-1.0), "gamma"),
        (dict(gamma=float("inf")), "gamma"),
        (dict(alpha=1.5), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(normalizer=0.0), "normalizer"),
        (dict(normalizer=float("nan")), "normalizer"),
    ],
)
def test_sigmoid_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ref.sigmoid_focal_loss(np.zeros(3), np.zeros(3), **kwargs)


def test_invalid_targets_and_shapes():
    with pytest.raises(ValueError, match=r"shape"):
        ref.sigmoid_focal_loss(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"targets\[2\].*2"):
        ref.sigmoid_focal_loss(np.zeros(4), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"targets\[1\].*1\.5"):
        ref.sigmoid_focal_loss(np.zeros(3), np.array([0.5, 1.5, 0.0]))
    with pytest.raises(ValueError, match=r"targets\[0\].*nan"):
        ref.sigmoid_focal_loss(np.zeros(3), np.array([np.nan, 0.5, 0.0]))
    with pytest.raises(ValueError, match=r"targets\[1\].*5"):
        ref.sigmoid_focal_loss(np.zeros((2, 3)), np.array([3, 5]))  # 3 = background is fine
    with pytest.raises(ValueError, match=r"targets\[1\].*3"):
        ref.softmax_focal_loss(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"targets\[0\].*-2"):
        ref.softmax_focal_loss(np.zeros((2, 3)), np.array([-2, 0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        ref.softmax_focal_loss(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.0)
    with pytest.raises(ValueError, match="alpha"):
        ref.softmax_focal_loss(np.zeros((2, 3)), np.array([0, 1]), alpha=[1.0, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        ref.softmax_focal_loss(np.zeros((2, 3)), np.array([0, 1]), alpha=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="grad_output"):
        ref.softmax_focal_loss_grad(
            np.zeros((2, 3)), np.array([0, 1]), reduction="sum", grad_output=np.ones(2)
        )
    with pytest.raises(ValueError, match="grad_output"):
        ref.sigmoid_focal_loss_grad(np.zeros(3), np.zeros(3), grad_output=np.ones(2))


# --------------------------------------------------------------------------
# ulp_error helper
# --------------------------------------------------------------------------


def test_ulp_error_helper():
    assert mpr.ulp_error(1.0 + 2.0**-52, mp.mpf(1), np.float64) == 1.0
    assert mpr.ulp_error(np.float32(1.0 + 2.0**-23), mp.mpf(1), np.float32) == 1.0
    assert mpr.ulp_error(0.0, mp.mpf(0), np.float64) == 0.0
    assert mpr.ulp_error(np.nan, mp.mpf(1), np.float64) == math.inf
    assert mpr.ulp_error(np.inf, mp.mpf(1), np.float32) == math.inf
    # Below the smallest normal the ulp is the smallest subnormal.
    tiny = float(np.finfo(np.float32).tiny)
    assert mpr.ulp_error(3 * 2.0**-149, mp.mpf(2.0**-149), np.float32) == 2.0
    assert mpr.ulp_error(2.0**-149, mp.mpf(tiny) / 8, np.float32) > 0
    # Half an ulp below 2 (binade [1, 2)) vs above 2 (binade [2, 4)).
    with mp.workdps(50):
        assert mpr.ulp_error(2.0, mp.mpf(2) - mp.mpf(2) ** -53, np.float64) == 0.5
        assert mpr.ulp_error(2.0, mp.mpf(2) + mp.mpf(2) ** -52, np.float64) == 0.5

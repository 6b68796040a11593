"""Property-based tests (hypothesis) of the softmax focal loss.

- native == the pure-Python oracle within the dtype's tolerance, for random
  shapes (0-sized positions and C = 1 included), class axes, dtypes, values
  (finite, subnormals, wide ranges), target kinds and parameters;
- ``*_with_grad`` returns exactly the bits of the separate calls;
- index targets without ignored positions: every gradient row sums to ~0;
- softmax invariance: adding a constant to a row leaves loss and gradient
  unchanged (bitwise when the shifts are exact, else within rounding);
- thread-count invariance: 1 vs 2 threads give the same bits (>= 2e5
  elements, so the work is split over threads).
"""

from __future__ import annotations

import math

import focal_native as fn
import focal_testing as ft
import numpy as np
from focal_native import reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LABEL_DTYPES = [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64]

gammas = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.5, 5.0]), st.floats(0.0, 8.0))
normalizers = st.one_of(st.none(), st.floats(1e-3, 1e3))
smoothings = st.one_of(st.just(0.0), st.floats(0.0, 0.99))


def finite_floats(dtype, **kw):
    return st.floats(allow_nan=False, allow_infinity=False, width=32 if dtype == F32 else 64, **kw)


@st.composite
def problems(draw, want_ignore=True):
    """(logits, targets, kwargs) for one call."""
    dtype = draw(st.sampled_from([F32, F64]))
    ndim = draw(st.integers(1, 4))
    shape = list(draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=5)))
    axis = draw(st.integers(-ndim, ndim - 1))
    if shape[axis] == 0:
        shape[axis] = draw(st.integers(1, 5))  # C >= 1 (C = 0 is an error)
    if draw(st.booleans()):
        shape[axis] = draw(st.sampled_from([1, 2, 17, 40]))
    shape = tuple(shape)
    classes = shape[axis]
    scale = draw(st.sampled_from(["moderate", "wide", "huge"]))
    if scale == "moderate":
        elements = finite_floats(dtype, min_value=-60.0, max_value=60.0, allow_subnormal=True)
    elif scale == "wide":
        elements = finite_floats(dtype, min_value=-1e4, max_value=1e4, allow_subnormal=True)
    else:
        # Up to 1e306 (and alpha <= 10): alpha * (-log p_k) stays finite. Beyond,
        # the kernels and the oracle may overflow in different intermediates.
        bound = 1e306 if dtype == F64 else None
        elements = finite_floats(
            dtype, allow_subnormal=True, min_value=bound and -bound, max_value=bound
        )
    z = draw(hnp.arrays(dtype, shape, elements=elements))
    ax = axis % ndim
    pshape = shape[:ax] + shape[ax + 1 :]
    kind = draw(st.sampled_from(["index", "dense", "onehot"]))
    kw = dict(
        axis=axis,
        gamma=draw(gammas),
        normalizer=draw(normalizers),
        reduction=draw(st.sampled_from(["none", "mean", "sum"])),
        label_smoothing=draw(smoothings),
    )
    alpha_kind = draw(st.sampled_from(["none", "scalar", "vector"]))
    # Weights are 0 or normal numbers: the loss keeps a subnormal weight
    # (test_softmax.py::test_subnormal_alpha_is_not_flushed), but under flush-to-zero
    # the gradient's alpha q^g is 0, which a scale above 1 would make visible.
    weights = st.one_of(st.just(0.0), st.floats(1e-300, 10.0))
    if alpha_kind == "scalar":
        kw["alpha"] = draw(weights)
    elif alpha_kind == "vector":
        kw["alpha"] = draw(hnp.arrays(np.float64, (classes,), elements=weights))
    if kind == "index":
        ldt = draw(st.sampled_from(LABEL_DTYPES))
        hi = min(classes, int(np.iinfo(ldt).max) + 1)
        t = draw(hnp.arrays(ldt, pshape, elements=st.integers(0, hi - 1)))
        if want_ignore and draw(st.booleans()) and t.size:
            ign = -100 if np.dtype(ldt).kind == "i" else 200
            mask = draw(hnp.arrays(np.bool_, pshape))
            t = np.where(mask, np.asarray(ign).astype(ldt), t).astype(ldt)
            kw["ignore_index"] = ign
    elif kind == "onehot":
        lab = draw(hnp.arrays(np.int64, pshape, elements=st.integers(0, classes - 1)))
        t = np.moveaxis((np.arange(classes) == lab[..., None]).astype(dtype), -1, ax)
    else:
        t = draw(
            hnp.arrays(
                dtype,
                shape,
                elements=st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0, width=32)),
            )
        )
    return z, t, kw


def _grad_scale(z, t, kw):
    """Size of the terms whose difference is the dense-target gradient (oracle-free).

    |y_j F_j| (1 - p_j) + p_j sum_k |y_k F_k|, bounded via
    sum_k |y_k F_k| <= max_k alpha_k (1 + gamma) sum_k y_k.
    """
    t = np.asarray(t)
    if t.dtype.kind != "f" and not kw.get("label_smoothing"):
        return None
    ax = kw["axis"] % z.ndim
    classes = z.shape[ax]
    a = kw.get("alpha")
    amax = 1.0 if a is None else float(np.max(a)) if np.ndim(a) else float(a)
    ysum = np.sum(t, axis=ax, keepdims=True) if t.dtype.kind == "f" else 1.0
    bound = amax * (1.0 + kw["gamma"]) * (np.asarray(ysum, dtype=np.float64) + 1.0)
    norm = kw.get("normalizer") or 1.0
    s = bound / norm
    if kw["reduction"] == "mean":
        if t.dtype.kind == "f":
            n = max(1, int(np.prod(t.shape)) // max(classes, 1))
        else:
            n = max(1, int(np.sum(t.astype(np.int64) != kw.get("ignore_index", -100))))
        s = s / n
    return np.broadcast_to(s, z.shape)


@SETTINGS
@given(problems())
def test_native_matches_oracle(problem):
    z, t, kw = problem
    to = t.astype(z.dtype) if t.dtype.kind == "f" else t
    loss, grad = fn.softmax_focal_loss_with_grad(z, t, **kw)
    with np.errstate(over="ignore", invalid="ignore"):
        e_loss, e_grad = ref.softmax_focal_loss_with_grad(z, to, **kw)
    if z.dtype == F32:
        # exact values beyond FLT_MAX round to inf (or to FLT_MAX)
        with np.errstate(over="ignore", invalid="ignore"):
            e_loss = np.where(
                np.abs(e_loss) > np.finfo(F32).max,
                np.asarray(e_loss).astype(F32).astype(F64),
                e_loss,
            )
    if kw["reduction"] == "none":
        assert loss.shape == np.shape(e_loss) and loss.dtype == z.dtype
    else:
        assert isinstance(loss, np.floating) and loss.dtype == z.dtype
    # A sum over many positions can overflow in the dtype, or cancel nothing: loss >= 0.
    ft.assert_close(loss, e_loss, err_msg=f"loss {kw}")
    ft.assert_close(grad, e_grad, scale=_grad_scale(z, t, kw), err_msg=f"grad {kw}")


@SETTINGS
@given(problems())
def test_with_grad_equals_separate_calls_bitwise(problem):
    z, t, kw = problem
    loss, grad = fn.softmax_focal_loss_with_grad(z, t, **kw)
    ft.assert_bitwise_equal(np.asarray(loss), np.asarray(fn.softmax_focal_loss(z, t, **kw)))
    ft.assert_bitwise_equal(grad, fn.softmax_focal_loss_grad(z, t, **kw))
    # finite logits never give NaN (infinity only by overflow), except the mean of nothing
    assert not np.any(np.isnan(grad))
    if np.isnan(loss).any():
        assert kw["reduction"] == "mean", kw
        counted = (
            np.asarray(t).size
            if t.dtype.kind == "f"
            else np.sum(t.astype(np.int64) != kw.get("ignore_index", -100))
        )
        assert counted == 0 or z.size == 0, kw


@st.composite
def index_rows(draw):
    dtype = draw(st.sampled_from([F32, F64]))
    classes = draw(st.integers(1, 30))
    n = draw(st.integers(1, 20))
    z = draw(
        hnp.arrays(
            dtype, (n, classes), elements=finite_floats(dtype, min_value=-50.0, max_value=50.0)
        )
    )
    lab = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, classes - 1)))
    gamma = draw(gammas)
    return z, lab, gamma


@SETTINGS
@given(index_rows())
def test_gradient_rows_sum_to_zero(problem):
    """sum_k dFL/dz_k = F (1 - sum_k p_k) = 0: softmax is shift-invariant."""
    z, lab, gamma = problem
    g = fn.softmax_focal_loss_grad(z, lab, gamma=gamma).astype(np.float64)
    size = np.sum(np.abs(g), axis=1)
    eps = float(np.finfo(z.dtype).eps)
    # each entry carries a few rounding errors, their sum up to C of them; entries
    # below the smallest normal number may be flushed to zero
    tiny = float(np.finfo(z.dtype).tiny)
    bound = (z.shape[1] + 4) * (eps * size + tiny)
    assert np.all(np.abs(np.sum(g, axis=1)) <= bound), (g, np.sum(g, axis=1))
    # and the gradient is 0 only where the loss is
    loss = fn.softmax_focal_loss(z, lab, gamma=gamma)
    assert np.all(loss >= 0)


@SETTINGS
@given(index_rows(), st.integers(-1000, 1000), st.booleans())
def test_adding_a_constant_to_a_row_changes_nothing(problem, shift, dense):
    """On a grid of 1/64 the shifted logits and every z_k - max(z) are exact: same bits."""
    z, lab, gamma = problem
    zq = (np.round(z.astype(np.float64) * 64) / 64).astype(z.dtype)  # exact grid values
    t = lab if not dense else (np.arange(z.shape[1]) == lab[:, None]).astype(z.dtype)
    kw = dict(gamma=gamma, alpha=0.5, reduction="none")
    shifted = (zq.astype(np.float64) + shift).astype(z.dtype)
    assert np.array_equal(shifted.astype(np.float64) - shift, zq.astype(np.float64))
    l0, g0 = fn.softmax_focal_loss_with_grad(zq, t, **kw)
    l1, g1 = fn.softmax_focal_loss_with_grad(shifted, t, **kw)
    ft.assert_bitwise_equal(l1, l0)
    ft.assert_bitwise_equal(g1, g0)
    # Arbitrary shifts: equal up to the rounding of z + c (relative |z + c| eps in each z).
    c = float(shift) + 0.3
    zs = (z.astype(np.float64) + c).astype(z.dtype)
    l2 = fn.softmax_focal_loss(zs, t, **kw).astype(np.float64)
    l3 = fn.softmax_focal_loss(z, t, **kw).astype(np.float64)
    eps = float(np.finfo(z.dtype).eps)
    # d loss / d z is bounded by (1 + gamma) * 0.5 per unit of logit error
    dz = 2 * eps * (np.max(np.abs(zs.astype(np.float64)), axis=1) + np.max(np.abs(z), axis=1))
    assert np.all(np.abs(l2 - l3) <= 4 * (1 + gamma) * dz * (1 + l3) + 1e-6 * l3), (l2, l3)


THREAD_CASES = st.sampled_from(
    [
        ((5000, 40), -1),
        ((2, 7, 150, 100), 1),
        ((25, 9000), 0),
        ((200_001, 1), -1),
    ]
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    THREAD_CASES,
    st.sampled_from([F32, F64]),
    st.sampled_from(["index", "dense", "smoothed"]),
    st.sampled_from(["none", "mean", "sum"]),
    gammas,
    st.integers(0, 2**32 - 1),
)
def test_thread_count_invariance(case, dtype, kind, reduction, gamma, seed):
    shape, axis = case
    assert math.prod(shape) >= 200_000
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=5.0, size=shape).astype(dtype)
    ax = axis % len(shape)
    classes = shape[ax]
    pshape = shape[:ax] + shape[ax + 1 :]
    lab = rng.integers(0, classes, size=pshape)
    lab.reshape(-1)[rng.integers(0, lab.size, size=lab.size // 20)] = -100
    kw = dict(axis=axis, gamma=gamma, reduction=reduction, alpha=0.7)
    if kind == "dense":
        t = rng.random(size=shape).astype(dtype)
    else:
        t = lab
        if kind == "smoothed":
            kw["label_smoothing"] = 0.1
    results = []
    for n in (1, 2):
        with ft.num_threads(n):
            assert fn.get_num_threads() == n
            results.append(fn.softmax_focal_loss_with_grad(z, t, **kw))
            g_only = fn.softmax_focal_loss_grad(z, t, **kw)
            ft.assert_bitwise_equal(g_only, results[-1][1])
    (l1, g1), (l2, g2) = results
    ft.assert_bitwise_equal(np.asarray(l1), np.asarray(l2), f"loss, {kw}")
    ft.assert_bitwise_equal(g1, g2, f"grad, {kw}")

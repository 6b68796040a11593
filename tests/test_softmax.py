"""Multiclass (softmax) focal loss: native results against independent oracles.

Oracles:

- ``focal_native.reference`` (pure Python, float64), computed once per case and
  compared with the native results under *every* supported instruction set
  (the oracle is the slow part; the native calls are cheap);
- a vectorized NumPy float64 transcription of NUMERICS.md (``np_softmax_focal``
  below) for arrays too large for the oracle (threaded cases);
- central finite differences of the native float64 loss;
- the 50-digit mpmath reference (tests/mp_reference.py) for dominated rows;
- exact identities: label dtypes give the same bits, non-contiguous inputs equal
  their contiguous copies, ``*_with_grad`` equals the separate calls, in-place
  gradients equal out-of-place ones, the sigmoid class-index form equals the
  elementwise form on the explicit one-hot expansion.
"""

from __future__ import annotations

import contextlib
import math
import zlib

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest
from focal_native import reference as ref

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
DT_IDS = ["f32", "f64"]
REDUCTIONS = ["none", "mean", "sum"]
GAMMAS = [0.0, 0.5, 1.0, 2.0, 2.5, 5.0]
CLASSES = [1, 2, 3, 80, 1000]
INDEX_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def rng_for(*key):
    """A generator seeded from the test's parameters (stable across runs)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def make_logits(rng, shape, dtype, scale=4.0):
    z = np.asarray(rng.normal(scale=scale, size=shape))
    flat = z.reshape(-1)
    if flat.size >= 6:  # a few exact / extreme values where they fit
        flat[:6] = [0.0, -0.0, 30.0, -30.0, 1e-8, -3e-5]
        rng.shuffle(flat)
    return z.astype(dtype)


def pos_shape_of(shape, axis):
    ax = axis % len(shape)
    return shape[:ax] + shape[ax + 1 :]


def make_labels(rng, pos_shape, classes, ldtype=np.int64, ignore=None, frac_ignore=0.15):
    """Class indices representable in `ldtype`, with ~frac_ignore of them `ignore`."""
    info = np.iinfo(ldtype)
    hi = min(classes, int(info.max) + 1)
    lab = np.asarray(rng.integers(0, hi, size=pos_shape), dtype=np.int64)
    flat = lab.reshape(-1)
    if flat.size >= 2:
        flat[0], flat[-1] = 0, hi - 1
    if ignore is not None and flat.size >= 3:
        k = max(1, int(flat.size * frac_ignore))
        flat[rng.choice(flat.size, size=k, replace=False)] = ignore
    return lab.astype(ldtype)


def one_hot(lab, classes, axis, ndim, dtype):
    """Dense one-hot targets with the class axis at `axis` (`lab` has no ignores)."""
    oh = (np.arange(classes) == np.asarray(lab, dtype=np.int64)[..., None]).astype(dtype)
    return np.moveaxis(oh, -1, axis % ndim)


def soft_targets(rng, shape, dtype):
    y = rng.random(size=shape)
    flat = y.reshape(-1)
    if flat.size >= 3:
        flat[:3] = [0.0, 1.0, 0.5]
        rng.shuffle(flat)
    return y.astype(dtype)


def ignore_for(ldtype):
    d = np.dtype(ldtype)
    if d == np.uint8:
        return 255  # the segmentation convention
    if d.kind == "u":
        return 12345  # ignore_index must fit in int64 (and -100 does not fit in uint64)
    return -100


def _alpha_vec(alpha, classes):
    if alpha is None:
        return np.ones(classes)
    a = np.asarray(alpha, dtype=np.float64)
    return np.full(classes, float(a)) if a.ndim == 0 else a


def np_softmax_focal(z, t, **kw):
    """Vectorized float64 softmax focal loss, gradient and gradient error scale.

    A transcription of NUMERICS.md ("Softmax"), for finite logits. Returns
    (loss, grad, scale), scale being the size of the terms whose difference
    is the dense-target gradient (for a cancellation-aware tolerance).
    """
    with np.errstate(all="ignore"):  # infinite logits: only the scale is used then
        return _np_softmax_focal(z, t, **kw)


def _np_softmax_focal(
    z,
    t,
    *,
    alpha=None,
    gamma=2.0,
    reduction="none",
    axis=-1,
    ignore_index=-100,
    label_smoothing=0.0,
    normalizer=None,
    grad_output=None,
):
    z = np.asarray(z, dtype=np.float64)
    t = np.asarray(t)
    shape = z.shape
    ax = axis % z.ndim
    classes = shape[ax]
    zm = np.moveaxis(z, ax, -1).reshape(-1, classes)
    npos = zm.shape[0]
    a = _alpha_vec(alpha, classes)
    eps = float(label_smoothing)
    dense = t.dtype.kind == "f"
    if dense:
        y = np.moveaxis(t.astype(np.float64), ax, -1).reshape(-1, classes)
        if eps > 0:
            y = (1 - eps) * y + eps / classes
        live = np.ones(npos, dtype=bool)
    else:
        lab = t.astype(np.int64).reshape(-1)
        live = lab != ignore_index
        c = np.where(live, lab, 0)
        hot = np.arange(classes)[None, :] == c[:, None]
        if eps > 0:
            dense = True
            y = np.where(hot, (1 - eps) + eps / classes, eps / classes)
    if True:
        m = zm.max(axis=1, keepdims=True)
        d = zm - m
        w = np.exp(d)
        s = w.sum(axis=1)
        log_s = np.log(s)
        p = w / s[:, None]
        if not dense:
            s_o = np.where(hot, 0.0, w).sum(axis=1)
            q = s_o / s
            d_c = d[np.arange(npos), c]
            log_pc = np.where(d_c == 0.0, -np.log1p(s_o), d_c - log_s)
            p_c = p[np.arange(npos), c]
            a_c = a[c]
            qg = np.ones_like(q) if gamma == 0 else q**gamma
            ratio = np.where(q > 0, log_pc / np.where(q > 0, q, 1.0), -1.0)
            f = a_c * qg * (gamma * p_c * ratio - 1.0)
            loss = -a_c * qg * log_pc
            grad = np.where(hot, (f * q)[:, None], -f[:, None] * p)
            scale = np.zeros_like(grad)
        else:
            am = np.argmax(zm, axis=1)
            is_am = np.arange(classes)[None, :] == am[:, None]
            s_o_am = np.where(is_am, 0.0, w).sum(axis=1)
            omp = np.where(is_am, (s_o_am / s)[:, None], 1.0 - p)
            log_p = np.where(is_am, -np.log1p(s_o_am)[:, None], d - log_s[:, None])
            qg = np.ones_like(omp) if gamma == 0 else omp**gamma
            ratio = np.where(omp > 0, log_p / np.where(omp > 0, omp, 1.0), -1.0)
            pl = np.where(p > 0, p * ratio, 0.0)
            f = a[None, :] * qg * (gamma * pl - 1.0)
            loss = -np.where(y > 0, a[None, :] * y * qg * log_p, 0.0).sum(axis=1)
            yf = y * f
            tot = yf.sum(axis=1, keepdims=True)
            grad = yf * omp - p * (tot - yf)
            scale = np.abs(yf) * omp + p * np.abs(yf).sum(axis=1, keepdims=True)
    norm = 1.0 if normalizer is None else float(normalizer)
    count = int(live.sum())
    gscale = np.where(live, 1.0 / norm, 0.0)
    if reduction == "mean" and count > 0:
        gscale = gscale / count
    if grad_output is not None:
        gscale = gscale * np.asarray(grad_output, dtype=np.float64).reshape(-1)
    loss = np.where(live, loss / norm, 0.0)
    grad = np.where(live[:, None], grad, 0.0) * gscale[:, None]
    scale = np.where(live[:, None], scale, 0.0) * np.abs(gscale)[:, None]
    # Where the NumPy form breaks down (infinite logits) the scale must not
    # widen the tolerance: use 0 there.
    scale = np.where(np.isfinite(scale), scale, 0.0)

    def back(x):
        moved = shape[:ax] + shape[ax + 1 :] + (classes,)
        return np.moveaxis(x.reshape(moved), -1, ax)

    if reduction == "none":
        lo = loss.reshape(shape[:ax] + shape[ax + 1 :])
    elif reduction == "sum":
        lo = math.fsum(loss)
    else:
        lo = math.fsum(loss) / count if count else math.nan
    return lo, back(grad), back(scale)


def oracle(z, t, **kw):
    """The pure-Python oracle's (loss, grad); float targets are used in z's dtype."""
    t = np.asarray(t)
    to = t.astype(z.dtype) if t.dtype.kind == "f" else t
    return ref.softmax_focal_loss_with_grad(z, to, **kw)


def round_overflow(x, dtype):
    """Exact values beyond the dtype's largest finite number, rounded (inf or max)."""
    x = np.asarray(x, dtype=np.float64)
    big = float(np.finfo(dtype).max)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = x.astype(dtype).astype(np.float64)  # round to nearest: inf or max
    return np.where(np.abs(x) > big, rounded, x)


def check_reduced(value, expected, dtype, rtol=None, err_msg=""):
    """A reduction is a numpy scalar of the logits' dtype, close to `expected`."""
    assert not isinstance(value, np.ndarray), type(value)
    assert isinstance(value, np.floating) and value.dtype == dtype, (type(value), dtype)
    ft.assert_close(value, expected, rtol=rtol, err_msg=err_msg)


def native_all(z, t, **kw):
    """(loss, grad) from the separate calls; checks with_grad gives the same bits."""
    loss = fn.softmax_focal_loss(z, t, **kw)
    grad = fn.softmax_focal_loss_grad(z, t, **kw)
    wl, wg = fn.softmax_focal_loss_with_grad(z, t, **kw)
    ft.assert_bitwise_equal(np.asarray(wl), np.asarray(loss), "with_grad loss")
    ft.assert_bitwise_equal(wg, grad, "with_grad grad")
    return loss, grad


def on_isa(name):
    """Force ISA `name` for a block; a no-op when it is already the one in use (so a
    test running under the `isa` fixture keeps its forced ISA afterwards)."""
    return contextlib.nullcontext() if fn._core.get_isa() == name else ft.use_isa(name)


def compare_all(z, t, *, isas=None, grad_scale=None, expected=None, err_kind="", **kw):
    """Native loss / grad / with_grad against the oracle, under every ISA.

    Returns the native (loss, grad) of the last ISA.
    """
    kw.setdefault("reduction", "none")
    red = kw["reduction"]
    dtype = z.dtype
    e_loss, e_grad = oracle(z, t, **kw) if expected is None else expected
    if dtype == F32:  # values beyond FLT_MAX round to inf
        e_loss, e_grad = round_overflow(e_loss, dtype), round_overflow(e_grad, dtype)
    t_arr = np.asarray(t)
    if grad_scale is None and (t_arr.dtype.kind == "f" or kw.get("label_smoothing", 0.0)):
        grad_scale = np_softmax_focal(z, t, **kw)[2]
    res = None
    for name in ft.ISAS if isas is None else isas:
        with on_isa(name):
            loss, grad = native_all(z, t, **kw)
        msg = f"isa={name} {err_kind} kw={kw}"
        if red == "none":
            assert isinstance(loss, np.ndarray), type(loss)
            assert loss.dtype == dtype and loss.shape == np.shape(e_loss), (loss.shape, msg)
            ft.assert_close(loss, e_loss, err_msg="loss " + msg)
        else:
            check_reduced(loss, e_loss, dtype, err_msg="loss " + msg)
        assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == z.shape
        ft.assert_close(grad, e_grad, scale=grad_scale, err_msg="grad " + msg)
        res = (loss, grad)
    return res


# --------------------------------------------------------------------------
# Layouts x classes x target kinds
# --------------------------------------------------------------------------

# (name, shape builder from C, axis)
LAYOUTS = [
    ("NC", lambda c: (9, c), -1),
    ("NC-axis1", lambda c: (5, c), 1),
    ("NCHW", lambda c: (2, c, 3, 4) if c < 80 else (2, c, 2, 3), 1),
    ("NCD", lambda c: (3, c, 5) if c < 80 else (2, c, 3), 1),
    ("CN-axis0", lambda c: (c, 7), 0),
    ("CHW-axis0", lambda c: (c, 3, 4) if c < 80 else (c, 2, 2), 0),
    ("NHCW-axis-2", lambda c: (2, 3, c, 4) if c < 80 else (1, 2, c, 3), -2),
    ("C-1d", lambda c: (c,), 0),
]


@pytest.mark.parametrize("classes", CLASSES, ids=lambda c: f"C={c}")
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay[0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_layouts_and_target_kinds_vs_oracle(dtype, layout, classes):
    name, shape_of, axis = layout
    rng = rng_for("layout", dtype, name, classes)
    shape = shape_of(classes)
    ndim = len(shape)
    z = make_logits(rng, shape, dtype)
    pshape = pos_shape_of(shape, axis)
    lab = make_labels(rng, pshape, classes, np.int64, ignore=-100)
    lab_full = make_labels(rng, pshape, classes, np.int64)
    kinds = {
        "index": (lab, {}),
        "onehot": (one_hot(lab_full, classes, axis, ndim, dtype), {}),
        "soft": (soft_targets(rng, shape, dtype), {}),
        "smoothed": (lab, dict(label_smoothing=0.1)),
        "soft-smoothed": (soft_targets(rng, shape, dtype), dict(label_smoothing=0.2)),
    }
    reds = [("none", None), ("mean", 2.5), ("sum", None)]
    for i, (kind, (t, extra)) in enumerate(kinds.items()):
        red, norm = reds[i % 3]
        alpha = [None, 0.75, rng.uniform(0.1, 2.0, size=classes)][i % 3]
        kw = dict(axis=axis, gamma=[2.0, 0.5, 2.5, 0.0, 5.0][i], alpha=alpha, **extra)
        compare_all(z, t, reduction="none", err_kind=kind, **kw)
        compare_all(z, t, reduction=red, normalizer=norm, err_kind=kind, **kw)
    # A dense one-hot row is the class index (different kernels, same numbers).
    for g in (0.0, 2.0, 2.5):
        li, gi = fn.softmax_focal_loss_with_grad(z, lab_full, gamma=g, axis=axis, reduction="none")
        ld, gd = fn.softmax_focal_loss_with_grad(
            z,
            one_hot(lab_full, classes, axis, ndim, dtype),
            gamma=g,
            axis=axis,
            reduction="none",
        )
        ft.assert_close(ld, li.astype(np.float64), rtol=4 * ft.RTOL[dtype])
        ft.assert_close(gd, gi.astype(np.float64), rtol=4 * ft.RTOL[dtype])


@pytest.mark.parametrize("classes", CLASSES, ids=lambda c: f"C={c}")
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_index_dtypes_give_the_same_bits(dtype, classes):
    """int8/int16/int32/int64/uint8/uint64 labels: the same values, the same bits."""
    rng = rng_for("idxdtypes", dtype, classes)
    for shape, axis in (((40, classes), -1), ((2, classes, 35), 1)):
        z = make_logits(rng, shape, dtype)
        pshape = pos_shape_of(shape, axis)
        base = make_labels(rng, pshape, classes, np.int8)  # representable in every dtype
        for red in REDUCTIONS:
            kw = dict(axis=axis, gamma=2.0, alpha=0.5, reduction=red)
            e_loss, e_grad = fn.softmax_focal_loss_with_grad(z, base.astype(np.int64), **kw)
            for ldt in INDEX_DTYPES:
                lo, gr = fn.softmax_focal_loss_with_grad(z, base.astype(ldt), **kw)
                ft.assert_bitwise_equal(gr, e_grad, f"grad {np.dtype(ldt)} {red}")
                ft.assert_bitwise_equal(np.asarray(lo), np.asarray(e_loss), f"{np.dtype(ldt)}")
        # and each dtype against the oracle, with its own ignore convention
        for ldt in INDEX_DTYPES:
            ign = ignore_for(ldt)
            lab = make_labels(rng, pshape, classes, ldt, ignore=ign)
            compare_all(
                z, lab, axis=axis, ignore_index=ign, reduction="mean", gamma=1.0, isas=[ft.ISAS[0]]
            )


# --------------------------------------------------------------------------
# gamma x alpha grid, every target kind
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS, ids=lambda g: f"g={g}")
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_gamma_alpha_grid(dtype, gamma):
    rng = rng_for("grid", dtype, gamma)
    classes = 6
    z = make_logits(rng, (40, classes), dtype, scale=5.0)
    z[0] = [60.0, 0.0, -1.0, 2.0, -60.0, 1.0]  # confident rows
    z[1] = [-700.0, 0.0, 700.0, 1.0, 2.0, 3.0]
    z[2] = 1.5  # all tied
    lab = make_labels(rng, (40,), classes, np.int64, ignore=-100)
    lab[:3] = [0, 2, 4]
    hot = one_hot(make_labels(rng, (40,), classes), classes, -1, 2, dtype)
    soft = soft_targets(rng, z.shape, dtype)
    alphas = [None, 0.0, 0.25, 3.0, np.array([0.0, 0.5, 1.0, 2.0, 0.25, 1.5])]
    for ai, alpha in enumerate(alphas):
        for ki, (t, extra) in enumerate(
            [(lab, {}), (hot, {}), (soft, {}), (lab, dict(label_smoothing=0.05))]
        ):
            red, norm = [("none", None), ("mean", 7.5), ("sum", 0.125)][(ai + ki) % 3]
            compare_all(z, t, alpha=alpha, gamma=gamma, reduction=red, normalizer=norm, **extra)


def test_defaults(isa):
    rng = rng_for("defaults")
    z = make_logits(rng, (12, 5), F64)
    t = make_labels(rng, (12,), 5)
    ft.assert_close(
        fn.softmax_focal_loss(z, t),
        ref.softmax_focal_loss(z, t, alpha=None, gamma=2.0, reduction="none"),
    )
    lo, gr = fn.softmax_focal_loss_with_grad(z, t)  # reduction defaults to 'mean'
    check_reduced(lo, ref.softmax_focal_loss(z, t, reduction="mean"), F64)
    ft.assert_close(gr, ref.softmax_focal_loss_grad(z, t, reduction="mean"))
    ft.assert_close(fn.softmax_focal_loss_grad(z, t), ref.softmax_focal_loss_grad(z, t))


def test_python_lists_and_scalars():
    z = [[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]]
    t = [2, 0]
    lo = fn.softmax_focal_loss(z, t)
    assert lo.dtype == F64
    ft.assert_close(lo, ref.softmax_focal_loss(np.array(z), np.array(t)))
    ft.assert_close(
        fn.softmax_focal_loss(
            z, t, alpha=[1, 2, 3], gamma=1, label_smoothing=0.1, normalizer=2, reduction="sum"
        ),
        ref.softmax_focal_loss(
            np.array(z),
            np.array(t),
            alpha=[1, 2, 3],
            gamma=1,
            label_smoothing=0.1,
            normalizer=2,
            reduction="sum",
        ),
    )
    # numpy scalar parameters
    ft.assert_close(
        fn.softmax_focal_loss(
            np.array(z), t, alpha=np.float32(0.5), gamma=np.float64(2.5), axis=np.int64(-1)
        ),
        ref.softmax_focal_loss(np.array(z), np.array(t), alpha=0.5, gamma=2.5),
    )


# --------------------------------------------------------------------------
# ignore_index, empty inputs, reductions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_ignore_index(isa, dtype):
    rng = rng_for("ignore", dtype)
    z = make_logits(rng, (8, 4), dtype)
    lab = np.array([0, -100, 3, -100, 2, 1, -100, 3])
    for red in REDUCTIONS:
        for extra in ({}, dict(label_smoothing=0.2)):
            lo, gr = compare_all(z, lab, reduction=red, isas=[isa], **extra)
            assert np.all(gr[lab == -100] == 0)
            if red == "none":
                assert np.all(lo[lab == -100] == 0)
    # The mean counts only non-ignored positions.
    kept = lab != -100
    m = fn.softmax_focal_loss(z, lab, reduction="mean")
    ft.assert_close(
        m,
        fn.softmax_focal_loss(z[kept], lab[kept], reduction="mean").astype(F64),
        rtol=4 * ft.RTOL[dtype],
    )
    g = fn.softmax_focal_loss_grad(z, lab, reduction="mean")
    ft.assert_close(
        g[kept],
        fn.softmax_focal_loss_grad(z[kept], lab[kept], reduction="mean"),
        rtol=4 * ft.RTOL[dtype],
    )
    # A custom ignore_index that is also a valid class: ignored wins.
    compare_all(z, np.array([2, 2, 0, 1, 3, 2, 0, 1]), ignore_index=2, reduction="mean", isas=[isa])
    # With another ignore_index, -100 is an error.
    with pytest.raises(ValueError, match="targets"):
        fn.softmax_focal_loss(z, lab, ignore_index=-1)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_ignored_position_stays_zero_under_infinite_grad_output(isa, dtype):
    for shape, axis in (((4, 3), -1), ((2, 3, 5), 1), ((3, 40), -1)):
        z = make_logits(rng_for("ign-inf", shape), shape, dtype)
        pos = pos_shape_of(shape, axis)
        lab = np.zeros(pos, dtype=np.int64)
        lab.flat[0] = -100
        w = np.ones(pos, dtype=dtype)
        w.flat[0] = np.inf
        g = fn.softmax_focal_loss_grad(z, lab, axis=axis, reduction="none", grad_output=w)
        gm = np.moveaxis(g, axis, -1).reshape(-1, shape[axis])
        assert np.all(gm[0] == 0) and np.all(np.isfinite(gm)), gm


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_all_ignored(isa, dtype):
    for shape, axis in (((5, 3), -1), ((2, 3, 4), 1), ((300, 7), -1)):
        z = make_logits(rng_for("allign", shape), shape, dtype)
        lab = np.full(pos_shape_of(shape, axis), -100)
        for extra in ({}, dict(label_smoothing=0.3)):
            lo, gr = fn.softmax_focal_loss_with_grad(z, lab, reduction="mean", axis=axis, **extra)
            assert isinstance(lo, np.floating) and lo.dtype == dtype and np.isnan(lo)
            ft.assert_bitwise_equal(gr, np.zeros_like(z))
            assert np.isnan(fn.softmax_focal_loss(z, lab, reduction="mean", axis=axis, **extra))
            ft.assert_bitwise_equal(
                fn.softmax_focal_loss_grad(z, lab, reduction="mean", axis=axis, **extra),
                np.zeros_like(z),
            )
            lo, gr = fn.softmax_focal_loss_with_grad(z, lab, reduction="sum", axis=axis, **extra)
            assert lo == 0 and lo.dtype == dtype
            ft.assert_bitwise_equal(gr, np.zeros_like(z))
            ft.assert_bitwise_equal(
                fn.softmax_focal_loss(z, lab, axis=axis, **extra), np.zeros(lab.shape, dtype)
            )


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_empty_positions(dtype):
    for shape, axis in (((0, 4), -1), ((2, 3, 0), 1), ((0, 0), -1), ((3, 0, 5), 0)):
        z = np.zeros(shape, dtype=dtype)
        lab = np.zeros(pos_shape_of(shape, axis), dtype=np.int64)
        for t in (lab, np.zeros(shape, dtype=dtype)):
            lo, gr = fn.softmax_focal_loss_with_grad(z, t, axis=axis, reduction="none")
            assert lo.shape == lab.shape and lo.dtype == dtype
            assert gr.shape == shape and gr.dtype == dtype
            m = fn.softmax_focal_loss(z, t, axis=axis, reduction="mean")
            s = fn.softmax_focal_loss(z, t, axis=axis, reduction="sum")
            assert np.isnan(m) and m.dtype == dtype
            assert s == 0 and s.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_single_class_is_certain(isa, dtype):
    """C = 1: p = 1, so loss and gradient are 0 (finite logits), except for NaN."""
    z = np.array([[0.0], [5.0], [-1e30], [np.nan]], dtype=dtype)
    lab = np.array([0, 0, -100, 0])
    for g in GAMMAS:
        lo, gr = fn.softmax_focal_loss_with_grad(z, lab, gamma=g, reduction="none")
        ft.assert_close(lo, [0.0, 0.0, 0.0, np.nan])
        ft.assert_close(gr, [[0.0], [0.0], [0.0], [np.nan]])
        eo, eg = ref.softmax_focal_loss_with_grad(z, lab, gamma=g, reduction="none")
        ft.assert_close(lo, eo)
        ft.assert_close(gr, eg)


# --------------------------------------------------------------------------
# Tiling: positions around the tile size, rows and columns modes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("npos", [1, 127, 128, 129, 300])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_tiling_sizes(dtype, npos):
    rng = rng_for("tiles", dtype, npos)
    classes = 5
    cases = [
        ((npos, classes), -1),  # rows mode
        ((1, classes, npos), 1),  # columns mode, one outer
        ((3, classes, npos), 1),  # columns mode, tiles that end at each outer
        ((npos, classes, 2), 1),  # short columns, many outers
    ]
    for shape, axis in cases:
        z = make_logits(rng, shape, dtype)
        pshape = pos_shape_of(shape, axis)
        lab = make_labels(rng, pshape, classes, np.int32, ignore=-100)
        soft = soft_targets(rng, shape, dtype)
        red = ["none", "mean", "sum"][npos % 3]
        compare_all(z, lab, axis=axis, reduction=red, gamma=2.5, alpha=[1, 2, 0.5, 0.25, 1])
        compare_all(z, soft, axis=axis, reduction="none", gamma=2.0)
        compare_all(z, lab, axis=axis, reduction="none", gamma=1.0, label_smoothing=0.1)


# Short rows (fewer than 32 classes, class axis last) are transposed a tile at
# a time into class-major order, through registers in blocks of 16 (AVX-512)
# or 8 (AVX2) rows and classes, with element-by-element copies for the rows
# left over. These sizes make full and partial blocks on both axes.
SHORT_ROW_CLASSES = [4, 7, 8, 9, 15, 16, 17, 24, 31]
# float32 class indices also transpose rows of 33 to 63 classes that are not
# a whole number of 16-lane blocks (index_rows_mode).
F32_TRANSPOSED_CLASSES = [33, 40, 47, 49, 63]
SHORT_ROW_CASES = [(d, c) for d in DTYPES for c in SHORT_ROW_CLASSES] + [
    (F32, c) for c in F32_TRANSPOSED_CLASSES
]


@pytest.mark.parametrize(
    ("dtype", "classes"),
    SHORT_ROW_CASES,
    ids=[f"{np.dtype(d).name}-C={c}" for d, c in SHORT_ROW_CASES],
)
def test_short_rows_equal_their_class_major_layout(isa, dtype, classes):
    # The same numbers stored class-major ((1, C, N), axis 1) go through the
    # same per-position arithmetic without any transpose: for finite logits
    # the bits must agree. (With a NaN logit the gradient's NaNs may differ
    # in sign between the two, as the compiler orders a product's operands.)
    rng = rng_for("short-rows", dtype, classes)
    for npos in (1, 7, 8, 9, 16, 17, 130, 300):
        z = make_logits(rng, (npos, classes), dtype)
        lab = make_labels(rng, (npos,), classes, np.int64, ignore=-100)
        zc = np.ascontiguousarray(z.T)[None]
        kw = dict(reduction="none", gamma=2.0)
        loss_r, grad_r = fn.softmax_focal_loss_with_grad(z, lab, **kw)
        loss_c, grad_c = fn.softmax_focal_loss_with_grad(zc, lab[None], axis=1, **kw)
        msg = f"isa={isa} N={npos}"
        np.testing.assert_array_equal(loss_r, loss_c[0], err_msg=msg)
        np.testing.assert_array_equal(grad_r, grad_c[0].T, err_msg=msg)
        assert np.count_nonzero(grad_r) > 0
        g = z.copy()
        fn.softmax_focal_loss_with_grad(g, lab, grad_out=g, **kw)
        np.testing.assert_array_equal(g, grad_r, err_msg=msg + " in place")


@pytest.mark.parametrize("classes", SHORT_ROW_CLASSES + F32_TRANSPOSED_CLASSES,
                         ids=lambda c: f"C={c}")
def test_short_rows_vs_oracle(classes):
    rng = rng_for("short-rows-oracle", classes)
    for dtype in DTYPES:
        z = make_logits(rng, (37, classes), dtype)
        lab = make_labels(rng, (37,), classes, np.int64, ignore=-100)
        compare_all(z, lab, reduction="none", gamma=2.0)
        compare_all(z, lab, reduction="mean", gamma=0.5, alpha=np.linspace(0.1, 1, classes))


# Rows long enough to be vectorized over their classes: float32 exponentials
# go in blocks of 16 classes, the last block partial (masked). Labels are
# placed in the first, an inner and the last (partial) block, and at the block
# edges; one row's masked entries push it onto the double-precision path.
LONG_ROW_CLASSES = [32, 33, 47, 48, 49, 65, 79, 255, 256, 257, 300]
# Of these, the float32 rows that class indices take in rows mode: 33 to 63
# classes (but 48) are transposed (index_rows_mode), and a transposed tile
# takes its exponentials in float only when all its rows allow it, so there a
# row's bits may depend on the other rows of its tile.
F32_ROWS_MODE_CLASSES = [c for c in LONG_ROW_CLASSES if c >= 64 or c % 16 == 0]


@pytest.mark.parametrize("classes", LONG_ROW_CLASSES, ids=lambda c: f"C={c}")
def test_long_rows_block_edges_vs_oracle(classes):
    rng = rng_for("long-rows-blocks", classes)
    full = classes // 16 * 16
    edges = [0, 15, 16, classes - 1, min(full, classes - 1), max(full - 1, 0), classes // 2]
    for dtype in DTYPES:
        z = make_logits(rng, (2 * len(edges) + 3, classes), dtype)
        lab = make_labels(rng, (z.shape[0],), classes, np.int64, ignore=-100)
        lab[: len(edges)] = edges
        z[len(edges), ::3] = -1e4  # a masked row (range beyond float exponentials)
        compare_all(z, lab, reduction="none", gamma=2.0)
        compare_all(z, lab, reduction="sum", gamma=0.5, alpha=np.linspace(0.1, 1, classes))


@pytest.mark.parametrize("classes", F32_ROWS_MODE_CLASSES, ids=lambda c: f"C={c}")
def test_long_rows_paired_equal_single(isa, classes):
    """Float32 rows go two at a time where both can (one loop for both rows);
    a one-row call always takes the single-row path. Every row must give the
    same bits either way, next to a masked row and a NaN row, in place too."""
    rng = rng_for("long-rows-pairs", classes)
    z = make_logits(rng, (9, classes), F32)
    lab = make_labels(rng, (9,), classes, np.int64, ignore=-100)
    z[2, ::3] = -1e4  # pairs (2, 3) fall back to single rows: masked
    z[5, classes // 2] = np.nan  # pairs (4, 5): a NaN
    lab[5] = classes - 1  # (not ignored, so its loss is NaN)
    kw = dict(gamma=2.0, reduction="none")
    loss, grad = fn.softmax_focal_loss_with_grad(z, lab, **kw)
    zi = z.copy()
    loss_i, grad_i = fn.softmax_focal_loss_with_grad(zi, lab, grad_out=zi, **kw)
    ft.assert_bitwise_equal(loss_i, loss)
    ft.assert_bitwise_equal(grad_i, grad)
    ft.assert_bitwise_equal(fn.softmax_focal_loss(z, lab, **kw), loss)
    for i in range(z.shape[0]):
        li, gi = fn.softmax_focal_loss_with_grad(z[i : i + 1], lab[i : i + 1], **kw)
        ft.assert_bitwise_equal(li, loss[i : i + 1], err_msg=f"row {i}")
        ft.assert_bitwise_equal(gi, grad[i : i + 1], err_msg=f"row {i}")
    assert np.isnan(loss[5]) and np.isfinite(np.delete(loss, 5)).all()


@pytest.mark.parametrize("classes", [32, 33, 80, 257, 300], ids=lambda c: f"C={c}")
def test_float64_loss_only_rows_paired_equal_single(isa, classes):
    """Float64 rows of loss-only calls go two at a time where neither needs
    the scaled sum; a one-row call, and a gradient call that parks its
    exponentials, takes the single-row path. Every row's loss must be the
    same bits either way: next to a row that needs the scaled sum (at
    gamma = 0 its loss, ~C e^-700, depends on a term e^-709 below DBL_MIN
    that only the scaled sum keeps), a NaN row, a row with an infinite
    logit, an ignored label, and an odd row count."""
    rng = rng_for("f64-rows-pairs", classes)
    n = 11
    z = make_logits(rng, (n, classes), F64)
    lab = make_labels(rng, (n,), classes, np.int64, ignore=-100)
    lab[2] = 1
    z[2] = -700.0  # pair (2, 3): row 2 won by 700 takes the scaled sum
    z[2, 1] = 0.0
    z[2, 2] = -709.0
    z[5, classes // 2] = np.nan  # pair (4, 5): a NaN
    lab[5] = classes - 1
    z[6, 0] = np.inf  # pair (6, 7): an infinite logit, and an ignored label
    lab[6] = 0
    lab[7] = -100
    for kw in (
        dict(gamma=2.0),
        dict(gamma=0.0),
        dict(gamma=0.5, alpha=np.linspace(0.1, 1, classes)),
    ):
        loss = fn.softmax_focal_loss(z, lab, reduction="none", **kw)
        loss_g, _ = fn.softmax_focal_loss_with_grad(z, lab, reduction="none", **kw)
        ft.assert_bitwise_equal(loss, loss_g)
        for i in range(n):
            li = fn.softmax_focal_loss(z[i : i + 1], lab[i : i + 1], reduction="none", **kw)
            ft.assert_bitwise_equal(li, loss[i : i + 1], err_msg=f"row {i}")
        assert np.isnan(loss[5]) and loss[7] == 0.0
        if kw["gamma"] == 0.0:
            assert loss[2] > 0.0
        assert np.isfinite(np.delete(loss, 5)).all()
        rows = [0, 1, 2, 3, 4, 8, 9, 10]
        compare_all(z[rows], lab[rows], isas=[isa], reduction="none", **kw)


# --------------------------------------------------------------------------
# Large, threaded inputs against the NumPy implementation
# --------------------------------------------------------------------------

BIG_CASES = [((20000, 80), -1), ((2, 5, 300, 301), 1), ((80, 4100), 0)]


def close_fast(actual, desired, rtol, scale=0.0, err_msg=""):
    """ft.assert_close for large arrays: one vectorized test, details only on failure."""
    a = np.asarray(actual, dtype=np.float64)
    ok = np.abs(a - desired) <= rtol * (np.abs(desired) + scale) + ft.ATOL[np.asarray(actual).dtype]
    if not ok.all():  # NaN anywhere fails too
        ft.assert_close(actual, desired, rtol=rtol, scale=scale, err_msg=err_msg)


@pytest.mark.parametrize(("shape", "axis"), BIG_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_threaded_vs_numpy(dtype, shape, axis):
    rng = rng_for("big", dtype, shape)
    z = rng.normal(scale=3.0, size=shape).astype(dtype)
    classes = shape[axis]
    pshape = pos_shape_of(shape, axis)
    lab = make_labels(rng, pshape, classes, np.int64, ignore=-100, frac_ignore=0.05)
    count = int(np.sum(lab != -100))
    rtol = 2e-6 if dtype == F32 else 1e-12
    alpha = rng.uniform(0.2, 1.5, size=classes)
    kinds = {
        (20000, 80): [
            (lab, dict(gamma=2.0, alpha=alpha)),
            (lab, dict(gamma=2.5, label_smoothing=0.1)),
        ],
        (2, 5, 300, 301): [
            (lab, dict(gamma=2.5, alpha=alpha)),
            (soft_targets(rng, shape, dtype), dict(gamma=0.5)),
        ],
        (80, 4100): [(lab, dict(gamma=1.0, label_smoothing=0.05, alpha=alpha))],
    }[shape]
    for t, kw in kinds:
        e_loss, e_grad, scale = np_softmax_focal(z, t, axis=axis, reduction="none", **kw)
        n = count if t.dtype.kind == "i" else lab.size
        e_sum = math.fsum(e_loss.ravel())
        for name in ft.ISAS:
            with ft.use_isa(name):
                lo, gr = fn.softmax_focal_loss_with_grad(z, t, axis=axis, reduction="none", **kw)
                lm, gm = fn.softmax_focal_loss_with_grad(z, t, axis=axis, reduction="mean", **kw)
                ls = fn.softmax_focal_loss(z, t, axis=axis, reduction="sum", **kw)
            msg = f"isa={name} {kw}"
            close_fast(lo, e_loss, rtol, err_msg=msg)
            close_fast(gr, e_grad, rtol, scale=scale, err_msg=msg)
            check_reduced(lm, e_sum / n, dtype, rtol=rtol, err_msg=msg)
            check_reduced(ls, e_sum, dtype, rtol=rtol, err_msg=msg)
            close_fast(gm * n, e_grad, 2 * rtol, scale=scale, err_msg=msg)


# Arrays past 1 MiB of logits take the streaming variants (rows mode reads
# ahead, short float32 rows leave the chunked exponential loop, columns mode
# spreads the next tile's prefetches); a slice of the same rows under 1 MiB
# takes the in-cache ones. (shape, axis, slice of the outer axis)
STREAM_CASES = [
    ((4100, 80), -1, slice(1001, 1300)),
    ((300, 1000), -1, slice(37, 140)),
    ((30001, 10), -1, slice(5003, 9000)),
    ((30001, 21), -1, slice(129, 3000)),
    ((3, 21, 60, 101), 1, slice(1, 2)),
]


@pytest.mark.parametrize(("shape", "axis", "rows"), STREAM_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_streaming_and_in_cache_give_the_same_bits(isa, dtype, shape, axis, rows):
    rng = rng_for("stream", dtype, shape)
    z = make_logits(rng, shape, dtype)
    assert z.nbytes > 1 << 20 and z[rows].nbytes <= 1 << 20
    classes = shape[axis]
    lab = make_labels(rng, pos_shape_of(shape, axis), classes, ignore=-100, frac_ignore=0.05)
    kw = dict(gamma=2.0, alpha=rng.uniform(0.2, 1.5, size=classes), axis=axis)
    big_loss, big_grad = fn.softmax_focal_loss_with_grad(z, lab, reduction="none", **kw)
    small_loss, small_grad = fn.softmax_focal_loss_with_grad(
        np.ascontiguousarray(z[rows]), np.ascontiguousarray(lab[rows]), reduction="none", **kw
    )
    ft.assert_bitwise_equal(small_loss, big_loss[rows])
    ft.assert_bitwise_equal(small_grad, big_grad[rows])
    ft.assert_bitwise_equal(
        fn.softmax_focal_loss(z, lab, reduction="none", **kw)[rows], small_loss
    )
    # and both are right (the big array against the NumPy transcription)
    e_loss, e_grad, scale = np_softmax_focal(z, lab, reduction="none", **kw)
    rtol = 2e-6 if dtype == F32 else 1e-12
    close_fast(big_loss, e_loss, rtol)
    close_fast(big_grad, e_grad, rtol, scale=scale)


# --------------------------------------------------------------------------
# out=, grad_out=, in place
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_out_arguments(isa, dtype):
    rng = rng_for("out", dtype)
    for shape, axis in (((7, 4), -1), ((2, 4, 3, 5), 1)):
        z = make_logits(rng, shape, dtype)
        pshape = pos_shape_of(shape, axis)
        lab = make_labels(rng, pshape, 4, ignore=-100)
        kw = dict(gamma=2.0, alpha=[0.5, 1, 2, 1], axis=axis)
        e_loss, e_grad = fn.softmax_focal_loss_with_grad(z, lab, reduction="none", **kw)
        ft.assert_close(e_loss, oracle(z, lab, reduction="none", **kw)[0])

        out = np.full(pshape, np.nan, dtype=dtype)
        assert fn.softmax_focal_loss(z, lab, out=out, **kw) is out
        ft.assert_bitwise_equal(out, e_loss)

        gout = np.full(shape, np.nan, dtype=dtype)
        assert fn.softmax_focal_loss_grad(z, lab, out=gout, **kw) is gout
        ft.assert_bitwise_equal(gout, e_grad)

        out2 = np.full(pshape, np.nan, dtype=dtype)
        gout2 = np.full(shape, np.nan, dtype=dtype)
        lo, gr = fn.softmax_focal_loss_with_grad(
            z, lab, reduction="none", out=out2, grad_out=gout2, **kw
        )
        assert lo is out2 and gr is gout2
        ft.assert_bitwise_equal(out2, e_loss)
        ft.assert_bitwise_equal(gout2, e_grad)

        for red in ("mean", "sum"):
            g3 = np.empty_like(z)
            lo, gr = fn.softmax_focal_loss_with_grad(z, lab, reduction=red, grad_out=g3, **kw)
            assert gr is g3
            ft.assert_bitwise_equal(g3, fn.softmax_focal_loss_grad(z, lab, reduction=red, **kw))
            ft.assert_bitwise_equal(
                np.asarray(lo), np.asarray(fn.softmax_focal_loss(z, lab, reduction=red, **kw))
            )

        # A C-contiguous view of a larger buffer; the rest is untouched.
        buf = np.zeros(lab.size + 8, dtype=dtype)
        view = buf[4 : 4 + lab.size].reshape(pshape)
        assert fn.softmax_focal_loss(z, lab, out=view, **kw) is view
        ft.assert_bitwise_equal(view, e_loss)
        assert np.all(buf[:4] == 0) and np.all(buf[-4:] == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_gradient_in_place_over_logits(isa, dtype, reduction):
    rng = rng_for("inplace", dtype, reduction)
    cases = [((37, 6), -1), ((2, 6, 70), 1), ((9000, 6), -1), ((3, 6, 4000), 1)]  # + threaded
    for shape, axis in cases:
        z0 = make_logits(rng, shape, dtype)
        pshape = pos_shape_of(shape, axis)
        lab = make_labels(rng, pshape, 6, ignore=-100)
        soft = soft_targets(rng, shape, dtype)
        for t, extra in ((lab, {}), (lab, dict(label_smoothing=0.1)), (soft, {})):
            kw = dict(alpha=0.5, gamma=2.5, reduction=reduction, axis=axis, **extra)
            e_grad = fn.softmax_focal_loss_grad(z0.copy(), t, **kw)
            e_loss = fn.softmax_focal_loss(z0.copy(), t, **kw)
            if shape[0] < 10 and reduction == "none" and isa == ft.ISAS[0]:
                # the out-of-place result itself is checked against the oracle
                ft.assert_close(
                    e_grad, oracle(z0, t, **kw)[1], scale=np_softmax_focal(z0, t, **kw)[2]
                )

            z = z0.copy()
            assert fn.softmax_focal_loss_grad(z, t, out=z, **kw) is z
            ft.assert_bitwise_equal(z, e_grad, f"grad in place {extra}")

            z = z0.copy()
            out = np.empty(pshape, dtype) if reduction == "none" else None
            lo, gr = fn.softmax_focal_loss_with_grad(z, t, out=out, grad_out=z, **kw)
            assert gr is z
            ft.assert_bitwise_equal(z, e_grad, f"with_grad in place {extra}")
            ft.assert_bitwise_equal(np.asarray(lo), np.asarray(e_loss))


@pytest.mark.parametrize("classes", [3, 6, 40, 80], ids=lambda c: f"C={c}")
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_sparse_dense_rows(isa, dtype, classes):
    """Dense rows with at most two nonzero targets evaluate only those classes'
    terms (every other gradient is -p_k T): rows with 0, 1, 2 and 3 nonzero
    targets, on and off the arg-max, against the oracle and in place."""
    rng = rng_for("sparse", dtype, classes)
    n = 24
    z = make_logits(rng, (n, classes), dtype)
    z[1, :] = 0.0  # all tied: the arg-max is class 0
    z[2, :] = -5.0
    z[2, classes - 1] = 700.0 if dtype == F64 else 80.0  # a row won by far
    am = np.argmax(z, axis=1)
    y = np.zeros((n, classes), dtype)
    other = (am + 1) % classes
    third = (am + 2) % classes
    for r in range(n):
        kind = r % 8
        if kind == 1:
            y[r, am[r]] = 1.0  # one-hot on the arg-max
        elif kind == 2:
            y[r, other[r]] = 1.0  # one-hot elsewhere
        elif kind == 3:
            y[r, other[r]] = 0.625  # one nonzero below 1
        elif kind == 4:
            y[r, am[r]], y[r, other[r]] = 0.75, 0.25  # two, one of them the arg-max
        elif kind == 5:
            y[r, [0, classes - 1]] = 0.5  # two at the ends of the row
        elif kind == 6 and classes >= 3:
            y[r, [am[r], other[r], third[r]]] = [0.5, 0.25, 0.25]  # three: the full loops
        elif kind == 7:
            y[r, other[r]] = 1.0
            z[r, other[r]] = -np.inf if dtype == F64 else -1e4  # target on a hopeless class
        # kind 0: no nonzero target
    alpha = rng.uniform(0.1, 2.0, size=classes)
    for gamma, a in ((2.0, None), (0.5, alpha), (0.0, 0.25), (5.0, alpha)):
        kw = dict(alpha=a, gamma=gamma)
        compare_all(z, y, reduction="none", err_kind="sparse", **kw)
        compare_all(z, y, reduction="mean", err_kind="sparse", **kw)
        e_loss, e_grad = fn.softmax_focal_loss_with_grad(z, y, reduction="none", **kw)
        assert np.isfinite(e_grad).all()
        zz = z.copy()
        lo, gr = fn.softmax_focal_loss_with_grad(zz, y, reduction="none", grad_out=zz, **kw)
        assert gr is zz
        ft.assert_bitwise_equal(zz, e_grad, f"in place gamma={gamma}")
        ft.assert_bitwise_equal(lo, e_loss, f"loss gamma={gamma}")


# --------------------------------------------------------------------------
# grad_output: the vector-Jacobian product
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["index", "soft", "smoothed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_grad_output(isa, dtype, kind):
    rng = rng_for("vjp", dtype, kind)
    shape, axis = (4, 5, 3, 2), 1
    z = make_logits(rng, shape, dtype)
    pshape = pos_shape_of(shape, axis)
    lab = make_labels(rng, pshape, 5, ignore=-100)
    t = soft_targets(rng, shape, dtype) if kind == "soft" else lab
    extra = dict(label_smoothing=0.15) if kind == "smoothed" else {}
    w = rng.normal(size=pshape).astype(dtype)
    w.reshape(-1)[:3] = [0.0, -0.0, 1e-30]
    kw = dict(alpha=[1, 0.5, 2, 0.25, 1], gamma=2.0, normalizer=4.0, axis=axis, **extra)
    g = fn.softmax_focal_loss_grad(z, t, grad_output=w, **kw)
    assert g.dtype == dtype and g.shape == z.shape
    e = ref.softmax_focal_loss_grad(z, t if kind != "soft" else t, grad_output=w, **kw)
    scale = np_softmax_focal(z, t, grad_output=w, **kw)[2]
    ft.assert_close(g, e, scale=scale)
    # = the weighted plain gradient
    plain = fn.softmax_focal_loss_grad(z, t, **kw).astype(np.float64)
    ft.assert_close(g, plain * np.expand_dims(w.astype(np.float64), axis), rtol=2 * ft.RTOL[dtype])
    # ones: the plain gradient, bit for bit; lists / other dtypes are converted
    ft.assert_bitwise_equal(
        fn.softmax_focal_loss_grad(z, t, grad_output=np.ones(pshape), **kw),
        fn.softmax_focal_loss_grad(z, t, **kw),
    )
    ft.assert_bitwise_equal(
        fn.softmax_focal_loss_grad(z, t, grad_output=w.astype(np.float64).tolist(), **kw), g
    )
    wi = rng.integers(-3, 4, size=pshape)
    ft.assert_close(
        fn.softmax_focal_loss_grad(z, t, grad_output=wi, **kw),
        ref.softmax_focal_loss_grad(z, t, grad_output=wi, **kw),
        scale=np_softmax_focal(z, t, grad_output=wi, **kw)[2],
    )


# --------------------------------------------------------------------------
# Non-contiguous inputs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_non_contiguous_inputs(isa, dtype):
    rng = rng_for("strided", dtype)
    big = make_logits(rng, (12, 10, 9), dtype)
    views = {
        "transposed": (big[:, :, 0].T, -1),  # (10, 12), F-order
        "step2": (big[::2, :7, 3], -1),  # (6, 7)
        "axis1-sliced": (big[1::3, 1:6, ::2], 1),  # (4, 5, 5)
        "negative-stride": (big[::-1, ::-2, 4], 0),  # (12, 5) axis 0
        "swapaxes": (np.swapaxes(big, 0, 2)[:4], 1),  # (4, 10, 12)
    }
    for name, (z, axis) in views.items():
        assert not z.flags.c_contiguous, name
        shape = z.shape
        classes = shape[axis]
        pshape = pos_shape_of(shape, axis)
        lab_big = make_labels(rng, pshape + (2,), classes, ignore=-100)
        lab = lab_big[..., 1]  # non-contiguous labels
        soft_big = soft_targets(rng, shape + (2,), dtype)
        soft = soft_big[..., 0]
        for t, extra in ((lab, {}), (soft, {}), (lab, dict(label_smoothing=0.1))):
            for red in ("none", "mean"):
                kw = dict(axis=axis, reduction=red, gamma=2.0, **extra)
                lo, gr = fn.softmax_focal_loss_with_grad(z, t, **kw)
                lc, gc = fn.softmax_focal_loss_with_grad(
                    np.ascontiguousarray(z), np.ascontiguousarray(t), **kw
                )
                ft.assert_bitwise_equal(np.asarray(lo), np.asarray(lc), name)
                ft.assert_bitwise_equal(gr, gc, name)
                assert gr.flags.c_contiguous
                ft.assert_bitwise_equal(fn.softmax_focal_loss_grad(z, t, **kw), gc, name)
            compare_all(z, t, axis=axis, reduction="none", gamma=2.0, isas=[isa], **extra)


def test_inputs_are_not_modified():
    rng = rng_for("nomod")
    z = make_logits(rng, (2, 4, 30), F64)
    lab = make_labels(rng, (2, 30), 4, ignore=-100)
    soft = soft_targets(rng, z.shape, F64)
    alpha = np.array([0.5, 1.0, 2.0, 0.0])
    w = rng.normal(size=(2, 30))
    copies = [a.copy() for a in (z, lab, soft, alpha, w)]
    for t in (lab, soft):
        for f in (
            fn.softmax_focal_loss,
            fn.softmax_focal_loss_grad,
            fn.softmax_focal_loss_with_grad,
        ):
            for red in REDUCTIONS:
                f(z, t, alpha=alpha, axis=1, reduction=red, label_smoothing=0.1)
        fn.softmax_focal_loss_grad(z, t, alpha=alpha, axis=1, grad_output=w)
    for a, b in zip((z, lab, soft, alpha, w), copies):
        ft.assert_bitwise_equal(a, b)


# --------------------------------------------------------------------------
# Gradient == central finite differences of the native float64 loss
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 2.5, 5.0])
def test_gradient_matches_finite_differences(isa, gamma):
    rng = rng_for("fd", gamma)
    for shape, axis in (((6, 4), -1), ((2, 3, 2, 2), 1), ((3, 5), 0)):
        z = rng.uniform(-4, 4, size=shape)
        classes = shape[axis]
        pshape = pos_shape_of(shape, axis)
        lab = make_labels(rng, pshape, classes, ignore=-100, frac_ignore=0.2)
        soft = soft_targets(rng, shape, F64)
        w = rng.uniform(0.5, 2.0, size=pshape)  # weights: d(sum_i w_i FL_i)
        alpha = rng.uniform(0.2, 2.0, size=classes)
        for t, extra in ((lab, {}), (soft, {}), (lab, dict(label_smoothing=0.2))):
            kw = dict(alpha=alpha, gamma=gamma, axis=axis, normalizer=2.0, **extra)

            def total(x, t=t, kw=kw, w=w):
                return math.fsum((fn.softmax_focal_loss(x, t, **kw) * w).ravel())

            fd = np.empty_like(z)
            for j in range(z.size):
                h = 1e-6 * max(1.0, abs(z.flat[j]))
                zp, zm = z.copy(), z.copy()
                zp.flat[j] += h
                zm.flat[j] -= h
                fd.flat[j] = (total(zp) - total(zm)) / (zp.flat[j] - zm.flat[j])
            g = fn.softmax_focal_loss_grad(z, t, grad_output=w, **kw)
            tolerance = 1e-6 * np.abs(fd) + 1e-8
            bad = np.abs(g - fd) > tolerance
            assert not bad.any(), (extra, t.dtype, g[bad], fd[bad])
            # The mean and sum gradients too.
            kept = int(np.sum(lab != -100)) if t.dtype.kind == "i" else lab.size
            gs = fn.softmax_focal_loss_grad(z, t, reduction="sum", **kw)
            gm = fn.softmax_focal_loss_grad(z, t, reduction="mean", **kw)
            ft.assert_close(gm * kept, gs, rtol=1e-14)


# --------------------------------------------------------------------------
# Special values
# --------------------------------------------------------------------------

INF = math.inf


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_nan_logit_poisons_only_its_position(isa, dtype, gamma):
    rng = rng_for("nan", dtype, gamma)
    for shape, axis in (((6, 5), -1), ((2, 5, 3), 1)):
        z = make_logits(rng, shape, dtype)
        pshape = pos_shape_of(shape, axis)
        lab = make_labels(rng, pshape, 5)
        zm = np.moveaxis(z, axis, -1)  # a view
        zm[(0,) * (len(pshape) - 1) + (1,)][2] = np.nan  # position ..., 1
        bad = np.zeros(pshape, dtype=bool)
        bad[(0,) * (len(pshape) - 1) + (1,)] = True
        for t, extra in (
            (lab, {}),
            (soft_targets(rng, shape, dtype), {}),
            (lab, dict(label_smoothing=0.1)),
        ):
            lo, gr = compare_all(z, t, gamma=gamma, axis=axis, isas=[isa], **extra)
            assert np.all(np.isnan(lo[bad])) and not np.any(np.isnan(lo[~bad]))
            gm = np.moveaxis(gr, axis, -1)
            assert np.all(np.isnan(gm[bad])) and not np.any(np.isnan(gm[~bad]))
            assert np.isnan(
                fn.softmax_focal_loss(z, t, gamma=gamma, axis=axis, reduction="mean", **extra)
            )
        # an ignored NaN position contributes nothing
        lab2 = lab.copy()
        lab2[bad] = -100
        lo, gr = fn.softmax_focal_loss_with_grad(z, lab2, gamma=gamma, axis=axis, reduction="sum")
        assert np.isfinite(lo) and np.all(np.isfinite(gr))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 2.5, 5.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_infinite_logits_give_the_limits(isa, dtype, gamma):
    rows = np.array(
        [
            [INF, 0.0, 1.0, -2.0],  # +inf at the true class: certain, loss 0
            [0.0, INF, 1.0, -2.0],  # +inf elsewhere: p_c = 0, loss inf
            [INF, INF, 1.0, 0.0],  # two +inf share the mass
            [-INF, 0.0, 1.0, 2.0],  # -inf at the true class: loss inf
            [3.0, -INF, -INF, 1.0],  # -inf elsewhere: those classes drop out
            [-INF, -INF, -INF, -INF],  # uniform
            [INF, -INF, 0.0, 5.0],
            [INF, INF, INF, INF],
        ],
        dtype=dtype,
    )
    lab = np.array([0, 0, 0, 0, 3, 2, 0, 1])
    compare_all(rows, lab, gamma=gamma, isas=[isa])
    compare_all(rows, lab, gamma=gamma, isas=[isa], alpha=[0.5, 1.0, 2.0, 0.25])
    lo = fn.softmax_focal_loss(rows, lab, gamma=gamma)
    assert lo[0] == 0 and lo[1] == INF and lo[3] == INF
    assert lo[5] == lo[5] and np.isfinite(lo[5])
    gr = fn.softmax_focal_loss_grad(rows, lab, gamma=gamma)
    assert np.all(gr[0] == 0) and not np.any(np.isnan(gr))
    # dense / smoothed targets with infinite logits
    soft = soft_targets(rng_for("infsoft", dtype), rows.shape, dtype)
    compare_all(rows, soft, gamma=gamma, isas=[isa])
    compare_all(rows, lab, gamma=gamma, isas=[isa], label_smoothing=0.1)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["index", "smoothed"])
def test_zero_weight_with_minus_infinite_logit_is_zero(dtype, smoothing):
    """alpha_k = 0 at a -inf logit: 0, not 0 * inf = NaN (fixed in 2e43053)."""
    z = np.array([[0.0, -INF, 1.0], [2.0, -INF, -INF]], dtype=dtype)
    lab = np.array([1, 1])
    kw = dict(alpha=[1.0, 0.0, 1.0], label_smoothing=smoothing, reduction="none")
    lo, gr = fn.softmax_focal_loss_with_grad(z, lab, **kw)
    assert not np.isnan(lo).any() and not np.isnan(gr).any(), (lo, gr)
    e_lo, e_gr = ref.softmax_focal_loss_with_grad(z, lab, **kw)
    ft.assert_close(lo, e_lo)
    ft.assert_close(gr, e_gr)


@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["index", "smoothed"])
def test_zero_weight_with_overflowing_shift_is_zero(smoothing):
    """Finite [1e308, -1e308]: z_c - max overflows to -inf; weight 0 still gives 0."""
    z = np.array([[1e308, -1e308], [-1e308, 1e308]])
    lab = np.array([1, 0])
    kw = dict(alpha=[1.0, 0.0], label_smoothing=smoothing, reduction="none")
    lo, gr = fn.softmax_focal_loss_with_grad(z, lab, **kw)
    assert not np.isnan(lo).any() and not np.isnan(gr).any(), (lo, gr)
    e_lo, e_gr = ref.softmax_focal_loss_with_grad(z, lab, **kw)
    ft.assert_close(lo, e_lo)
    ft.assert_close(gr, e_gr)


@pytest.mark.parametrize("smoothing", [0.0, 0.25], ids=["index", "smoothed"])
def test_subnormal_alpha_is_not_flushed(isa, smoothing):
    """A subnormal weight times a large -log p is a normal loss (flush-to-zero
    must not read the weight as 0): logits [-1e300, 0, 0], target 0, alpha 2.2e-311
    (loss ~2e-11; relative checks, atol 0)."""
    z = np.array([[-1e300, 0.0, 0.0]])
    for alpha in (2.225073858507e-311, [2.225073858507e-311, 0.0, 0.0]):
        kw = dict(alpha=alpha, gamma=0.5, label_smoothing=smoothing, reduction="none")
        lo = fn.softmax_focal_loss(z, np.array([0]), **kw)
        e = ref.softmax_focal_loss(z, np.array([0]), **kw)
        assert e[0] > 1e-12
        ft.assert_close(lo, e, atol=0.0)
        dense = np.array([[1.0, 0.0, 0.0]])
        ft.assert_close(
            fn.softmax_focal_loss(z, dense, **kw), ref.softmax_focal_loss(z, dense, **kw), atol=0.0
        )


@pytest.mark.parametrize("smoothed", [False, True], ids=["dense", "smoothed"])
def test_dense_loss_intermediate_overflow(smoothed):
    """alpha_k (-log p_k) overflows (2 * 1e308) although y_k alpha_k (-log p_k) does
    not: logits [1e308, 0], targets [0.75, 0.25], alpha 2, gamma 0: loss 5e307."""
    z = np.array([[1e308, 0.0]])
    if smoothed:
        t, kw = np.array([1]), dict(label_smoothing=0.5)  # y = [0.25, 0.75]
        z = z[:, ::-1].copy()
    else:
        t, kw = np.array([[0.75, 0.25]]), {}
    lo = fn.softmax_focal_loss(z, t, alpha=2.0, gamma=0.0, **kw)
    ft.assert_close(lo, ref.softmax_focal_loss(z, t, alpha=2.0, gamma=0.0, **kw))


@pytest.mark.parametrize("gamma", GAMMAS + [0.3, 4.1])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_finite_logits_give_no_nan(isa, dtype, gamma):
    big = float(np.finfo(dtype).max)
    vals = [
        0.0,
        -0.0,
        1e-300 if dtype == F64 else 1e-40,
        1.0,
        30.0,
        88.0,
        89.0,
        700.0,
        709.0,
        710.0,
        745.0,
        746.0,
        1e4,
        1e30,
        big / 2,
        big,
    ]
    vals = np.array(vals + [-v for v in vals], dtype=np.float64).astype(dtype)
    rng = rng_for("finite", dtype, gamma)
    z = rng.choice(vals, size=(400, 4)).astype(dtype)
    zc = rng.choice(vals, size=(3, 4, 100)).astype(dtype)
    for zz, axis in ((z, -1), (zc, 1)):
        pshape = pos_shape_of(zz.shape, axis)
        lab = make_labels(rng, pshape, 4)
        for t, extra in (
            (lab, {}),
            (soft_targets(rng, zz.shape, dtype), {}),
            (lab, dict(label_smoothing=0.1)),
        ):
            kw = dict(gamma=gamma, axis=axis, alpha=[0.5, 1.0, 2.0, 0.25], **extra)
            lo, gr = fn.softmax_focal_loss_with_grad(zz, t, reduction="none", **kw)
            assert not np.any(np.isnan(lo)), (extra, zz.reshape(-1)[:8])
            assert not np.any(np.isnan(gr)) and np.all(np.isfinite(gr)), extra
            assert np.all(lo >= 0)
            if extra == {} and t is lab and axis == -1:
                compare_all(zz, t, reduction="none", isas=[isa], **kw)


# Rows where the true class dominates: log_softmax computed naively as
# z_c - logsumexp(z) is (m + log S) - m = 0 to working precision, every digit lost.
DOMINATED = [
    ([50.0, 0.0, -1.0], 0),
    ([64.0, 1.0, 2.0, -3.0], 0),
    ([0.0, 60.0, 8.0], 1),
    ([700.0, 0.0], 0),
    ([704.0, 0.0, -2.0, 1.0], 0),
    ([-3.0, 712.0, 0.0], 1),
    ([1000.0, 250.0, 0.0], 0),
]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 2.5, 5.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_dominated_rows_match_mp_reference(isa, dtype, gamma):
    check_rows_vs_mp(DOMINATED, dtype, gamma)


def check_rows_vs_mp(rows, dtype, gamma, bound=8.0):
    """Loss and every gradient entry within `bound` ulps of the 50-digit value."""
    mpr = ft.load_mp_reference()
    tiny = float(np.finfo(dtype).tiny)
    for row, c in rows:
        z = np.array([row], dtype=dtype)
        lo, gr = fn.softmax_focal_loss_with_grad(z, np.array([c]), gamma=gamma, reduction="none")
        e_loss, e_grad = mpr.softmax_index([float(v) for v in z[0]], c, None, gamma)
        for got, exact, what in [(lo[0], e_loss, "loss")] + [
            (gr[0, k], e_grad[k], f"grad[{k}]") for k in range(len(row))
        ]:
            if got == 0 and abs(float(exact)) < tiny:
                continue  # below the smallest normal: flushed to zero
            err = mpr.ulp_error(got, exact, dtype)
            assert err <= bound, (row, c, what, float(got), float(exact), err)
        assert lo[0] > 0 or abs(float(e_loss)) < tiny


# Rows whose shifts z_k - max(z) are not exact in float64 (the logits differ in
# binade): exp(z_k - m) must use the rounding error of the shift, else it is off
# by up to |z_k - m| / 2 ulps ([40.5, -0.3]: 134 ulp at gamma = 5 before 2e43053).
INEXACT = [
    ([40.5, -0.3], 0),
    ([25.3, -5.1, 0.7], 0),
    ([50.0, -0.1, 0.2], 0),
    ([0.1, -30.2], 0),
    ([700.0, -0.123456789], 0),
    ([-5.1, 25.3, 0.7], 0),
]


@pytest.mark.parametrize("gamma", [0.0, 2.0, 5.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_dominated_rows_with_inexact_shifts(isa, dtype, gamma):
    check_rows_vs_mp(INEXACT, dtype, gamma)


# --------------------------------------------------------------------------
# Sigmoid with class-index targets (multi-label detection) == explicit one-hot
# --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [((30, 6), -1), ((2, 6, 4, 5), 1)], ids=["NC", "NCHW"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_sigmoid_class_indices_equal_expanded_one_hot(isa, dtype, layout):
    shape, axis = layout
    rng = rng_for("sigidx", dtype, shape)
    classes = shape[axis]
    z = make_logits(rng, shape, dtype)
    pshape = pos_shape_of(shape, axis)
    lab = np.asarray(rng.integers(0, classes + 1, size=pshape))  # C = background
    flat = lab.reshape(-1)
    flat[:3] = [classes, -100, 0]
    flat[rng.choice(flat.size, size=flat.size // 5, replace=False)] = -100
    keep = lab != -100
    # Expanded rows: (K, C) logits of the kept positions and their one-hot (background: 0).
    zk = np.moveaxis(z, axis, -1)[keep]
    hot = (np.arange(classes) == lab[keep][:, None]).astype(np.int8)
    assert hot[lab[keep] == classes].sum() == 0 and (lab[keep] == classes).any()
    for kw in (dict(alpha=0.25, gamma=2.0), dict(alpha=None, gamma=0.5, normalizer=3.0)):
        for red in REDUCTIONS:
            li, gi = fn.sigmoid_focal_loss_with_grad(z, lab, reduction=red, axis=axis, **kw)
            le, ge = fn.sigmoid_focal_loss_with_grad(zk, hot, reduction=red, **kw)
            assert gi.shape == z.shape and gi.dtype == dtype
            gim = np.moveaxis(gi, axis, -1)
            ft.assert_bitwise_equal(gim[~keep], np.zeros_like(gim[~keep]), "ignored grad")
            ft.assert_close(
                gim[keep], ge.astype(np.float64), rtol=1e-15, atol=0.0, err_msg=f"grad {red} {kw}"
            )
            if red == "none":
                assert li.shape == z.shape
                lim = np.moveaxis(li, axis, -1)
                ft.assert_bitwise_equal(lim[~keep], np.zeros_like(lim[~keep]), "ignored loss")
                ft.assert_close(lim[keep], le.astype(np.float64), rtol=1e-15, atol=0.0)
            else:
                check_reduced(li, float(le), dtype, rtol=4 * ft.RTOL[dtype], err_msg=f"{red} {kw}")
            li2 = fn.sigmoid_focal_loss(z, lab, reduction=red, axis=axis, **kw)
            ft.assert_bitwise_equal(np.asarray(li2), np.asarray(li))


def test_finite_gradient_near_overflow_with_tiny_normalizer():
    """grad_output / normalizer overflows (17 / DBL_MIN) while the gradient, that
    scale times a small p_k, is finite (found by test_fuzz_api)."""
    z = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    t = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    kw = dict(gamma=0.0, reduction="none", axis=1, normalizer=np.finfo(np.float64).tiny)
    up = np.array([0.0, 17.0])
    got = fn.softmax_focal_loss_grad(z, t, grad_output=up, **kw)
    want = ref.softmax_focal_loss_grad(z, t, grad_output=up, **kw)
    assert np.isfinite(want[1, 1]) and want[1, 1] > 9e304
    ft.assert_close(got[1], want[1])


# --------------------------------------------------------------------------
# The bottom and the top of the double range
# --------------------------------------------------------------------------

# (name, shape builder from C, axis): rows of >= 32 classes are processed row by row,
# shorter ones through a class-major copy, NCHW column-wise.
EXTREME_LAYOUTS = [
    ("NC", lambda n, c: (n, c), -1),
    ("NCHW", lambda n, c: (1, c, n, 1), 1),
]


def _rows_won_by_700(rng, n, classes, offset=5.0):
    """Rows whose labelled class wins by 690 or more, the other logits 690 to 760 below:
    1 - p_c is near e^-690 and part of it comes from exponentials below DBL_MIN
    (e^-708.4), which are ulp-sized next to it."""
    z = offset - rng.uniform(690.0, 760.0, size=(n, classes))
    lab = rng.integers(0, classes, size=n)
    z[np.arange(n), lab] = offset
    # one class at exactly 690 below, and (C > 2) one just below the flush threshold
    # (C = 2 has no flushed term: a guard that the scaled sum changes nothing there)
    other = (lab + 1) % classes
    z[np.arange(n), other] = offset - 690.0
    if classes > 2:
        z[np.arange(n), (lab + 2) % classes] = offset - 709.0
    return z, lab


@pytest.mark.parametrize("gamma", [0.0, 0.01])
@pytest.mark.parametrize("classes", [2, 3, 10, 40])
@pytest.mark.parametrize("layout", EXTREME_LAYOUTS, ids=[x[0] for x in EXTREME_LAYOUTS])
def test_rows_won_by_700_keep_their_smallest_exponentials(layout, classes, gamma):
    """float64, gamma ~ 0: the loss is log1p(S_o) with S_o = sum of the other
    exponentials, near e^-690, and it must not lose the terms below DBL_MIN (they
    were flushed, 1e7 ulp off). Index, one-hot and smoothed targets, every ISA, the
    gradient also written over the logits."""
    name, shape_of, axis = layout
    rng = rng_for("underflow-rows", name, classes)
    n = 150  # more than one tile of positions
    z, lab = _rows_won_by_700(rng, n, classes)
    if name == "NCHW":
        z = np.ascontiguousarray(np.moveaxis(z, -1, 0)).reshape(shape_of(n, classes))
        lab = lab.reshape(1, n, 1)
    kw = dict(gamma=gamma, axis=axis, reduction="none")
    loss, grad = compare_all(z, lab, **kw)
    # The flushed terms are ~1e-308 next to sums near 2e-300, under compare_all's
    # atol: relative checks of the loss and of the labelled class's gradient (F q).
    e_loss, e_grad = oracle(z, lab, **kw)
    assert np.all(loss > 1e-305), loss.min()
    ft.assert_close(loss, e_loss, atol=0.0, err_msg="loss, relative")
    own = np.take_along_axis(grad, np.expand_dims(lab, axis), axis)
    e_own = np.take_along_axis(e_grad, np.expand_dims(lab, axis), axis)
    ft.assert_close(own, e_own, atol=0.0, err_msg="labelled class's gradient, relative")
    # gradient in place over the logits: the same bits
    for name_isa in ft.ISAS:
        with on_isa(name_isa):
            _, g_ref = fn.softmax_focal_loss_with_grad(z, lab, **kw)
            zi = z.copy()
            fn.softmax_focal_loss_grad(zi, lab, out=zi, **kw)
            ft.assert_bitwise_equal(zi, g_ref, f"in place, isa={name_isa}")
    hot = np.moveaxis(np.eye(classes)[lab], -1, axis % z.ndim).astype(np.float64)
    loss_d, grad_d = compare_all(z, hot, **kw)
    ft.assert_close(loss_d, e_loss, atol=0.0, err_msg="one-hot loss, relative")
    own_d = np.take_along_axis(grad_d, np.expand_dims(lab, axis), axis)
    ft.assert_close(own_d, e_own, atol=0.0, err_msg="one-hot own gradient, relative")
    # (smoothed: the eps/C (-log p_k) terms dwarf e^-690; consistency only)
    compare_all(z, lab, label_smoothing=1e-9, **kw)


@pytest.mark.parametrize("margin", [0.0, 30.0, 650.0, 705.0])
def test_masked_rows_and_moderate_margins(isa, margin):
    """Rows with masked logits (-1e9, -inf) won by a small or moderate margin, and
    margins just above the scaled-sum threshold (600): float64 loss and labelled
    gradient within rtol of the oracle (atol 0), index and one-hot targets."""
    rng = rng_for("masked", margin)
    n, classes = 40, 12
    z = rng.normal(0.0, 2.0, size=(n, classes))
    lab = rng.integers(0, classes, size=n)
    z[:, 7:] = -1e9
    z[::3, 9] = -np.inf
    lab = np.where(lab >= 7, lab - 7, lab)
    z[np.arange(n), lab] = z.max(axis=1) + margin  # the label is the maximum
    kw = dict(gamma=0.0, reduction="none")
    e_loss, e_grad = oracle(z, lab, **kw)
    for t in (lab, np.eye(classes)[lab]):
        loss, grad = native_all(z, t, **kw)
        ft.assert_close(loss, e_loss, atol=0.0 if margin < 700 else None, err_msg=f"{t.dtype}")
        ft.assert_close(grad, e_grad, err_msg=f"{t.dtype}")


def _scaled_grad_expected(z, t, up, normalizer, **kw):
    """The oracle's gradient for grad_output 1 and normalizer 1, times up / normalizer
    in long double (80-bit here: no intermediate overflow), rounded once to float64;
    and the tolerance scale of dense / smoothed gradients (a difference of terms)
    times the same factor."""
    g = ref.softmax_focal_loss_grad(z, t, normalizer=1.0, **kw)
    ax = kw.get("axis", -1) % z.ndim
    f = np.expand_dims(np.asarray(up, dtype=np.longdouble), ax) / np.longdouble(normalizer)
    term = np_softmax_focal(z, t, reduction="none", **kw)[2]
    with np.errstate(over="ignore", invalid="ignore"):
        want = (np.asarray(g, dtype=np.longdouble) * f).astype(np.float64)
        scale = (np.asarray(term, dtype=np.longdouble) * np.abs(f)).astype(np.float64)
    return want, np.where(np.isfinite(scale), scale, 0.0)


@pytest.mark.parametrize("kind", ["index", "smoothed", "dense"])
@pytest.mark.parametrize("classes", [3, 40])
@pytest.mark.parametrize("layout", EXTREME_LAYOUTS, ids=[x[0] for x in EXTREME_LAYOUTS])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_gradient_scales_beyond_the_double_range(dtype, layout, classes, kind):
    """grad_output / normalizer far above DBL_MAX (a normalizer near DBL_MIN): where the
    gradient, that scale times a small p_k, is finite, it is returned, and where it
    overflows the result is inf; positions with ordinary scales in the same tiles keep
    their values."""
    name, shape_of, axis = layout
    rng = rng_for("big-scales", name, classes, kind, np.dtype(dtype).name)
    n = 150
    zr = rng.normal(0.0, 3.0, size=(n, classes))
    lab = rng.integers(0, classes, size=n)
    zr[np.arange(n), lab] += rng.uniform(0.0, 40.0, size=n)  # some p_k down to e^-40
    big = float(np.finfo(dtype).max)
    up = rng.choice([0.0, 1.0, -1.0, 17.0, 1e-3, big, -big, 3e-30], size=n)
    if dtype == F64:
        up[rng.random(n) < 0.3] = 1e300
    zr = zr.astype(dtype)
    up = up.astype(dtype)
    if name == "NCHW":
        z = np.ascontiguousarray(np.moveaxis(zr, -1, 0)).reshape(shape_of(n, classes))
        pshape = (1, n, 1)
    else:
        z, pshape = zr, (n,)
    lab = lab.reshape(pshape)
    up = up.reshape(pshape)
    kw = dict(gamma=2.0, axis=axis, alpha=[0.25 + k % 3 for k in range(classes)])
    if kind == "dense":
        t = np.moveaxis(rng.dirichlet(np.ones(classes), size=pshape), -1, axis % z.ndim)
        t = np.ascontiguousarray(t).astype(dtype)
    else:
        t = lab
        if kind == "smoothed":
            kw["label_smoothing"] = 0.1
    tiny = float(np.finfo(np.float64).tiny)
    for normalizer in (tiny, 3 * tiny, 1.0):
        want, sc = _scaled_grad_expected(z.astype(np.float64), t, up, normalizer, **kw)
        if dtype == F32:
            want = round_overflow(want, dtype)
        if dtype == F64 and normalizer < 1.0:
            # the case in point: finite gradients from a scale beyond DBL_MAX
            assert np.sum(np.isfinite(want) & (np.abs(want) > 1e300)) >= 5
        for name_isa in ft.ISAS:
            with on_isa(name_isa):
                got = fn.softmax_focal_loss_grad(
                    z, t, grad_output=up, normalizer=normalizer, reduction="none", **kw
                )
            msg = f"isa={name_isa} normalizer={normalizer}"
            ft.assert_close(got, want, scale=sc if kind != "index" else None, err_msg=msg)
    # reduced with a tiny normalizer: the scale 1 / (normalizer * count) is ~2^1022 / n
    for red in ("mean", "sum"):
        g = fn.softmax_focal_loss_grad(z, t, normalizer=tiny, reduction=red, **kw)
        count = n if red == "mean" else 1
        want, sc = _scaled_grad_expected(
            z.astype(np.float64), t, np.full(pshape, 1.0 / count), tiny, **kw
        )
        want = round_overflow(want, dtype) if dtype == F32 else want
        ft.assert_close(g, want, scale=sc if kind != "index" else None, err_msg=red)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_sparse_dense_rows_across_chunks(dtype):
    """Rows longer than the sparse-row scan's chunk (2**16 classes): nonzero
    targets found in either chunk or both, and a third nonzero seen only in
    the second chunk (the full loops), against the oracle under every ISA."""
    classes = (1 << 16) + 37
    rng = rng_for("sparse-chunks", dtype, classes)
    z = make_logits(rng, (6, classes), dtype)
    y = np.zeros_like(z)
    y[0, 65540] = 1.0  # one, in the second chunk only
    y[1, [3, 65550]] = [0.75, 0.25]  # two, one in each chunk
    y[2, [1, 2, 65560]] = [0.5, 0.25, 0.25]  # the third in the second chunk
    y[3, [10, 65537, classes - 1]] = [0.25, 0.25, 0.5]
    y[4, [65536, classes - 1]] = 0.5  # two, both in the second chunk
    # row 5: no nonzero target
    for gamma in (2.0, 0.5):
        compare_all(z, y, reduction="none", err_kind="sparse-chunks", gamma=gamma)

"""ulp accuracy of the softmax focal loss and its gradient against 50-digit mpmath.

Rows (C in {2, 3, 10, 80}) with extreme logits:

- the true class dominating by 0 (a tie) .. 1e4, on a grid where every
  z_k - max(z) is exact ("grid") and with arbitrary doubles ("random"), where
  the shift z_k - max(z) is itself rounded unless the kernel compensates;
- the true class the lowest by 1 .. 1e4;
- ties (all equal, true class tied at the top, tied at the bottom);
- random rows with spreads up to +-1e4.

gamma in {0, 0.5, 1, 2, 2.5, 5} plus two random values in [0, 5]; float32
and float64; every instruction set; the loss and every gradient entry.

Bound for class-index targets: 8 ulp. An exact value below the dtype's
smallest normal number passes when the result is 0 (the kernels flush
subnormals) or within 8 ulp of the subnormal spacing.

Dense targets: one-hot rows are held to the same 8 ulp (no cancellation
anywhere: the gradient is F_c q for the true class and -F_c p_j elsewhere).
Label smoothing (eps = 0.1, so every y_k > 0): the loss is a sum of positive
terms and held to SMOOTH_LOSS_ULPS = 16 ulp; the gradient
y_j F_j (1 - p_j) - p_j sum_{k != j} y_k F_k is a difference of terms of either
sign, so its error is held to SMOOTH_GRAD_ULPS = 16 ulps *of the size of those
terms* (|y_j F_j| (1 - p_j) + p_j sum_{k != j} |y_k F_k|); ulps relative to
the exact value are reported only where the terms do not cancel
(|exact| >= scale / 16).

Rows won by 700+ (``underflow-*`` families, float64): the exponentials below
DBL_MIN are ulp-sized next to a sum near e^-700, which is the loss for gamma = 0;
they were once flushed (up to 1e7 ulp); such rows now take a sum scaled by 2^K
(softmax.hpp, sum_exp_scaled). Before d542713 float64 also exceeded 8 ulp for
gamma >= 2 (C = 80: up to 18 ulp) from the plain sum of exponentials; that case
is now held to 8 ulp like the rest.

The maxima reached are printed (run with -s), kept in
``focal_testing.ULP_RECORDS`` and listed in pytest's terminal summary.
"""

from __future__ import annotations

import functools

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest
from mpmath import mp

mpr = ft.load_mp_reference()

MAX_ULPS = 8.0
SMOOTH_LOSS_ULPS = 16.0
SMOOTH_GRAD_ULPS = 16.0

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
DT_IDS = ["f32", "f64"]

_rng = np.random.default_rng(20240601)
RANDOM_GAMMAS = [float(g) for g in _rng.uniform(0.0, 5.0, size=2)]
GAMMAS = [0.0, 0.5, 1.0, 2.0, 2.5, 5.0] + RANDOM_GAMMAS
CLASSES = [2, 3, 10, 80]

DOMINANCE = [0.0, 1e-12, 1e-3, 0.5, 1.0, 5.0, 20.0, 36.7, 50.0, 100.0, 700.0, 745.0, 1e4]
UNDERFLOW_MARGIN = 690.0  # from here on 1 - p_c is within e^-690 of the double underflow
LOWEST = [1.0, 20.0, 100.0, 700.0, 1e4]
SPREADS = [1.0, 30.0, 1e3, 1e4]


def gamma_kind(g):
    return "gamma=random" if g in RANDOM_GAMMAS else f"gamma={g:g}"


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------


def make_rows(classes, seed=0):
    """[(family, row (float64 array), true class)] for `classes` classes."""
    rng = np.random.default_rng(1000 + classes + 7919 * seed)
    rows = []
    n_o = classes - 1
    for margin in DOMINANCE:
        c = int(rng.integers(classes))
        # grid: multiples of 1/4 near 0, so z_k - max is exact in float32 and float64
        r = -margin - 0.25 * rng.integers(0, 40, size=n_o).astype(np.float64)
        r[0] = -margin
        under = "underflow" if margin >= UNDERFLOW_MARGIN else "dominant"
        rows.append((f"{under}-grid", np.insert(r, c, 0.0), c))
        base = rng.uniform(-100, 100)
        others = base - margin - np.abs(rng.normal(size=n_o)) * max(margin, 1.0) * 0.1
        others[0] = base - margin
        rows.append((f"{under}-random", np.insert(others, c, base), c))
    for margin in LOWEST:
        c = int(rng.integers(classes))
        top = rng.uniform(-50, 50)
        others = top - rng.uniform(0, min(margin, 30.0), size=n_o)
        others[0] = top
        rows.append(("lowest", np.insert(others, c, top - margin), c))
    rows.append(("ties", np.full(classes, 3.7), int(rng.integers(classes))))
    r = rng.uniform(-20, 0, size=classes)
    r[0] = r[-1] = 5.5
    rows.append(("ties", r, classes - 1))
    r = rng.uniform(0, 20, size=classes)
    r[0] = r[-1] = -1.25
    rows.append(("ties", r, 0))
    # exp(z_k - m) at the edge of the double range: e^-708.3 (normal), e^-708.5 and
    # e^-720 (subnormal, but ulp-sized next to e^-700)
    for tail in ([-708.3], [-700.0, -708.25], [-700.0, -720.0], [-700.5, -708.0, -740.0]):
        if len(tail) <= n_o:
            c = int(rng.integers(classes))
            others = np.concatenate([tail, np.full(n_o - len(tail), -800.0)])
            rows.append(("underflow-edge", np.insert(others, c, 0.0), c))
    for s in SPREADS:
        for j in range(3):
            r = rng.uniform(-s, s, size=classes)
            if j == 0:
                r[0], r[-1] = s, -s  # the full spread
            rows.append(("random", r, int(rng.integers(classes))))
    return rows


# --------------------------------------------------------------------------
# Exact values (cached) and vectorized ulps
# --------------------------------------------------------------------------


def _split(x):
    """An mpf as (hi, lo, e): hi + lo ~ x to ~106 bits, 2^e <= |x| < 2^(e+1)."""
    with mp.workdps(mpr.DPS):
        hi = float(x)
        lo = float(x - mp.mpf(hi))
        e = int(mp.frexp(abs(x))[1]) - 1 if x != 0 else -100000
    return hi, lo, e


@functools.cache
def exact_index(row, c, alpha_c, gamma):
    loss, grad = mpr.softmax_index(list(row), c, alpha_c, gamma)
    return _split(loss), [_split(g) for g in grad]


@functools.cache
def exact_dense(row, y, gamma):
    """Loss, gradient and the gradient's term size (see the module docstring)."""
    loss, grad = mpr.softmax_dense(list(row), list(y), None, gamma)
    with mp.workdps(mpr.DPS):
        z = [mp.mpf(v) for v in row]
        m = max(z)
        w = [mp.exp(v - m) for v in z]
        s = mp.fsum(w)
        n = len(z)
        p = [wk / s for wk in w]
        s_o = [mp.fsum(w[j] for j in range(n) if j != k) for k in range(n)]
        q = [s_o[k] / s for k in range(n)]
        g = mp.mpf(gamma)
        yf = []
        for k in range(n):
            log_p = -mp.log1p(s_o[k] / w[k])
            ratio = log_p / q[k] if q[k] != 0 else mp.mpf(-1)
            f = q[k] ** g * (g * p[k] * ratio - 1)
            yf.append(abs(mp.mpf(y[k]) * f))
        tot = mp.fsum(yf)
        scale = [float(yf[j] * q[j] + p[j] * (tot - yf[j])) for j in range(n)]
    return _split(loss), [_split(v) for v in grad], scale


def ulps(computed, exact, dtype, scale=None):
    """|computed - exact| / ulp and a mask of values flushed to zero.

    `exact` is a list of (hi, lo, e) triples; with `scale` the ulp is taken at
    max(|exact|, scale).
    """
    info = np.finfo(dtype)
    digits = info.nmant + 1
    c = np.asarray(computed, dtype=np.float64).ravel()
    hi = np.array([x[0] for x in exact])
    lo = np.array([x[1] for x in exact])
    ex = np.array([x[2] for x in exact])
    if scale is not None:
        sc = np.asarray(scale, dtype=np.float64)
        with np.errstate(divide="ignore"):
            es = np.where(sc > 0, np.floor(np.log2(np.where(sc > 0, sc, 1.0))), -100000)
        ex = np.maximum(ex, es.astype(np.int64))
    ulp = np.ldexp(1.0, np.maximum(ex, info.minexp) - digits + 1)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((c - hi) - lo) / ulp
    err = np.where((c == hi) & (lo == 0.0), 0.0, err)
    err = np.where(np.isfinite(c), err, np.inf)
    flushed = (np.abs(hi) < float(info.tiny)) & (c == 0.0)
    return np.where(flushed, 0.0, err)


def test_vectorized_ulps_agree_with_mp_reference():
    """The fast ulp count equals mp_reference.ulp_error (and can report errors)."""
    row, c = (1.0, -3.5, 4.25), 2
    e_loss, e_grad = mpr.softmax_index(list(row), c, None, 2.0)
    for dtype in DTYPES:
        exact_l, exact_g = exact_index(row, c, None, 2.0)
        for shift in (0, 1, 3, -7):
            got = dtype.type(float(e_loss))
            toward = dtype.type(np.inf if shift > 0 else -np.inf)
            for _ in range(abs(shift)):
                got = np.nextafter(got, toward)
            got = float(got)
            fast = ulps([got], [exact_l], dtype)[0]
            want = mpr.ulp_error(got, e_loss, dtype)
            assert abs(fast - want) < 1e-6, (dtype, shift, fast, want)
            assert abs(want - abs(shift)) <= 0.5 + 1e-9, (dtype, shift, want)
        g = [float(dtype.type(float(v))) for v in e_grad]
        fast = ulps(g, exact_g, dtype)
        want = [mpr.ulp_error(a, b, dtype) for a, b in zip(g, e_grad)]
        np.testing.assert_allclose(fast, want, atol=1e-6)


# --------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------


def _describe(row, c, gamma, dtype, what, err, got, exact, extra=""):
    return (
        f"{what}: {err:.2f} ulp, dtype={dtype.name}, gamma={gamma!r}, target={c}, "
        f"row={[float(v) for v in row]!r}{extra}, got={float(got)!r}, "
        f"exact={exact[0]!r}"
    )


def measure_index(dtype, classes, families=None, alpha=None, record_label="index", gammas=GAMMAS):
    """Max ulps of the loss and of the gradient entries, per family, and the violations."""
    rows = make_rows(classes)
    if families is not None:
        rows = [r for r in rows if r[0] in families]
    z = np.array([r[1] for r in rows], dtype=np.float64).astype(dtype)
    lab = np.array([r[2] for r in rows])
    zrows = [tuple(float(v) for v in zr) for zr in z]
    avec = None if alpha is None else np.asarray(alpha, dtype=np.float64)
    violations = []
    maxima = {}
    for gamma in gammas:
        exact = [
            exact_index(zr, int(c), None if avec is None else float(avec[c]), gamma)
            for zr, c in zip(zrows, lab)
        ]
        ex_loss = [e[0] for e in exact]
        ex_grad = [g for e in exact for g in e[1]]
        for isa in ft.ISAS:
            with ft.use_isa(isa):
                lo, gr = fn.softmax_focal_loss_with_grad(
                    z, lab, alpha=alpha, gamma=gamma, reduction="none"
                )
            el = ulps(lo, ex_loss, dtype)
            eg = ulps(gr, ex_grad, dtype).reshape(z.shape)
            for i, (fam, _, c) in enumerate(rows):
                for what, err_row in (("loss", [el[i]]), ("grad", eg[i])):
                    m = float(np.max(err_row))
                    key = (fam, what)
                    maxima[key] = max(maxima.get(key, 0.0), m)
                    ft.record_ulps(
                        (f"softmax {record_label}", dtype.name, what, gamma_kind(gamma)), m
                    )
                    ft.record_ulps((f"softmax {record_label}", dtype.name, what, "all"), m)
                    if m > MAX_ULPS:
                        k = int(np.argmax(err_row))
                        got = lo[i] if what == "loss" else gr[i, k]
                        exv = ex_loss[i] if what == "loss" else exact[i][1][k]
                        name = "loss" if what == "loss" else f"grad[{k}]"
                        violations.append(
                            _describe(
                                z[i], c, gamma, dtype, f"{fam} {name}", m, got, exv, f", isa={isa}"
                            )
                        )
    return maxima, violations


def _report(title, maxima):
    print(f"\n{title}")
    for (fam, what), m in sorted(maxima.items()):
        print(f"  {fam:16s} {what:5s} max {m:7.3f} ulp")


UNDERFLOW_FAMILIES = {"underflow-grid", "underflow-random", "underflow-edge"}
MAIN_FAMILIES = {"dominant-grid", "dominant-random", "lowest", "ties", "random"}


def _index_params():
    for dtype in DTYPES:
        for classes in CLASSES:
            for gamma in GAMMAS:
                yield pytest.param(
                    dtype,
                    classes,
                    gamma,
                    id=f"{dtype.name}-C={classes}-{gamma_kind(gamma)}"
                    + ("" if gamma not in RANDOM_GAMMAS else f"{gamma:.3f}"),
                )


@pytest.mark.parametrize(("dtype", "classes", "gamma"), list(_index_params()))
def test_index_targets_within_8_ulp(dtype, classes, gamma):
    maxima, violations = measure_index(dtype, classes, families=MAIN_FAMILIES, gammas=[gamma])
    _report(f"softmax index, {dtype.name}, C={classes}, gamma={gamma}", maxima)
    assert not violations, f"{len(violations)} cases over {MAX_ULPS} ulp:\n" + "\n".join(
        violations[:20]
    )


@pytest.mark.parametrize(
    ("dtype", "gamma"),
    [pytest.param(d, g, id=f"{d.name}-{gamma_kind(g)}") for d in DTYPES for g in GAMMAS],
)
def test_index_targets_near_underflow_within_8_ulp(dtype, gamma):
    """Rows won by 700+: 1 - p_c and the other p_k are at the bottom of the double range."""
    violations = []
    for classes in CLASSES:
        maxima, v = measure_index(
            dtype,
            classes,
            families=UNDERFLOW_FAMILIES,
            gammas=[gamma],
            record_label="index near underflow",
        )
        _report(f"softmax index near underflow, {dtype.name}, C={classes}", maxima)
        violations += v
    assert not violations, f"{len(violations)} cases over {MAX_ULPS} ulp:\n" + "\n".join(
        violations[:20]
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_index_targets_with_class_weights_within_8_ulp(dtype):
    alpha = np.array([0.25, 1.0, 3.0, 0.5, 2.0, 1.5, 0.1, 1.0, 0.75, 4.0])
    maxima, violations = measure_index(
        dtype,
        10,
        families={"random", "dominant-random"},
        alpha=alpha,
        record_label="index alpha",
        gammas=[0.0, 0.5, 1.0, 2.0, 2.5],
    )
    _report(f"softmax index + alpha, {dtype.name}", maxima)
    assert not violations, "\n".join(violations[:20])


def test_rows_span_the_intended_extremes():
    """The row families really are extreme (guards against a silently tamed generator)."""
    for classes in CLASSES:
        rows = make_rows(classes)
        margins = [
            r[1][r[2]] - np.max(np.delete(r[1], r[2]))
            for r in rows
            if r[0].startswith(("dominant", "underflow"))
        ]
        assert max(margins) >= 1e4 - 1 and min(margins) <= 0.0
        lows = [np.max(r[1]) - r[1][r[2]] for r in rows if r[0] == "lowest"]
        assert max(lows) >= 1e4 - 1
        spreads = [np.ptp(r[1]) for r in rows if r[0] == "random"]
        assert max(spreads) >= 2e4


# --------------------------------------------------------------------------
# Dense targets: one-hot and label smoothing
# --------------------------------------------------------------------------

DENSE_CLASSES = [2, 3, 10]
DENSE_GAMMAS = [0.0, 0.5, 2.0, 5.0, RANDOM_GAMMAS[0]]
DENSE_FAMILIES = {"dominant-grid", "dominant-random", "lowest", "random", "ties"}


def _dense_rows(classes):
    rows = [r for r in make_rows(classes) if r[0] in DENSE_FAMILIES]
    return rows[::2] if classes == 10 else rows


def _dense_params():
    for kind in ("onehot", "smoothed"):
        for dtype in DTYPES:
            for gamma in DENSE_GAMMAS:
                yield pytest.param(
                    kind, dtype, gamma, id=f"{kind}-{dtype.name}-{gamma_kind(gamma)}"
                )


@pytest.mark.parametrize(("kind", "dtype", "gamma"), list(_dense_params()))
def test_dense_targets(kind, dtype, gamma):
    eps = 0.1
    loss_bound = MAX_ULPS if kind == "onehot" else SMOOTH_LOSS_ULPS
    grad_bound = MAX_ULPS if kind == "onehot" else SMOOTH_GRAD_ULPS
    violations = []
    maxima = {}
    for classes in DENSE_CLASSES:
        rows = _dense_rows(classes)
        z = np.array([r[1] for r in rows], dtype=np.float64).astype(dtype)
        lab = np.array([r[2] for r in rows])
        hot = (np.arange(classes) == lab[:, None]).astype(dtype)
        if kind == "onehot":
            t, kw = hot, {}
            y64 = hot.astype(np.float64)
        else:
            t, kw = lab, dict(label_smoothing=eps)
            y64 = np.where(hot > 0, (1 - eps) + eps / classes, eps / classes)
        exact = [
            exact_dense(tuple(float(v) for v in zr), tuple(float(v) for v in yr), gamma)
            for zr, yr in zip(z, y64)
        ]
        ex_loss = [e[0] for e in exact]
        ex_grad = [g for e in exact for g in e[1]]
        scale = np.array([s for e in exact for s in e[2]])
        hi = np.array([g[0] for g in ex_grad])
        for isa in ft.ISAS:
            with ft.use_isa(isa):
                lo, gr = fn.softmax_focal_loss_with_grad(z, t, gamma=gamma, reduction="none", **kw)
            el = ulps(lo, ex_loss, dtype)
            eg_scaled = ulps(gr, ex_grad, dtype, scale=scale)
            eg_rel = np.where(np.abs(hi) >= scale / 16, ulps(gr, ex_grad, dtype), 0.0)
            for what, err, bound, shape_ in (
                ("loss", el, loss_bound, (len(rows), 1)),
                ("grad", eg_scaled, grad_bound, z.shape),
            ):
                err = err.reshape(shape_)
                for i, (fam, _, c) in enumerate(rows):
                    m = float(np.max(err[i]))
                    maxima[(fam, what)] = max(maxima.get((fam, what), 0.0), m)
                    if m > bound:
                        k = int(np.argmax(err[i]))
                        got = lo[i] if what == "loss" else gr[i, k]
                        exv = ex_loss[i] if what == "loss" else ex_grad[i * classes + k]
                        violations.append(
                            _describe(
                                z[i],
                                c,
                                gamma,
                                dtype,
                                f"{kind} {fam} {what}[{k}]",
                                m,
                                got,
                                exv,
                                f", isa={isa}",
                            )
                        )
            ft.record_ulps(
                (f"softmax {kind}", dtype.name, "loss", gamma_kind(gamma)), float(np.max(el))
            )
            ft.record_ulps((f"softmax {kind}", dtype.name, "loss", "all"), float(np.max(el)))
            ft.record_ulps(
                (f"softmax {kind}", dtype.name, "grad (of term size)", "all"),
                float(np.max(eg_scaled)),
            )
            ft.record_ulps(
                (f"softmax {kind}", dtype.name, "grad (of term size)", gamma_kind(gamma)),
                float(np.max(eg_scaled)),
            )
            ft.record_ulps(
                (f"softmax {kind}", dtype.name, "grad (relative, no cancel)", gamma_kind(gamma)),
                float(np.max(eg_rel)),
            )
    _report(f"softmax {kind}, {dtype.name}, gamma={gamma}", maxima)
    assert not violations, f"{len(violations)} cases over the bound:\n" + "\n".join(violations[:20])

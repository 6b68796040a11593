"""ulp accuracy of the binary focal loss and its gradient against 50-digit mpmath.

Logits span [-1e4, 1e4] (log-spaced magnitudes, both signs, +-0, tiny values
such as 1e-300 and 1e-30, the exp/log underflow edges near 708-746), hard
labels 0/1, gamma in {0, 0.5, 1, 2, 2.5, 5} plus two random gammas in [0, 5],
alpha in {None, 0.25}, float32 and float64, every instruction set.

Bound: 8 ulp for hard labels, loss and gradient. An exact value below the
dtype's smallest normal number passes when the result is 0 (the kernels flush
subnormals) or within 8 ulp of the subnormal spacing.

Soft targets: u = p (1 - y) + q y is itself rounded (about 1 ulp), and u^g
multiplies that relative error by g, so the soft loss is held to
soft_bound(g) = 6 + 2 g ulp (measured: up to ~10 ulp at g = 5 in float64, 0.5 ulp
in float32). The soft gradient is the difference
a_t u^g [g p q (1 - 2y) ce / u + (p - y)] of terms of either sign (exactly 0 at
the loss minimum), so its error is bounded by soft_bound(g) ulps of the size of
those terms, a_t u^g (g p q ce / u + p + y); its ulps relative to the exact
value are reported only where the terms do not cancel (|exact| >= scale / 16).

The maximum ulps reached are printed (run with -s), kept in
``focal_testing.ULP_RECORDS`` and listed in pytest's terminal summary.
"""

from __future__ import annotations

import functools
import math

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest
from mpmath import mp

mpr = ft.load_mp_reference()

MAX_ULPS = 8.0


def soft_bound(gamma):
    """ulp bound for soft targets: u's rounding error, amplified gamma times by u^gamma."""
    return 6.0 + 2.0 * gamma


F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
DT_IDS = ["f32", "f64"]

_rng = np.random.default_rng(20240531)
RANDOM_GAMMAS = [float(g) for g in _rng.uniform(0.0, 5.0, size=2)]
GAMMAS = [0.0, 0.5, 1.0, 2.0, 2.5, 5.0] + RANDOM_GAMMAS
ALPHAS = [None, 0.25]


def gamma_kind(g):
    return f"gamma={g:g}" if g not in RANDOM_GAMMAS else "gamma=random"


def _magnitudes():
    mags = list(np.logspace(-30, 4, 69))  # 2 points per factor of ~3
    mags += [
        1e-300,
        1e-30,
        1e-8,
        1e-3,
        0.5,
        1.0,
        2.0,
        16.6,
        36.7,
        37.5,
        100.0,
        700.0,
        708.0,
        708.5,
        709.8,
        710.0,
        745.0,
        746.0,
        800.0,
        1000.0,
        9999.5,
        1e4,
    ]
    return sorted(set(mags))


MAGS = _magnitudes()
Z64 = np.array([0.0, -0.0] + MAGS + [-m for m in MAGS], dtype=np.float64)
Z_BY_DTYPE = {F64: Z64, F32: Z64.astype(np.float32)}


# --------------------------------------------------------------------------
# Cached exact values and vectorized ulp errors
# --------------------------------------------------------------------------


def _split(x):
    """An mpf as (hi, lo, e): hi + lo ~ x to ~106 bits, 2^e <= |x| < 2^(e+1)."""
    with mp.workdps(mpr.DPS):
        hi = float(x)
        lo = float(x - mp.mpf(hi))
        e = int(mp.frexp(abs(x))[1]) - 1 if x != 0 else -100000
    return hi, lo, e


@functools.cache
def _exact_hard(z, y, alpha, gamma):
    loss, grad = mpr.sigmoid_hard(z, y, alpha, gamma)
    return _split(loss), _split(grad)


@functools.cache
def _exact_soft(z, y, alpha, gamma):
    loss, grad = mpr.sigmoid_soft(z, y, alpha, gamma)
    with mp.workdps(mpr.DPS):
        zz, yy = mp.mpf(z), mp.mpf(y)
        e = mp.exp(-abs(zz))
        big, small = 1 / (1 + e), e / (1 + e)
        p, q = (big, small) if zz >= 0 else (small, big)
        ce = -(yy * mp.log(p) + (1 - yy) * mp.log(q))
        u = p * (1 - yy) + q * yy
        a_t = 1 if alpha is None else alpha * yy + (1 - alpha) * (1 - yy)
        scale = a_t * u**gamma * (gamma * p * q * ce / u + p + yy)
    return _split(loss), _split(grad), float(scale)


def _ulps(computed, exact, dtype):
    """Vectorized |computed - exact| / ulp(exact) and a mask of 'flushed to zero' cases.

    `exact` is a list of (hi, lo, e) triples.
    """
    info = np.finfo(dtype)
    digits = info.nmant + 1
    c = np.asarray(computed, dtype=np.float64)
    hi = np.array([x[0] for x in exact])
    lo = np.array([x[1] for x in exact])
    ex = np.array([x[2] for x in exact])
    ulp = np.ldexp(1.0, np.maximum(ex, info.minexp) - digits + 1)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((c - hi) - lo) / ulp
    err = np.where((c == hi) & (lo == 0.0), 0.0, err)
    err = np.where(np.isfinite(c), err, np.inf)
    tiny = float(info.tiny)
    flushed = (np.abs(hi) < tiny) & (c == 0.0)
    return err, flushed


def _spot_check_ulps(err, computed, exact_fn, idx, dtype):
    """Cross-check the vectorized ulps with mp_reference.ulp_error at a few points."""
    for i in idx:
        exact = exact_fn(i)
        want = mpr.ulp_error(computed[i], exact, dtype)
        if math.isinf(want) or want > 1e6:
            continue
        assert abs(err[i] - want) <= 1e-3 + 1e-6 * want, (i, err[i], want)


def _report(what, err, flushed, z, y):
    """Print the maximum (ignoring results flushed to zero); return (errors, argmax)."""
    ok = np.where(flushed, 0.0, err)
    worst = int(np.argmax(ok))
    print(
        f"\n{what}: max {ok[worst]:.3f} ulp at z={float(z[worst])!r} y={float(y[worst])!r} "
        f"({int(flushed.sum())} flushed to 0)"
    )
    return ok, worst


# --------------------------------------------------------------------------
# Hard labels
# --------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", ALPHAS, ids=lambda a: f"alpha={a}")
@pytest.mark.parametrize("gamma", GAMMAS, ids=lambda g: f"gamma={g:.4g}")
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_hard_label_ulps(isa, dtype, gamma, alpha):
    zs = Z_BY_DTYPE[dtype]
    z = np.concatenate([zs, zs])
    y = np.concatenate([np.ones(zs.size, np.int8), np.zeros(zs.size, np.int8)])
    exact = [_exact_hard(float(zi), int(yi), alpha, gamma) for zi, yi in zip(z, y)]
    loss, grad = fn.sigmoid_focal_loss_with_grad(z, y, alpha=alpha, gamma=gamma, reduction="none")
    # The fused call and the separate ones agree bit for bit.
    ft.assert_bitwise_equal(loss, fn.sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma))
    ft.assert_bitwise_equal(grad, fn.sigmoid_focal_loss_grad(z, y, alpha=alpha, gamma=gamma))
    failures = []
    for qi, (name, computed) in enumerate((("loss", loss), ("grad", grad))):
        ex = [e[qi] for e in exact]
        err, flushed = _ulps(computed, ex, dtype)
        _spot_check_ulps(
            err,
            computed,
            lambda i, qi=qi: mpr.sigmoid_hard(float(z[i]), int(y[i]), alpha, gamma)[qi],
            [0, 7, z.size // 3, z.size - 5],
            dtype,
        )
        ok, worst = _report(
            f"[{isa}] {dtype.name} hard {name} gamma={gamma:g} alpha={alpha}", err, flushed, z, y
        )
        ft.record_ulps((dtype.name, "hard", name, gamma_kind(gamma)), ok[worst])
        bad = np.flatnonzero(ok > MAX_ULPS)
        for i in bad[:8]:
            failures.append(
                f"{name}: z={float(z[i])!r} y={int(y[i])} gamma={gamma!r} alpha={alpha}: "
                f"computed {float(computed[i])!r}, exact {ex[i][0]!r}, {ok[i]:.2f} ulp"
            )
    assert not failures, f"above {MAX_ULPS} ulp ({dtype.name}, {isa}):\n" + "\n".join(failures)


def test_hard_label_ulps_class_index_path(isa):
    """The class-index kernel shares the per-element code: same ulps, same bits."""
    for dtype in DTYPES:
        zs = Z_BY_DTYPE[dtype]
        z = np.stack([zs, zs[::-1]], axis=1)  # (n, 2): C = 2 classes
        lab = np.arange(zs.size) % 3  # 0, 1 and 2 (background)
        hot = (np.arange(2) == lab[:, None]).astype(np.uint8)
        for gamma in (0.5, 2.0, RANDOM_GAMMAS[0]):
            li, gi = fn.sigmoid_focal_loss_with_grad(z, lab, gamma=gamma, reduction="none")
            lh, gh = fn.sigmoid_focal_loss_with_grad(z, hot, gamma=gamma, reduction="none")
            ft.assert_bitwise_equal(li, lh)
            ft.assert_bitwise_equal(gi, gh)


# --------------------------------------------------------------------------
# Soft targets
# --------------------------------------------------------------------------

SOFT_Y = [1e-3, 0.1, 0.5, 0.93, 0.999]
SOFT_GAMMAS = [0.0, 0.5, 2.0, 5.0, RANDOM_GAMMAS[0]]
SOFT_Z = np.array([0.0] + [m for m in MAGS[::3]] + [-m for m in MAGS[1::3]], dtype=np.float64)


@pytest.mark.parametrize("gamma", SOFT_GAMMAS, ids=lambda g: f"gamma={g:.4g}")
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_soft_target_ulps(isa, dtype, gamma):
    zs = SOFT_Z.astype(dtype)
    z = np.repeat(zs, len(SOFT_Y))
    y = np.tile(np.array(SOFT_Y, dtype=dtype), zs.size)
    failures = []
    for alpha in ALPHAS:
        exact = [_exact_soft(float(zi), float(yi), alpha, gamma) for zi, yi in zip(z, y)]
        loss, grad = fn.sigmoid_focal_loss_with_grad(
            z, y, alpha=alpha, gamma=gamma, reduction="none"
        )
        err, flushed = _ulps(loss, [e[0] for e in exact], dtype)
        ok, worst = _report(
            f"[{isa}] {dtype.name} soft loss gamma={gamma:g} alpha={alpha}", err, flushed, z, y
        )
        ft.record_ulps((dtype.name, "soft", "loss", gamma_kind(gamma)), ok[worst])
        for i in np.flatnonzero(ok > soft_bound(gamma))[:8]:
            failures.append(
                f"loss z={float(z[i])!r} y={float(y[i])!r} alpha={alpha}: "
                f"{float(loss[i])!r} vs {exact[i][0][0]!r} ({ok[i]:.2f} ulp)"
            )
        # Gradient: ulps of the exact value (printed) and of the term scale (asserted).
        scale = np.array([e[2] for e in exact])
        gerr, gflushed = _ulps(grad, [e[1] for e in exact], dtype)
        no_cancel = np.abs([e[1][0] for e in exact]) >= scale / 16
        gok, gworst = _report(
            f"[{isa}] {dtype.name} soft grad (no cancellation) gamma={gamma:g} alpha={alpha}",
            np.where(no_cancel, gerr, 0.0),
            gflushed,
            z,
            y,
        )
        ft.record_ulps(
            (dtype.name, "soft", "grad (ulp of exact, no cancel)", gamma_kind(gamma)), gok[gworst]
        )
        info = np.finfo(dtype)
        sexp = np.frexp(np.maximum(scale, float(info.tiny)))[1] - 1
        sulp = np.ldexp(1.0, np.maximum(sexp, info.minexp) - info.nmant)
        hi = np.array([e[1][0] for e in exact])
        lo = np.array([e[1][1] for e in exact])
        serr = np.abs((grad.astype(np.float64) - hi) - lo) / sulp
        serr = np.where(np.isfinite(grad), serr, np.inf)
        sw = int(np.argmax(serr))
        print(
            f"  soft grad in ulps of the term scale: max {serr[sw]:.3f} at z={z[sw]!r} y={y[sw]!r}"
        )
        ft.record_ulps(
            (dtype.name, "soft", "grad (ulp of term scale)", gamma_kind(gamma)), serr[sw]
        )
        for i in np.flatnonzero(serr > soft_bound(gamma))[:8]:
            failures.append(
                f"grad z={float(z[i])!r} y={float(y[i])!r} alpha={alpha}: "
                f"{float(grad[i])!r} vs {hi[i]!r} ({serr[i]:.2f} scale-ulp)"
            )
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------


def test_zz_print_ulp_summary():
    """Runs last in this module: prints the maxima collected above (pytest -s)."""
    assert ft.ULP_RECORDS, "no ulp measurements were recorded"
    print("\nmax ulp error vs mpmath (all instruction sets):")
    for key in sorted(ft.ULP_RECORDS):
        print(f"  {' / '.join(key):58s} {ft.ULP_RECORDS[key]:8.3f}")

"""High-precision (mpmath, 50 significant digits) focal-loss reference for ulp tests.

Each function evaluates one element (sigmoid) or one row (softmax) straight
from the definitions, differentiating with the textbook chain rule (the
``(1 - p)^(gamma - 1)`` forms the production code avoids), so it shares no
arrangement with either the native kernels or ``focal_native.reference``.
Exponentials are taken relative to the row maximum and every ``1 - p`` is
formed as a sum over the other classes, so the 50 digits are relative digits
even for logits of size 1e4 (where p is within e^-10000 of 1).

Inputs are Python floats (or anything ``mpmath.mpf`` accepts); results are
``mpmath.mpf`` values, computed inside ``mp.workdps(50)``.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from mpmath import mp

DPS = 50


def _mp(value):
    """Exact conversion: mpf values pass through, anything else goes via float."""
    if isinstance(value, mpmath.mpf):
        return value
    return mp.mpf(float(value))


def _mpf_list(values):
    return [_mp(v) for v in values]


def _sigma_pair(z):
    """Return (p, q, log p, log q) for p = sigma(z), q = sigma(-z) = 1 - p."""
    if z >= 0:
        e = mp.exp(-z)
        p = 1 / (1 + e)
        q = e / (1 + e)
    else:
        e = mp.exp(z)
        p = e / (1 + e)
        q = 1 / (1 + e)
    log_p = -mp.log1p(mp.exp(-z))  # log sigma(z); log1p keeps tiny values relative
    log_q = -mp.log1p(mp.exp(z))
    return p, q, log_p, log_q


def sigmoid_hard(z, y, alpha, gamma):
    """Binary focal loss of one element with a hard label, and its derivative.

    Parameters
    ----------
    z : float
        Logit (finite).
    y : int
        Label, 0 or 1.
    alpha : float or None
        Positive-class weight; None for no weighting.
    gamma : float
        Focusing parameter >= 0.

    Returns
    -------
    (mpf, mpf)
        FL = -alpha_t (1 - p_t)^gamma log p_t and dFL/dz.
    """
    if y not in (0, 1):
        raise ValueError(f"y must be 0 or 1; got {y!r}")
    with mp.workdps(DPS):
        z = _mp(z)
        g = _mp(gamma)
        p, q, log_p, log_q = _sigma_pair(z)
        if y == 1:
            p_t, one_m_pt, log_pt = p, q, log_p
            dpt_dz = p * q
            a_t = mp.mpf(1) if alpha is None else _mp(alpha)
        else:
            p_t, one_m_pt, log_pt = q, p, log_q
            dpt_dz = -p * q
            a_t = mp.mpf(1) if alpha is None else 1 - _mp(alpha)
        loss = -a_t * one_m_pt**g * log_pt
        # d/dz of -a (1-p_t)^g log p_t = -a [ -g (1-p_t)^(g-1) log p_t + (1-p_t)^g / p_t ] p_t'
        if g == 0:
            d_pow = mp.mpf(0)
        else:
            d_pow = -g * one_m_pt ** (g - 1) * dpt_dz
        grad = -a_t * (d_pow * log_pt + one_m_pt**g * dpt_dz / p_t)
        return +loss, +grad


def sigmoid_soft(z, y, alpha, gamma):
    """Binary focal loss of one element with a soft target (torchvision / Keras).

    FL = alpha_t (1 - p_t)^gamma ce, with p_t = p y + (1 - p)(1 - y),
    alpha_t = alpha y + (1 - alpha)(1 - y) and ce the binary cross-entropy.

    Parameters
    ----------
    z : float
        Logit (finite).
    y : float
        Target in [0, 1].
    alpha : float or None
        Positive-class weight; None for no weighting.
    gamma : float
        Focusing parameter >= 0.

    Returns
    -------
    (mpf, mpf)
        The loss and dFL/dz.
    """
    with mp.workdps(DPS):
        z = _mp(z)
        y = _mp(y)
        g = _mp(gamma)
        p, q, log_p, log_q = _sigma_pair(z)
        ce = -(y * log_p + (1 - y) * log_q)
        u = p * (1 - y) + q * y  # 1 - p_t without forming 1 - (...)
        if alpha is None:
            a_t = mp.mpf(1)
        else:
            a = _mp(alpha)
            a_t = a * y + (1 - a) * (1 - y)
        loss = a_t * u**g * ce
        du_dz = p * q * (1 - 2 * y)
        dce_dz = p * (1 - y) - q * y  # = p - y, without p - 1 cancelling at y = 1
        d_pow = mp.mpf(0) if g == 0 else g * u ** (g - 1) * du_dz
        grad = a_t * (d_pow * ce + u**g * dce_dz)
        return +loss, +grad


def _softmax_parts(row):
    """Return (w, S) with w_k = exp(z_k - max z) and S = sum w_k, in mp."""
    z = _mpf_list(row)
    m = max(z)
    w = [mp.exp(v - m) for v in z]
    return w, mp.fsum(w)


def softmax_index(row, c, alpha_c, gamma):
    """Softmax focal loss of one row with class index c, and its gradient row.

    Parameters
    ----------
    row : sequence of float
        Logits (finite).
    c : int
        True class.
    alpha_c : float or None
        Weight of the true class; None for 1.
    gamma : float
        Focusing parameter >= 0.

    Returns
    -------
    (mpf, list of mpf)
        FL = -alpha_c (1 - p_c)^gamma log p_c and dFL/dz_k for every k.
    """
    with mp.workdps(DPS):
        g = _mp(gamma)
        a = mp.mpf(1) if alpha_c is None else _mp(alpha_c)
        w, s = _softmax_parts(row)
        s_o = mp.fsum(wk for k, wk in enumerate(w) if k != c)
        p = [wk / s for wk in w]
        q = s_o / s  # 1 - p_c
        log_pc = -mp.log1p(s_o / w[c])  # log(w_c / S) = -log(1 + S_o / w_c)
        loss = -a * q**g * log_pc
        # d p_c / d z_k = p_c (delta_kc - p_k); d log p_c / d z_k = delta_kc - p_k.
        # dFL/dz_k = -a [ -g q^(g-1) p_c log p_c + q^g ] (delta_kc - p_k)
        bracket = (0 if g == 0 else -g * q ** (g - 1) * p[c] * log_pc) + q**g
        grad = []
        for k in range(len(w)):
            delta_m_p = q if k == c else -p[k]
            grad.append(+(-a * bracket * delta_m_p))
        return +loss, grad


def softmax_dense(row, y_row, alpha, gamma):
    """Softmax focal loss of one row with dense targets, and its gradient row.

    Parameters
    ----------
    row : sequence of float
        Logits (finite).
    y_row : sequence of float
        Targets, one per class.
    alpha : sequence of float or None
        Per-class weights; None for all 1.
    gamma : float
        Focusing parameter >= 0.

    Returns
    -------
    (mpf, list of mpf)
        FL = -sum_k alpha_k y_k (1 - p_k)^gamma log p_k and dFL/dz_j.
    """
    with mp.workdps(DPS):
        g = _mp(gamma)
        n = len(row)
        y = _mpf_list(y_row)
        a = [mp.mpf(1)] * n if alpha is None else _mpf_list(alpha)
        w, s = _softmax_parts(row)
        p = [wk / s for wk in w]
        # 1 - p_k summed over the other classes, and log p_k = -log1p(S_o,k / w_k).
        s_o = [mp.fsum(wj for j, wj in enumerate(w) if j != k) for k in range(n)]
        one_m_p = [s_o[k] / s for k in range(n)]
        log_p = [-mp.log1p(s_o[k] / w[k]) for k in range(n)]
        loss = -mp.fsum(a[k] * y[k] * one_m_p[k] ** g * log_p[k] for k in range(n))
        # dFL/dz_j = -sum_k a_k y_k [ -g (1-p_k)^(g-1) log p_k + (1-p_k)^g / p_k ] dp_k/dz_j
        # with dp_k/dz_j = p_k (delta_kj - p_j).
        coef = []
        for k in range(n):
            d_pow = 0 if g == 0 else -g * one_m_p[k] ** (g - 1) * log_p[k]
            coef.append(a[k] * y[k] * (d_pow * p[k] + one_m_p[k] ** g))
        grad = []
        for j in range(n):
            terms = []
            for k in range(n):
                delta_m_p = one_m_p[j] if k == j else -p[j]
                terms.append(coef[k] * delta_m_p)
            grad.append(+(-mp.fsum(terms)))
        return +loss, grad


def ulp_error(computed, exact, dtype):
    """Error of ``computed`` against ``exact`` in units of the dtype's ulp at ``exact``.

    Parameters
    ----------
    computed : float or numpy floating scalar
        The value under test.
    exact : mpf or float
        The high-precision reference value.
    dtype : numpy dtype-like
        ``np.float32`` or ``np.float64``: whose ulp to count in.

    Returns
    -------
    float
        ``|computed - exact| / ulp(exact)``, where ulp(x) is the spacing of the
        dtype's numbers in the binade of |x|, and for |x| below the smallest
        normal number the spacing there (the smallest subnormal: absolute error
        in the subnormal range). 0 when both are equal (both 0, or the same
        infinity, or both NaN); inf when one is NaN or infinite and the other
        is not the same.
    """
    info = np.finfo(dtype)
    digits = int(info.nmant) + 1  # precision p, counting the implicit bit
    min_exp = int(info.minexp)  # smallest normal = 2**min_exp
    c = float(computed)
    with mp.workdps(DPS):
        x = _mp(exact)
        if mp.isnan(x) or math.isnan(c):
            return 0.0 if (mp.isnan(x) and math.isnan(c)) else math.inf
        if mp.isinf(x) or math.isinf(c):
            return 0.0 if (mp.isinf(x) and math.isinf(c) and (x > 0) == (c > 0)) else math.inf
        cm = mp.mpf(c)
        if cm == x:
            return 0.0
        if x == 0:
            exponent = min_exp
        else:
            _, e = mpmath.frexp(abs(x))  # |x| = m 2^e, m in [0.5, 1)
            exponent = max(int(e) - 1, min_exp)  # floor(log2 |x|), floored at the normals
        ulp = mp.ldexp(mp.mpf(1), exponent - digits + 1)
        return float(abs(cm - x) / ulp)

"""Pure-Python reference implementation of the focal losses: the test oracle.

Everything the tests trust about ``focal_native`` is checked against this
module. It is written for clarity, straight from the definitions in
``NUMERICS.md``, one element (sigmoid) or one row (softmax) at a time, with
Python floats (IEEE double), the :mod:`math` module and plain loops. NumPy is
used only at the edges: to accept input arrays (``np.asarray``, ``.shape``,
``.dtype``, ``.ravel().tolist()``) and to build the returned arrays. Nothing
compiled is imported, so the oracle shares no code with the native kernels.

It is slow (microseconds per element) and meant for test-sized inputs.

Accuracy: the stable formulations are used everywhere (``log1p(exp(-|z|))``,
``1 - p`` formed as ``S_o / S`` for the arg-max class, no clipping, no
``(gamma - 1)`` powers), so for ordinary inputs results agree with a 50-digit
evaluation to about 1e-14 relative or better. Infinite logits give the
mathematical limits; a NaN logit gives NaN for its element (sigmoid) or its
whole row (softmax).

Public functions mirror the native API:

- :func:`sigmoid_focal_loss`, :func:`sigmoid_focal_loss_grad`,
  :func:`sigmoid_focal_loss_with_grad`
- :func:`softmax_focal_loss`, :func:`softmax_focal_loss_grad`,
  :func:`softmax_focal_loss_with_grad`

Invalid arguments raise :class:`ValueError` naming the argument.

Conventions where the definitions leave a choice:

- a class-index target equal to ``ignore_index`` is ignored even when it
  would also be a valid class;
- "mean" over zero counted elements is NaN, and its gradient is all zeros
  (no element contributes);
- softmax ``label_smoothing`` also applies to dense targets:
  y -> (1 - eps) y + eps / C (Keras semantics);
- a softmax row whose logits are all -inf is treated as uniform, and +inf
  logits share the probability mass equally.
"""

from __future__ import annotations

import math
from fractions import Fraction
import operator

import numpy as np

__all__ = [
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "sigmoid_focal_loss_with_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_grad",
    "softmax_focal_loss_with_grad",
]

_REDUCTIONS = ("none", "mean", "sum")
_NAN = float("nan")
_INF = float("inf")


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------


def _check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {', '.join(repr(r) for r in _REDUCTIONS)}; got {reduction!r}"
        )
    return reduction


def _check_gamma(gamma):
    g = float(gamma)
    if not math.isfinite(g) or g < 0.0:
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
    return g


def _check_sigmoid_alpha(alpha):
    """Return the sigmoid class weight, or None for 'no weighting'."""
    if alpha is None:
        return None
    a = float(alpha)
    if math.isnan(a) or a > 1.0:
        raise ValueError(f"alpha must be None, negative (no weighting) or in [0, 1]; got {alpha!r}")
    if a < 0.0:
        return None
    return a


def _check_normalizer(normalizer):
    if normalizer is None:
        return 1.0
    d = float(normalizer)
    if not math.isfinite(d) or d <= 0.0:
        raise ValueError(f"normalizer must be None or a finite number > 0; got {normalizer!r}")
    return d


def _check_label_smoothing(label_smoothing):
    eps = float(label_smoothing)
    if not (0.0 <= eps < 1.0):
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing!r}")
    return eps


def _check_ignore_index(ignore_index):
    try:
        return operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer; got {ignore_index!r}") from None


def _softmax_alpha(alpha, num_classes):
    """Return the list of the C per-class weights."""
    if alpha is None:
        return [1.0] * num_classes
    arr = np.asarray(alpha)
    if arr.ndim == 0:
        a = float(arr)
        if not math.isfinite(a) or a < 0.0:
            raise ValueError(f"alpha must be a finite number >= 0; got {alpha!r}")
        return [a] * num_classes
    if arr.ndim != 1 or arr.shape[0] != num_classes:
        raise ValueError(
            f"alpha must be None, a scalar, or a 1-D sequence of length {num_classes} "
            f"(the number of classes); got shape {arr.shape}"
        )
    values = [float(v) for v in arr.tolist()]
    for k, a in enumerate(values):
        if not math.isfinite(a) or a < 0.0:
            raise ValueError(f"alpha[{k}] must be a finite number >= 0; got {a!r}")
    return values


def _as_logits(logits):
    arr = np.asarray(logits)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"logits must be a real numeric array; got dtype {arr.dtype}")
    return arr, [float(v) for v in arr.ravel().tolist()]


def _normalize_axis(axis, ndim):
    ax = operator.index(axis)
    if not -ndim <= ax < ndim:
        raise ValueError(f"axis {axis} is out of range for logits with {ndim} dimension(s)")
    return ax % ndim


def _layout(shape, axis):
    """Return (outer, C, inner): element (o, k, i) is at (o*C + k)*inner + i."""
    outer = 1
    for s in shape[:axis]:
        outer *= s
    inner = 1
    for s in shape[axis + 1 :]:
        inner *= s
    return outer, shape[axis], inner


def _check_grad_output(grad_output, reduction, shape):
    if grad_output is None:
        return None
    if reduction != "none":
        raise ValueError(
            f"grad_output is only allowed with reduction='none'; got reduction={reduction!r}"
        )
    arr = np.asarray(grad_output)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"grad_output shape {arr.shape} does not match the loss shape {tuple(shape)}"
        )
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"grad_output must be a real numeric array; got dtype {arr.dtype}")
    return [float(v) for v in arr.ravel().tolist()]


def _check_class_indices(values, num_classes, ignore_index, allow_background):
    """Raise for the first index that is neither a class, background, nor ignored."""
    upper = num_classes + 1 if allow_background else num_classes
    for pos, t in enumerate(values):
        if t != ignore_index and not 0 <= t < upper:
            valid = f"[0, {num_classes}]" if allow_background else f"[0, {num_classes})"
            raise ValueError(
                f"targets[{pos}] (flat index) = {t} is not a class index in {valid} "
                f"nor ignore_index={ignore_index}"
            )


def _check_unit_interval(values, what="targets"):
    for pos, y in enumerate(values):
        if not 0.0 <= y <= 1.0:  # also catches NaN
            raise ValueError(f"{what}[{pos}] (flat index) = {y!r} is outside [0, 1]")


# --------------------------------------------------------------------------
# Reductions (plain loops in double)
# --------------------------------------------------------------------------


def _reduce(losses, shape, reduction, count):
    if reduction == "none":
        return np.array(losses, dtype=np.float64).reshape(shape)
    total = 0.0
    for v in losses:
        total += v
    if reduction == "sum":
        return float(total)
    if count == 0:
        return _NAN
    return float(total / count)


def _grad_divisor(reduction, count):
    """Divisor the reduction applies to every per-element gradient."""
    if reduction == "mean" and count > 0:
        return float(count)
    return 1.0


# --------------------------------------------------------------------------
# Sigmoid: one element
# --------------------------------------------------------------------------


def _sigmoid_hard(z, y, alpha, gamma):
    """Loss and d(loss)/dz of one element with a hard label y in {0, 1}.

    FL = -a_t q^g log p and dFL/dz = s a_t q^g (g p log p - q), where p is the
    probability of the labelled class, q = 1 - p, s = +1 for y = 1, -1 for y = 0.
    """
    if math.isnan(z):
        return _NAN, _NAN
    s = 1.0 if y == 1.0 else -1.0
    if alpha is None:
        a_t = 1.0
    else:
        a_t = alpha if y == 1.0 else 1.0 - alpha
    if a_t == 0.0:
        return 0.0, 0.0  # weight zero: loss and gradient vanish identically
    z_t = s * z
    e = math.exp(-abs(z))  # in [0, 1]: never overflows
    log1p_e = math.log1p(e)
    log_p = -(max(-z_t, 0.0) + log1p_e)  # log sigma(z_t), no cancellation
    if z_t >= 0.0:
        p, q = 1.0 / (1.0 + e), e / (1.0 + e)
    else:
        p, q = e / (1.0 + e), 1.0 / (1.0 + e)
    q_pow = 1.0 if gamma == 0.0 else q**gamma
    loss = a_t * q_pow * (-log_p)
    p_log_p = 0.0 if p == 0.0 else p * log_p  # limit 0 when z_t = -inf
    grad = s * a_t * q_pow * (gamma * p_log_p - q)
    return loss, grad


def _sigmoid_element(z, y, alpha, gamma):
    """Loss and d(loss)/dz of one element with target y in [0, 1].

    Soft targets follow torchvision / Keras: FL = a_t u^g ce with
    ce = BCE-with-logits, u = 1 - p_t = p (1 - y) + q y and
    a_t = alpha y + (1 - alpha)(1 - y). Targets 0 and 1 use the hard form.
    """
    if y == 0.0 or y == 1.0:
        return _sigmoid_hard(z, y, alpha, gamma)
    if math.isnan(z):
        return _NAN, _NAN
    a_t = 1.0 if alpha is None else alpha * y + (1.0 - alpha) * (1.0 - y)
    e = math.exp(-abs(z))
    log1p_e = math.log1p(e)
    if z >= 0.0:
        p, q = 1.0 / (1.0 + e), e / (1.0 + e)
        ce = z * (1.0 - y) + log1p_e  # max(z,0) - y z + l, as a sum of non-negative terms
    else:
        p, q = e / (1.0 + e), 1.0 / (1.0 + e)
        ce = y * (-z) + log1p_e
    u = p * (1.0 - y) + q * y  # >= min(y, 1 - y) > 0 for a soft target
    u_pow = 1.0 if gamma == 0.0 else u**gamma
    loss = a_t * u_pow * ce
    pq = p * q
    # d(u^g)/dz contributes g u^(g-1) p q (1 - 2y) ce; p q ce -> 0 when |z| -> inf.
    focus = 0.0 if pq == 0.0 else gamma * pq * (1.0 - 2.0 * y) * ce / u
    grad = a_t * u_pow * (focus + (p - y))
    return loss, grad


# --------------------------------------------------------------------------
# Softmax: one row
# --------------------------------------------------------------------------


class _Row:
    """Probabilities of one softmax row, kept in the cancellation-free forms.

    Attributes
    ----------
    d : list of float
        z_k - max(z) (<= 0; the arg-max entry is exactly 0).
    w : list of float
        exp(d_k).
    amax : int
        Index of the (first) maximum.
    s_o_max : float
        Sum of w_k over k != amax, summed directly.
    s : float
        1 + s_o_max, the normalising sum.
    log_s : float
        log(s) = log1p(s_o_max).
    p : list of float
        w_k / s.
    """

    def __init__(self, row):
        m = max(row)
        if m == _INF:  # the +inf entries share the mass equally
            d = [0.0 if v == _INF else -_INF for v in row]
        elif m == -_INF:  # every entry is -inf: all equal, uniform
            d = [0.0] * len(row)
        else:
            d = [v - m for v in row]
        self.d = d
        self.w = [math.exp(v) for v in d]
        self.amax = d.index(0.0)
        s_o = 0.0
        for k, wk in enumerate(self.w):
            if k != self.amax:
                s_o += wk
        self.s_o_max = s_o
        self.s = 1.0 + s_o
        self.log_s = math.log1p(s_o)
        self.p = [wk / self.s for wk in self.w]

    def sum_others(self, c):
        """Sum of w_k over k != c, summed directly (never s - w_c)."""
        if c == self.amax:
            return self.s_o_max
        total = 0.0
        for k, wk in enumerate(self.w):
            if k != c:
                total += wk
        return total

    def log_p(self, k):
        """Log-probability of class k."""
        if k == self.amax:
            return -self.log_s  # = -log1p(S_o): z_k - (m + log S) would cancel
        return self.d[k] - self.log_s

    def one_minus_p(self, k):
        """1 - p_k; only the arg-max class can have p_k > 1/2."""
        if k == self.amax:
            return self.s_o_max / self.s
        return 1.0 - self.p[k]


def _focal_factor(a, p, log_p, q, gamma):
    """F = a q^g (g p (log p)/q - 1), with (log p)/q -> -1 as q -> 0."""
    if a == 0.0:
        return 0.0
    q_pow = 1.0 if gamma == 0.0 else q**gamma
    if p == 0.0:
        term = 0.0  # p log p -> 0
    elif q == 0.0:
        term = -gamma * p  # (log p)/q -> -1
    else:
        term = gamma * p * log_p / q
    return a * q_pow * (term - 1.0)


def _softmax_index_row(row, c, alpha_c, gamma):
    """Loss and gradient row of one position with class index c."""
    num_classes = len(row)
    if any(math.isnan(v) for v in row):
        return _NAN, [_NAN] * num_classes
    if alpha_c == 0.0:
        return 0.0, [0.0] * num_classes
    r = _Row(row)
    q = r.sum_others(c) / r.s
    log_p_c = r.log_p(c)
    q_pow = 1.0 if gamma == 0.0 else q**gamma
    loss = alpha_c * q_pow * (-log_p_c)
    f = _focal_factor(alpha_c, r.p[c], log_p_c, q, gamma)
    grad = [-f * pk for pk in r.p]
    grad[c] = f * q  # F (1 - p_c), with 1 - p_c = q
    return loss, grad


def _product(*factors):
    """The product of finite floats rounded once (exact in between), else in float.

    In plain float the order matters at the ends of the range: a subnormal
    smoothed target times alpha rounds away bits, and alpha times a huge
    -log p overflows although the whole product is finite.
    """
    if not all(math.isfinite(f) for f in factors):
        out = 1.0
        for f in factors:
            out *= f
        return out
    exact = Fraction(1)
    for f in factors:
        exact *= Fraction(f)
    try:
        return float(exact)
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def _softmax_dense_row(row, y, alpha, gamma):
    """Loss and gradient row of one position with dense targets y."""
    num_classes = len(row)
    if num_classes == 0:
        return 0.0, []
    if any(math.isnan(v) for v in row):
        return _NAN, [_NAN] * num_classes
    r = _Row(row)
    one_minus_p = [r.one_minus_p(k) for k in range(num_classes)]
    log_p = [r.log_p(k) for k in range(num_classes)]
    loss = 0.0
    yf = [0.0] * num_classes  # y_k F_k (every F_k <= 0)
    for k in range(num_classes):
        if y[k] == 0.0 or alpha[k] == 0.0:
            continue
        qk_pow = 1.0 if gamma == 0.0 else one_minus_p[k] ** gamma
        loss += _product(alpha[k], y[k], qk_pow, -log_p[k])
        yf[k] = y[k] * _focal_factor(alpha[k], r.p[k], log_p[k], one_minus_p[k], gamma)
    # dFL/dz_j = y_j F_j (1 - p_j) - p_j sum_{k != j} y_k F_k. The sum over
    # k != j comes from prefix and suffix sums of same-signed terms: no
    # cancellation, and linear in C.
    suffix = [0.0] * (num_classes + 1)
    for k in range(num_classes - 1, -1, -1):
        suffix[k] = suffix[k + 1] + yf[k]
    grad = [0.0] * num_classes
    prefix = 0.0
    for j in range(num_classes):
        others = prefix + suffix[j + 1]
        grad[j] = yf[j] * one_minus_p[j] - r.p[j] * others
        prefix += yf[j]
    return loss, grad


# --------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------


def _sigmoid_compute(
    logits,
    targets,
    alpha,
    gamma,
    reduction,
    normalizer,
    axis,
    ignore_index,
    grad_output,
    want_grad,
):
    reduction = _check_reduction(reduction)
    gamma = _check_gamma(gamma)
    alpha = _check_sigmoid_alpha(alpha)
    norm = _check_normalizer(normalizer)
    ignore_index = _check_ignore_index(ignore_index)
    z_arr, z = _as_logits(logits)
    t_arr = np.asarray(targets)
    shape = tuple(z_arr.shape)
    n = len(z)

    ignored = None  # per element, for class-index targets
    if tuple(t_arr.shape) == shape:
        # Elementwise targets: hard (bool / integer) or soft (float).
        kind = t_arr.dtype.kind
        if kind in "biu":
            ys = [float(int(v)) for v in t_arr.ravel().tolist()]
            for pos, v in enumerate(ys):
                if v != 0.0 and v != 1.0:
                    raise ValueError(
                        f"targets[{pos}] (flat index) = {int(v)}: integer targets with the "
                        "logits' shape are hard labels and must be 0 or 1"
                    )
        elif kind == "f":
            ys = [float(v) for v in t_arr.ravel().tolist()]
            _check_unit_interval(ys)
        else:
            raise ValueError(f"targets must be bool, integer or float; got dtype {t_arr.dtype}")
        count = n
    elif t_arr.dtype.kind in "iu" and z_arr.ndim >= 1:
        # Class-index targets: one integer per position along the class axis.
        ax = _normalize_axis(axis, z_arr.ndim)
        pos_shape = shape[:ax] + shape[ax + 1 :]
        if tuple(t_arr.shape) != pos_shape:
            raise ValueError(
                f"targets shape {tuple(t_arr.shape)} does not match logits shape {shape}: "
                f"expected the same shape, or integer class indices of shape {pos_shape} "
                f"(logits shape without axis {axis})"
            )
        outer, num_classes, inner = _layout(shape, ax)
        tv = [int(v) for v in t_arr.ravel().tolist()]
        _check_class_indices(tv, num_classes, ignore_index, allow_background=True)
        ys = [0.0] * n
        ignored = [False] * n
        n_kept = 0
        for o in range(outer):
            for i in range(inner):
                t = tv[o * inner + i]
                if t == ignore_index:
                    for k in range(num_classes):
                        ignored[(o * num_classes + k) * inner + i] = True
                    continue
                n_kept += 1
                if t < num_classes:  # t == C is background: all negative
                    ys[(o * num_classes + t) * inner + i] = 1.0
        count = n_kept * num_classes
    else:
        raise ValueError(
            f"targets shape {tuple(t_arr.shape)} (dtype {t_arr.dtype}) does not match "
            f"logits shape {shape}: expected the same shape, or integer class indices "
            "of the logits' shape without the class axis"
        )

    go = _check_grad_output(grad_output, reduction, shape) if want_grad else None
    losses = [0.0] * n
    grads = [0.0] * n
    divisor = _grad_divisor(reduction, count)
    for idx in range(n):
        if ignored is not None and ignored[idx]:
            continue
        loss, grad = _sigmoid_element(z[idx], ys[idx], alpha, gamma)
        losses[idx] = loss / norm
        g = grad / norm / divisor
        if go is not None:
            g *= go[idx]
        grads[idx] = g
    loss_out = _reduce(losses, shape, reduction, count)
    grad_out = np.array(grads, dtype=np.float64).reshape(shape) if want_grad else None
    return loss_out, grad_out


def _softmax_compute(
    logits,
    targets,
    alpha,
    gamma,
    reduction,
    axis,
    ignore_index,
    label_smoothing,
    normalizer,
    grad_output,
    want_grad,
):
    reduction = _check_reduction(reduction)
    gamma = _check_gamma(gamma)
    norm = _check_normalizer(normalizer)
    eps = _check_label_smoothing(label_smoothing)
    ignore_index = _check_ignore_index(ignore_index)
    z_arr, z = _as_logits(logits)
    if z_arr.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    shape = tuple(z_arr.shape)
    ax = _normalize_axis(axis, z_arr.ndim)
    outer, num_classes, inner = _layout(shape, ax)
    pos_shape = shape[:ax] + shape[ax + 1 :]
    alphas = _softmax_alpha(alpha, num_classes)

    t_arr = np.asarray(targets)
    t_shape = tuple(t_arr.shape)
    if t_arr.dtype.kind in "iu" and t_shape == pos_shape:
        dense = False
        tv = [int(v) for v in t_arr.ravel().tolist()]
        _check_class_indices(tv, num_classes, ignore_index, allow_background=False)
    elif t_shape == shape and t_arr.dtype.kind == "f":
        dense = True
        tv = [float(v) for v in t_arr.ravel().tolist()]
        _check_unit_interval(tv)
    else:
        raise ValueError(
            f"targets shape {t_shape} (dtype {t_arr.dtype}) does not match logits shape "
            f"{shape}: expected integer class indices of shape {pos_shape} (logits shape "
            f"without axis {axis}) or float targets of shape {shape}"
        )

    go = _check_grad_output(grad_output, reduction, pos_shape) if want_grad else None
    n_pos = outer * inner
    losses = [0.0] * n_pos
    row_grads = [None] * n_pos
    count = 0
    for o in range(outer):
        for i in range(inner):
            pos = o * inner + i
            cols = [(o * num_classes + k) * inner + i for k in range(num_classes)]
            row = [z[j] for j in cols]
            if dense:
                y = [tv[j] for j in cols]
                if eps > 0.0:
                    y = [(1.0 - eps) * yk + eps / num_classes for yk in y]
                loss, grad = _softmax_dense_row(row, y, alphas, gamma)
            else:
                c = tv[pos]
                if c == ignore_index:
                    continue
                if eps > 0.0:
                    y = [eps / num_classes] * num_classes
                    y[c] = (1.0 - eps) + eps / num_classes
                    loss, grad = _softmax_dense_row(row, y, alphas, gamma)
                else:
                    loss, grad = _softmax_index_row(row, c, alphas[c], gamma)
            count += 1
            losses[pos] = loss / norm
            row_grads[pos] = (cols, grad)

    grads = [0.0] * len(z)
    divisor = _grad_divisor(reduction, count)
    if want_grad:
        for pos, entry in enumerate(row_grads):
            if entry is None:
                continue
            cols, grad = entry
            for j, g in zip(cols, grad):
                g = g / norm / divisor
                grads[j] = g if go is None else g * go[pos]
    loss_out = _reduce(losses, pos_shape, reduction, count)
    grad_out = np.array(grads, dtype=np.float64).reshape(shape) if want_grad else None
    return loss_out, grad_out


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def sigmoid_focal_loss(
    logits,
    targets,
    alpha=0.25,
    gamma=2.0,
    reduction="none",
    *,
    normalizer=None,
    axis=-1,
    ignore_index=-100,
):
    """Binary (sigmoid) focal loss, FL = -alpha_t (1 - p_t)^gamma log(p_t).

    Parameters
    ----------
    logits : array_like
        Real logits z, any shape.
    targets : array_like
        Either elementwise targets of the logits' shape -- bool or integer hard
        labels in {0, 1}, or float soft targets in [0, 1] (torchvision / Keras
        semantics; exactly 0.0 and 1.0 are hard labels) -- or integer class
        indices of the logits' shape without ``axis``: element k along
        ``axis`` is positive iff k equals the target, target C (the number of
        classes) is background (all negative) and ``ignore_index`` drops the
        whole position.
    alpha : float or None, optional
        Weight of the positive class, in [0, 1]; negatives get 1 - alpha.
        None or a negative value disables the weighting.
    gamma : float, optional
        Focusing parameter, finite and >= 0.
    reduction : {"none", "mean", "sum"}, optional
        "mean" divides by the number of elements (class-index targets: the
        number of non-ignored positions times C).
    normalizer : float or None, optional
        If given (> 0), every element's loss is divided by it before the
        reduction.
    axis : int, optional
        Class axis, used only with class-index targets.
    ignore_index : int, optional
        Class-index target value that marks an ignored position.

    Returns
    -------
    numpy.ndarray or float
        float64 array of the logits' shape for reduction="none", else a float
        (NaN for the mean of nothing).

    Raises
    ------
    ValueError
        For an invalid argument (the message names it), a shape mismatch, or
        a target value out of range (the message gives its flat index and
        value).
    """
    loss, _ = _sigmoid_compute(
        logits, targets, alpha, gamma, reduction, normalizer, axis, ignore_index, None, False
    )
    return loss


def sigmoid_focal_loss_grad(
    logits,
    targets,
    alpha=0.25,
    gamma=2.0,
    reduction="none",
    *,
    normalizer=None,
    axis=-1,
    ignore_index=-100,
    grad_output=None,
):
    """Gradient of the reduced sigmoid focal loss with respect to the logits.

    For one element with hard label y (s = +1 for y = 1, -1 for y = 0, p the
    probability of the labelled class, q = 1 - p)::

        dFL/dz = s alpha_t q^gamma (gamma p log p - q)

    and for a soft target, with u = 1 - p_t and ce the BCE with logits::

        dFL/dz = alpha_t u^gamma (gamma p q (1 - 2y) ce / u + (p - y))

    Parameters
    ----------
    logits, targets, alpha, gamma, reduction, normalizer, axis, ignore_index
        As for :func:`sigmoid_focal_loss`.
    grad_output : array_like or None, optional
        Upstream gradient, only with reduction="none", of the logits' shape;
        it multiplies each element's gradient (vector-Jacobian product).

    Returns
    -------
    numpy.ndarray
        float64 array of the logits' shape. With "mean" every element's
        gradient is divided by the count; ignored positions get 0.

    Raises
    ------
    ValueError
        As for :func:`sigmoid_focal_loss`, and for a grad_output given with a
        reduction other than "none" or of the wrong shape.
    """
    _, grad = _sigmoid_compute(
        logits,
        targets,
        alpha,
        gamma,
        reduction,
        normalizer,
        axis,
        ignore_index,
        grad_output,
        True,
    )
    return grad


def sigmoid_focal_loss_with_grad(
    logits,
    targets,
    alpha=0.25,
    gamma=2.0,
    reduction="mean",
    *,
    normalizer=None,
    axis=-1,
    ignore_index=-100,
):
    """Reduced sigmoid focal loss and its gradient with respect to the logits.

    Parameters
    ----------
    logits, targets, alpha, gamma, reduction, normalizer, axis, ignore_index
        As for :func:`sigmoid_focal_loss` (note the default reduction "mean").

    Returns
    -------
    loss : numpy.ndarray or float
        As :func:`sigmoid_focal_loss`.
    grad : numpy.ndarray
        As :func:`sigmoid_focal_loss_grad`.

    Raises
    ------
    ValueError
        As for :func:`sigmoid_focal_loss`.
    """
    return _sigmoid_compute(
        logits, targets, alpha, gamma, reduction, normalizer, axis, ignore_index, None, True
    )


def softmax_focal_loss(
    logits,
    targets,
    alpha=None,
    gamma=2.0,
    reduction="none",
    *,
    axis=-1,
    ignore_index=-100,
    label_smoothing=0.0,
    normalizer=None,
):
    """Softmax (categorical) focal loss.

    With a class index c: FL = -alpha_c (1 - p_c)^gamma log p_c. With dense
    targets y: FL = -sum_k alpha_k y_k (1 - p_k)^gamma log p_k.

    Parameters
    ----------
    logits : array_like
        Real logits with the classes along ``axis`` (at least 1-D).
    targets : array_like
        Integer class indices of the logits' shape without ``axis``
        (``ignore_index`` marks an ignored position), or float dense targets
        of the logits' shape with entries in [0, 1].
    alpha : None, float or array_like, optional
        None (weight 1), a scalar >= 0 (one factor for every class), or a 1-D
        sequence of C non-negative per-class weights.
    gamma : float, optional
        Focusing parameter, finite and >= 0.
    reduction : {"none", "mean", "sum"}, optional
        "mean" divides by the number of non-ignored positions.
    axis : int, optional
        Class axis.
    ignore_index : int, optional
        Class index that marks an ignored position: no loss, zero gradient,
        not counted by "mean".
    label_smoothing : float, optional
        Smoothing eps in [0, 1): targets become (1 - eps) y + eps / C, where
        for class indices y is the one-hot row.
    normalizer : float or None, optional
        If given (> 0), every position's loss is divided by it before the
        reduction.

    Returns
    -------
    numpy.ndarray or float
        float64 array of the logits' shape without ``axis`` for
        reduction="none" (0 at ignored positions), else a float (NaN for the
        mean of nothing).

    Raises
    ------
    ValueError
        For an invalid argument (the message names it), a shape mismatch, or
        a target value out of range (the message gives its flat index and
        value).
    """
    loss, _ = _softmax_compute(
        logits,
        targets,
        alpha,
        gamma,
        reduction,
        axis,
        ignore_index,
        label_smoothing,
        normalizer,
        None,
        False,
    )
    return loss


def softmax_focal_loss_grad(
    logits,
    targets,
    alpha=None,
    gamma=2.0,
    reduction="none",
    *,
    axis=-1,
    ignore_index=-100,
    label_smoothing=0.0,
    normalizer=None,
    grad_output=None,
):
    """Gradient of the reduced softmax focal loss with respect to the logits.

    With a class index c, q = 1 - p_c and
    F = alpha_c q^gamma (gamma p_c (log p_c) / q - 1)::

        dFL/dz_k = F (delta_kc - p_k)

    With dense targets, F_k = alpha_k (1 - p_k)^gamma
    (gamma p_k (log p_k) / (1 - p_k) - 1) and::

        dFL/dz_j = y_j F_j (1 - p_j) - p_j sum_{k != j} y_k F_k

    Parameters
    ----------
    logits, targets, alpha, gamma, reduction, axis, ignore_index, label_smoothing, normalizer
        As for :func:`softmax_focal_loss`.
    grad_output : array_like or None, optional
        Upstream gradient, only with reduction="none", of the logits' shape
        without ``axis``; it multiplies each position's gradient row.

    Returns
    -------
    numpy.ndarray
        float64 array of the logits' shape. With "mean" every row is divided
        by the count; ignored positions get 0.

    Raises
    ------
    ValueError
        As for :func:`softmax_focal_loss`, and for a grad_output given with a
        reduction other than "none" or of the wrong shape.
    """
    _, grad = _softmax_compute(
        logits,
        targets,
        alpha,
        gamma,
        reduction,
        axis,
        ignore_index,
        label_smoothing,
        normalizer,
        grad_output,
        True,
    )
    return grad


def softmax_focal_loss_with_grad(
    logits,
    targets,
    alpha=None,
    gamma=2.0,
    reduction="mean",
    *,
    axis=-1,
    ignore_index=-100,
    label_smoothing=0.0,
    normalizer=None,
):
    """Reduced softmax focal loss and its gradient with respect to the logits.

    Parameters
    ----------
    logits, targets, alpha, gamma, reduction, axis, ignore_index, label_smoothing, normalizer
        As for :func:`softmax_focal_loss` (note the default reduction "mean").

    Returns
    -------
    loss : numpy.ndarray or float
        As :func:`softmax_focal_loss`.
    grad : numpy.ndarray
        As :func:`softmax_focal_loss_grad`.

    Raises
    ------
    ValueError
        As for :func:`softmax_focal_loss`.
    """
    return _softmax_compute(
        logits,
        targets,
        alpha,
        gamma,
        reduction,
        axis,
        ignore_index,
        label_smoothing,
        normalizer,
        None,
        True,
    )

"""Multiclass (softmax) focal loss: the public functions."""

from __future__ import annotations

import math

import numpy as np

from . import _common as c
from ._core_loader import core

__all__ = ["softmax_focal_loss", "softmax_focal_loss_grad", "softmax_focal_loss_with_grad"]


_FAST = None


def _fast():
    """_core.softmax_fast: the common cases without the checks of _run (which
    it declines with None: anything unusual and every error)."""
    global _FAST
    if _FAST is None:
        _FAST = core().softmax_fast
    return _FAST


def _check_alpha(alpha, classes, fname):
    """Return (alpha_vector or None, alpha_scale)."""
    if alpha is None:
        return None, 1.0
    if np.ndim(alpha) == 0 and not isinstance(alpha, (list, tuple)):
        a = c._real(alpha, "alpha", fname)
        if not (math.isfinite(a) and a >= 0.0):
            raise ValueError(f"{fname}: alpha must be finite and >= 0, got {alpha!r}")
        return None, a
    vec = np.asarray(alpha)
    if vec.dtype.kind not in "fiu" or vec.dtype.kind == "b":
        raise TypeError(f"{fname}: alpha has unsupported dtype {vec.dtype}")
    if vec.ndim != 1 or vec.shape[0] != classes:
        raise ValueError(
            f"{fname}: alpha must be a scalar or a 1-D array of {classes} per-class weights, "
            f"got shape {vec.shape}"
        )
    vec = np.ascontiguousarray(vec, dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(vec) & (vec >= 0.0)))
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"{fname}: alpha[{k}] = {vec[k]} must be finite and >= 0")
    return vec, 1.0


def _check_smoothing(label_smoothing, fname):
    e = c._real(label_smoothing, "label_smoothing", fname)
    if not (0.0 <= e < 1.0):
        raise ValueError(f"{fname}: label_smoothing must be in [0, 1), got {label_smoothing!r}")
    return e


def _run(fname, logits, targets, alpha, gamma, reduction, axis, ignore_index, label_smoothing,
         normalizer, want_loss, want_grad, out, grad_out, grad_output):
    z = c.check_logits(logits, fname)
    red = c.check_reduction(reduction, fname)
    g = c.check_gamma(gamma, fname)
    norm = c.check_normalizer(normalizer, fname)
    ign = c.check_index(ignore_index, "ignore_index", fname)
    eps = _check_smoothing(label_smoothing, fname)
    ax = c.check_axis(axis, z.ndim, fname)
    outer, classes, inner = c.layout(z.shape, ax)
    pos_shape = z.shape[:ax] + z.shape[ax + 1 :]
    if classes == 0 and math.prod(pos_shape) > 0:
        raise ValueError(f"{fname}: logits has 0 classes along axis {ax}; softmax needs >= 1")
    avec, ascale = _check_alpha(alpha, classes, fname)

    t = c.native(targets if type(targets) is np.ndarray else np.asarray(targets))
    kind = t.dtype.kind
    if kind in "iu" and t.shape == pos_shape:
        dense = False
        kt = c.check_labels(t, fname)
    elif kind in "fb" and t.shape == z.shape:
        dense = True
        kt = c.to_value_dtype(t, z.dtype, fname) if kind == "f" else np.ascontiguousarray(t, dtype=z.dtype)
        if eps > 0.0 and classes > 0:
            bad = ~((kt >= 0) & (kt <= 1))
            if bad.any():
                idx = int(np.flatnonzero(bad.ravel())[0])
                raise ValueError(
                    f"{fname}: targets{c.position(t.shape, idx)} = {t.reshape(-1)[idx]} "
                    "is outside [0, 1]"
                )
            # Keras' rule for dense targets: y -> (1 - eps) y + eps / C (one copy).
            kt = (kt * (1.0 - eps) + eps / classes).astype(z.dtype, copy=False)
            eps = 0.0
    elif kind not in "biuf":
        raise TypeError(
            f"{fname}: targets has unsupported dtype {t.dtype}; use integer class indices or "
            "float32/float64 dense targets"
        )
    else:
        raise ValueError(
            f"{fname}: targets has shape {t.shape} and dtype {t.dtype}; expected integer class "
            f"indices of shape {pos_shape} or float dense targets of shape {z.shape}"
        )

    zc = c.contiguous(z)
    up = c.check_grad_output(grad_output, pos_shape, z.dtype, reduction, fname)
    loss_arr = None
    if want_loss and reduction == "none":
        if out is not None:
            loss_arr = c.check_out(out, "out", pos_shape, z.dtype, fname)
        else:
            loss_arr = np.empty(pos_shape, dtype=z.dtype)
    elif want_loss and out is not None:
        raise ValueError(f"{fname}: out is only accepted with reduction='none'")
    grad_arr = None
    if want_grad:
        if grad_out is not None:
            grad_arr = c.check_out(
                grad_out, "grad_out" if want_loss else "out", z.shape, z.dtype, fname
            )
        else:
            grad_arr = np.empty(z.shape, dtype=z.dtype)
    code, index, value, _count = core().softmax(
        zc, kt, dense, outer, classes, inner, avec, ascale, g, norm, eps, red, ign,
        loss_arr, grad_arr, up,
    )
    if code == c.OVERLAP:
        raise ValueError(c.overlap_message(fname, index, "grad_out" if want_loss else "out"))
    if code == 1:
        where = c.position(t.shape, index)
        v = t.reshape(-1)[index]
        if dense:
            msg = f"{fname}: targets{where} = {v} is outside [0, 1]"
        else:
            msg = (f"{fname}: targets{where} = {v} is not a valid class index: expected "
                   f"0 <= target < {classes} or ignore_index={ign}")
        raise ValueError(msg)
    if code != 0:  # pragma: no cover - the checks above make this unreachable
        raise RuntimeError(f"{fname}: internal error (kernel status {code})")
    loss = loss_arr if reduction == "none" else c.scalar_result(z.dtype, value)
    return loss, grad_arr


_COMMON_DOC = """
    Parameters
    ----------
    logits : array_like of float32 or float64
        Raw class scores, the class axis at ``axis``. Results have this dtype.
    targets : array_like
        Integer class indices with the shape of ``logits`` without ``axis``
        (positions equal to ``ignore_index`` are ignored; any other value outside
        ``[0, C)`` is an error), or dense float targets in [0, 1] with the shape
        of ``logits`` (one-hot, smoothed or soft: Keras' categorical focal loss).
    alpha : None, float or array_like of C floats, default None
        Class weights: ``None`` for none, a scalar applied to every class, or one
        weight per class (``alpha[c]`` of the target class).
    gamma : float, default 2.0
        Focusing parameter, finite and >= 0; 0 gives softmax cross-entropy.
    reduction : {'none', 'mean', 'sum'}
        'none' returns one loss per position (shape of ``logits`` without
        ``axis``); 'mean' divides the sum by the number of non-ignored positions.
    axis : int, default -1
        The class axis. ``(N, C, d1, ..., dk)`` with ``axis=1`` (PyTorch's
        segmentation layout) is processed in place, without a transposed copy.
    ignore_index : int, default -100
        Class-index targets equal to it contribute no loss and no gradient and
        do not count in a mean.
    label_smoothing : float in [0, 1), default 0
        Targets become ``(1 - eps) * onehot(c) + eps / C`` (dense targets:
        ``(1 - eps) * y + eps / C``).
    normalizer : float, optional
        Every position's loss is divided by it (> 0) before the reduction.
"""


def softmax_focal_loss(logits, targets, alpha=None, gamma=2.0, reduction="none", *, axis=-1,
                       ignore_index=-100, label_smoothing=0.0, normalizer=None, out=None):
    """Multiclass (softmax) focal loss.

    ``FL = -alpha_c * (1 - p_c)**gamma * log(p_c)`` with ``p = softmax(logits)``
    along ``axis``, computed without cancellation (confident rows keep full
    relative accuracy) and without any temporary arrays.
    {common}
    out : ndarray, optional
        Output for reduction 'none' (shape of ``logits`` without ``axis``).

    Returns
    -------
    ndarray or scalar
        The loss.

    Raises
    ------
    ValueError
        Bad shapes, parameters or target values (the message names the first
        offending position and value).
    TypeError
        Unsupported dtypes.
    """
    r = (_FAST or _fast())(
        1, logits, targets, alpha, gamma, reduction, axis, ignore_index, label_smoothing,
        normalizer, out, None)
    if r is not None:
        return r
    loss, _ = _run("softmax_focal_loss", logits, targets, alpha, gamma, reduction, axis,
                   ignore_index, label_smoothing, normalizer, True, False, out, None, None)
    return loss


def softmax_focal_loss_grad(logits, targets, alpha=None, gamma=2.0, reduction="none", *,
                            axis=-1, ignore_index=-100, label_smoothing=0.0, normalizer=None,
                            grad_output=None, out=None):
    """Gradient of :func:`softmax_focal_loss` with respect to the logits.
    {common}
    grad_output : array_like, optional
        With reduction 'none' only: the upstream gradient, one value per position.
    out : ndarray, optional
        Where to write the gradient; may be the ``logits`` array itself (a
        call that fails on a bad target then leaves the logits unchanged).

    Returns
    -------
    ndarray
        ``d(reduced loss) / d(logits)``, the logits' shape and dtype.
    """
    if grad_output is None:
        r = (_FAST or _fast())(
            2, logits, targets, alpha, gamma, reduction, axis, ignore_index, label_smoothing,
            normalizer, None, out)
        if r is not None:
            return r
    _, grad = _run("softmax_focal_loss_grad", logits, targets, alpha, gamma, reduction, axis,
                   ignore_index, label_smoothing, normalizer, False, True, None, out, grad_output)
    return grad


def softmax_focal_loss_with_grad(logits, targets, alpha=None, gamma=2.0, reduction="mean", *,
                                 axis=-1, ignore_index=-100, label_smoothing=0.0,
                                 normalizer=None, out=None, grad_out=None):
    """Loss and gradient of :func:`softmax_focal_loss` in one pass over memory.
    {common}
    out, grad_out : ndarray, optional
        Outputs for the loss (reduction 'none') and the gradient (may be
        ``logits`` itself; a call that fails on a bad target then writes
        neither).

    Returns
    -------
    loss : ndarray or scalar
    grad : ndarray
    """
    r = (_FAST or _fast())(
        3, logits, targets, alpha, gamma, reduction, axis, ignore_index, label_smoothing,
        normalizer, out, grad_out)
    if r is not None:
        return r
    return _run("softmax_focal_loss_with_grad", logits, targets, alpha, gamma, reduction, axis,
                ignore_index, label_smoothing, normalizer, True, True, out, grad_out, None)


for _f in (softmax_focal_loss, softmax_focal_loss_grad, softmax_focal_loss_with_grad):
    _f.__doc__ = _f.__doc__.replace("{common}", _COMMON_DOC.strip("\n"))
del _f

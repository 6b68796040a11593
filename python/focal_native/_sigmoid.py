"""Binary (sigmoid) focal loss: the public functions."""

from __future__ import annotations

import math

import numpy as np

from . import _common as c
from ._core_loader import core

__all__ = [
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "sigmoid_focal_loss_with_grad",
]


_FAST = None


def _fast():
    """_core.sigmoid_fast: the common cases without the checks of _run (which
    it declines with None: anything unusual and every error)."""
    global _FAST
    if _FAST is None:
        _FAST = core().sigmoid_fast
    return _FAST


def _check_alpha(alpha, fname):
    if alpha is None:
        return -1.0
    if type(alpha) is float and alpha <= 1.0:  # fast path (NaN fails the test)
        return alpha
    a = c._real(alpha, "alpha", fname)
    if math.isnan(a) or a > 1.0:
        raise ValueError(
            f"{fname}: alpha must be in [0, 1] (or None / negative for no weighting), got {alpha!r}"
        )
    return a


def _prepare_targets(z, targets, axis, fname):
    """Return (targets_for_kernel, labels?, (outer, classes, inner), original)."""
    t = c.native(targets if type(targets) is np.ndarray else np.asarray(targets))
    kind = t.dtype.kind
    if kind not in "biuf":
        raise TypeError(
            f"{fname}: targets has unsupported dtype {t.dtype}; use bool, an integer dtype "
            "(labels 0/1 or class indices) or float32/float64 (soft targets in [0, 1])"
        )
    if t.shape == z.shape:
        n = z.size
        if kind == "b":
            k = c.contiguous(t)  # read as uint8 by the kernels (no view object needed)
        elif kind in "iu":
            t = c.contiguous(t)
            if t.dtype.itemsize == 1:
                k = t.view(np.uint8)
            elif t.dtype.itemsize == 2:
                k = t.view(np.uint16)
            elif t.dtype.itemsize == 4:
                k = t.view(np.uint32)
            else:
                k = t.view(np.uint64)
        else:
            k = c.to_value_dtype(t, z.dtype, fname)
        return k, False, (1, 1, n), t
    if kind in "iu" and z.ndim >= 1:
        ax = c.check_axis(axis, z.ndim, fname)
        if t.shape == z.shape[:ax] + z.shape[ax + 1 :]:
            return c.check_labels(t, fname), True, c.layout(z.shape, ax), t
    expected = f"{z.shape}"
    if z.ndim >= 1 and kind in "iu":
        try:
            ax = c.check_axis(axis, z.ndim, fname)
            expected += f" (or {z.shape[:ax] + z.shape[ax + 1:]} for class-index targets)"
        except (TypeError, ValueError):
            pass
    raise ValueError(f"{fname}: targets has shape {t.shape}, expected {expected}")


def _bad_target_message(fname, original, labels, classes, index):
    where = c.position(original.shape, index)
    value = original.reshape(-1)[index] if original.ndim else original[()]
    if labels:
        return (
            f"{fname}: targets{where} = {value} is not a valid class index: expected "
            f"0 <= target < {classes}, {classes} for background, or ignore_index"
        )
    if original.dtype.kind == "f":
        return f"{fname}: targets{where} = {value} is outside [0, 1]"
    return f"{fname}: targets{where} = {value} is not a binary label (expected 0 or 1)"


def _run(fname, logits, targets, alpha, gamma, reduction, normalizer, axis, ignore_index,
         want_loss, want_grad, out, grad_out, grad_output):
    z = c.check_logits(logits, fname)
    red = c.check_reduction(reduction, fname)
    a = _check_alpha(alpha, fname)
    g = c.check_gamma(gamma, fname)
    norm = c.check_normalizer(normalizer, fname)
    ign = c.check_index(ignore_index, "ignore_index", fname)
    kt, labels, (outer, classes, inner), original = _prepare_targets(z, targets, axis, fname)
    zc = c.contiguous(z)
    up = c.check_grad_output(grad_output, z.shape, z.dtype, reduction, fname)
    loss_arr = None
    if want_loss and reduction == "none":
        if out is not None:
            loss_arr = c.check_out(out, "out", z.shape, z.dtype, fname)
        else:
            loss_arr = np.empty(z.shape, dtype=z.dtype)
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
    code, index, value, _count = core().sigmoid(
        zc, kt, labels, outer, classes, inner, a, g, norm, red, ign,
        loss_arr, grad_arr, up,
    )
    if code == c.OVERLAP:
        raise ValueError(c.overlap_message(fname, index, "grad_out" if want_loss else "out"))
    if code == 1:
        raise ValueError(_bad_target_message(fname, original, labels, classes, index))
    if code != 0:  # pragma: no cover - the checks above make this unreachable
        raise RuntimeError(f"{fname}: internal error (kernel status {code})")
    loss = loss_arr if reduction == "none" else c.scalar_result(z.dtype, value)
    return loss, grad_arr


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="none", *,
                       normalizer=None, axis=-1, ignore_index=-100, out=None):
    """Binary (sigmoid) focal loss, elementwise over any shape.

    ``FL = -alpha_t * (1 - p_t)**gamma * log(p_t)`` with ``p_t = sigmoid(z)`` for
    positives and ``1 - sigmoid(z)`` for negatives (Lin et al., RetinaNet), with
    the semantics of torchvision's ``sigmoid_focal_loss``.

    Parameters
    ----------
    logits : array_like of float32 or float64
        Raw scores (before the sigmoid). Results have this dtype.
    targets : array_like
        Either the shape of ``logits``: bool or integers holding 0/1 (hard labels),
        or float32/float64 in [0, 1] (soft targets; exact 0 and 1 give the
        hard-label result); or integer class indices with the shape of ``logits``
        without ``axis``: element ``k`` along ``axis`` is positive when it equals
        the target, a target equal to the number of classes ``C`` means
        background, ``ignore_index`` ignores the whole position.
    alpha : float or None, default 0.25
        Weight of positives in [0, 1]; negatives get ``1 - alpha``. ``None`` (or
        any negative value, as in torchvision) disables weighting.
    gamma : float, default 2.0
        Focusing parameter, finite and >= 0; 0 gives weighted cross-entropy.
    reduction : {'none', 'mean', 'sum'}, default 'none'
        'none' returns the per-element loss (shape of ``logits``); 'mean' and
        'sum' return a scalar of the logits' dtype, accumulated in double. The
        mean counts every element (for class-index targets: every element of a
        non-ignored position).
    normalizer : float, optional
        Every element's loss is divided by it (> 0) before the reduction, e.g.
        the number of positive anchors in detection.
    axis : int, default -1
        The class axis, used only with class-index targets.
    ignore_index : int, default -100
        Class-index targets equal to it are ignored.
    out : ndarray, optional
        Output for reduction 'none': exact dtype and shape, C-contiguous,
        writeable, not overlapping an input.

    Returns
    -------
    ndarray or scalar
        The loss.

    Raises
    ------
    ValueError
        Shape mismatch, unknown reduction, gamma < 0 or not finite, alpha > 1 or
        NaN, normalizer <= 0, a target outside its domain (the message names the
        first offending position and value), or a bad ``out``.
    TypeError
        Unsupported dtypes.

    Notes
    -----
    C-contiguous inputs are used in place; other layouts are copied once. The
    GIL is released while the kernel runs. Reductions are bitwise identical for
    any thread count.
    """
    r = (_FAST or _fast())(
        1, logits, targets, alpha, gamma, reduction, normalizer, axis, ignore_index, out, None)
    if r is not None:
        return r
    loss, _ = _run("sigmoid_focal_loss", logits, targets, alpha, gamma, reduction, normalizer,
                   axis, ignore_index, True, False, out, None, None)
    return loss


def sigmoid_focal_loss_grad(logits, targets, alpha=0.25, gamma=2.0, reduction="none", *,
                            normalizer=None, axis=-1, ignore_index=-100, grad_output=None,
                            out=None):
    """Gradient of :func:`sigmoid_focal_loss` with respect to the logits.

    Parameters are those of :func:`sigmoid_focal_loss`, plus:

    Parameters
    ----------
    grad_output : array_like, optional
        With reduction 'none' only: the upstream gradient (shape of ``logits``);
        the result is the vector-Jacobian product ``d(sum(g * FL)) / dz``.
    out : ndarray, optional
        Where to write the gradient (exact dtype and shape, C-contiguous,
        writeable). It may be the ``logits`` array itself (in place); any other
        overlap with an input is rejected.
        Targets are validated in the same pass that writes the gradient, so
        after an error (a bad target) its contents are unspecified; when it is
        the ``logits`` array, the targets are checked before anything is
        written, and a failed call leaves the logits unchanged.

    Returns
    -------
    ndarray
        ``d(reduced loss) / d(logits)``, with the logits' shape and dtype.
    """
    if grad_output is None:
        r = (_FAST or _fast())(
            2, logits, targets, alpha, gamma, reduction, normalizer, axis, ignore_index, None, out)
        if r is not None:
            return r
    _, grad = _run("sigmoid_focal_loss_grad", logits, targets, alpha, gamma, reduction,
                   normalizer, axis, ignore_index, False, True, None, out, grad_output)
    return grad


def sigmoid_focal_loss_with_grad(logits, targets, alpha=0.25, gamma=2.0, reduction="mean", *,
                                 normalizer=None, axis=-1, ignore_index=-100, out=None,
                                 grad_out=None):
    """Loss and gradient of :func:`sigmoid_focal_loss` in one pass over memory.

    Parameters are those of :func:`sigmoid_focal_loss` (note the default
    reduction 'mean'), plus ``grad_out``, an optional output for the gradient
    (it may be the ``logits`` array itself; a call that fails on a bad target
    then writes neither output).

    Returns
    -------
    loss : ndarray or scalar
        As :func:`sigmoid_focal_loss`.
    grad : ndarray
        As :func:`sigmoid_focal_loss_grad`.
    """
    r = (_FAST or _fast())(
        3, logits, targets, alpha, gamma, reduction, normalizer, axis, ignore_index, out, grad_out)
    if r is not None:
        return r
    return _run("sigmoid_focal_loss_with_grad", logits, targets, alpha, gamma, reduction,
                normalizer, axis, ignore_index, True, True, out, grad_out, None)

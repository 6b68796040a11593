"""Policy shared by every public function: argument checks, dtype rules, layouts.

The compiled kernels trust what they are given; everything a user can get
wrong is checked here, once, with a message that names the argument.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

_DBL_MIN = float(np.finfo(np.float64).tiny)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

REDUCTIONS = ("none", "mean", "sum")
REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}
VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Integer label dtypes the kernels read in place; other integer dtypes are
# converted to int64 (one copy of the labels).
LABEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.int32), np.dtype(np.int64))


def check_logits(logits, fname):
    """Return `logits` as an ndarray of float32/float64 (no copy when possible)."""
    arr = logits if type(logits) is np.ndarray else np.asarray(logits)
    dt = arr.dtype
    if dt.char in "fd" and not dt.isnative:  # byte-swapped data: one converted copy
        arr = arr.astype(dt.newbyteorder("="))
    elif dt.char not in "fd":
        raise TypeError(
            f"{fname}: logits has unsupported dtype {arr.dtype}; supported dtypes are "
            "float32 and float64"
        )
    return arr


def contiguous(arr):
    """Return a C-contiguous version of arr (a copy only when it is not)."""
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def check_reduction(reduction, fname):
    code = REDUCTION_CODES.get(reduction) if type(reduction) is str else None
    if code is not None:
        return code
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"{fname}: reduction must be one of {', '.join(repr(r) for r in REDUCTIONS)}, "
            f"got {reduction!r}"
        )
    return REDUCTION_CODES[reduction]


def _real(value, name, fname):
    t = type(value)
    if t is not float and t is not int:  # the common cases skip the ABC machinery
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            if not (isinstance(value, np.ndarray) and value.ndim == 0
                    and value.dtype.kind in "fiu"):
                raise TypeError(
                    f"{fname}: {name} must be a real number, got {type(value).__name__}"
                )
    try:
        return float(value)
    except OverflowError:  # a Python int beyond the double range
        return math.inf if value > 0 else -math.inf


def check_gamma(gamma, fname):
    g = gamma if type(gamma) is float else _real(gamma, "gamma", fname)
    if not (math.isfinite(g) and g >= 0.0):
        raise ValueError(f"{fname}: gamma must be finite and >= 0, got {gamma!r}")
    return g


def check_normalizer(normalizer, fname):
    if normalizer is None:
        return 1.0
    v = _real(normalizer, "normalizer", fname)
    # The kernels multiply by 1/normalizer: it must not overflow.
    if not (math.isfinite(v) and v >= _DBL_MIN):
        raise ValueError(
            f"{fname}: normalizer must be finite and >= {_DBL_MIN:.4g} (the smallest normal "
            f"double), got {normalizer!r}"
        )
    return v


def check_axis(axis, ndim, fname):
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"{fname}: axis must be an integer, got {type(axis).__name__}") from None
    if ndim == 0:
        raise ValueError(f"{fname}: logits must have at least one dimension (the class axis)")
    if not -ndim <= ax < ndim:
        raise ValueError(f"{fname}: axis {axis} is out of bounds for logits with {ndim} dimensions")
    return ax % ndim


def check_index(value, name, fname):
    try:
        v = value if type(value) is int else operator.index(value)
    except TypeError:
        raise TypeError(f"{fname}: {name} must be an integer, got {type(value).__name__}") from None
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise ValueError(f"{fname}: {name} must fit in a 64-bit signed integer, got {v}")
    return v


def layout(shape, axis):
    """(outer, classes, inner) of `shape` around the class axis."""
    outer = math.prod(shape[:axis])
    return outer, shape[axis], math.prod(shape[axis + 1 :])


def check_labels(targets, fname):
    """Integer class-index labels in a dtype the kernels read (a copy if needed)."""
    if targets.dtype in LABEL_DTYPES:
        return contiguous(targets)
    if targets.dtype.kind == "u" and targets.dtype.itemsize == 8 and targets.size:
        big = np.flatnonzero(targets.ravel() > np.iinfo(np.int64).max)
        if big.size:
            flat = int(big[0])
            raise ValueError(
                f"{fname}: targets{position(targets.shape, flat)} = "
                f"{int(targets.reshape(-1)[flat])} is not a valid class index"
            )
    return np.ascontiguousarray(targets, dtype=np.int64)


def check_out(out, name, shape, dtype, fname):
    """Validate a caller-provided output array.

    It must be an ndarray of exactly `dtype` and `shape`, C-contiguous and
    writeable. Overlap with the inputs is checked by the compiled module (a
    bounds test per pair, before any write) and reported as OVERLAP.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fname}: {name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{fname}: {name} has dtype {out.dtype}, expected {dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{fname}: {name} has shape {out.shape}, expected {tuple(shape)}")
    flags = out.flags
    if not flags.c_contiguous:
        raise ValueError(f"{fname}: {name} must be C-contiguous")
    if not flags.writeable:
        raise ValueError(f"{fname}: {name} is read-only")
    return out


# Kernel status of an output overlapping an input (cpp/bindings/registry.hpp);
# the index says which output and what it overlaps.
OVERLAP = 100


def overlap_message(fname, index, grad_name):
    """The error for status OVERLAP: 0 loss out / input, 1 grad / part of the logits,
    2 grad / another input or the loss output."""
    name, what = (("out", "an input"), (grad_name, "logits"), (grad_name, "an input"))[index]
    return (
        f"{fname}: {name} overlaps {what}; only the gradient may be written in place "
        "over exactly the logits array"
    )


def check_grad_output(grad_output, shape, dtype, reduction, fname):
    """The upstream gradient for reduction 'none', in the logits' dtype."""
    if grad_output is None:
        return None
    if reduction != "none":
        raise ValueError(
            f"{fname}: grad_output is only accepted with reduction='none' "
            f"(got reduction={reduction!r}); scale the result instead"
        )
    g = np.asarray(grad_output)
    if g.dtype.kind not in "fiu" or g.dtype.kind == "b":
        raise TypeError(f"{fname}: grad_output has unsupported dtype {g.dtype}")
    if g.shape != tuple(shape):
        raise ValueError(
            f"{fname}: grad_output has shape {g.shape}, expected {tuple(shape)} "
            "(the shape of the unreduced loss)"
        )
    if g.dtype != dtype:
        g = g.astype(dtype)
    return contiguous(g)


def position(shape, flat_index):
    """Human-readable position of a flat index in an array of `shape`."""
    if len(shape) == 0:
        return "[()]"
    idx = np.unravel_index(int(flat_index), shape)
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def to_value_dtype(targets, dtype, fname):
    """Float targets in the logits' dtype, range-checked before any rounding.

    A conversion (e.g. float64 targets with float32 logits) could round a value
    just outside [0, 1] onto it, so such targets are checked here first.
    """
    if targets.dtype == dtype:
        return contiguous(targets)
    if targets.dtype.kind == "f":
        bad = ~((targets >= 0) & (targets <= 1))
        if bad.any():
            flat = int(np.flatnonzero(bad.ravel())[0])
            raise ValueError(
                f"{fname}: targets{position(targets.shape, flat)} = "
                f"{targets.reshape(-1)[flat]} is outside [0, 1]"
            )
    return np.ascontiguousarray(targets, dtype=dtype)


_FLT_MAX = float(np.finfo(np.float32).max)


def scalar_result(dtype, value):
    """The reduced loss as a NumPy scalar of the logits' dtype (inf if it overflows)."""
    if dtype.itemsize == 8 or -_FLT_MAX <= value <= _FLT_MAX or value != value:
        return dtype.type(value)  # cannot overflow: skip the errstate context (~1 us)
    with np.errstate(over="ignore"):
        return dtype.type(value)


def native(arr):
    """`arr` in native byte order (a converted copy only for byte-swapped data)."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))

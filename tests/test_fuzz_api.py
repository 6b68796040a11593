"""Hostile-input fuzzing of the whole public API (GitHub issue 6).

Every call of the six public functions, with arguments drawn from a pool of
hostile dtypes, shapes, strides, values, parameters and output arrays, must
either

* return what the pure-Python oracle (``focal_native.reference``) returns for
  the same effective inputs (within the suite's tolerances; NaN positions and
  infinities must match exactly), with the documented result type, dtype and
  shape, writing into ``out`` / ``grad_out`` when given; or
* raise ``ValueError`` or ``TypeError`` with a non-empty message;

never crash, never raise anything else, and never modify an input (every array
argument is compared byte for byte with a copy taken before the call; the only
exception is ``logits`` passed as its own gradient output, which is documented).

The native layer may be stricter than the oracle (it rejects float16 or integer
logits, strings as numbers, ...), never more lenient: whenever it returns a
result the oracle must return one too.

Case counts are fixed (``max_examples``; ``FOCAL_NATIVE_FUZZ_SCALE=N``
multiplies them) and printed in the terminal summary ("reliability figures").
Under CI (``CI=true``) the runs are derandomized so that a red build always
replays the same cases; locally each run explores new ones and Hypothesis'
database replays earlier failures.
"""

from __future__ import annotations

import collections
import fractions
import math
import os

import focal_native as fn
import focal_testing as ft
import numpy as np
import pytest
from focal_native import reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

IN_CI = os.environ.get("CI", "").lower() == "true"

# FOCAL_NATIVE_FUZZ_SCALE=10 runs ten times as many cases (a longer local hunt).
_SCALE = max(1, int(os.environ.get("FOCAL_NATIVE_FUZZ_SCALE", "1")))
MAX_EXAMPLES = {k: v * _SCALE for k, v in {"sigmoid": 700, "softmax": 700, "outputs": 400}.items()}


def _settings(n):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=IN_CI,
        database=None if IN_CI else settings.default.database,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
    )


# --------------------------------------------------------------------------
# Figures printed at the end of the run
# --------------------------------------------------------------------------


class _Figures:
    def __init__(self):
        self.lines = []

    def pytest_terminal_summary(self, terminalreporter):
        if self.lines:
            terminalreporter.section("reliability figures")
            for line in self.lines:
                terminalreporter.write_line(line)


def report(config, line):
    """Add a line to the "reliability figures" section of the terminal summary."""
    plugin = config.pluginmanager.get_plugin("focal-native-reliability-figures")
    if plugin is None:
        plugin = _Figures()
        config.pluginmanager.register(plugin, "focal-native-reliability-figures")
    plugin.lines.append(line)


# --------------------------------------------------------------------------
# Pools of hostile things
# --------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")

VALUE_POOL = [
    0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 17.0, -30.0, 88.0, -104.0, 700.0, -745.0,
    1e-3, -1e-7, 5e-324, -5e-324, 1e-310, 1e-40, -1e-45, 1.2e-38, 2.2e-308,
    3.4e38, -3.4e38, 1e300, -1e308, 1.7976931348623157e308,
    NAN, INF, -INF,
]
UNIT_POOL = [0.0, 1.0, 0.5, 0.25, 1e-300, 5e-324, 1 - 2**-53, 1 - 2**-24, 1e-8, 0.999, -0.0]
BAD_UNIT_POOL = [NAN, -1e-300, -0.5, 1.0 + 2**-52, 1.5, INF, -INF, 2.0]

FLOAT_DTYPES = [np.float32, np.float64]
HOSTILE_VALUE_DTYPES = [np.float16, np.complex64, np.complex128, object, "U6", np.bool_, np.int8,
                        np.int64, np.uint64, np.longdouble, "M8[s]"]
INT_DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
              np.uint64]
LABEL_DTYPES = [np.uint8, np.int32, np.int64, np.int8, np.int16, np.uint16, np.uint32, np.uint64]

HUGE_INT = 10**400  # a Python int too large for a float


def _huge_int_ok():
    """Whether float parameters handle HUGE_INT (see test_huge_python_int_parameters)."""
    try:
        fn.sigmoid_focal_loss(np.zeros(1), np.zeros(1), gamma=-HUGE_INT)
    except ValueError:
        return True
    except Exception:
        return False
    return False


# While HUGE_INT raises OverflowError (a known bug, xfail below) it stays out of the pools.
HUGE = [HUGE_INT, -HUGE_INT] if _huge_int_ok() else []


def _bool_dense_layout_ok():
    """Whether softmax takes bool dense targets in any layout (see test_bool_dense_targets)."""
    z = np.zeros((3, 2))
    try:
        fn.softmax_focal_loss(z, np.asfortranarray(np.eye(3, 2, dtype=bool)))
    except ValueError:
        return False
    return True


BOOL_DENSE_LAYOUT_OK = _bool_dense_layout_ok()

# Errors not raised by focal_native's own checks (they all start with "<function>: ").
FOREIGN_ERRORS = (
    "setting an array element with a sequence",  # np.asarray of a ragged nested list
)

# Parameter pools: (valid values, hostile values); a hostile one is drawn 8% of the time.
GAMMA_POOL = ([0.0, 0.5, 1.0, 2.0, 2.5, 5.0, np.float32(2.0), np.float16(1.0), np.array(3.0),
               fractions.Fraction(3, 2), 1, np.int64(2), 1e-300],
              [NAN, INF, -INF, -1.0, -1e-300, "2", None, 1j, True, [2.0], np.array([2.0]),
               *HUGE])
# Normalizers below the smallest normal double are rejected (their reciprocal,
# which the kernels multiply by, would overflow).
NORMALIZER_POOL = ([None, None, 1.0, 0.5, 7.0, 3, 1e-300, 1e300, 2.2250738585072014e-308],
                   [0.0, -1.0, NAN, INF, -INF, "1", True, 1j, [1.0], 5e-324, 1e-310,
                    *HUGE[:1]])
REDUCTION_POOL = (["none", "mean", "sum", np.str_("sum")],
                  ["avg", "Mean", "", None, 1, b"sum", "none "])
SIGMOID_ALPHA_POOL = ([0.25, None, 0.0, 1.0, 0.5, -1.0, -INF, np.float32(0.75), np.array(0.5),
                       1e-300, 5e-324],
                      [NAN, 1.5, INF, 1 + 2**-52, "0.25", True, 1j, [0.25], np.array([0.25]),
                       *HUGE[:1]])
SOFTMAX_SCALAR_ALPHA_POOL = ([None, 1.0, 0.0, 2.5, 0.25, np.float64(3.0), np.array(0.5), 2],
                             [-1.0, -1e-300, NAN, INF, "1", True, 1j, {}, object(),
                              *HUGE[:1]])
SMOOTHING_POOL = ([0.0, 0.0, 0.1, 0.5, 0.999, np.float32(0.2), np.array(0.3), 1e-300,
                   5e-324],
                  [1.0, 1.5, -0.1, -1e-300, NAN, INF, "0.1", True, None, *HUGE[:1]])
IGNORE_POOL_FIXED = [-100, -1, 0, 1, 255, 2**31, 2**63 - 1, -(2**63), np.int8(-1), np.uint8(3),
                     1.5, None, "0", np.float64(0.0), 2**63, -(2**63) - 1, 10**30]


# A roughly uniform draw in [0, 1): Hypothesis' own floats favour 0 and the ends.
# Rare (hostile) branches are taken for values near 1, so that Hypothesis' simplest
# draw (0) is the benign one and shrinking leads towards valid arguments.
UNIFORM = st.sampled_from(range(100)).map(lambda i: i / 100)


def _from_pool(pool):
    """sampled_from for pools holding unhashable or NaN entries (by index)."""
    return st.integers(0, len(pool) - 1).map(lambda i: pool[i])


@st.composite
def param(draw, pools, hostile=0.08):
    valid, bad = pools
    return draw(_from_pool(bad if draw(UNIFORM) >= 1 - hostile else valid))


def _cast(values, dtype):
    """float64 values -> array of `dtype`, silently (NaN -> int is fine here)."""
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind in "iub":
            a = np.nan_to_num(a, nan=0.0, posinf=1e30, neginf=-1e30)
            a = np.clip(a, -1e18, 1e18)
        return a.astype(dtype)


@st.composite
def shapes(draw, min_dims=0, max_dims=3, max_side=4, max_size=40):
    nd = draw(st.integers(min_dims, max_dims))
    sides = [2, 3, 1, 4, 2, 3, 1, 0][: 2 * max_side]
    shape = tuple(draw(st.sampled_from(sides)) for _ in range(nd))
    if math.prod(shape) > max_size:
        shape = tuple(min(s, 2) for s in shape)
    return shape


@st.composite
def float_values(draw, n, pool=VALUE_POOL, lo=-60.0, hi=60.0, hostile=0.3):
    out = []
    for _ in range(n):
        if draw(UNIFORM) >= 1 - hostile:
            out.append(draw(_from_pool(pool)))
        else:
            out.append(draw(st.floats(lo, hi, allow_nan=False)))
    return out


@st.composite
def unit_values(draw, n):
    """Soft / dense targets in [0, 1], and sometimes one value outside."""
    vals = draw(float_values(n, pool=UNIT_POOL, lo=0.0, hi=1.0, hostile=0.3))
    if n and draw(UNIFORM) >= 1 - 0.25:
        vals[draw(st.integers(0, n - 1))] = draw(_from_pool(BAD_UNIT_POOL))
    return vals


@st.composite
def layout(draw, arr, allow_list=True):
    """The same values with another memory layout (or as nested lists)."""
    kinds = ["c", "c", "c", "f", "rev", "strided", "bcast", "readonly"]
    if allow_list:
        kinds.append("list")
    kind = draw(st.sampled_from(kinds))
    if arr.ndim == 0:
        if kind == "list" and arr.dtype.kind in "fiub":
            return arr.item()
        return arr if kind != "readonly" else _readonly(arr.copy())
    if kind == "c":
        return np.ascontiguousarray(arr)
    if kind == "f":
        return np.asfortranarray(arr)
    if kind == "rev":
        ax = draw(st.integers(0, arr.ndim - 1))
        base = np.flip(arr, ax).copy()
        return np.flip(base, ax)
    if kind == "strided":
        ax = draw(st.integers(0, arr.ndim - 1))
        shape = list(arr.shape)
        shape[ax] *= 2
        base = np.zeros(shape, dtype=arr.dtype)
        sl = [slice(None)] * arr.ndim
        sl[ax] = slice(None, None, 2)
        base[tuple(sl)] = arr
        return base[tuple(sl)]
    if kind == "bcast":
        # Zero-stride along one axis: every slice equals the first (read-only).
        ax = draw(st.integers(0, arr.ndim - 1))
        if arr.shape[ax] == 0:
            return arr
        sl = [slice(None)] * arr.ndim
        sl[ax] = slice(0, 1)
        return np.broadcast_to(arr[tuple(sl)], arr.shape)
    if kind == "readonly":
        return _readonly(arr.copy())
    if kind == "list" and arr.dtype.kind in "fiub":
        return arr.tolist()
    return arr


def _readonly(a):
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------
# Case builders
# --------------------------------------------------------------------------


@st.composite
def logits_arrays(draw, family):
    """(array as drawn in its dtype, value passed to the function)."""
    min_dims = 1 if family == "softmax" and draw(UNIFORM) < 0.95 else 0
    shape = draw(shapes(min_dims=min_dims))
    n = math.prod(shape)
    if draw(UNIFORM) < 0.9:
        dtype = draw(st.sampled_from(FLOAT_DTYPES))
    else:
        dtype = draw(st.sampled_from(HOSTILE_VALUE_DTYPES))
    vals = draw(float_values(n))
    if np.dtype(dtype).kind == "M":
        arr = np.zeros(shape, dtype=dtype)
    else:
        arr = _cast(vals, dtype).reshape(shape)
    return arr, draw(layout(arr))


@st.composite
def label_values(draw, n, classes, ignore, family):
    """Class indices: valid, some ignored, and sometimes one hostile value."""
    upper = classes + 1 if family == "sigmoid" else classes  # sigmoid: C is background
    vals = []
    for _ in range(n):
        if isinstance(ignore, (int, np.integer)) and draw(UNIFORM) >= 1 - 0.1:
            vals.append(int(ignore))
        elif upper > 0:
            vals.append(draw(st.integers(0, upper - 1)))
        else:
            vals.append(0)
    if n and draw(UNIFORM) >= 1 - 0.3:
        vals[draw(st.integers(0, n - 1))] = draw(st.sampled_from(
            [-1, classes, classes + 1, 255, -100, 2**31, 2**63 - 1, -(2**63), 2**64 - 1]))
    return vals


def _int_array(vals, dtype, shape):
    """Integers into `dtype` with C-style wrap-around (so -1 becomes 255 for uint8)."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind != "b" else None
    if info is None:
        return np.array([bool(v) for v in vals], dtype=bool).reshape(shape)
    bits = 8 * np.dtype(dtype).itemsize
    wrapped = []
    for v in vals:
        v = int(v) % (1 << bits)
        if info.min < 0 and v >= (1 << (bits - 1)):
            v -= 1 << bits
        wrapped.append(v)
    return np.array(wrapped, dtype=dtype).reshape(shape)


@st.composite
def sigmoid_targets(draw, z, axis, ignore):
    shape = z.shape
    mode = draw(st.sampled_from(["hard", "hard", "soft", "soft", "labels", "labels", "labels",
                                 "mismatch", "hostile"]))
    if mode == "hard":
        dtype = draw(st.sampled_from(INT_DTYPES))
        vals = [draw(st.integers(0, 1)) for _ in range(z.size)]
        if z.size and draw(UNIFORM) >= 1 - 0.3:
            vals[draw(st.integers(0, z.size - 1))] = draw(st.sampled_from([2, -1, 255, 2**63]))
        t = _int_array(vals, dtype, shape)
    elif mode == "soft":
        dtype = draw(st.sampled_from([np.float32, np.float64, np.float16]))
        vals = draw(unit_values(z.size))
        t = _cast(vals, dtype).reshape(shape)
    elif mode == "labels" and z.ndim >= 1:
        ax = axis if isinstance(axis, int) and -z.ndim <= axis < z.ndim else -1
        ax %= z.ndim
        pos_shape = shape[:ax] + shape[ax + 1:]
        dtype = draw(st.sampled_from(LABEL_DTYPES))
        vals = draw(label_values(math.prod(pos_shape), shape[ax], ignore, "sigmoid"))
        t = _int_array(vals, dtype, pos_shape)
    elif mode == "hostile":
        dtype = draw(st.sampled_from([np.complex64, object, "U3", "M8[s]", "V8"]))
        t = np.zeros(shape, dtype=dtype)
    else:
        t = _int_array([0] * math.prod(s2 := draw(shapes())), np.int64, s2)
    return draw(layout(t))


@st.composite
def softmax_targets(draw, z, axis, ignore):
    shape = z.shape
    ok_axis = isinstance(axis, (int, np.integer)) and z.ndim >= 1 and -z.ndim <= axis < z.ndim
    ax = int(axis) % z.ndim if ok_axis else (z.ndim - 1 if z.ndim else 0)
    pos_shape = shape[:ax] + shape[ax + 1:] if z.ndim else ()
    classes = shape[ax] if z.ndim else 0
    mode = draw(st.sampled_from(["labels", "labels", "labels", "dense", "dense", "onehot",
                                 "mismatch", "hostile"]))
    if mode == "labels":
        dtype = draw(st.sampled_from(LABEL_DTYPES))
        vals = draw(label_values(math.prod(pos_shape), classes, ignore, "softmax"))
        t = _int_array(vals, dtype, pos_shape)
    elif mode in ("dense", "onehot"):
        if mode == "onehot" and classes > 0:
            dtype = draw(st.sampled_from([np.float32, np.float64, np.bool_]))
            idx = draw(st.lists(st.integers(0, classes - 1), min_size=math.prod(pos_shape),
                                max_size=math.prod(pos_shape)))
            eye = np.eye(classes, dtype=dtype)[np.asarray(idx, dtype=np.int64)]
            t = np.moveaxis(eye.reshape(pos_shape + (classes,)), -1, ax)
        else:
            dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.bool_]))
            vals = draw(unit_values(z.size))
            t = _cast(vals, dtype).reshape(shape)
    elif mode == "hostile":
        dtype = draw(st.sampled_from([np.complex128, object, "U3", "M8[s]"]))
        t = np.zeros(pos_shape if draw(st.booleans()) else shape, dtype=dtype)
    else:
        s2 = draw(shapes())
        t = np.zeros(s2, dtype=draw(st.sampled_from([np.int64, np.float64])))
    return draw(layout(t.copy(order="C")))


@st.composite
def axis_values(draw, ndim):
    if draw(UNIFORM) < 0.85 and ndim >= 1:
        return draw(st.integers(-ndim, ndim - 1))
    return draw(_from_pool([ndim, -ndim - 1, 10**30, 1.0, "0", None, np.int64(-1), True]))


@st.composite
def ignore_values(draw, classes):
    if draw(UNIFORM) < 0.6:
        return -100
    return draw(_from_pool(IGNORE_POOL_FIXED + [classes, max(classes - 1, 0)]))


@st.composite
def softmax_alpha(draw, classes):
    r = draw(UNIFORM)
    if r < 0.55:
        return draw(param(SOFTMAX_SCALAR_ALPHA_POOL))
    if r < 0.85:
        vals = draw(st.lists(st.floats(0, 3), min_size=classes, max_size=classes))
        kind = draw(st.sampled_from(["list", "f64", "f32", "int", "tuple", "strided"]))
        if kind == "list":
            return vals
        if kind == "tuple":
            return tuple(vals)
        if kind == "int":
            return np.round(np.asarray(vals)).astype(np.int32)
        if kind == "strided":
            return np.repeat(np.asarray(vals), 2)[::2]
        return np.asarray(vals, dtype=np.float64 if kind == "f64" else np.float32)
    bad = draw(st.sampled_from(["short", "long", "nan", "neg", "inf", "2d", "str", "bool",
                                "complex", "obj"]))
    base = [1.0] * classes
    if bad == "short":
        return base[:-1] if classes else [1.0]
    if bad == "long":
        return base + [1.0]
    if bad in ("nan", "neg", "inf"):
        v = {"nan": NAN, "neg": -0.5, "inf": INF}[bad]
        return base[:-1] + [v] if classes else [v]
    if bad == "2d":
        return [base]
    if bad == "str":
        return ["a"] * max(classes, 1)
    if bad == "bool":
        return np.ones(classes, dtype=bool)
    if bad == "complex":
        return np.ones(classes, dtype=np.complex128)
    return np.array(base + [None], dtype=object)[:classes]


@st.composite
def grad_output_values(draw, shape, dtype):
    r = draw(UNIFORM)
    if r < 0.55:
        return None
    if r < 0.85:
        gdt = draw(st.sampled_from([dtype, dtype, np.float64, np.float32, np.int32, np.float16,
                                    np.uint8]))
        vals = draw(float_values(math.prod(shape), lo=-3, hi=3, hostile=0.15))
        g = _cast(vals, gdt).reshape(shape)
        return draw(layout(g))
    bad = draw(st.sampled_from(["shape", "bool", "complex", "str", "obj"]))
    if bad == "shape":
        return np.ones(tuple(s + 1 for s in shape) or (2,), dtype=dtype)
    return np.zeros(shape, dtype={"bool": bool, "complex": np.complex64, "str": "U2",
                                  "obj": object}[bad])


@st.composite
def out_array(draw, shape, dtype, logits, targets, grad_output, is_grad):
    """An output argument: usually absent or valid, sometimes hostile."""
    r = draw(UNIFORM)
    if r < 0.5:
        return None, "none"
    if r < 0.75:
        return np.full(shape, 7.0, dtype=dtype), "fresh"
    choices = ["wrong_dtype", "wrong_shape", "noncontig", "readonly", "list", "logits",
               "logits_view", "targets", "grad_output", "partial_overlap"]
    if is_grad:
        choices += ["logits", "logits", "logits"]  # in place: documented and allowed
    kind = draw(st.sampled_from(choices))
    if kind == "wrong_dtype":
        other = np.float64 if np.dtype(dtype) == np.float32 else np.float32
        return np.zeros(shape, dtype=draw(st.sampled_from([other, np.int64, np.float16]))), kind
    if kind == "wrong_shape":
        return np.zeros(tuple(shape) + (1,), dtype=dtype), kind
    if kind == "noncontig":
        if not shape:
            return np.zeros((2,), dtype=dtype)[:0], kind
        base = np.zeros(tuple(shape[:-1]) + (2 * shape[-1],), dtype=dtype)
        return base[..., ::2], kind
    if kind == "readonly":
        return _readonly(np.zeros(shape, dtype=dtype)), kind
    if kind == "list":
        return np.zeros(shape, dtype=dtype).tolist(), kind
    if kind == "logits":
        return logits, kind
    if kind == "logits_view" and isinstance(logits, np.ndarray):
        return logits.view(), kind
    if kind == "targets":
        return targets, kind
    if kind == "grad_output":
        return grad_output, kind
    if kind == "partial_overlap" and isinstance(logits, np.ndarray) and logits.size >= 2:
        buf = logits.reshape(-1) if logits.flags.c_contiguous else None
        if buf is not None and buf.dtype == np.dtype(dtype) and math.prod(shape) >= 1:
            n = math.prod(shape)
            if n <= buf.size - 1:
                return buf[1:1 + n].reshape(shape), kind
    return None, "none"


@st.composite
def sigmoid_cases(draw):
    z_arr, logits = draw(logits_arrays("sigmoid"))
    variant = draw(st.sampled_from(["loss", "grad", "with_grad"]))
    axis = draw(axis_values(z_arr.ndim))
    classes = z_arr.shape[axis] if isinstance(axis, int) and z_arr.ndim and \
        -z_arr.ndim <= axis < z_arr.ndim else 1
    ignore = draw(ignore_values(classes))
    targets = draw(sigmoid_targets(z_arr, axis, ignore))
    kw = {
        "alpha": draw(param(SIGMOID_ALPHA_POOL)),
        "gamma": draw(param(GAMMA_POOL)),
        "reduction": draw(param(REDUCTION_POOL)),
        "normalizer": draw(param(NORMALIZER_POOL)),
        "axis": axis,
        "ignore_index": ignore,
    }
    if draw(UNIFORM) < 0.4:  # mostly the defaults for the scalars
        kw = {k: v for k, v in kw.items()
              if draw(st.booleans()) or k in ("reduction", "axis", "ignore_index")}
    return _add_outputs(draw, "sigmoid", variant, z_arr, logits, targets, kw, z_arr.shape)


@st.composite
def softmax_cases(draw):
    z_arr, logits = draw(logits_arrays("softmax"))
    variant = draw(st.sampled_from(["loss", "grad", "with_grad"]))
    axis = draw(axis_values(z_arr.ndim))
    ok_axis = isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) \
        and z_arr.ndim >= 1 and -z_arr.ndim <= axis < z_arr.ndim
    classes = z_arr.shape[axis] if ok_axis else 1
    ignore = draw(ignore_values(classes))
    targets = draw(softmax_targets(z_arr, axis, ignore))
    kw = {
        "alpha": draw(softmax_alpha(classes)),
        "gamma": draw(param(GAMMA_POOL)),
        "reduction": draw(param(REDUCTION_POOL)),
        "normalizer": draw(param(NORMALIZER_POOL)),
        "axis": axis,
        "ignore_index": ignore,
        "label_smoothing": draw(param(SMOOTHING_POOL)),
    }
    if draw(UNIFORM) < 0.4:
        kw = {k: v for k, v in kw.items()
              if draw(st.booleans()) or k in ("reduction", "axis", "ignore_index")}
    pos_shape = z_arr.shape[:-1]
    if ok_axis:
        a = axis % z_arr.ndim
        pos_shape = z_arr.shape[:a] + z_arr.shape[a + 1:]
    return _add_outputs(draw, "softmax", variant, z_arr, logits, targets, kw, pos_shape)


def _add_outputs(draw, family, variant, z_arr, logits, targets, kw, loss_shape):
    dtype = z_arr.dtype if z_arr.dtype in ft.DTYPES else np.dtype(np.float64)
    if variant == "grad":
        kw["grad_output"] = draw(grad_output_values(loss_shape, dtype))
        out, kind = draw(out_array(z_arr.shape, dtype, logits, targets, kw["grad_output"], True))
        if out is not None:
            kw["out"] = out
    elif kw.get("reduction", "mean" if variant == "with_grad" else "none") == "none" or \
            draw(UNIFORM) >= 0.9:
        out, kind = draw(out_array(loss_shape, dtype, logits, targets, None, False))
        if out is not None:
            kw["out"] = out
        if variant == "with_grad":
            gout, gkind = draw(out_array(z_arr.shape, dtype, logits, targets, out, True))
            if gout is not None:
                kw["grad_out"] = gout
    return {"family": family, "variant": variant, "logits": logits, "targets": targets,
            "kw": kw}


@st.composite
def output_cases(draw):
    """Valid inputs, hostile outputs: in-place gradients, aliasing targets, overlaps."""
    family = draw(st.sampled_from(["sigmoid", "softmax"]))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    shape = draw(st.sampled_from([(5,), (3, 4), (2, 3, 2), (4, 1), (1, 6)]))
    variant = draw(st.sampled_from(["grad", "with_grad", "loss"]))
    alias = draw(st.sampled_from(["none", "targets_is_logits", "targets_view_of_logits"]))
    vals = draw(float_values(math.prod(shape), lo=0.0, hi=1.0, pool=UNIT_POOL, hostile=0.2))
    z = _cast(vals, dtype).reshape(shape)
    if alias == "targets_is_logits":
        t = z
    elif alias == "targets_view_of_logits":
        t = z.view()
    else:
        t = _cast(draw(float_values(math.prod(shape), lo=0.0, hi=1.0, pool=UNIT_POOL)),
                  dtype).reshape(shape)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    kw = {"reduction": draw(st.sampled_from(["none", "mean", "sum"]))}
    if family == "softmax":
        kw["axis"] = axis
        kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.1]))
    loss_shape = shape if family == "sigmoid" else shape[:axis % len(shape)] + shape[
        axis % len(shape) + 1:]
    return _add_outputs(draw, family, variant, z, z, t, kw, loss_shape)


# --------------------------------------------------------------------------
# Running one case
# --------------------------------------------------------------------------

FUNCS = {
    ("sigmoid", "loss"): (fn.sigmoid_focal_loss, ref.sigmoid_focal_loss),
    ("sigmoid", "grad"): (fn.sigmoid_focal_loss_grad, ref.sigmoid_focal_loss_grad),
    ("sigmoid", "with_grad"): (fn.sigmoid_focal_loss_with_grad, ref.sigmoid_focal_loss_with_grad),
    ("softmax", "loss"): (fn.softmax_focal_loss, ref.softmax_focal_loss),
    ("softmax", "grad"): (fn.softmax_focal_loss_grad, ref.softmax_focal_loss_grad),
    ("softmax", "with_grad"): (fn.softmax_focal_loss_with_grad, ref.softmax_focal_loss_with_grad),
}

OUTCOMES: dict = collections.defaultdict(collections.Counter)
CURRENT = ["sigmoid"]  # the fuzz test running, for OUTCOMES


def _snapshot(obj):
    """Bytes, dtype, shape and strides of every ndarray reachable in `obj`."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O":
            return ("O", obj.shape, obj.strides, [id(x) for x in obj.ravel().tolist()])
        return ("A", obj.dtype.str, obj.shape, obj.strides, np.array(obj, copy=True).tobytes())
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_snapshot(x) for x in obj])
    return ("V", id(obj))


def _bool_dense_noncontiguous(case):
    t = case["targets"]
    return (case["family"] == "softmax" and isinstance(t, np.ndarray) and t.dtype == bool
            and not t.flags.c_contiguous)


def run_case(case):
    """Call the native function; check the outcome as the module docstring says."""
    family, variant = case["family"], case["variant"]
    native, oracle = FUNCS[(family, variant)]
    logits, targets, kw = case["logits"], case["targets"], dict(case["kw"])
    out = kw.get("out")
    grad_out = kw.get("grad_out") if variant == "with_grad" else (
        kw.get("out") if variant == "grad" else None)
    inputs = {"logits": logits, "targets": targets, "alpha": kw.get("alpha"),
              "grad_output": kw.get("grad_output")}
    before = {k: _snapshot(v) for k, v in inputs.items()}
    logits_before = np.array(logits, copy=True) if isinstance(logits, np.ndarray) else logits
    targets_before = np.array(targets, copy=True) if isinstance(targets, np.ndarray) else targets
    outs_before = {k: _snapshot(kw[k]) for k in ("out", "grad_out") if k in kw}

    if not BOOL_DENSE_LAYOUT_OK and _bool_dense_noncontiguous(case):
        OUTCOMES[CURRENT[0]]["skipped (known bug: bool dense layout)"] += 1
        return
    try:
        result = native(logits, targets, **kw)
    except (ValueError, TypeError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} with an empty message"
        # Every error comes from the documented checks, which name the function: an
        # error from the compiled layer's own guards means the Python checks let
        # something through that the kernels cannot take.
        assert str(exc).startswith(native.__name__ + ": ") or any(
            f in str(exc) for f in FOREIGN_ERRORS), f"unexpected error message: {exc!r}"
        OUTCOMES[CURRENT[0]][type(exc).__name__] += 1
        # Nothing was modified, outputs included: validation happens before any write,
        # except for bad target values, found by the kernel while it writes (then only
        # the outputs may have been written: an in-place call checks its targets first,
        # so the logits, its output, are untouched too).
        for k, v in inputs.items():
            assert _snapshot(v) == before[k], f"{k} was modified by a call that raised {exc!r}"
        if "targets[" not in str(exc):
            for k, snap in outs_before.items():
                assert _snapshot(kw[k]) == snap, f"{k} was written by a call that raised {exc!r}"
        return
    OUTCOMES[CURRENT[0]]["returned"] += 1

    # Inputs untouched (except logits used as their own gradient output).
    for k, v in inputs.items():
        if isinstance(v, np.ndarray) and grad_out is not None and \
                isinstance(grad_out, np.ndarray) and np.may_share_memory(v, grad_out):
            continue
        assert _snapshot(v) == before[k], f"{k} was modified by the call"

    # It returned, so every argument was valid: the oracle must agree.
    z = np.asarray(logits_before)
    assert z.dtype in ft.DTYPES, f"returned for logits of dtype {z.dtype}"
    okw, t_eff = _oracle_arguments(family, variant, z, targets_before, kw)
    try:
        expected = oracle(z, t_eff, **okw)
    except (ValueError, TypeError) as exc:
        pytest.fail(f"native returned but the oracle raised {exc!r}")
    _check_result(family, variant, z, t_eff, okw, kw, result, expected, out, grad_out)


def _oracle_arguments(family, variant, z, targets, kw):
    """What the oracle must see: the inputs as the native layer converts them."""
    okw = {k: v for k, v in kw.items() if k not in ("out", "grad_out")}
    t = np.asarray(targets)
    if t.dtype.kind == "f" or (family == "softmax" and t.dtype.kind == "b"
                               and t.shape == z.shape):
        t = t.astype(z.dtype)  # float targets are converted to the logits' dtype
    if family == "softmax" and t.dtype.kind == "f" and t.shape == z.shape:
        eps = float(okw.get("label_smoothing", 0.0))
        if eps > 0.0 and z.size:
            # Dense targets are smoothed in the logits' dtype (one copy), then used as is.
            classes = z.shape[int(okw.get("axis", -1)) % z.ndim]
            t = np.clip((t * (1.0 - eps) + eps / classes).astype(z.dtype), 0.0, 1.0)
            okw["label_smoothing"] = 0.0
    go = okw.get("grad_output")
    if go is not None:
        okw["grad_output"] = np.asarray(go).astype(z.dtype)
    return okw, t


def _expected_as(dtype, value):
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(value, dtype=np.float64).astype(dtype)


def _grad_scale(family, z, t, okw):
    """Size of the terms whose difference is the gradient (None: no cancellation).

    Soft (sigmoid) and dense or smoothed (softmax) targets give gradients that
    are differences of larger terms; the rounding error is relative to those.
    """
    red = okw.get("reduction")
    gamma = float(okw.get("gamma", 2.0))
    norm = okw.get("normalizer")
    norm = 1.0 if norm is None else float(norm)
    go = okw.get("grad_output")
    z64 = z.astype(np.float64)
    with np.errstate(all="ignore"):
        if family == "sigmoid":
            if t.dtype.kind != "f":
                return None
            y = t.astype(np.float64)
            alpha = okw.get("alpha", 0.25)
            alpha = None if alpha is None or float(alpha) < 0 else float(alpha)
            e = np.exp(-np.abs(z64))
            p = np.where(z64 >= 0, 1 / (1 + e), e / (1 + e))
            q = np.where(z64 >= 0, e / (1 + e), 1 / (1 + e))
            ce = np.maximum(z64, 0) - y * z64 + np.log1p(e)
            u = p * (1 - y) + q * y
            a_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
            s = a_t * u**gamma * (gamma * p * q * ce / np.where(u > 0, u, 1) + p + y)
            count = z.size
        else:
            eps = float(okw.get("label_smoothing", 0.0))
            if t.shape != z.shape and eps == 0.0:
                return None
            ax = int(okw.get("axis", -1)) % z.ndim
            classes = z.shape[ax]
            if classes == 0 or z.size == 0:
                return None
            alpha = okw.get("alpha")
            if alpha is None:
                avec = np.ones(classes)
            elif np.ndim(alpha) == 0:
                avec = np.full(classes, float(np.asarray(alpha)))
            else:
                avec = np.asarray(alpha, dtype=np.float64)
            shape_a = [1] * z.ndim
            shape_a[ax] = classes
            if t.shape == z.shape:
                y = t.astype(np.float64)
                count = math.prod(z.shape[:ax] + z.shape[ax + 1:])
            else:
                y = np.full(z.shape, eps / classes)
                count = 0
            row = np.sum(avec.reshape(shape_a) * np.abs(y), axis=ax, keepdims=True)
            s = np.broadcast_to((1.0 + gamma) * (row + np.max(avec, initial=0.0)), z.shape)
            if go is not None:
                go = np.expand_dims(np.asarray(go, dtype=np.float64), ax)
        if red == "mean":
            s = s / max(count, 1)
        s = s / norm
        if go is not None:
            s = s * np.abs(np.asarray(go, dtype=np.float64))
        return np.nan_to_num(s, nan=0.0, posinf=0.0) * 4.0


def _overflow_slack(actual, desired, dtype):
    """Accept +-inf where the exact result is within a factor 1e3 of overflowing.

    Values this close to the largest double may overflow in an intermediate
    product (e.g. alpha times a sum of terms before the weights are applied):
    a known and accepted limitation, reported with issue 6.
    """
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    near = np.isfinite(d) & (np.abs(d) > np.finfo(dtype).max / 1e3) & np.isinf(a) \
        & (np.sign(a) == np.sign(d))
    return np.where(near, a, d) if np.any(near) else d


def _check_result(family, variant, z, t, okw, kw, result, expected, out, grad_out):
    dtype = z.dtype
    red = kw.get("reduction")
    rtol = ft.RTOL[dtype] * 4  # a little slack for hostile magnitudes
    # The kernels run with flush-to-zero: an intermediate below the smallest normal
    # double (a subnormal alpha or label_smoothing times a factor of order 1, a
    # loss term of e**-745) counts as 0, before the division by the normalizer.
    norm = kw.get("normalizer")
    norm = 1.0 if norm is None else float(norm)
    atol = ft.ATOL[dtype] + 64 * float(np.finfo(np.float64).tiny) / norm
    if variant == "with_grad":
        loss, grad = result
        e_loss, e_grad = expected
    elif variant == "loss":
        loss, grad, e_loss, e_grad = result, None, expected, None
    else:
        loss, grad, e_loss, e_grad = None, result, None, expected
    if loss is not None and family == "sigmoid" and not np.all(np.isfinite(z)) \
            and np.issubdtype(np.asarray(t).dtype, np.floating):
        # Known limitation: a soft target whose focal weight u**gamma underflows
        # (e.g. y = 1e-308) at an infinite logit is 0 * inf. The oracle returns
        # NaN there, the kernels 0 ("a zero weight wins"); the exact value is
        # +inf. Only those elements (or a reduction over them) are exempt.
        nan_exp = np.isnan(np.asarray(e_loss, dtype=np.float64))
        if np.any(nan_exp):
            if red == "none":
                e_loss = np.where(nan_exp, np.asarray(loss, dtype=np.float64), e_loss)
            else:
                e_loss = np.float64(loss)
    if grad is not None and family == "sigmoid" and not np.all(np.isfinite(z)) \
            and np.issubdtype(np.asarray(t).dtype, np.floating):
        nan_exp = np.isnan(np.asarray(e_grad, dtype=np.float64)) & ~np.isfinite(z)
        if np.any(nan_exp):  # the same 0 * inf, in the gradient (see above)
            e_grad = np.where(nan_exp, np.asarray(grad, dtype=np.float64), e_grad)
    if loss is not None:
        if red == "none":
            assert isinstance(loss, np.ndarray) and loss.dtype == dtype
            if out is not None:
                assert loss is out, "the loss was not written into out"
            ft.assert_close(loss, _overflow_slack(loss, _expected_as(dtype, e_loss), dtype),
                            rtol=rtol, atol=atol, err_msg="loss")
        else:
            assert isinstance(loss, np.floating) and loss.dtype == dtype, type(loss)
            ft.assert_close(loss, _overflow_slack(loss, _expected_as(dtype, e_loss), dtype),
                            rtol=rtol, atol=atol, err_msg=f"loss {red}")
    if grad is not None:
        assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == z.shape
        if grad_out is not None:
            assert grad is grad_out, "the gradient was not written into the given output"
        scale = _grad_scale(family, z, t, okw)
        ft.assert_close(grad, _overflow_slack(grad, _expected_as(dtype, e_grad), dtype),
                        rtol=rtol, atol=atol, scale=scale, err_msg="grad")


# --------------------------------------------------------------------------
# The fuzz tests
# --------------------------------------------------------------------------


def _fuzz(request, name, strategy):
    OUTCOMES[name].clear()
    CURRENT[0] = name
    counter = collections.Counter()

    @_settings(MAX_EXAMPLES[name])
    @given(strategy)
    def body(case):
        counter["cases"] += 1
        with np.errstate(all="ignore"):  # the oracle and the casts may overflow quietly
            run_case(case)

    body()
    seen = counter["cases"]
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES[name].items()))
    report(request.config, f"fuzz {name}: {seen} cases (max_examples={MAX_EXAMPLES[name]}): "
                           f"{outcomes}")
    assert seen >= MAX_EXAMPLES[name]


def test_fuzz_sigmoid(request):
    _fuzz(request, "sigmoid", sigmoid_cases())


def test_fuzz_softmax(request):
    _fuzz(request, "softmax", softmax_cases())


def test_fuzz_outputs_and_aliasing(request):
    _fuzz(request, "outputs", output_cases())


# --------------------------------------------------------------------------
# Regressions: bugs the fuzzing found (all fixed during issue 6)
# --------------------------------------------------------------------------


def _run_isolated(code):
    import subprocess
    import sys
    import textwrap

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


# Regression: sigmoid class-index targets with 0 classes used to divide by zero in
# the kernel (2048 / C) and kill the process with SIGFPE; run in a subprocess.
@pytest.mark.parametrize("func", ["sigmoid_focal_loss", "sigmoid_focal_loss_grad",
                                  "sigmoid_focal_loss_with_grad"])
@pytest.mark.parametrize("shape,labels,axis", [((3, 0), (3,), -1), ((0, 0), (0,), -1),
                                               ((2, 0, 3), (2, 3), 1)])
def test_sigmoid_zero_classes_does_not_crash(func, shape, labels, axis):
    proc = _run_isolated(f"""
        import numpy as np, focal_native as fn, focal_native.reference as ref
        z = np.zeros({shape}); t = np.zeros({labels}, dtype=np.int64)
        for red in ("none", "sum", "mean"):
            got = fn.{func}(z, t, reduction=red, axis={axis})
            want = getattr(ref, "{func}")(z, t, reduction=red, axis={axis})
            if isinstance(got, tuple):
                got, want = got[1], want[1]
            assert np.asarray(got).shape == np.asarray(want).shape
        print("ok")
    """)
    assert proc.returncode == 0 and "ok" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


@pytest.mark.xfail(not _huge_int_ok(), strict=True, reason="a Python int too large for a "
                   "float (10**400) as gamma, alpha, normalizer or label_smoothing raises "
                   "OverflowError: _common._real's fallback math.copysign(math.inf, value) "
                   "converts the int to float again; remove this marker with the fix")
@pytest.mark.parametrize("call", [
    "fn.sigmoid_focal_loss(z, t, gamma=HUGE)",
    "fn.sigmoid_focal_loss(z, t, alpha=HUGE)",
    "fn.sigmoid_focal_loss(z, t, normalizer=HUGE)",
    "fn.softmax_focal_loss(z, c, alpha=HUGE)",
    "fn.softmax_focal_loss(z, c, label_smoothing=HUGE)",
    "fn.softmax_focal_loss_grad(z, c, gamma=-HUGE)",
])
def test_huge_python_int_parameters_raise_value_error(call):
    z = np.zeros((3, 4))
    t = np.zeros((3, 4), dtype=np.int64)
    c = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match=r"focal_loss"):
        eval(call, {"fn": fn, "z": z, "t": t, "c": c, "HUGE": HUGE_INT})


# ignore_index outside int64 used to fail pybind11's argument conversion with a
# TypeError naming the private _core signature.
@pytest.mark.parametrize("func", [fn.sigmoid_focal_loss, fn.softmax_focal_loss])
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_out_of_range_ignore_index_names_the_argument(func, value):
    with pytest.raises(ValueError, match=rf"^{func.__name__}: .*ignore_index"):
        func(np.zeros((3, 4)), np.zeros(3, dtype=np.int64), ignore_index=value)


# Regression: the position used to print as targets[np.int64(0)].
@pytest.mark.parametrize("func", [fn.sigmoid_focal_loss, fn.softmax_focal_loss])
def test_huge_uint64_label_message_names_a_plain_position(func):
    t = np.array([0, 2**64 - 1, 1], dtype=np.uint64)
    with pytest.raises(ValueError) as info:
        func(np.zeros((3, 4)), t)
    assert "targets[1] = 18446744073709551615" in str(info.value)


# A subnormal normalizer used to be accepted, and the kernels' multiplication by
# its reciprocal overflowed: inf for finite losses, NaN (0 * inf) for zero ones.
@pytest.mark.parametrize("family", ["sigmoid", "softmax"])
@pytest.mark.parametrize("normalizer", [5e-324, 1e-310])
def test_subnormal_normalizer(family, normalizer):
    z = np.array([[-12.0, 3.0, 0.0]])
    if family == "sigmoid":
        args = (z, np.array([[0, 1, 0]]))
        kw = {"alpha": 0.0}
        native, oracle = fn.sigmoid_focal_loss_with_grad, ref.sigmoid_focal_loss_with_grad
    else:
        args = (z, np.array([1]))
        kw = {"alpha": [1.0, 0.0, 1.0]}
        native, oracle = fn.softmax_focal_loss_with_grad, ref.softmax_focal_loss_with_grad
    try:
        loss, grad = native(*args, reduction="none", normalizer=normalizer, **kw)
    except ValueError as exc:
        assert "normalizer" in str(exc)
        return
    e_loss, e_grad = oracle(*args, reduction="none", normalizer=normalizer, **kw)
    ft.assert_close(loss, e_loss)
    ft.assert_close(grad, e_grad)


# Dense targets with 0 classes and label smoothing used to raise ZeroDivisionError
# (eps / classes).
@pytest.mark.parametrize("func", [fn.softmax_focal_loss, fn.softmax_focal_loss_grad,
                                  fn.softmax_focal_loss_with_grad])
def test_softmax_smoothing_with_zero_classes(func):
    z = np.zeros((0, 0), dtype=np.float32)
    func(z, np.zeros((0, 0), dtype=np.float32), label_smoothing=0.1, reduction="sum")


# Dense targets: a row with a NaN logit and all-zero targets used to give loss 0
# (with a NaN gradient); a row with a NaN logit is NaN, whatever its targets.
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_dense_nan_row_with_zero_targets(axis):
    z = np.array([[0.0, 0.0, np.nan], [1.0, 2.0, 3.0]])
    y = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if axis == 0:
        z, y = z.T.copy(), y.T.copy()
    loss, grad = fn.softmax_focal_loss_with_grad(z, y, axis=axis, reduction="none")
    e_loss, e_grad = ref.softmax_focal_loss_with_grad(z, y, axis=axis, reduction="none")
    ft.assert_close(loss, e_loss)
    ft.assert_close(grad, e_grad)


# Regression (seen in an intermediate build during issue 6): float32 sigmoid loss
# of a NaN logit came out 0 for non-integer gamma while its gradient was NaN.
@pytest.mark.parametrize("dtype", ft.DTYPES, ids=str)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 4.5])
def test_nan_logit_gives_nan_loss_and_grad(isa, dtype, gamma):
    z = np.full((3, 4), np.nan, dtype=dtype)
    z[0, 0] = 1.0
    hard = np.eye(3, 4, dtype=np.uint8)
    soft = np.full((3, 4), 0.3, dtype=dtype)
    lab = np.array([0, 2, 4])
    expect = np.isnan(z)
    for t in (hard, soft, lab):
        loss, grad = fn.sigmoid_focal_loss_with_grad(z, t, gamma=gamma, reduction="none")
        assert np.array_equal(np.isnan(loss), expect), (t.dtype, loss)
        assert np.array_equal(np.isnan(grad), expect), (t.dtype, grad)
    lab_s = np.array([0, 2, 3])
    rows = np.isnan(z).any(axis=1)
    for t in (lab_s, np.eye(3, 4, dtype=dtype)):
        loss, grad = fn.softmax_focal_loss_with_grad(z, t, gamma=gamma, reduction="none")
        assert np.array_equal(np.isnan(loss), rows), (t.dtype, loss)
        assert np.array_equal(np.isnan(grad).all(axis=1), rows), (t.dtype, grad)


# Bool dense targets are converted with astype (order 'K'): a non-C-contiguous
# bool array stays non-contiguous and the compiled layer's guard rejects it.
@pytest.mark.xfail(not BOOL_DENSE_LAYOUT_OK, strict=True, reason="softmax: bool dense targets "
                   "in Fortran order or broadcast raise ValueError('targets must be "
                   "C-contiguous') from _core: t.astype(z.dtype) in _softmax._run keeps the "
                   "layout (order 'K')")
@pytest.mark.parametrize("layout", ["fortran", "broadcast"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_bool_dense_targets_in_any_layout(layout, smoothing):
    z = np.linspace(-2, 2, 12).reshape(4, 3)
    y = np.eye(4, 3, dtype=bool)
    t = {"fortran": np.asfortranarray(y), "broadcast": np.broadcast_to(y[:1], y.shape)}[layout]
    got = fn.softmax_focal_loss_with_grad(z, t, label_smoothing=smoothing, reduction="none")
    want = fn.softmax_focal_loss_with_grad(z, np.ascontiguousarray(t, dtype=np.float64),
                                           label_smoothing=smoothing, reduction="none")
    ft.assert_bitwise_equal(got[0], want[0])
    ft.assert_bitwise_equal(got[1], want[1])


# A zero weight (sigmoid alpha_t = 0, softmax alpha_c = 0) used to hide a NaN
# logit when gamma = 0: the loss came back 0 instead of NaN (found by the fuzzer).
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma", [0.0, 1.5, 2.0])
def test_nan_logit_with_zero_weight(dtype, gamma):
    z = np.array([np.nan, np.nan, 1.0], dtype)
    for alpha, y in [(0.0, np.array([1, 1, 0])), (1.0, np.array([0, 0, 1]))]:
        loss, grad = fn.sigmoid_focal_loss_with_grad(z, y, alpha, gamma, "none")
        e_loss, e_grad = ref.sigmoid_focal_loss_with_grad(z, y, alpha, gamma, "none")
        assert np.isnan(loss[:2]).all() and np.isnan(grad[:2]).all()
        ft.assert_close(loss, e_loss)
        ft.assert_close(grad, e_grad)
    zs = np.array([[0.0, 0.0], [0.0, np.nan]], dtype)
    for axis in (0, 1):
        t = np.array([0, 0])
        loss, grad = fn.softmax_focal_loss_with_grad(zs, t, [0.0, 1.0], gamma, "none", axis=axis)
        e_loss, e_grad = ref.softmax_focal_loss_with_grad(zs, t, [0.0, 1.0], gamma, "none",
                                                          axis=axis)
        assert np.isnan(loss[1]) and np.isnan(e_loss[1])
        ft.assert_close(loss, e_loss)
        ft.assert_close(grad, e_grad)

"""Errors found inside threaded kernels (GitHub issue 6).

A bad target is found by whichever OpenMP thread owns its block. With two
threads, a bad value in the second half of a large array is found by the second
thread; the call must still stop cleanly with the documented ValueError naming
the *first* bad position and its value (even when the second thread finds its
bad value before the first thread finds an earlier one), and the process must
stay usable: the next call, threaded, gives the correct (bitwise identical)
result.
"""

from __future__ import annotations

import re

import focal_native as fn
import numpy as np
import pytest

N = 1 << 20  # 1 Mi elements: threaded (1024 blocks shared by two threads)


@pytest.fixture(autouse=True)
def _two_threads():
    fn.set_num_threads(2)
    yield
    fn.set_num_threads(0)


def _pos(shape, flat):
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"


def _cases():
    rng = np.random.default_rng(11)
    z = rng.normal(scale=3.0, size=N).astype(np.float32)
    cases = {}

    hard = (rng.random(N) < 0.3).astype(np.uint8)
    cases["sigmoid hard"] = dict(
        func=fn.sigmoid_focal_loss, logits=z.reshape(1024, -1), targets=hard.reshape(1024, -1),
        bad_value=2, message=r"is not a binary label")

    soft = rng.random(N).astype(np.float32)
    cases["sigmoid soft"] = dict(
        func=fn.sigmoid_focal_loss_grad, logits=z, targets=soft, bad_value=np.nan,
        message=r"is outside \[0, 1\]")

    classes = 8
    lab = rng.integers(0, classes + 1, size=N // classes).astype(np.int64)
    cases["sigmoid labels"] = dict(
        func=fn.sigmoid_focal_loss_with_grad, logits=z.reshape(-1, classes), targets=lab,
        bad_value=classes + 1, message=r"is not a valid class index")

    lab_s = rng.integers(0, classes, size=N // classes).astype(np.uint8)
    cases["softmax labels"] = dict(
        func=fn.softmax_focal_loss_with_grad, logits=z.reshape(-1, classes), targets=lab_s,
        bad_value=classes, message=r"is not a valid class index")

    z_nchw = np.ascontiguousarray(z.reshape(64, classes, -1))
    lab_nchw = rng.integers(0, classes, size=(64, z_nchw.shape[2])).astype(np.int32)
    cases["softmax labels axis=1"] = dict(
        func=fn.softmax_focal_loss, logits=z_nchw, targets=lab_nchw, bad_value=-7,
        message=r"is not a valid class index", kw={"axis": 1})

    dense = rng.dirichlet(np.ones(classes), size=N // classes).astype(np.float32)
    cases["softmax dense"] = dict(
        func=fn.softmax_focal_loss_grad, logits=z.reshape(-1, classes), targets=dense,
        bad_value=-0.25, message=r"is outside \[0, 1\]")
    return cases


CASES = _cases()


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("where", ["second_half", "both_halves", "last"])
@pytest.mark.parametrize("name", list(CASES))
def test_bad_target_in_threaded_call(name, where, reduction):
    c = CASES[name]
    func, z, good = c["func"], c["logits"], c["targets"]
    kw = dict(c.get("kw", {}), reduction=reduction)
    assert fn.get_num_threads() == 2
    reference = func(z, good, **kw)  # threaded, valid

    t = good.copy()
    flat = t.reshape(-1)
    n = flat.size
    late = n * 3 // 4 + 5
    if where == "second_half":
        flat[late] = c["bad_value"]
        first = late
    elif where == "both_halves":
        flat[late] = c["bad_value"]
        flat[n // 4 + 3] = c["bad_value"]
        flat[n - 1] = c["bad_value"]
        first = n // 4 + 3
    else:
        flat[n - 1] = c["bad_value"]
        first = n - 1
    before = t.copy()
    z_before = z.copy()
    with pytest.raises(ValueError) as info:
        func(z, t, **kw)
    msg = str(info.value)
    value = str(before.reshape(-1)[first])
    assert msg.startswith(func.__name__ + ": "), msg
    assert f"targets{_pos(t.shape, first)} = {value} " in msg, msg
    assert re.search(c["message"], msg), msg
    # Inputs untouched, and the process is still usable: the next threaded call is exact.
    assert np.array_equal(t, before, equal_nan=True) and np.array_equal(z, z_before)
    again = func(z, good, **kw)
    for a, b in zip(again if isinstance(again, tuple) else (again,),
                    reference if isinstance(reference, tuple) else (reference,)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_error_then_many_calls_from_threads():
    """After errors in threaded calls, concurrent Python threads still get exact results."""
    import threading

    c = CASES["softmax labels"]
    z, good = c["logits"], c["targets"]
    ref = fn.softmax_focal_loss_with_grad(z, good)
    bad = good.copy()
    bad[-10] = 200
    out = []

    def run():
        for _ in range(3):
            with pytest.raises(ValueError):
                fn.softmax_focal_loss_with_grad(z, bad)
            out.append(fn.softmax_focal_loss_with_grad(z, good))

    ts = [threading.Thread(target=run) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert len(out) == 9
    for loss, grad in out:
        assert loss.tobytes() == ref[0].tobytes() and grad.tobytes() == ref[1].tobytes()

"""Fork safety (GitHub issue 6).

GNU OpenMP's thread pool does not survive ``fork()``: a child that enters a
parallel region after its parent used one waits forever. focal_native installs
a ``pthread_atfork`` handler the first time it uses threads, and a forked child
of such a process runs serially (``get_num_threads() == 1``,
``_core._in_forked_child()``). These tests make the parent use threads, then
run every public function in children made by ``multiprocessing`` ("fork",
"forkserver", "spawn") and by ``os.fork()`` directly (also while another thread
of the parent is inside a threaded call), each under a timeout, and compare the
children's results bitwise with the parent's.

Worker code is sent to the children as source text run by ``eval`` /
``exec`` (builtins, which pickle by reference) with a namespace dict (pickled
by value), so nothing depends on whether this test module is importable in a
child (``--import-mode=importlib``). Results are compared as SHA-256 digests of
dtype, shape and bytes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import focal_native as fn
import numpy as np
import pytest
from focal_native import _core

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()"),
    # Python >= 3.12 warns when a process with several OS threads forks (the
    # OpenMP pool counts); surviving exactly that is what is tested here.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"),
]

TIMEOUT = 90  # seconds for any one child; a hang is the failure mode
N_ROWS, N_CLASSES = 1 << 16, 8  # 512 Ki logits: well above the parallel grain


def _inputs():
    rng = np.random.default_rng(20240607)
    z = rng.normal(scale=4.0, size=(N_ROWS, N_CLASSES)).astype(np.float32)
    hard = (rng.random((N_ROWS, N_CLASSES)) < 0.3).astype(np.uint8)
    labels = rng.integers(0, N_CLASSES, size=N_ROWS).astype(np.int64)
    labels[::97] = -100
    dense = rng.dirichlet(np.ones(N_CLASSES), size=N_ROWS).astype(np.float32)
    z4 = np.ascontiguousarray(z.reshape(N_ROWS // 64, 64, N_CLASSES).transpose(0, 2, 1))
    return {"z": z, "hard": hard, "labels": labels, "dense": dense, "z4": z4,
            "lab4": labels.reshape(N_ROWS // 64, 64)}


# One expression computing every public function; evaluated in parent and children.
ALL_CALLS = textwrap.dedent("""
    [
        fn.sigmoid_focal_loss(z, hard, reduction="none"),
        fn.sigmoid_focal_loss(z, hard, reduction="sum"),
        fn.sigmoid_focal_loss_grad(z, hard, reduction="mean"),
        fn.sigmoid_focal_loss_with_grad(z, labels, reduction="mean"),
        fn.sigmoid_focal_loss_with_grad(z, dense, alpha=None, gamma=1.5, reduction="sum"),
        fn.softmax_focal_loss(z, labels, reduction="none"),
        fn.softmax_focal_loss(z, labels, alpha=[0.5] * 8, reduction="mean"),
        fn.softmax_focal_loss_grad(z, labels, reduction="mean", label_smoothing=0.1),
        fn.softmax_focal_loss_with_grad(z, dense, reduction="sum"),
        fn.softmax_focal_loss_with_grad(z4, lab4, axis=1, reduction="mean"),
    ]
""").strip()

# The child's work, sent as source (exec'd by the eval below in the child).
CHILD_SRC = textwrap.dedent("""
    import hashlib, os
    import numpy as np
    import focal_native as fn

    def digest(results):
        out = []
        for r in results:
            h = hashlib.sha256()
            for x in (r if isinstance(r, tuple) else (r,)):
                a = np.asarray(x)
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(a.tobytes())
            out.append(h.hexdigest())
        return out

    def run():
        if threads is not None:
            fn.set_num_threads(threads)
        results = eval(calls, {"fn": fn, **data})
        return (digest(results), fn.get_num_threads(), fn._core._in_forked_child(),
                os.getpid())
""")
CHILD_EXPR = "exec(src, globals()) or run()"


def _child_namespace(data, threads):
    return {"src": CHILD_SRC, "calls": ALL_CALLS, "data": data, "threads": threads}


_helpers: dict = {}
exec(CHILD_SRC, _helpers)
_digest = _helpers["digest"]


@pytest.fixture(scope="module")
def parent():
    """Inputs and the parent's results, computed with two threads (so the pool exists)."""
    data = _inputs()
    fn.set_num_threads(2)
    try:
        results = eval(ALL_CALLS, {"fn": fn, **data})
    finally:
        fn.set_num_threads(0)
    return data, _digest(results)


def _pool_run(method, data, expected, threads=2, tasks=3):
    ctx = mp.get_context(method)
    with ctx.Pool(processes=2) as pool:
        pending = [pool.apply_async(eval, (CHILD_EXPR, _child_namespace(data, threads)))
                   for _ in range(tasks)]
        out = []
        for p in pending:
            try:
                out.append(p.get(timeout=TIMEOUT))
            except mp.TimeoutError:
                pool.terminate()
                pytest.fail(f"a {method!r} pool child did not finish within {TIMEOUT} s "
                            "(OpenMP deadlock after fork?)")
    for digests, _nthreads, _forked, pid in out:
        assert pid != os.getpid()
        assert digests == expected, f"{method} child {pid} computed different results"
    return out


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_pool_children_match_parent(parent, method, threads):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"start method {method!r} not available")
    data, expected = parent
    with threads(2):
        # The parent runs threaded calls right before forking.
        assert _digest(eval(ALL_CALLS, {"fn": fn, **data})) == expected
        t0 = time.perf_counter()
        out = _pool_run(method, data, expected)
        elapsed = time.perf_counter() - t0
    for _digests, nthreads, forked, _pid in out:
        if method == "fork" and fn.build_info()["openmp"]:
            # The parent used threads: its forked children must run serially.
            assert forked and nthreads == 1, (forked, nthreads)
        elif method != "fork":
            # Fresh interpreters: threads are available again.
            assert not forked and nthreads == 2, (forked, nthreads)
    assert elapsed < TIMEOUT


def _fork_and_run(data, threads, timeout=TIMEOUT):
    """os.fork(); the child evaluates CHILD_EXPR and sends the outcome through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            res = eval(CHILD_EXPR, _child_namespace(data, threads))
            payload = pickle.dumps(res)
            with os.fdopen(w, "wb") as fh:
                fh.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"os.fork() child did not finish within {timeout} s")
            ready, _, _ = select.select([r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    return pickle.loads(b"".join(chunks))


def test_os_fork_after_threaded_calls(parent, threads):
    data, expected = parent
    with threads(2):
        assert _digest(eval(ALL_CALLS, {"fn": fn, **data})) == expected
        for child_threads in (None, 2, 0):  # the child may even ask for threads again
            digests, nthreads, forked, _pid = _fork_and_run(data, child_threads)
            assert digests == expected
            if fn.build_info()["openmp"]:
                assert forked and nthreads == 1
        # The parent is unaffected and still threaded.
        assert fn.get_num_threads() == 2 and not _core._in_forked_child()
        assert _digest(eval(ALL_CALLS, {"fn": fn, **data})) == expected


def test_os_fork_while_another_thread_is_in_a_threaded_call(parent, threads):
    """Fork while a second Python thread keeps the OpenMP pool busy."""
    data, expected = parent
    stop = threading.Event()
    errors = []

    def busy():
        try:
            while not stop.is_set():
                fn.softmax_focal_loss_with_grad(data["z"], data["labels"], reduction="mean")
                fn.sigmoid_focal_loss_grad(data["z"], data["hard"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with threads(2):
        worker = threading.Thread(target=busy)
        worker.start()
        try:
            time.sleep(0.05)
            for _ in range(4):
                digests, nthreads, _forked, _pid = _fork_and_run(data, None)
                assert digests == expected
                if fn.build_info()["openmp"]:
                    assert nthreads == 1
        finally:
            stop.set()
            worker.join(TIMEOUT)
    assert not worker.is_alive()
    assert not errors, errors


def test_fork_before_any_threaded_call_keeps_threads():
    """A process that never used threads before fork() gives children that may use them."""
    code = textwrap.dedent("""
        import os, sys
        import numpy as np
        import focal_native as fn
        from focal_native import _core
        fn.set_num_threads(2)
        z = np.linspace(-5, 5, 1 << 20).reshape(-1, 8)
        t = (np.arange(1 << 20).reshape(-1, 8) % 3 == 0)
        pid = os.fork()
        if pid == 0:
            try:
                ok = (not _core._in_forked_child() and fn.get_num_threads() == 2)
                a = fn.sigmoid_focal_loss(z, t, reduction="sum")
                fn.set_num_threads(1)
                b = fn.sigmoid_focal_loss(z, t, reduction="sum")
                os._exit(0 if ok and a == b else 3)
            finally:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.WEXITSTATUS(status))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FOCAL_NATIVE_ISA")}
    proc = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])

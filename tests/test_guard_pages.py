"""No kernel touches a byte outside its arrays, checked by the MMU.

Every array of a call (logits, targets, outputs, upstream gradients) is placed against an
inaccessible page (mmap + mprotect(PROT_NONE)): once with its last byte the
last byte of a readable page, once with its first byte the first byte after an
inaccessible page. A vector load or store one lane too wide, a masked tail
gone wrong or a transpose that reads a row past the end then dies with
SIGSEGV. The calls run in a subprocess so that a crash fails this test instead
of killing the suite. Every supported instruction set is exercised, over the
sizes that make partial vectors and partial transpose blocks.

(AddressSanitizer, tests/test_sanitizers.py, builds the baseline kernels only
in its quick flavour; this test covers the AVX2 and AVX-512 ones, whose
masked loads and stores it cannot see.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform.startswith("win"), reason="needs mmap/mprotect (POSIX)"
)

CHILD = textwrap.dedent(
    r"""
    import ctypes, mmap, sys
    import numpy as np
    import focal_native as fn
    from focal_native import _core

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    PAGE = mmap.PAGESIZE
    _keep = []

    def guarded(shape, dtype, where):
        # An array of `shape` whose end (where='end') or start (where='start')
        # touches an inaccessible page.
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        npages = (nbytes + PAGE - 1) // PAGE + 2
        m = mmap.mmap(-1, npages * PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        for page in (0, npages - 1):
            if libc.mprotect(base + page * PAGE, PAGE, 0) != 0:
                raise OSError(ctypes.get_errno(), "mprotect failed")
        off = PAGE if where == "start" else (npages - 1) * PAGE - nbytes
        a = np.frombuffer(m, dtype=np.uint8, count=nbytes, offset=off).view(dtype)
        _keep.append(m)
        return a.reshape(shape)

    def fill(a, values):
        a[...] = values
        return a

    rng = np.random.default_rng(7)
    calls = 0
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        for where in ("end", "start"):
            for dt in (np.float32, np.float64):
                # softmax, class axis last (short rows are transposed in blocks)
                for C in (1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 80):
                    for n in (1, 5, 8, 16, 17, 130):
                        z = fill(guarded((n, C), dt, where), rng.normal(0, 3, (n, C)))
                        y = fill(guarded((n,), np.int64, where), rng.integers(0, C, n))
                        y[0] = -100
                        g = guarded((n, C), dt, where)
                        o = guarded((n,), dt, where)
                        fn.softmax_focal_loss_with_grad(z, y, reduction="none", out=o, grad_out=g)
                        assert np.isfinite(g).all() and np.isfinite(o).all()
                        fn.softmax_focal_loss(z, y, reduction="none", out=o)
                        up = fill(guarded((n,), dt, where), rng.random(n))
                        fn.softmax_focal_loss_grad(z, y, reduction="none", grad_output=up, out=g)
                        fn.softmax_focal_loss_with_grad(z, y, grad_out=z)  # in place
                        calls += 4
                # softmax, class axis 1 (NCHW)
                for C in (3, 21):
                    for inner in (1, 7, 37, 300):
                        z = fill(guarded((2, C, inner), dt, where), rng.normal(0, 3, (2, C, inner)))
                        y = fill(guarded((2, inner), np.int64, where),
                                 rng.integers(0, C, (2, inner)))
                        g = guarded((2, C, inner), dt, where)
                        fn.softmax_focal_loss_with_grad(z, y, axis=1, grad_out=g)
                        d = fill(guarded((2, C, inner), dt, where), 1.0 / C)
                        fn.softmax_focal_loss_with_grad(z, d, axis=1, grad_out=g)
                        calls += 2
                # binary, hard and soft targets, class indices
                for n in (1, 7, 15, 16, 17, 33, 1000):
                    z = fill(guarded((n,), dt, where), rng.normal(0, 3, n))
                    t = fill(guarded((n,), np.bool_, where), rng.random(n) < 0.1)
                    s = fill(guarded((n,), dt, where), rng.random(n))
                    g = guarded((n,), dt, where)
                    o = guarded((n,), dt, where)
                    fn.sigmoid_focal_loss_with_grad(z, t, reduction="none", out=o, grad_out=g)
                    fn.sigmoid_focal_loss_with_grad(z, s, reduction="none", out=o, grad_out=g)
                    fn.sigmoid_focal_loss(z, t, reduction="none", out=o)
                    up = fill(guarded((n,), dt, where), rng.random(n))
                    fn.sigmoid_focal_loss_grad(z, t, reduction="none", grad_output=up, out=g)
                    calls += 4
                for C in (1, 5, 17):
                    z = fill(guarded((9, C), dt, where), rng.normal(0, 3, (9, C)))
                    y = fill(guarded((9,), np.int64, where), rng.integers(0, C + 1, 9))
                    g = guarded((9, C), dt, where)
                    fn.sigmoid_focal_loss_with_grad(z, y, grad_out=g)
                    calls += 1
    _core._set_isa("auto")
    print("OK", calls, "calls on", ",".join(_core.supported_isas()))
    """
)


def test_kernels_stay_inside_their_arrays():
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600)
    if r.returncode < 0:
        pytest.fail(f"child killed by signal {-r.returncode} (out-of-bounds access?)\n{r.stderr}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK"), r.stdout + r.stderr

"""Implementations the benchmark times: focal_native and its peers.

Every implementation is a class with ``name``, ``available()``, ``version()``,
``setup(threads)`` and ``make(spec, data)``.  ``make`` prepares everything
that is not part of the measured work (converting inputs to the peer's own
array type, compiling, preallocating) and returns a dict mapping a mode
(``"fwd"``: loss only, ``"fwdgrad"``: loss and gradient) to a
``(call, convert)`` pair: ``call()`` is what gets timed, ``convert(ret)``
turns its return value into ``(loss: float, grad: ndarray or None)`` for the
correctness check, outside the timed region.  A mode an implementation does
not offer is simply absent; ``make`` returns None when the implementation
cannot do the workload at all.

Workload semantics (the same for everyone): binary focal loss with hard
labels, alpha=0.25, gamma=2, mean over all elements; softmax focal loss with
integer class-index labels, no alpha weighting, gamma=2, mean over positions
(rows).  See bench/README.md for the formulas each peer uses.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

EPS = 1e-7  # the clip a user typically writes (Keras' epsilon)


def _spec_layout(spec):
    shape = tuple(spec["shape"])
    ax = spec["axis"] % len(shape)
    outer = int(np.prod(shape[:ax], dtype=np.int64))
    inner = int(np.prod(shape[ax + 1 :], dtype=np.int64))
    return ax, outer, shape[ax], inner


def _ident(ret):
    loss, grad = ret
    return float(loss), grad


def _loss_only(ret):
    return float(ret), None


# --------------------------------------------------------------------------
# focal_native
# --------------------------------------------------------------------------


class FocalNative:
    """focal_native itself; ``variant`` picks preallocated or allocating output."""

    def __init__(self, variant="prealloc"):
        self.variant = variant
        self.name = {
            "prealloc": "focal_native",
            "alloc": "focal_native[alloc]",
            "float-targets": "focal_native[float-targets]",
        }[variant]

    def available(self):
        try:
            import focal_native  # noqa: F401
        except ImportError:
            return False
        return True

    def version(self):
        import focal_native

        return focal_native.__version__

    def setup(self, threads):
        import focal_native

        focal_native.set_num_threads(threads)

    def make(self, spec, data):
        import focal_native as fn

        a, g = spec["alpha"], spec["gamma"]
        z = data["z"]
        if spec["family"] == "binary":
            if self.variant == "float-targets":
                y = data["y_float"]
            else:
                y = data["y_bool"]
            gbuf = np.empty_like(z)
            modes = {}
            if self.variant == "prealloc":
                modes["fwd"] = (lambda: fn.sigmoid_focal_loss(z, y, a, g, "mean"), _loss_only)
            if self.variant == "alloc":
                modes["fwdgrad"] = (
                    lambda: fn.sigmoid_focal_loss_with_grad(z, y, a, g, "mean"),
                    _ident,
                )
            else:
                modes["fwdgrad"] = (
                    lambda: fn.sigmoid_focal_loss_with_grad(z, y, a, g, "mean", grad_out=gbuf),
                    _ident,
                )
            return modes
        if self.variant == "float-targets":
            return None
        lab = data["labels"]
        ax = spec["axis"]
        gbuf = np.empty_like(z)
        modes = {}
        if self.variant == "prealloc":
            modes["fwd"] = (
                lambda: fn.softmax_focal_loss(z, lab, None, g, "mean", axis=ax),
                _loss_only,
            )
            modes["fwdgrad"] = (
                lambda: fn.softmax_focal_loss_with_grad(
                    z, lab, None, g, "mean", axis=ax, grad_out=gbuf
                ),
                _ident,
            )
        else:
            modes["fwdgrad"] = (
                lambda: fn.softmax_focal_loss_with_grad(z, lab, None, g, "mean", axis=ax),
                _ident,
            )
        return modes


# --------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------


def _np_plain_binary(z, t, alpha, gamma, want_grad):
    """torchvision's formula, with the cross-entropy written via a clipped log."""
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        p = 1 / (1 + np.exp(-z))
        pc = np.clip(p, EPS, 1 - EPS)
        ce = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
        p_t = p * t + (1 - p) * (1 - t)
        mod = (1 - p_t) ** gamma
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        loss = (alpha_t * ce * mod).mean()
        if not want_grad:
            return loss
        # d/dz by the chain rule, as derived by hand:
        #   d(1-p_t)^g/dz = -g (1-p_t)^(g-1) p (1-p) (2t-1),  dce/dz = p - t
        dmod = -gamma * (1 - p_t) ** (gamma - 1) * (p * (1 - p)) * (2 * t - 1)
        grad = alpha_t * (dmod * ce + mod * (p - t)) / z.size
        return loss, grad


def _np_best_binary(z, y, alpha, gamma, want_grad):
    """The stable formulation of NUMERICS.md, written with in-place NumPy ops."""
    s = np.where(y, 1, -1).astype(z.dtype)
    zt = z * s
    e = np.exp(-np.abs(z))
    lg = np.log1p(e)
    logp = np.maximum(-zt, 0)
    logp += lg
    np.negative(logp, out=logp)  # log p_t
    alpha_t = np.where(y, alpha, 1 - alpha).astype(z.dtype)
    pos = zt >= 0
    inv = 1 / (1 + e)
    ei = e * inv
    q = np.where(pos, ei, inv)  # 1 - p_t
    if gamma == 2:
        qg = q * q
    else:
        logq = np.maximum(zt, 0)
        logq += lg
        qg = np.exp(-gamma * logq)
    w = alpha_t * qg
    loss = -(w * logp).mean()  # pairwise summation (np.dot in float32 drifts ~1e-4 at 1e7)
    if not want_grad:
        return loss
    p = np.where(pos, inv, ei)
    p *= gamma
    p *= logp
    p -= q  # gamma p log p - q
    p *= w
    p *= s
    p *= 1 / z.size
    return loss, p


def _np_plain_softmax(z, lab, axis, gamma, want_grad):
    """Softmax, probability of the true class, clipped log: the textbook way."""
    with np.errstate(under="ignore", divide="ignore"):
        m = z.max(axis=axis, keepdims=True)
        ex = np.exp(z - m)
        S = ex.sum(axis=axis, keepdims=True)
        P = ex / S
        idx = np.expand_dims(lab, axis)
        pc = np.take_along_axis(P, idx, axis)
        pcc = np.clip(pc, EPS, 1)
        logp = np.log(pcc)
        mod = (1 - pcc) ** gamma
        nrows = lab.size
        loss = -(mod * logp).sum() / nrows
        if not want_grad:
            return loss
        # dFL/dp_c * p_c, then d p_c / d z_k = p_c (delta_kc - p_k)
        F = (gamma * (1 - pcc) ** (gamma - 1) * pcc * logp - mod) / nrows
        grad = P * -F
        np.put_along_axis(grad, idx, np.take_along_axis(grad, idx, axis) + F, axis)
        return loss, grad


class NumpyPlain:
    name = "numpy-plain"

    def available(self):
        return True

    def version(self):
        return np.__version__

    def setup(self, threads):
        pass

    def make(self, spec, data):
        a, g = spec["alpha"], spec["gamma"]
        z = data["z"]
        if spec["family"] == "binary":
            t = data["y_float"]
            return {
                "fwd": (lambda: _np_plain_binary(z, t, a, g, False), _loss_only),
                "fwdgrad": (lambda: _np_plain_binary(z, t, a, g, True), _ident),
            }
        lab, ax = data["labels"], spec["axis"]
        return {
            "fwd": (lambda: _np_plain_softmax(z, lab, ax, g, False), _loss_only),
            "fwdgrad": (lambda: _np_plain_softmax(z, lab, ax, g, True), _ident),
        }


class NumpyBest(NumpyPlain):
    name = "numpy-best"

    def make(self, spec, data):
        if spec["family"] != "binary":
            return None
        a, g = spec["alpha"], spec["gamma"]
        z, y = data["z"], data["y_bool"]
        return {
            "fwd": (lambda: _np_best_binary(z, y, a, g, False), _loss_only),
            "fwdgrad": (lambda: _np_best_binary(z, y, a, g, True), _ident),
        }


# --------------------------------------------------------------------------
# numba (parallel, analytic gradient, preallocated gradient output)
# --------------------------------------------------------------------------

_NUMBA = {}


def _numba_kernels():
    if _NUMBA:
        return _NUMBA
    import numba as nb

    @nb.njit(parallel=True, cache=True)
    def bin_kernel(z, y, alpha, gamma, one, zero, scale, grad, want_grad):
        acc = 0.0
        for i in nb.prange(z.size):
            zi = z[i]
            if y[i]:
                zt = zi
                at = alpha
                s = one
            else:
                zt = -zi
                at = one - alpha
                s = -one
            e = np.exp(-abs(zi))
            lg = np.log1p(e)
            logp = -(max(-zt, zero) + lg)
            inv = one / (one + e)
            if zt >= zero:
                p = inv
                q = e * inv
            else:
                p = e * inv
                q = inv
            if gamma == 2:
                qg = q * q
            else:
                qg = np.exp(-gamma * (max(zt, zero) + lg))
            w = at * qg
            acc += -w * logp
            if want_grad:
                grad[i] = s * w * (gamma * p * logp - q) * scale
        return acc * scale

    @nb.njit(cache=True)
    def sm_row(z, lab, gamma, one, zero, scale, grad, want_grad, o, i):
        C = z.shape[1]
        c = lab[o, i]
        m = z[o, 0, i]
        for k in range(1, C):
            v = z[o, k, i]
            if v > m:
                m = v
        S = zero
        So = zero
        ec = zero
        for k in range(C):
            ex = np.exp(z[o, k, i] - m)
            if want_grad:
                grad[o, k, i] = ex
            S += ex
            if k != c:
                So += ex
            else:
                ec = ex
        zc = z[o, c, i]
        if zc == m:
            logp = -np.log1p(So)
        else:
            logp = (zc - m) - np.log(S)
        invS = one / S
        q = So * invS
        p = ec * invS
        if gamma == 2:
            qg = q * q
        elif q > zero:
            qg = np.exp(gamma * np.log(q))
        else:
            qg = zero
        if want_grad:
            F = zero
            if q > zero:
                F = qg * (gamma * p * logp / q - one) * scale
            for k in range(C):
                if k == c:
                    grad[o, k, i] = F * q
                else:
                    grad[o, k, i] = -F * grad[o, k, i] * invS
        return -qg * logp

    @nb.njit(parallel=True, cache=True)
    def sm_kernel(z, lab, gamma, one, zero, scale, grad, want_grad):
        inner = z.shape[2]
        rows = z.shape[0] * inner
        acc = 0.0
        for r in nb.prange(rows):
            o = r // inner
            acc += sm_row(z, lab, gamma, one, zero, scale, grad, want_grad, o, r - o * inner)
        return acc * scale

    _NUMBA["bin"] = bin_kernel
    _NUMBA["sm"] = sm_kernel
    return _NUMBA


class Numba:
    name = "numba"

    def available(self):
        return importlib.util.find_spec("numba") is not None

    def setup(self, threads):
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))

    def version(self):
        import numba

        try:  # known once a parallel kernel has run
            layer = numba.threading_layer()
        except ValueError:
            layer = "?"
        return f"{numba.__version__} (threading layer {layer})"

    def make(self, spec, data):
        k = _numba_kernels()
        z = data["z"]
        T = z.dtype.type
        g = T(spec["gamma"])
        gbuf = np.empty_like(z)
        if spec["family"] == "binary":
            y = data["y_bool"]
            a = T(spec["alpha"])
            sc = T(1.0 / z.size)
            f = k["bin"]
            return {
                "fwd": (lambda: f(z, y, a, g, T(1), T(0), sc, gbuf, False), _loss_only),
                "fwdgrad": (lambda: (f(z, y, a, g, T(1), T(0), sc, gbuf, True), gbuf), _ident),
            }
        _, outer, C, inner = _spec_layout(spec)
        z3 = z.reshape(outer, C, inner)
        g3 = gbuf.reshape(outer, C, inner)
        lab = data["labels"].reshape(outer, inner)
        sc = T(1.0 / lab.size)
        f = k["sm"]
        return {
            "fwd": (lambda: f(z3, lab, g, T(1), T(0), sc, g3, False), _loss_only),
            "fwdgrad": (lambda: (f(z3, lab, g, T(1), T(0), sc, g3, True), gbuf), _ident),
        }


# --------------------------------------------------------------------------
# PyTorch (eager and torch.compile): torchvision's formula + autograd
# --------------------------------------------------------------------------


def _torch_fns():
    import torch
    import torch.nn.functional as F

    def binary(z, t, alpha, gamma):
        # torchvision.ops.sigmoid_focal_loss, reduction="mean"
        p = torch.sigmoid(z)
        ce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * ((1 - p_t) ** gamma)
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        return (alpha_t * loss).mean()

    def softmax(z, lab, axis, gamma):
        logp = F.log_softmax(z, dim=axis)
        logp_t = logp.gather(axis, lab.unsqueeze(axis)).squeeze(axis)
        p_t = logp_t.exp()
        return -(((1 - p_t) ** gamma) * logp_t).mean()

    return torch, binary, softmax


class TorchEager:
    name = "torch-eager"
    compiled = False

    def available(self):
        return importlib.util.find_spec("torch") is not None

    def version(self):
        import torch

        return torch.__version__

    def setup(self, threads):
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass

    def _wrap(self, f):
        return f

    def make(self, spec, data):
        torch, binary, softmax = _torch_fns()
        z = torch.from_numpy(data["z"])
        zr = z.detach().clone().requires_grad_(True)
        a, g = spec["alpha"], spec["gamma"]
        if spec["family"] == "binary":
            t = torch.from_numpy(data["y_float"])
            f = self._wrap(binary)
            args = (t, a, g)
        else:
            lab = torch.from_numpy(data["labels"])
            f = self._wrap(softmax)
            args = (lab, spec["axis"] % len(spec["shape"]), g)

        def fwd():
            with torch.no_grad():
                return f(z, *args)

        def fwdgrad():
            loss = f(zr, *args)
            (gr,) = torch.autograd.grad(loss, zr)
            return loss, gr

        return {
            "fwd": (fwd, lambda r: (r.item(), None)),
            "fwdgrad": (fwdgrad, lambda r: (r[0].item(), r[1].detach().numpy())),
        }


class TorchCompile(TorchEager):
    name = "torch-compile"
    compiled = True

    def setup(self, threads):
        super().setup(threads)
        import torch._dynamo

        # Every (shape, dtype, grad mode) is one specialised compilation of the same
        # code object; past the default limit (8) dynamo silently falls back to eager.
        for knob in ("cache_size_limit", "recompile_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 256)

    def _wrap(self, f):
        import torch

        return torch.compile(f, dynamic=False)


# --------------------------------------------------------------------------
# JAX: the same formula, jit(value_and_grad)
# --------------------------------------------------------------------------


class JaxJit:
    name = "jax-jit"

    def available(self):
        return importlib.util.find_spec("jax") is not None

    def version(self):
        import jax

        return jax.__version__

    def setup(self, threads):
        # XLA's CPU thread pool can only be sized before jax is imported.
        ncpu = os.cpu_count() or 1
        if threads < ncpu and "jax" not in __import__("sys").modules:
            flags = os.environ.get("XLA_FLAGS", "")
            eigen = "true" if threads > 1 else "false"
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen={eigen} "
                f"intra_op_parallelism_threads={threads}"
            ).strip()
        import jax

        jax.config.update("jax_enable_x64", True)  # B2 is float64
        jax.config.update("jax_platforms", "cpu")

    def make(self, spec, data):
        import jax
        import jax.numpy as jnp

        a, g = spec["alpha"], spec["gamma"]
        z = jnp.asarray(data["z"])
        if spec["family"] == "binary":
            t = jnp.asarray(data["y_float"])

            def loss_fn(z, t):
                p = jax.nn.sigmoid(z)
                ce = jnp.maximum(z, 0) - z * t + jnp.log1p(jnp.exp(-jnp.abs(z)))
                p_t = p * t + (1 - p) * (1 - t)
                loss = ce * ((1 - p_t) ** g)
                alpha_t = a * t + (1 - a) * (1 - t)
                return jnp.mean(alpha_t * loss)

            other = t
        else:
            ax = spec["axis"] % len(spec["shape"])
            lab = jnp.asarray(data["labels"])

            def loss_fn(z, lab):
                logp = jax.nn.log_softmax(z, axis=ax)
                logp_t = jnp.take_along_axis(logp, jnp.expand_dims(lab, ax), axis=ax)
                logp_t = jnp.squeeze(logp_t, ax)
                p_t = jnp.exp(logp_t)
                return -jnp.mean(((1 - p_t) ** g) * logp_t)

            other = lab
        fwd_j = jax.jit(loss_fn)
        vg_j = jax.jit(jax.value_and_grad(loss_fn))

        def fwd():
            return fwd_j(z, other).block_until_ready()

        def fwdgrad():
            loss, gr = vg_j(z, other)
            gr.block_until_ready()
            return loss, gr

        return {
            "fwd": (fwd, lambda r: (float(r), None)),
            "fwdgrad": (fwdgrad, lambda r: (float(r[0]), np.asarray(r[1]))),
        }


FOCAL_NATIVE = [FocalNative("prealloc"), FocalNative("alloc"), FocalNative("float-targets")]
PEERS = [NumpyPlain(), NumpyBest(), Numba(), TorchEager(), TorchCompile(), JaxJit()]
# peers whose first compilation takes tens of seconds (skipped by --quick unless named)
SLOW_COMPILE = {"torch-compile"}

"""Loads the compiled module once, with a helpful message when it is missing."""

from __future__ import annotations

import os

_CORE = None

# GNU OpenMP threads busy-wait at the end of every parallel region. When
# another process holds a core, the waiting thread keeps its own core while the
# late one waits for a scheduler slice: measured here, a 10^5-element call took
# 8 ms on 2 threads instead of 0.2 ms on 1. With passive waiting the same call
# took 0.2 ms on 2 threads. libgomp reads its policy once, when it is loaded,
# so unless the user chose one, it is loaded (with the extension) with passive
# waiting, and the environment is then restored. If another module loaded
# libgomp first, its settings stay in force.
_WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _import_core():
    set_here = not any(k in os.environ for k in _WAIT_KEYS)
    if set_here:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from . import _core as mod
    finally:
        if set_here:
            os.environ.pop("OMP_WAIT_POLICY", None)
    return mod


def core():
    """Return focal_native._core, importing it on first use."""
    global _CORE
    if _CORE is None:
        try:
            mod = _import_core()
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "focal_native._core (the compiled kernels) could not be imported: "
                f"{exc}. Install the package with `pip install .` from the source tree "
                "(an editable or in-place checkout has no compiled module)."
            ) from exc
        _CORE = mod
    return _CORE

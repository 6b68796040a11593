"""Loads the compiled module once, with a helpful message when it is missing."""

from __future__ import annotations

_CORE = None


def core():
    """Return focal_native._core, importing it on first use."""
    global _CORE
    if _CORE is None:
        try:
            from . import _core as mod
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "focal_native._core (the compiled kernels) could not be imported: "
                f"{exc}. Install the package with `pip install .` from the source tree "
                "(an editable or in-place checkout has no compiled module)."
            ) from exc
        _CORE = mod
    return _CORE

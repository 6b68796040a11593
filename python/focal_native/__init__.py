"""focal_native: fast, accurate focal loss for NumPy, from a header-only C++17 core.

Binary (sigmoid, also multi-label) and multiclass (softmax) focal loss, each as
loss, gradient with respect to the logits, and both fused in one pass, for
float32 and float64. ``focal_native.reference`` is the pure-Python oracle every
native result is tested against.
"""

from __future__ import annotations

import os as _os
from pathlib import Path as _Path

from ._core_loader import core as _load_core
from ._sigmoid import sigmoid_focal_loss, sigmoid_focal_loss_grad, sigmoid_focal_loss_with_grad
from ._softmax import softmax_focal_loss, softmax_focal_loss_grad, softmax_focal_loss_with_grad

__version__: str = _load_core().__version__

__all__ = [
    "__version__",
    "build_info",
    "get_cmake_dir",
    "get_include",
    "get_num_threads",
    "set_num_threads",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "sigmoid_focal_loss_with_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_grad",
    "softmax_focal_loss_with_grad",
]


def get_num_threads() -> int:
    """Return the number of threads a call may use.

    It is ``OMP_NUM_THREADS`` (else the number of cores) until changed with
    :func:`set_num_threads`; 1 without OpenMP and in a forked child process.
    """
    return int(_load_core().get_num_threads())


def set_num_threads(n: int) -> None:
    """Set the number of threads every later call uses, process-wide.

    Parameters
    ----------
    n : int
        Threads (>= 1), or 0 to restore the default (``OMP_NUM_THREADS``, else
        the number of cores).
    """
    import operator

    try:
        k = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads: n must be an integer, got {type(n).__name__}") from None
    if k < 0:
        raise ValueError(f"set_num_threads: n must be >= 0, got {k}")
    _load_core().set_num_threads(k)


def build_info() -> dict:
    """Return facts about the compiled kernels.

    Returns
    -------
    dict
        ``version``, ``openmp`` (threads available), ``isa`` (instruction set in
        use), ``compiled_isas`` and ``supported_isas``.
    """
    m = _load_core()
    return {
        "version": m.__version__,
        "openmp": bool(m.has_openmp),
        "isa": m.get_isa(),
        "compiled_isas": list(m.compiled_isas),
        "supported_isas": list(m.supported_isas()),
        "num_threads": int(m.get_num_threads()),
    }


def get_include() -> str:
    """Return the directory holding the C++ headers (``focal_native/...hpp``)."""
    here = _Path(__file__).resolve().parent
    installed = here / "include"
    if installed.is_dir():
        return str(installed)
    return str(here.parents[1] / "cpp" / "include")  # source checkout


def get_cmake_dir() -> str:
    """Return the directory holding ``focal_nativeConfig.cmake``.

    Pass it as ``-Dfocal_native_DIR=...`` (or put it on ``CMAKE_PREFIX_PATH``) so
    that ``find_package(focal_native CONFIG REQUIRED)`` finds the headers shipped
    in this installation.
    """
    d = _Path(__file__).resolve().parent / "share" / "cmake" / "focal_native"
    if not d.is_dir():
        raise ImportError("focal_native's CMake files are not installed with this package")
    return str(d)


del _os

"""Memory safety (GitHub issue 6): the test suite under AddressSanitizer + UBSan.

Runs ``tools/asan_build.sh``: builds the extension with
``-DFOCAL_NATIVE_SANITIZE=ON`` (the quick flavour: baseline kernels at -O1)
into ``build/asan``, never touching the installed package, and runs the fuzz,
error, thread and fork tests plus the sigmoid/softmax tests against it. Any
sanitizer report fails the test.

It takes 5-6 minutes on 2 cores (about 4 to build: the kernels' translation
unit alone needs ~4 minutes of CPU with the sanitizers, so two cores do not
help; 1.5 to test), over the ~5 minute budget of a CI run's extra checks, so it
is opt-in: it runs only with ``FOCAL_NATIVE_SANITIZER_TESTS=1``. Setting
``FOCAL_NATIVE_SANITIZER_IN_CI=1`` in the CI environment would also run it
there (``CI=true``); ``FOCAL_NATIVE_SANITIZER_TESTS=0`` always turns it off
(the script sets that for its inner run). ``FOCAL_NATIVE_SANITIZER_CPP=1`` also builds and runs
the C++ tests (cpp/tests) with the sanitizers; ``FOCAL_NATIVE_SANITIZER_FULL=1``
builds every instruction set at -O2 (about 15 minutes more).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "asan_build.sh"
TIMEOUT = 1800


def _enabled():
    flag = os.environ.get("FOCAL_NATIVE_SANITIZER_TESTS")
    if flag is not None:
        return flag == "1"
    return (os.environ.get("CI", "").lower() == "true"
            and os.environ.get("FOCAL_NATIVE_SANITIZER_IN_CI") == "1")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _enabled(), reason="opt-in: FOCAL_NATIVE_SANITIZER_TESTS=1 (~6 min)"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux (GCC/Clang ASan) only"),
]


def test_suite_under_asan_and_ubsan(request):
    for tool in ("bash", "ldd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")
    args = ["bash", str(SCRIPT)]
    if os.environ.get("FOCAL_NATIVE_SANITIZER_CPP") == "1":
        if shutil.which("cmake") is None:
            pytest.skip("cmake not found (needed for the C++ tests)")
        args.append("--cpp")
    if os.environ.get("FOCAL_NATIVE_SANITIZER_FULL") == "1":
        args.append("--full")
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("LD_PRELOAD", None)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    elapsed = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    reports = [line for line in out.splitlines()
               if "ERROR: AddressSanitizer" in line or "runtime error:" in line
               or "ERROR: LeakSanitizer" in line]
    keys = ("extension built", "pytest finished", " passed", " failed", "OK: no sanitizer",
            "C++ tests built", "tests passed out of")
    summary = [line.replace("[asan_build] ", "") for line in out.splitlines()
               if any(k in line for k in keys)]
    _report(request.config, f"sanitizers: {len(reports)} reports, script exit {proc.returncode} "
                            f"in {elapsed:.0f} s; " + " | ".join(summary[-4:]))
    assert not reports, "\n".join(reports[:20]) + "\n...\n" + out[-6000:]
    assert proc.returncode == 0, out[-8000:]


def _report(config, line):
    """Add a line to the "reliability figures" section (shared with the other files)."""

    class _Figures:
        def __init__(self):
            self.lines = []

        def pytest_terminal_summary(self, terminalreporter):
            if self.lines:
                terminalreporter.section("reliability figures")
                for text in self.lines:
                    terminalreporter.write_line(text)

    plugin = config.pluginmanager.get_plugin("focal-native-reliability-figures")
    if plugin is None:
        plugin = _Figures()
        config.pluginmanager.register(plugin, "focal-native-reliability-figures")
    plugin.lines.append(line)

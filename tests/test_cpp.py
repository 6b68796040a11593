"""The C++ side as a C++ user meets it.

- cpp/tests (ctest): every kernel against a long double reference with explicit
  ulp bounds, built with OpenMP and serially, with -Werror;
- the CMake package: ``find_package(focal_native CONFIG)`` from an install
  prefix made by ``cmake --install``, from the installed wheel
  (``get_cmake_dir()``, ``python -m focal_native --cmakedir``, the ``cmake.root``
  entry point) and via ``add_subdirectory``; the consumer project
  tests/consumer prints its results as JSON and they are compared with the
  Python API on the same inputs;
- the logistic-regression examples, C++ and Python.

Everything is built once per session under pytest's temporary directory (set
FOCAL_NATIVE_CPP_BUILD_DIR to keep and reuse the builds across sessions). The
tests skip when cmake or a C++ compiler is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import focal_native
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSUMER = ROOT / "tests" / "consumer"
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow


def _find_cxx():
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx.split()[0]) and cxx
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


CMAKE = shutil.which("cmake")
CTEST = shutil.which("ctest") or (CMAKE and str(Path(CMAKE).with_name("ctest")))
CXX = _find_cxx()
NINJA = shutil.which("ninja")

if CMAKE is None:
    pytest.skip("cmake is not installed", allow_module_level=True)
if CXX is None:
    pytest.skip("no C++ compiler found (set CXX)", allow_module_level=True)
if not (ROOT / "cpp" / "tests" / "CMakeLists.txt").is_file():
    pytest.skip("not a source checkout (cpp/tests missing)", allow_module_level=True)


def run(cmd, *, cwd=None, timeout=600, check=True):
    """Run a command; on failure, fail the test with the tail of its output."""
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        out = (proc.stdout + "\n" + proc.stderr)[-6000:]
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{out}")
    return proc


def configure(source, build, *defines, check=True):
    cmd = [CMAKE, "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
           "-DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON"]
    if NINJA and not (Path(build) / "CMakeCache.txt").exists():
        cmd += ["-G", "Ninja"]
    if os.environ.get("CXX") is None:
        cmd.append(f"-DCMAKE_CXX_COMPILER={CXX}")
    return run(cmd + list(defines), check=check)


def build(build_dir, *targets):
    cmd = [CMAKE, "--build", build_dir, "--parallel", str(os.cpu_count() or 2)]
    for t in targets:
        cmd += ["--target", t]
    return run(cmd)


def cache_value(build_dir, name):
    text = (Path(build_dir) / "CMakeCache.txt").read_text()
    m = re.search(rf"^{re.escape(name)}:\w+=(.*)$", text, re.M)
    return m.group(1) if m else None


def header_version():
    text = (ROOT / "cpp" / "include" / "focal_native" / "version.hpp").read_text()
    return re.search(r'#define FOCAL_NATIVE_VERSION "([^"]+)"', text).group(1)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    keep = os.environ.get("FOCAL_NATIVE_CPP_BUILD_DIR")
    if keep:
        path = Path(keep).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("cpp")


@pytest.fixture(scope="session")
def project(workdir):
    """The repository's CMake project: C++ tests built (-Werror) and installed to a prefix."""
    bdir, prefix = workdir / "project", workdir / "prefix"
    configure(ROOT, bdir, "-DFOCAL_NATIVE_BUILD_TESTS=ON", "-DFOCAL_NATIVE_WERROR=ON",
              "-DFOCAL_NATIVE_INSTALL=ON", "-DFOCAL_NATIVE_PYTHON=OFF",
              f"-DCMAKE_INSTALL_PREFIX={prefix}")
    build(bdir)
    if prefix.exists():
        shutil.rmtree(prefix)
    run([CMAKE, "--install", bdir])
    openmp = any((bdir / "cpp" / "tests" / n).exists()
                 for n in ("focal_native_tests", "focal_native_tests.exe"))
    return types.SimpleNamespace(build=bdir, prefix=prefix, openmp=openmp)


# --------------------------------------------------------------------------
# cpp/tests through ctest
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["focal_native_tests", "focal_native_tests_serial"],
                         ids=["openmp", "serial"])
def test_cpp_unit_tests(project, name):
    exe = project.build / "cpp" / "tests" / name
    if not exe.exists() and not exe.with_suffix(".exe").exists():
        pytest.skip(f"{name} not built (OpenMP not found)")
    proc = run([CTEST, "-R", f"^{name}$", "--output-on-failure", "-V"], cwd=project.build,
               check=False)
    print(proc.stdout[-20000:])
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert "0 failed checks" in proc.stdout
    if name == "focal_native_tests":
        assert "OpenMP on" in proc.stdout
    else:
        assert "OpenMP off" in proc.stdout


# --------------------------------------------------------------------------
# The installed CMake package
# --------------------------------------------------------------------------

def test_install_tree(project):
    p = project.prefix
    assert (p / "include" / "focal_native" / "focal_native.hpp").is_file()
    assert (p / "include" / "focal_native" / "detail" / "math.hpp").is_file()
    cmake_dir = p / "share" / "cmake" / "focal_native"
    config = (cmake_dir / "focal_nativeConfig.cmake").read_text()
    assert config.startswith("# focal_native CMake package")
    assert "OpenMP" in config
    assert "find_package(focal_native" in config and "focal_native::focal_native" in config
    version = (cmake_dir / "focal_nativeConfigVersion.cmake").read_text()
    assert f'set(PACKAGE_VERSION "{header_version()}")' in version
    assert "CMAKE_SIZEOF_VOID_P" not in version  # ARCH_INDEPENDENT: header-only
    targets = (cmake_dir / "focal_nativeTargets.cmake").read_text()
    props = re.search(r"set_target_properties\(focal_native::focal_native PROPERTIES\n(.*?)\n\)",
                      targets, re.S).group(1)
    # Include directories and C++17, nothing else: no OpenMP, flags or definitions.
    assert sorted(line.split()[0] for line in props.strip().splitlines()) == [
        "INTERFACE_COMPILE_FEATURES", "INTERFACE_INCLUDE_DIRECTORIES"]
    assert 'INTERFACE_INCLUDE_DIRECTORIES "${_IMPORT_PREFIX}/include"' in props
    assert 'INTERFACE_COMPILE_FEATURES "cxx_std_17"' in props


def test_wheel_cmake_files():
    cmake_dir = Path(focal_native.get_cmake_dir())
    assert (cmake_dir / "focal_nativeConfig.cmake").is_file()
    include = Path(focal_native.get_include())
    assert (include / "focal_native" / "focal_native.hpp").is_file()
    targets = (cmake_dir / "focal_nativeTargets.cmake").read_text()
    m = re.search(r'INTERFACE_INCLUDE_DIRECTORIES "([^"]*)"', targets)
    prefix = cmake_dir.parents[3]  # .../site-packages: the wheel's install root
    dirs = [d.replace("${_IMPORT_PREFIX}", str(prefix)) for d in m.group(1).split(";")]
    assert [Path(d).resolve() for d in dirs] == [include.resolve()]
    out = run([sys.executable, "-m", "focal_native", "--cmakedir"]).stdout.strip()
    assert Path(out).resolve() == cmake_dir.resolve()


def _entry_point_root():
    """What scikit-build-core passes as focal_native_ROOT (the cmake.root entry point)."""
    eps = metadata.entry_points(group="cmake.root")
    ep = next((e for e in eps if e.name == "focal_native"), None)
    if ep is None:
        pytest.fail("the installed distribution has no cmake.root entry point 'focal_native'")
    return Path(ep.load().__file__).resolve().parent


# How the consumer finds focal_native, and where the found package must live.
SOURCES = {
    "prefix": lambda p: ([f"-DCMAKE_PREFIX_PATH={p.prefix}"],
                         p.prefix / "share" / "cmake" / "focal_native"),
    "wheel": lambda p: ([f"-Dfocal_native_DIR={focal_native.get_cmake_dir()}"],
                        Path(focal_native.get_cmake_dir())),
    "python-m": lambda p: ([
        "-Dfocal_native_DIR="
        + run([sys.executable, "-m", "focal_native", "--cmakedir"]).stdout.strip()],
        Path(focal_native.get_cmake_dir())),
    "cmake-root": lambda p: ([f"-Dfocal_native_ROOT={_entry_point_root()}"],
                             Path(focal_native.get_cmake_dir())),
    "subdirectory": lambda p: ([f"-DFOCAL_NATIVE_SOURCE_DIR={ROOT}"], None),
}


@pytest.fixture(scope="session")
def consumers(project, workdir):
    """Configured consumer build directories, one per way of finding the package."""
    built = {}

    def get(source, openmp=False):
        key = (source, openmp)
        if key not in built:
            defines, expected_dir = SOURCES[source](project)
            bdir = workdir / f"consumer-{source}{'-omp' if openmp else ''}"
            # -O1: a third of -O3's compile time; the kernels' numerics at -O3
            # are the business of cpp/tests, this checks the package and the API.
            configure(CONSUMER, bdir, *defines, f"-DCONSUMER_OPENMP={'ON' if openmp else 'OFF'}",
                      "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG")
            built[key] = (bdir, expected_dir)
        return built[key]

    return get


@pytest.mark.parametrize("source", list(SOURCES))
def test_consumer_finds_package(consumers, source):
    bdir, expected_dir = consumers(source)
    if expected_dir is not None:
        found = cache_value(bdir, "focal_native_DIR")
        assert found and Path(found).resolve() == expected_dir.resolve()
    build(bdir, "consumer_version")
    out = json.loads(run([bdir / "consumer_version"]).stdout)
    expected = focal_native.__version__ if source in ("wheel", "python-m", "cmake-root") \
        else header_version()
    assert out == {"version": expected, "openmp": False}


def test_consumer_version_check(project, workdir):
    major, minor = header_version().split(".")[:2]
    ok = configure(CONSUMER, workdir / "consumer-version-ok",
                   f"-DCMAKE_PREFIX_PATH={project.prefix}",
                   f"-DCONSUMER_REQUIRE_VERSION={major}.{minor}")
    assert "consumer: focal_native" in ok.stdout
    for bad in (f"{int(major) + 1}.0", f"{major}.{int(minor) + 1}"):
        proc = configure(CONSUMER, workdir / f"consumer-version-{bad}",
                         f"-DCMAKE_PREFIX_PATH={project.prefix}",
                         f"-DCONSUMER_REQUIRE_VERSION={bad}", check=False)
        assert proc.returncode != 0
        assert "version" in proc.stderr.lower()


# --------------------------------------------------------------------------
# The consumer's results vs the Python API
# --------------------------------------------------------------------------

TOL = {np.dtype(np.float64): (1e-13, 1e-300), np.dtype(np.float32): (1e-6, 1e-35)}


def _python_results(case):
    dt = np.dtype(case["dtype"])
    z = np.array(case["logits"], dtype=dt).reshape(case["shape"])
    t = np.array(case["targets"], dtype=case["target_dtype"]).reshape(
        case.get("target_shape", case["shape"]))
    kw = {"alpha": case["alpha"], "gamma": case["gamma"], "reduction": case["reduction"]}
    for key in ("normalizer", "ignore_index", "label_smoothing", "axis"):
        if key in case:
            kw[key] = case[key]
    if case["kind"] == "sigmoid":
        loss = focal_native.sigmoid_focal_loss(z, t, **kw)
        up = case.get("grad_output")
        up = None if up is None else np.array(up, dtype=dt).reshape(case["shape"])
        grad = focal_native.sigmoid_focal_loss_grad(z, t, grad_output=up, **kw)
    else:
        loss = focal_native.softmax_focal_loss(z, t, **kw)
        grad = focal_native.softmax_focal_loss_grad(z, t, **kw)
    return z, t, kw, loss, grad


def _compare(case, out):
    z, t, kw, loss, grad = _python_results(case)
    rtol, atol = TOL[z.dtype]
    got_loss = np.array(case["loss"], dtype=np.float64)
    np.testing.assert_allclose(got_loss.reshape(np.shape(loss)), np.asarray(loss, np.float64),
                               rtol=rtol, atol=atol, err_msg=f"{case['name']} loss")
    np.testing.assert_allclose(np.array(case["grad"]).reshape(grad.shape), grad,
                               rtol=rtol, atol=atol, err_msg=f"{case['name']} grad")
    if "status" in case:
        assert case["status"]["code"] == 0


@pytest.fixture(scope="session")
def consumer_output(consumers, project):
    results = {}

    def get(source):
        if source not in results:
            openmp = source == "wheel" and project.openmp  # the wheel build links OpenMP
            bdir, _ = consumers(source, openmp)
            build(bdir, "consumer")
            results[source] = json.loads(run([bdir / "consumer"]).stdout)
        return results[source]

    return get


@pytest.mark.parametrize("source", ["prefix", "wheel"])
def test_consumer_matches_python(consumer_output, project, source):
    out = consumer_output(source)
    assert out["openmp"] is (source == "wheel" and project.openmp)
    assert out["threads"] >= 1
    names = [c["name"] for c in out["cases"]]
    assert names == ["sigmoid_none", "sigmoid_mean", "sigmoid_soft_sum", "sigmoid_labels",
                     "softmax_nchw", "softmax_dense_mean", "softmax_bad_label"]
    for case in out["cases"]:
        if case["kind"] == "error":
            assert case["status"]["code"] == 1 and case["status"]["index"] == 1
            with pytest.raises(ValueError, match=r"targets\[1\] = 7"):
                focal_native.softmax_focal_loss(np.zeros((4, 3)), np.array([0, 7, 1, 9]))
        else:
            _compare(case, out)


# --------------------------------------------------------------------------
# The examples
# --------------------------------------------------------------------------

SUMMARY = re.compile(r"^(focal|cross-entropy): precision ([\d.]+) recall ([\d.]+) "
                     r"TP (\d+) FP (\d+) FN (\d+) TN (\d+)$", re.M)
EPOCH = re.compile(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", re.M)


def _parse_example(text):
    summary = {m.group(1): {"precision": float(m.group(2)), "recall": float(m.group(3)),
                            "confusion": tuple(int(m.group(i)) for i in range(4, 8))}
               for m in SUMMARY.finditer(text)}
    epochs = [(float(m.group(2)), float(m.group(3))) for m in EPOCH.finditer(text)]
    return summary, epochs


def _check_example(text):
    summary, epochs = _parse_example(text)
    assert set(summary) == {"focal", "cross-entropy"}, text
    assert len(epochs) == 30
    focal, ce = summary["focal"], summary["cross-entropy"]
    assert sum(focal["confusion"]) == sum(ce["confusion"]) == 2000
    positives = focal["confusion"][0] + focal["confusion"][2]
    assert 150 <= positives <= 250  # ~10 % of 2000
    # Both losses fall; focal loss is the smaller number (q^gamma <= 1, alpha).
    assert epochs[-1][0] < epochs[0][0] and epochs[-1][1] < epochs[0][1]
    assert all(f < c for f, c in epochs)
    # What is robust on this data: weighting positives (alpha = 0.75) and
    # focusing on hard examples finds more positives than plain cross-entropy,
    # which with 10 % positives favours precision.
    assert focal["recall"] > 0.6 and focal["recall"] > ce["recall"] + 0.1
    assert ce["precision"] > focal["precision"]
    assert focal["precision"] > 0.3 and ce["recall"] > 0.2
    return summary, epochs


@pytest.fixture(scope="session")
def python_example():
    proc = run([sys.executable, EXAMPLES / "logistic_regression.py"], timeout=120)
    return proc.stdout


def test_python_example(python_example):
    _check_example(python_example)


def test_cpp_example(project, workdir, python_example):
    bdir = workdir / "example"
    configure(EXAMPLES / "cpp", bdir, f"-DCMAKE_PREFIX_PATH={project.prefix}")
    build(bdir)
    text = run([bdir / "logistic_regression"]).stdout
    summary, epochs = _check_example(text)
    # The same data and algorithm as the Python example: the same results.
    py_summary, py_epochs = _parse_example(python_example)
    assert summary == py_summary
    np.testing.assert_allclose(epochs, py_epochs, rtol=1e-6)

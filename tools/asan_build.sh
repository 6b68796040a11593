#!/usr/bin/env bash
# Build focal_native._core with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option FOCAL_NATIVE_SANITIZE) into a private directory, then run a
# subset of the Python test suite against that build. Optionally (--cpp) also
# build and run the C++ tests (cpp/tests) with the sanitizers.
#
# Usage: tools/asan_build.sh [--full] [--cpp] [--no-tests] [-- PYTEST_ARGS...]
#
#   --full       compile every instruction set (baseline, AVX2, AVX-512) at -O2:
#                ~15 min of CPU. The default is the quick build: the baseline
#                kernels only (FOCAL_NATIVE_DISPATCH=OFF) at -O1. The ISA
#                variants are one source compiled with different -m flags (they
#                differ in FMA use, not in indexing), so the quick build covers
#                the same memory accesses at a fraction of the compile time.
#   --cpp        also build cpp/tests with -DFOCAL_NATIVE_SANITIZE=ON and run ctest
#   --no-tests   build only
#   PYTEST_ARGS  replace the default test selection (see DEFAULT_TESTS below)
#
# Environment: PYTHON (default python3), FOCAL_NATIVE_ASAN_DIR (default
# build/asan under the repository), JOBS (parallel compile jobs, default nproc).
#
# The installed package is never touched: the sanitized package goes to
# $FOCAL_NATIVE_ASAN_DIR/site (pip install --target) and the tests import it
# through PYTHONPATH. The script checks that they really do.
#
# Runtime options, and why:
#   LD_PRELOAD=libasan libstdc++
#                        the interpreter itself is not instrumented; the ASan
#                        runtime must be loaded first to intercept malloc, and
#                        libstdc++ with it: otherwise ASan's __cxa_throw
#                        interceptor finds no real __cxa_throw (python does not
#                        link libstdc++) and the first C++ exception aborts
#                        with "CHECK failed: real___cxa_throw != 0".
#   log_path             reports go to $ASAN_DIR/reports/*.PID as well as being
#                        detected in the log: pytest's output capture would
#                        otherwise swallow the report of a process that aborts.
#   PYTHONMALLOC=malloc  Python objects are allocated with malloc, not
#                        pymalloc's arenas, so ASan sees their bounds too.
#   detect_leaks=0       LeakSanitizer on a whole CPython process reports
#                        thousands of "leaks" at exit (interned strings, static
#                        types, module state that CPython deliberately never
#                        frees), which would bury anything real. Leaks are
#                        tested instead by tests/test_reliability_soak.py
#                        (resident memory and reference counts flat over 600k
#                        calls).
#   UBSan halt_on_error=1, print_stacktrace=1: the first undefined behaviour
#                        fails the run with a stack; the build already uses
#                        -fno-sanitize-recover=all.
# A report from either sanitizer makes the script exit non-zero; it also greps
# the log for "ERROR: AddressSanitizer" and "runtime error:" in case a report
# came from a child process whose exit status was not propagated.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

# Tests that exercise every kernel, binding and error path quickly; slow-marked
# and bigmem tests are deselected (ASan makes everything 2-3x slower).
DEFAULT_TESTS=(
  tests/test_fuzz_api.py
  tests/test_reliability_errors.py
  tests/test_reliability_threads.py
  tests/test_reliability_fork.py
)
# (The larger tests/test_sigmoid.py and tests/test_softmax.py pass too, in about
# a minute more: tools/asan_build.sh -- tests/test_sigmoid.py tests/test_softmax.py)
for f in "$ROOT"/tests/test_sigmoid_errors.py "$ROOT"/tests/test_softmax_errors.py; do
  [[ -f "$f" ]] && DEFAULT_TESTS+=("tests/$(basename "$f")")
done

want_cpp=0
run_tests=1
full=0
pytest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpp) want_cpp=1 ;;
    --full) full=1 ;;
    --no-tests) run_tests=0 ;;
    --) shift; pytest_args=("$@"); break ;;
    -h|--help) sed -n '2,48p' "$0"; exit 0 ;;
    *) echo "asan_build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ ${#pytest_args[@]} -eq 0 ]] && pytest_args=("${DEFAULT_TESTS[@]}")
if [[ $full -eq 1 ]]; then
  ASAN_DIR="${FOCAL_NATIVE_ASAN_DIR:-$ROOT/build/asan-full}"
  flavour=(-C cmake.build-type=RelWithDebInfo)
else
  ASAN_DIR="${FOCAL_NATIVE_ASAN_DIR:-$ROOT/build/asan}"
  flavour=(-C cmake.build-type=RelWithDebInfo
           "-C" "cmake.define.CMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g"
           -C cmake.define.FOCAL_NATIVE_DISPATCH=OFF)
fi
SITE="$ASAN_DIR/site"

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[asan_build] %s\n' "$*" >&2; }

# --------------------------------------------------------------------------
# 1. The sanitized extension
# --------------------------------------------------------------------------
iso=(--no-build-isolation)
if ! "$PY" -c "import scikit_build_core, pybind11" 2>/dev/null; then
  iso=()  # build requirements fetched by pip into an isolated environment
  log "scikit-build-core/pybind11 not importable: using pip's build isolation"
fi
mkdir -p "$ASAN_DIR"
log "building the sanitized extension into $SITE (build dir $ASAN_DIR/build)"
t0=$SECONDS
CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" "$PY" -m pip install "${iso[@]}" --no-deps --upgrade -q \
  --target "$SITE" \
  -C build-dir="$ASAN_DIR/build" \
  "${flavour[@]}" \
  -C cmake.define.FOCAL_NATIVE_SANITIZE=ON \
  -C cmake.define.FOCAL_NATIVE_WERROR=OFF \
  "$ROOT"
log "extension built in $((SECONDS - t0)) s ($([[ $full -eq 1 ]] && echo full || echo quick) build)"

so="$(ls "$SITE"/focal_native/_core*.so)"
# The ASan runtime the extension links against (the compiler that built it).
libasan="$(ldd "$so" | awk '/libasan/ {print $3; exit}')"
if [[ -z "$libasan" || ! -f "$libasan" ]]; then
  libasan="$(${CXX:-g++} -print-file-name=libasan.so)"
fi
if [[ ! -f "$libasan" ]]; then
  log "cannot find the ASan runtime (ldd $so shows none)"; exit 1
fi
libstdcxx="$(ldd "$so" | awk '/libstdc\+\+/ {print $3; exit}')"
if [[ -z "$libstdcxx" || ! -f "$libstdcxx" ]]; then
  libstdcxx="$(${CXX:-g++} -print-file-name=libstdc++.so.6)"
fi
preload="$libasan $libstdcxx"
log "ASan runtime: $libasan (preloaded with $libstdcxx)"
reports="$ASAN_DIR/reports"
rm -rf "$reports"
mkdir -p "$reports"

export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:detect_invalid_pointer_pairs=0:print_summary=1"
export UBSAN_OPTIONS="log_path=$reports/ubsan:halt_on_error=1:print_stacktrace=1:report_error_type=1"

status=0
logfile="$ASAN_DIR/pytest.log"

# --------------------------------------------------------------------------
# 2. Python tests against it
# --------------------------------------------------------------------------
if [[ $run_tests -eq 1 ]]; then
  where="$(cd "$ROOT" && LD_PRELOAD="$preload" PYTHONMALLOC=malloc PYTHONPATH="$SITE" \
           "$PY" -c 'import focal_native._core as c; print(c.__file__)')"
  case "$where" in
    "$SITE"/*) log "tests import $where" ;;
    *) log "tests would import $where, not the sanitized build"; exit 1 ;;
  esac
  log "running: pytest ${pytest_args[*]}"
  t0=$SECONDS
  set +e
  (cd "$ROOT" && LD_PRELOAD="$preload" PYTHONMALLOC=malloc PYTHONPATH="$SITE" \
     FOCAL_NATIVE_SANITIZER_TESTS=0 \
     "$PY" -m pytest -q -p no:cacheprovider --capture=sys -m "not slow and not bigmem" \
       "${pytest_args[@]}") 2>&1 | tee "$logfile"
  status=${PIPESTATUS[0]}
  set -e
  log "pytest finished in $((SECONDS - t0)) s with status $status"
  if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|CHECK failed" \
       "$logfile"; then
    log "sanitizer reports found in $logfile"
    status=1
  fi
fi

# --------------------------------------------------------------------------
# 3. Optionally the C++ tests
# --------------------------------------------------------------------------
if [[ $want_cpp -eq 1 ]]; then
  if [[ ! -f "$ROOT/cpp/tests/CMakeLists.txt" ]]; then
    log "no cpp/tests: skipping the C++ tests"
  else
    cbuild="$ASAN_DIR/cpp"
    log "building the C++ tests with sanitizers in $cbuild"
    t0=$SECONDS
    cmake -S "$ROOT" -B "$cbuild" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DFOCAL_NATIVE_SANITIZE=ON -DFOCAL_NATIVE_BUILD_TESTS=ON -DFOCAL_NATIVE_PYTHON=OFF \
      -DFOCAL_NATIVE_INSTALL=OFF >/dev/null
    cmake --build "$cbuild" -j "$JOBS" >/dev/null
    log "C++ tests built in $((SECONDS - t0)) s"
    set +e
    # Native executables: leak detection is meaningful here, so it is on.
    (cd "$cbuild" && ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=0/detect_leaks=1}" \
       ctest --output-on-failure -j "$JOBS") 2>&1 | tee "$ASAN_DIR/ctest.log"
    cstatus=${PIPESTATUS[0]}
    set -e
    if [[ $cstatus -ne 0 ]] || grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$ASAN_DIR/ctest.log"; then
      log "C++ tests failed or reported (see $ASAN_DIR/ctest.log)"
      status=1
    fi
  fi
fi

if compgen -G "$reports/*" >/dev/null; then
  log "sanitizer reports written:"
  for f in "$reports"/*; do
    log "== $f"
    head -60 "$f" >&2
  done
  status=1
fi
if [[ $status -eq 0 ]]; then
  log "OK: no sanitizer reports"
fi
exit "$status"

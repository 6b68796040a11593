#!/usr/bin/env python3
"""Benchmark focal_native against NumPy, numba, PyTorch (eager, compile) and JAX.

    python bench/run.py                 # the six standard workloads, peers, plot
    python bench/run.py --quick         # smoke test: tiny sizes, correctness checks
    python bench/run.py --workloads B1,S2 --no-peers
    python bench/run.py --threads 1,2   # + thread-scaling sweep of focal_native

See bench/README.md for what is measured and how to read the output.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers as P  # noqa: E402

ALPHA, GAMMA = 0.25, 2.0

# name -> (family, shape, dtype, class axis, unit, description)
WORKLOADS = {
    "B1": ("binary", (10_000_000,), "float32", -1, "ms", "binary, 10M float32"),
    "B2": ("binary", (10_000_000,), "float64", -1, "ms", "binary, 10M float64"),
    "B3": ("binary", (1_000,), "float32", -1, "us", "binary, 1,000 float32"),
    "S1": ("softmax", (1_000_000, 80), "float32", -1, "ms", "softmax, 1M x 80, axis -1"),
    "S2": (
        "softmax",
        (8, 21, 256, 256),
        "float32",
        1,
        "ms",
        "softmax, (8,21,256,256) NCHW, axis 1",
    ),
    "S2nhwc": (
        "softmax",
        (8, 256, 256, 21),
        "float32",
        -1,
        "ms",
        "S2's data as (8,256,256,21) NHWC, axis -1",
    ),
    "S3": ("softmax", (256, 10), "float32", -1, "us", "softmax, 256 x 10"),
    # Beyond PERFORMANCE.md's standard six: shapes where focal_native once
    # had slow paths (long rows past 256 classes; float64 softmax on AVX-512).
    "S4": ("softmax", (20_000, 1000), "float32", -1, "ms", "softmax, 20k x 1000, axis -1"),
    "S5": ("softmax", (250_000, 80), "float64", -1, "ms", "softmax, 250k x 80 float64"),
}
DEFAULT_WORKLOADS = ["B1", "B2", "B3", "S1", "S2", "S2nhwc", "S3", "S4", "S5"]

# --quick: the same kinds of problem, tiny
QUICK_SHAPES = {
    "B1": (20_000,),
    "B2": (20_000,),
    "B3": (1_000,),
    "S1": (2_000, 80),
    "S2": (2, 21, 16, 16),
    "S2nhwc": (2, 16, 16, 21),
    "S3": (256, 10),
    "S4": (200, 1000),
    "S5": (2_000, 80),
}

# size sweep for the plot (forward + gradient)
SWEEP_BINARY = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]
SWEEP_SOFTMAX_ROWS = [100, 1_000, 10_000, 100_000, 1_000_000]
QUICK_SWEEP_BINARY = [1_000, 10_000]
QUICK_SWEEP_SOFTMAX_ROWS = [100, 1_000]

TOL = {  # (loss rtol, grad rtol, grad atol as a fraction of max |grad|)
    "float32": (1e-4, 1e-3, 1e-4),
    "float64": (1e-6, 1e-6, 1e-9),
}

MODES = ("fwd", "fwdgrad")
MODE_LABEL = {"fwd": "fwd", "fwdgrad": "fwd+grad"}


# ----------------------------------------------------------------------------
# progress and small helpers
# ----------------------------------------------------------------------------

_T0 = time.perf_counter()
_LOAD_START = list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def log(msg):
    print(f"[{time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def fmt_time(seconds, unit):
    if seconds is None:
        return "-"
    v = seconds * (1e6 if unit == "us" else 1e3)
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_spec(name, family, shape, dtype, axis, unit, section="workloads", modes=MODES):
    return {
        "name": name,
        "family": family,
        "shape": list(shape),
        "dtype": dtype,
        "axis": axis,
        "unit": unit,
        "alpha": ALPHA,
        "gamma": GAMMA,
        "section": section,
        "modes": list(modes),
    }


def spec_key(spec):
    return (spec["family"], tuple(spec["shape"]), spec["dtype"], spec["axis"])


# ----------------------------------------------------------------------------
# data: deterministic, regenerated identically in every process
# ----------------------------------------------------------------------------


def make_data(spec, seed=20240601):
    shape, dt = tuple(spec["shape"]), np.dtype(spec["dtype"])
    rng = np.random.default_rng([seed, int(np.prod(shape)), dt.itemsize])
    if spec["family"] == "binary":
        n = int(np.prod(shape))
        # detection-like: ~1 % positives; negatives mostly easy (z ~ N(-3, 3)),
        # positives z ~ N(1, 3) -- some |z| > 10, where float32 meets subnormals
        y = rng.random(n) < 0.01
        z = rng.standard_normal(n)
        z *= 3.0
        z += np.where(y, 1.0, -3.0)
        z = z.astype(dt).reshape(shape)
        y = y.reshape(shape)
        return {"z": z, "y_bool": y, "y_float": y.astype(dt)}
    ax = spec["axis"] % len(shape)
    C = shape[ax]
    lab_shape = shape[:ax] + shape[ax + 1 :]
    if spec["name"].startswith("S2nhwc") or spec.get("from_nchw"):
        # the same numbers as S2, transposed to class-axis-last
        nchw = dict(spec, shape=[shape[0], shape[-1], shape[1], shape[2]], axis=1, name="S2")
        d = make_data(nchw, seed)
        return {"z": np.ascontiguousarray(np.moveaxis(d["z"], 1, -1)), "labels": d["labels"]}
    lab = rng.integers(0, C, size=lab_shape, dtype=np.int64)
    # classifier-like: N(0, 2) logits with the true class lifted by 4, so a good
    # share of rows is confident (p_c > 1/2) and some are confidently wrong
    z = rng.standard_normal(shape, dtype=np.float32 if dt == np.float32 else np.float64)
    z *= 2.0
    z = z.astype(dt, copy=False)
    idx = np.expand_dims(lab, ax)
    np.put_along_axis(z, idx, np.take_along_axis(z, idx, ax) + dt.type(4.0), ax)
    return {"z": z, "labels": lab}


# ----------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------


def measure(call, target_s, repeat=None, min_reps=5, max_reps=1000, first=None):
    """Median seconds per call; warm-up outside the timed region.

    `first` is the (already made, untimed) first call's duration.  Calls shorter
    than ~1 ms are batched so that a sample is >= 1 ms (timer and loop noise).
    """
    t0 = time.perf_counter()
    call()  # second warm-up, also the estimate
    est = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(math.ceil(1e-3 / est)))
    if repeat is not None:
        reps = repeat
    else:
        reps = int(target_s / (est * number))
        lo = min_reps if est < 0.25 else 3
        reps = max(lo, min(max_reps, reps))
    samples = []
    gcold = gc.isenabled()
    gc.disable()
    try:
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(number):
                call()
            samples.append((time.perf_counter() - t0) / number)
    finally:
        if gcold:
            gc.enable()
    samples.sort()
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {
        "median_s": statistics.median(samples),
        "min_s": samples[0],
        "q1_s": q[0],
        "q3_s": q[2],
        "samples": len(samples),
        "calls_per_sample": number,
        "first_call_s": first,
    }


def compare(spec, ref, got, mode):
    """Return (ok, details) comparing an implementation's answer with focal_native's."""
    lrt, grt, gat = TOL[spec["dtype"]]
    rl, rg = ref
    gl, gg = got
    det = {}
    ok = True
    rel = abs(gl - rl) / max(abs(rl), 1e-300)
    det["loss_rel_err"] = rel
    if not (rel <= lrt) or not math.isfinite(gl):
        ok = False
    if mode == "fwdgrad":
        if gg is None or tuple(gg.shape) != tuple(rg.shape):
            return False, dict(det, error=f"gradient shape {None if gg is None else gg.shape}")
        gg = np.asarray(gg)
        scale = float(np.max(np.abs(rg))) or 1.0
        diff = np.abs(gg.astype(np.float64) - rg)
        det["grad_max_abs_err_rel_to_max"] = float(np.max(diff)) / scale
        close = np.allclose(gg, rg, rtol=grt, atol=gat * scale)
        if not close or not np.all(np.isfinite(gg)):
            ok = False
    det["ok"] = ok
    return ok, det


# ----------------------------------------------------------------------------
# running implementations over workloads
# ----------------------------------------------------------------------------


def reference(spec, data):
    """focal_native's answers (the check's reference); None when not implemented."""
    fnimpl = P.FocalNative("alloc")
    modes = fnimpl.make(spec, data)
    call, conv = modes["fwdgrad"]
    loss, grad = conv(call())
    return loss, np.array(grad, dtype=np.float64)


def run_impls(specs, impls, args, results, problems, only_sections=None, progress=None):
    """Measure every impl on every spec; fill `results[name][impl][mode]`."""
    total = len(specs)
    for si, spec in enumerate(specs):
        if only_sections and spec["section"] not in only_sections:
            continue
        tag = f"{spec['name']:>9}"
        log(
            f"[{si + 1}/{total}] {spec['name']}: {spec['family']} {tuple(spec['shape'])} "
            f"{spec['dtype']}, axis {spec['axis']}"
        )
        entry = results.setdefault(spec["name"], {})
        try:
            data = make_data(spec)
        except MemoryError:
            problems.append({"workload": spec["name"], "kind": "skipped", "why": "out of memory"})
            continue
        try:
            ref = reference(spec, data)
        except NotImplementedError:
            log(f"{tag}: focal_native does not implement {spec['family']} yet: skipped")
            entry["_skipped"] = f"focal_native.{spec['family']} not implemented"
            continue
        except Exception as exc:  # a real failure of the library under test
            log(f"{tag}: FOCAL_NATIVE FAILED: {exc!r}")
            problems.append(
                {
                    "workload": spec["name"],
                    "impl": "focal_native",
                    "kind": "error",
                    "why": repr(exc),
                }
            )
            entry["_error"] = repr(exc)
            continue
        for impl in impls:
            try:
                modes = impl.make(spec, data)
            except Exception as exc:
                log(f"{tag} {impl.name}: setup failed: {exc!r}")
                problems.append(
                    {
                        "workload": spec["name"],
                        "impl": impl.name,
                        "kind": "error",
                        "why": f"setup: {exc!r}",
                    }
                )
                continue
            if modes is None:
                continue
            rec = entry.setdefault(impl.name, {})
            for mode in spec["modes"]:
                if mode not in modes:
                    continue
                call, conv = modes[mode]
                try:
                    t0 = time.perf_counter()
                    ret = call()  # first warm-up (compiles JIT peers)
                    first = time.perf_counter() - t0
                    ok, det = compare(spec, ref, conv(ret), mode)
                    del ret
                    m = measure(call, args.target, args.repeat, first=first)
                except Exception as exc:
                    log(f"{tag} {MODE_LABEL[mode]:>8} {impl.name:<22} ERROR {exc!r}")
                    problems.append(
                        {
                            "workload": spec["name"],
                            "impl": impl.name,
                            "mode": mode,
                            "kind": "error",
                            "why": repr(exc),
                        }
                    )
                    rec[mode] = {"error": repr(exc)}
                    continue
                m["check"] = det
                rec[mode] = m
                flag = "" if ok else "   <-- MISMATCH vs focal_native"
                extra = f" (first call {first:.1f} s)" if first > 1.0 else ""
                log(
                    f"{tag} {MODE_LABEL[mode]:>8} {impl.name:<22} "
                    f"{fmt_time(m['median_s'], spec['unit']):>8} {spec['unit']} "
                    f"x{m['samples'] * m['calls_per_sample']}{extra}{flag}"
                )
                if not ok:
                    problems.append(
                        {
                            "workload": spec["name"],
                            "impl": impl.name,
                            "mode": mode,
                            "kind": "mismatch",
                            "details": det,
                        }
                    )
            time.sleep(0.05)  # let the previous runtime's spinning threads go idle
        del data
        gc.collect()
        if progress:
            progress(si + 1, total)


def setup_impls(impls, threads, notes):
    ready = []
    for impl in impls:
        if not impl.available():
            notes[impl.name] = {"available": False, "note": "not installed"}
            log(f"peer {impl.name}: not installed, skipped")
            continue
        try:
            impl.setup(threads)
            notes[impl.name] = {"available": True, "version": impl.version()}
            ready.append(impl)
        except Exception as exc:
            notes[impl.name] = {"available": False, "note": f"setup failed: {exc!r}"}
            log(f"peer {impl.name}: setup failed ({exc!r}), skipped")
    return ready


# ----------------------------------------------------------------------------
# machine information
# ----------------------------------------------------------------------------


def machine_info(threads, peer_notes):
    import focal_native

    info = {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "focal_native": focal_native.build_info(),
        "threads": threads,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "peers": peer_notes,
        "loadavg_start": _LOAD_START,
        "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "XLA_FLAGS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")
            if k in os.environ
        },
    }
    try:
        fam = mod = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu family") and fam is None:
                fam = line.split(":")[1].strip()
            if re.match(r"model\s*:", line) and mod is None:
                mod = line.split(":")[1].strip()
        info["cpu_family_model"] = f"{fam}/{mod}"
    except OSError:
        pass
    try:
        import threadpoolctl

        info["threadpools"] = [
            {
                k: d.get(k)
                for k in ("user_api", "internal_api", "num_threads", "version", "filepath")
            }
            for d in threadpoolctl.threadpool_info()
        ]
    except Exception:
        pass
    return info


# ----------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------

COLS = [
    "focal_native",
    "focal_native[alloc]",
    "focal_native[float-targets]",
    "numpy-plain",
    "numpy-best",
    "numba",
    "torch-eager",
    "torch-compile",
    "jax-jit",
]
COL_TITLE = {
    "focal_native": "focal_native",
    "focal_native[alloc]": "fn(alloc)",
    "focal_native[float-targets]": "fn(f-tgt)",
}


def print_table(specs, results, out=sys.stdout):
    present = [c for c in COLS if any(c in results.get(s["name"], {}) for s in specs)]
    if not present:
        return
    w0 = 20
    widths = [max(12, len(COL_TITLE.get(c, c)) + 1) for c in present]
    head = "workload".ljust(w0) + "".join(
        COL_TITLE.get(c, c).rjust(w) for c, w in zip(present, widths)
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for spec in specs:
        res = results.get(spec["name"], {})
        if "_skipped" in res or "_error" in res:
            why = res.get("_skipped") or res.get("_error")
            print(f"{spec['name']:<{w0}}({why})", file=out)
            continue
        for mode in MODES:
            base = res.get("focal_native", {}).get(mode, {}).get("median_s")
            row = f"{spec['name']} {MODE_LABEL[mode]} [{spec['unit']}]".ljust(w0)
            anything = False
            for c, w in zip(present, widths):
                m = res.get(c, {}).get(mode)
                if not m or "median_s" not in m:
                    cell = "-" if not (m and "error" in m) else "ERR"
                else:
                    anything = True
                    cell = fmt_time(m["median_s"], spec["unit"])
                    if c != "focal_native" and base:
                        cell += f" ({m['median_s'] / base:.1f}x)"
                    if not m["check"]["ok"]:
                        cell += "!"
                row += cell.rjust(w)
            if anything:
                print(row, file=out)
    print(file=out)
    print(
        "cells: median time (ratio = that time / focal_native's time, >1 means "
        "focal_native is faster); '!' = answer differs from focal_native; "
        "'-' = not installed / not applicable",
        file=out,
    )


def print_extra(results_json, out=sys.stdout):
    wl = results_json["workloads"]
    if "S2" in wl and "S2nhwc" in wl:
        a = wl["S2"].get("focal_native", {})
        b = wl["S2nhwc"].get("focal_native", {})
        for mode in MODES:
            if mode in a and mode in b and "median_s" in a[mode] and "median_s" in b[mode]:
                print(
                    f"focal_native S2 {MODE_LABEL[mode]}: NCHW (axis 1) / NHWC (axis -1) "
                    f"time = {a[mode]['median_s'] / b[mode]['median_s']:.2f}",
                    file=out,
                )
    ts = results_json.get("thread_scaling")
    if ts:
        print(
            "\nthread scaling, focal_native forward+gradient (median ms, speedup vs "
            f"{ts['threads'][0]} thread(s)):",
            file=out,
        )
        for name, rows in ts["results"].items():
            base = rows[0].get("median_s")
            cells = []
            for r in rows:
                if "median_s" in r:
                    sp = f", {base / r['median_s']:.2f}x" if base else ""
                    cells.append(f"{r['threads']}T {fmt_time(r['median_s'], 'ms')} ms{sp}")
                else:
                    cells.append(f"{r['threads']}T {r.get('skipped', 'error')}")
            print(f"  {name}: " + " | ".join(cells), file=out)


def plot(results_json, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot (pip install matplotlib)")
        return False
    sweep = results_json.get("size_sweep", {})
    fams = [f for f in ("binary", "softmax") if sweep.get(f)]
    if not fams:
        return False
    fig, axes = plt.subplots(1, len(fams), figsize=(6.5 * len(fams), 5), squeeze=False)
    styles = {
        "focal_native": dict(color="black", lw=2.5, marker="o"),
        "focal_native[alloc]": dict(color="gray", ls="--", marker="."),
    }
    for ax, fam in zip(axes[0], fams):
        pts = sweep[fam]
        impls = []
        for p in pts:
            for k in p["times"]:
                if k not in impls:
                    impls.append(k)
        for impl in impls:
            if impl == "focal_native[float-targets]":  # JSON only: keeps the plot readable
                continue
            xs, ys = [], []
            for p in pts:
                t = p["times"].get(impl)
                if t is not None:
                    xs.append(p["elements"])
                    ys.append(t * 1e3)
            if xs:
                ax.plot(xs, ys, label=impl, **styles.get(impl, dict(marker=".")))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("elements (logits)" + (", 80 classes" if fam == "softmax" else ""))
        ax.set_ylabel("forward + gradient, median ms")
        ttl = (
            "binary (sigmoid) float32, mean"
            if fam == "binary"
            else "softmax float32, (rows x 80), axis -1, mean"
        )
        ax.set_title(ttl)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = results_json["machine"]
    fig.suptitle(
        f"focal_native {m['focal_native']['version']} vs peers -- {m['cpu_model']}, "
        f"{m['threads']} thread(s)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, few repeats: a correctness smoke test (<1 min)",
    )
    ap.add_argument(
        "--workloads",
        default=None,
        help="comma list from " + ",".join(WORKLOADS) + " (default: all)",
    )
    ap.add_argument(
        "--peers",
        default=None,
        help="comma list of peers to run (default: all installed; "
        "names: " + ",".join(p.name for p in P.PEERS) + ")",
    )
    ap.add_argument("--no-peers", action="store_true", help="time focal_native only")
    ap.add_argument(
        "--threads",
        default=None,
        help="threads for every implementation (default: min(2, cores)); a "
        "list like 1,2 also runs a thread-scaling sweep of focal_native "
        "(B1, S1 forward+gradient) and uses the largest for the rest",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed samples per measurement (default: adaptive, ~--target s)",
    )
    ap.add_argument(
        "--target",
        type=float,
        default=None,
        help="seconds to spend timing each measurement (default 1.0; 0.05 quick)",
    )
    ap.add_argument("--no-sweep", action="store_true", help="skip the size sweep and plot")
    ap.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run each peer in its own subprocess (default; focal_native is timed "
        "in the parent first), so that no peer's thread pool, still spinning after "
        "its last call, competes with the next implementation for the cores; "
        "--no-isolate times everything in one process",
    )
    ap.add_argument("--name", default=None, help="machine name for bench/results/<name>.json")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_specs", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_out", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def build_specs(args):
    names = (
        DEFAULT_WORKLOADS
        if args.workloads is None
        else [w.strip() for w in args.workloads.split(",") if w.strip()]
    )
    lower = {k.lower(): k for k in WORKLOADS}
    specs = []
    for n in names:
        if n.lower() not in lower:
            raise SystemExit(f"unknown workload {n!r}; choose from {', '.join(WORKLOADS)}")
        n = lower[n.lower()]
        fam, shape, dt, ax, unit, _ = WORKLOADS[n]
        if args.quick:
            shape = QUICK_SHAPES[n]
        specs.append(make_spec(n, fam, shape, dt, ax, unit))
    sweep = []
    if not args.no_sweep:
        bs = QUICK_SWEEP_BINARY if args.quick else SWEEP_BINARY
        rs = QUICK_SWEEP_SOFTMAX_ROWS if args.quick else SWEEP_SOFTMAX_ROWS
        for n in bs:
            sweep.append(
                make_spec(
                    f"bin-{n:.0e}".replace("+0", ""),
                    "binary",
                    (n,),
                    "float32",
                    -1,
                    "us" if n < 100_000 else "ms",
                    section="sweep",
                    modes=("fwdgrad",),
                )
            )
        for r in rs:
            sweep.append(
                make_spec(
                    f"sm-{r:.0e}x80".replace("+0", ""),
                    "softmax",
                    (r, 80),
                    "float32",
                    -1,
                    "us" if r < 10_000 else "ms",
                    section="sweep",
                    modes=("fwdgrad",),
                )
            )
    return specs, sweep


def parse_threads(args):
    ncpu = os.cpu_count() or 1
    if args.threads is None:
        return min(2, ncpu), ([1, ncpu] if ncpu > 1 and not args.quick else [])
    ts = sorted({int(t) for t in args.threads.split(",") if t.strip()})
    if not ts or ts[0] < 1:
        raise SystemExit("--threads: positive integers, e.g. 1,2")
    return ts[-1], (ts if len(ts) > 1 else [])


def select_peers(args):
    if args.no_peers:
        return [], []
    if args.peers:
        want = [p.strip() for p in args.peers.split(",") if p.strip()]
        known = {p.name: p for p in P.PEERS}
        bad = [w for w in want if w not in known]
        if bad:
            raise SystemExit(f"unknown peer(s) {bad}; choose from {', '.join(known)}")
        return [known[w] for w in want], []
    chosen, skipped = [], []
    for p in P.PEERS:
        if args.quick and p.name in P.SLOW_COMPILE:
            skipped.append(p.name)
        else:
            chosen.append(p)
    return chosen, skipped


def worker_main(args):
    """--isolate child: measure one implementation on the given specs, write JSON."""
    threads = int(args.threads)
    specs = json.loads(Path(args._specs).read_text())
    impl = {p.name: p for p in P.PEERS + P.FOCAL_NATIVE}[args._worker]
    import focal_native

    focal_native.set_num_threads(threads)
    notes = {}
    ready = setup_impls([impl], threads, notes)
    results, problems = {}, []
    if ready:
        run_impls(specs, ready, args, results, problems)
    Path(args._out).write_text(
        json.dumps({"results": results, "problems": problems, "notes": notes})
    )
    return 0


def run_isolated(specs, impls, args, threads, results, problems, notes):
    with tempfile.TemporaryDirectory() as td:
        sp = Path(td) / "specs.json"
        sp.write_text(json.dumps(specs))
        for impl in impls:
            out = Path(td) / f"{impl.name}.json"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--_worker",
                impl.name,
                "--_specs",
                str(sp),
                "--_out",
                str(out),
                "--threads",
                str(threads),
                "--target",
                str(args.target),
            ]
            if args.repeat:
                cmd += ["--repeat", str(args.repeat)]
            log(f"--isolate: {impl.name} in a subprocess")
            rc = subprocess.call(cmd)
            if rc != 0 or not out.exists():
                problems.append(
                    {"impl": impl.name, "kind": "error", "why": f"isolated worker exited {rc}"}
                )
                continue
            got = json.loads(out.read_text())
            for wname, per in got["results"].items():
                for k, v in per.items():
                    results.setdefault(wname, {}).setdefault(k, v)
            problems.extend(got["problems"])
            notes.update(got["notes"])


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args._worker:
        if args.target is None:
            args.target = 1.0
        return worker_main(args)
    if args.target is None:
        args.target = 0.05 if args.quick else 1.0
    threads, sweep_threads = parse_threads(args)
    specs, sweep_specs = build_specs(args)
    peers, skipped_slow = select_peers(args)

    import focal_native

    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(threads, user_api="blas")
    except ImportError:
        pass

    notes = {}
    fn_impls = setup_impls(P.FOCAL_NATIVE, threads, notes)
    if not fn_impls:
        raise SystemExit("focal_native is not importable: pip install . first")
    for name in skipped_slow:
        notes[name] = {
            "available": None,
            "note": "skipped by --quick (first compile takes >20 s); "
            "name it with --peers to include it",
        }
        log(f"peer {name}: skipped in --quick mode (its first compilation takes >20 s)")
    isolated = args.isolate and peers
    peer_impls = peers if isolated else setup_impls(peers, threads, notes)
    log(
        f"focal_native {focal_native.__version__} {focal_native.build_info()['isa']}, "
        f"{threads} thread(s); peers: {', '.join(p.name for p in peers) or 'none'}"
    )

    if _LOAD_START and _LOAD_START[0] > 0.5 * (os.cpu_count() or 1):
        log(
            f"WARNING: the machine is busy (load average {_LOAD_START[0]:.1f} on "
            f"{os.cpu_count()} cores): timings will be noisy, multithreaded ones most"
        )
    results, problems = {}, []
    # the sweep reuses a standard workload's numbers where it is the same problem
    main_keys = {spec_key(s): s["name"] for s in specs}
    sweep_todo = [s for s in sweep_specs if spec_key(s) not in main_keys]
    all_specs = specs + sweep_todo
    if isolated:
        run_impls(all_specs, fn_impls, args, results, problems)
        run_isolated(all_specs, peers, args, threads, results, problems, notes)
    else:
        run_impls(all_specs, fn_impls + peer_impls, args, results, problems)

    # versions again: numba's threading layer is known only now (isolated
    # workers reported theirs after running)
    for impl in [] if isolated else peer_impls:
        try:
            notes[impl.name]["version"] = impl.version()
        except Exception:
            pass

    # thread scaling of focal_native (forward + gradient)
    thread_scaling = None
    if sweep_threads:
        thread_scaling = {"threads": sweep_threads, "results": {}}
        for wname in ("B1", "S1"):
            fam, shape, dt, ax, unit, _ = WORKLOADS[wname]
            if args.quick:
                shape = QUICK_SHAPES[wname]
            spec = make_spec(wname, fam, shape, dt, ax, unit, section="threads", modes=("fwdgrad",))
            rows = []
            data = make_data(spec)
            try:
                call, _ = P.FocalNative("prealloc").make(spec, data)["fwdgrad"]
                call()
            except NotImplementedError:
                thread_scaling["results"][wname] = [
                    {"threads": t, "skipped": "not implemented"} for t in sweep_threads
                ]
                continue
            for t in sweep_threads:
                focal_native.set_num_threads(t)
                m = measure(call, args.target, args.repeat)
                m["threads"] = t
                rows.append(m)
                log(f"threads {wname} fwd+grad focal_native {t}T: {m['median_s'] * 1e3:.2f} ms")
            focal_native.set_num_threads(threads)
            thread_scaling["results"][wname] = rows
            del data

    # assemble the JSON
    out = {
        "schema": 1,
        "machine": machine_info(threads, notes),
        "config": {
            "quick": args.quick,
            "threads": threads,
            "repeat": args.repeat,
            "target_s": args.target,
            "isolate": bool(args.isolate),
            "alpha": ALPHA,
            "gamma": GAMMA,
            "argv": sys.argv[1:],
        },
        "workloads": {},
        "size_sweep": {},
        "thread_scaling": thread_scaling,
        "problems": problems,
    }
    for s in specs:
        out["workloads"][s["name"]] = dict(
            spec=s, description=WORKLOADS[s["name"]][5], **results.get(s["name"], {})
        )
    for fam in ("binary", "softmax"):
        pts = []
        for s in sweep_specs:
            if s["family"] != fam:
                continue
            src = main_keys.get(spec_key(s), s["name"])
            res = results.get(src, {})
            times = {
                impl: r["fwdgrad"]["median_s"]
                for impl, r in res.items()
                if not impl.startswith("_") and "median_s" in r.get("fwdgrad", {})
            }
            if times:
                pts.append(
                    {
                        "name": s["name"],
                        "shape": s["shape"],
                        "elements": int(np.prod(s["shape"])),
                        "from": src,
                        "times": times,
                        "checks_ok": all(
                            r["fwdgrad"]["check"]["ok"]
                            for r in res.values()
                            if isinstance(r, dict) and "check" in r.get("fwdgrad", {})
                        ),
                    }
                )
        if pts:
            out["size_sweep"][fam] = pts

    machine = args.name or slug(f"{cpu_model()}-{os.cpu_count()}c")
    if args.quick:
        machine += "-quick"
    od = Path(args.out_dir)
    od.mkdir(parents=True, exist_ok=True)
    jpath = od / f"{machine}.json"
    tmp = jpath.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, default=str) + "\n")
    tmp.replace(jpath)

    # report
    print()
    print(
        f"focal_native {focal_native.__version__} ({out['machine']['focal_native']['isa']}) "
        f"on {out['machine']['cpu_model']}, {os.cpu_count()} cores, {threads} thread(s); "
        f"alpha={ALPHA}, gamma={GAMMA}, reduction=mean"
        + ("  [--quick: tiny sizes]" if args.quick else "")
    )
    peers_line = ", ".join(
        f"{k} {v.get('version', '')}".strip() if v.get("available") else f"{k} ({v.get('note')})"
        for k, v in notes.items()
        if not k.startswith("focal_native")
    )
    print(f"peers: {peers_line or 'none'}")
    la, lb = out["machine"]["loadavg_start"], out["machine"]["loadavg_end"]
    if la and lb:
        print(f"load average (1 min) at start / end: {la[0]:.2f} / {lb[0]:.2f}")
    print()
    print_table(specs, results)
    print_extra(out)
    if sweep_specs:
        png = od / f"{machine}.png"
        if plot(out, png):
            print(f"\nplot: {png}")
    print(f"json: {jpath}")

    mism = [p for p in problems if p["kind"] in ("mismatch", "error")]
    if mism:
        bar = "!" * 78
        print(
            f"\n{bar}\n{len(mism)} PROBLEM(S): answers that differ from focal_native or "
            f"failed runs:",
            file=sys.stderr,
        )
        for p in mism:
            print("  " + json.dumps(p, default=str), file=sys.stderr)
        print(bar, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

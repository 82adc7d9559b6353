"""Filter throughput beside the machine's own ceilings, measured in the same run.

Three reports, each a separate command (keep each under the benchmark lock):

``ceilings``  Per filter on a 256^3 float32 volume: numba, scipy.ndimage and (gradient
              magnitude) dask-image throughput over several rounds (min / median / best),
              beside two ceilings measured in the same process:

              * compute: a float32 GEMM (``np.dot`` of two 4096^2 matrices) gives the
                multiply-add rate of the cores; a separable Gaussian with ``taps`` taps
                per axis needs ``3 * taps`` multiply-adds per voxel, so its compute
                ceiling is ``rate / (3 * taps)`` voxels/s;
              * memory: ``np.copyto`` of the volume (read + write once), the ceiling of
                any filter that reads its input and writes its output once.

``load``      The same filters with and without a CPU-bound neighbour (a Python busy loop
              pinned to one core): the slow-down of numba beside that of scipy.ndimage.

``scaling``   numba throughput for edges 64 .. 1024 (where the volume fits in memory),
              written to ``benchmarks/filter_scaling.csv`` and ``filter_scaling.png``
              (``--out-dir`` writes them elsewhere).  With ``--reuse-output`` every
              filter writes into one ``output=`` array per edge, allocated and touched
              before the timing (as the copy ceiling reuses its output), so no call
              faults in fresh result pages.  A volume larger than a quarter of the memory
              budget (``MEDIMG_FAST_MEMORY_BUDGET``, default 2 GiB) is filtered in slabs
              written into ``output``; set the budget above ``16 * edge**3`` bytes to
              time the whole-volume kernels.  ``ceilings --reuse-output`` does the same
              for the 256^3 table (scipy.ndimage gets an ``output=`` array too).

Run (each under ``flock /tmp/medimg-bench.lock``)::

    python benchmarks/bench_ceilings.py ceilings [--rounds 7]
    python benchmarks/bench_ceilings.py load [--rounds 5]
    python benchmarks/bench_ceilings.py scaling [--edges 64 128 256 512 1024]
        [--reuse-output] [--out-dir DIR]

Figures are wall-clock on whatever else the machine is running; ``uptime``'s load average
is printed with each report.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_filters import scipy_gradient_magnitude
from scipy import ndimage as ndi

import medimg_fast as mf

HERE = Path(__file__).resolve().parent
GEMM_EDGE = 4096
VOLUME_EDGE = 256
SIGMAS = (1.0, 2.0, 3.0, 5.0)
TRUNCATE = 4.0


def _taps(sigma):
    return 2 * int(TRUNCATE * sigma + 0.5) + 1


def _load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _times(call, rounds, warmup=1):
    for _ in range(warmup):
        call()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return np.array(out)


def _spread(voxels, seconds):
    """(min, median, best) throughput in voxels/s from round times."""
    rates = voxels / seconds
    return float(rates.min()), float(np.median(rates)), float(rates.max())


def _dask_gradient_magnitude(x):
    import dask
    import dask.array as da
    from dask_image import ndfilters

    lazy = da.from_array(x, chunks=tuple(max(1, s // 2) for s in x.shape))
    out = da.sqrt(sum(ndfilters.sobel(lazy, axis=a) ** 2 for a in range(x.ndim)))
    with dask.config.set(scheduler="threads", num_workers=os.cpu_count() or 1):
        return out.compute()


def volume(edge):
    """Seeded CT-like float32 noise, made slab by slab (no float64 copy of a big volume)."""
    rng = np.random.default_rng(2024)
    out = np.empty((edge,) * 3, dtype=np.float32)
    step = max(1, (1 << 24) // (edge * edge))
    for z in range(0, edge, step):
        out[z:z + step] = rng.normal(40.0, 300.0, size=out[z:z + step].shape)
    return out


def gemm_rate(rounds=3):
    """float32 multiply-adds per second of ``np.dot`` (BLAS, all cores): (min, median, best)."""
    rng = np.random.default_rng(0)
    a = rng.random((GEMM_EDGE, GEMM_EDGE), dtype=np.float32)
    b = rng.random((GEMM_EDGE, GEMM_EDGE), dtype=np.float32)
    return _spread(float(GEMM_EDGE) ** 3, _times(lambda: np.dot(a, b), rounds))


def copy_rate(x, rounds, out=None):
    out = np.empty_like(x) if out is None else out
    return _spread(x.size, _times(lambda: np.copyto(out, x), rounds))


def numba_cases():
    """name -> call(x, output=None)."""
    cases = {f"gaussian sigma={s:g}": (lambda x, output=None, s=s: mf.gaussian_filter(
        x, s, backend="numba", output=output)) for s in SIGMAS}
    cases["uniform size=5"] = lambda x, output=None: mf.uniform_filter(
        x, 5, backend="numba", output=output)
    cases["gradient magnitude"] = lambda x, output=None: mf.gradient_magnitude(
        x, backend="numba", output=output)
    return cases


def scipy_cases():
    """name -> call(x, output=None) (the gradient magnitude's output is its last step's)."""
    cases = {f"gaussian sigma={s:g}": (lambda x, output=None, s=s: ndi.gaussian_filter(
        x, s, output=output)) for s in SIGMAS}
    cases["uniform size=5"] = lambda x, output=None: ndi.uniform_filter(x, 5, output=output)
    cases["gradient magnitude"] = lambda x, output=None: _into(scipy_gradient_magnitude(x),
                                                               output)
    return cases


def _into(result, output):
    if output is None:
        return result
    output[...] = result
    return output


def _fmt(spread):
    return " / ".join(f"{v / 1e6:7.0f}" for v in spread)


def report_ceilings(rounds, reuse_output=False):
    x = volume(VOLUME_EDGE)
    out = None
    if reuse_output:
        out = np.empty_like(x)
        out.fill(0.0)
    print(f"# ceilings, {VOLUME_EDGE}^3 float32, numba threads "
          f"{_numba_threads()}, output {'reused (output=)' if reuse_output else 'new each call'}, "
          f"load average before: {_load_average()}")
    gemm = gemm_rate()
    copy = copy_rate(x, max(rounds, 5))
    print(f"GEMM float32 {GEMM_EDGE}^2: {gemm[1] / 1e9:.1f} G multiply-adds/s median "
          f"(min {gemm[0] / 1e9:.1f}, best {gemm[2] / 1e9:.1f})")
    print(f"copy {VOLUME_EDGE}^3: {copy[1] / 1e6:.0f} Mvox/s median "
          f"(min {copy[0] / 1e6:.0f}, best {copy[2] / 1e6:.0f})")
    print("Mvox/s as min / median / best over rounds; ceilings from the medians above")
    print(f"{'filter':22s} {'numba':>25s} {'ceiling':>9s} {'median/ceil':>11s} "
          f"{'scipy (median)':>14s} {'x scipy':>8s}")
    ours = numba_cases()
    theirs = scipy_cases()
    rows = []
    for name, call in ours.items():
        spread = _spread(x.size, _times(lambda call=call: call(x, output=out), rounds))
        base = _spread(x.size, _times(lambda name=name: theirs[name](x, output=out),
                                      2 if "gauss" in name else 3))
        if name.startswith("gaussian"):
            sigma = float(name.split("=")[1])
            ceiling = gemm[1] / (3 * _taps(sigma))
            kind = f"compute ({3 * _taps(sigma)} MA/vox)"
        else:
            ceiling = copy[1]
            kind = "copy"
        rows.append((name, spread, ceiling, kind, base))
        print(f"{name:22s} {_fmt(spread)} {ceiling / 1e6:9.0f} {spread[1] / ceiling:10.0%} "
              f"{base[1] / 1e6:14.0f} {spread[1] / base[1]:8.1f}   [{kind}]")
    dask = _spread(x.size, _times(lambda: _dask_gradient_magnitude(x), 3))
    gm = next(r for r in rows if r[0] == "gradient magnitude")
    print(f"{'gradient mag., dask-image':22s} {_fmt(dask)}   numba median / dask-image "
          f"median: {gm[1][1] / dask[1]:.1f}x (min/min {gm[1][0] / dask[0]:.1f}x)")
    print(f"load average after: {_load_average()}")


def _numba_threads():
    import numba

    return numba.get_num_threads()


def report_load(rounds):
    """Slow-down under a CPU-bound neighbour pinned to core 0, numba beside scipy."""
    x = volume(VOLUME_EDGE)
    ours = numba_cases()
    theirs = scipy_cases()
    names = ["gaussian sigma=2", "uniform size=5", "gradient magnitude"]
    calls = {}
    for name in names:
        calls[f"numba {name}"] = (lambda name=name: ours[name](x), rounds)
        calls[f"scipy {name}"] = (lambda name=name: theirs[name](x), 2)

    def measure():
        return {key: float(np.median(_times(call, n))) for key, (call, n) in calls.items()}

    print(f"# load test, {VOLUME_EDGE}^3 float32, {os.cpu_count()} cores, numba threads "
          f"{_numba_threads()}, load average before: {_load_average()}")
    quiet = measure()
    neighbour = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c",
                                  "while True: pass"])
    try:
        time.sleep(0.5)
        loaded = measure()
    finally:
        neighbour.kill()
        neighbour.wait()
    quiet_again = measure()
    print(f"{'case':32s} {'quiet (s)':>10s} {'loaded (s)':>10s} {'quiet again':>11s} "
          f"{'slow-down':>9s}")
    for key in calls:
        base = 0.5 * (quiet[key] + quiet_again[key])
        print(f"{key:32s} {quiet[key]:10.4f} {loaded[key]:10.4f} {quiet_again[key]:11.4f} "
              f"{loaded[key] / base:9.2f}")
    print(f"load average after: {_load_average()}")


def _fits(edge, copies):
    """Whether ``copies`` float32 volumes of ``edge``^3 fit in half the available memory."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        available = info["MemAvailable"]
    except (OSError, KeyError, ValueError):
        return edge <= 512
    return copies * 4 * edge ** 3 < 0.5 * available


def report_scaling(edges, rounds, reuse_output=False, out_dir=HERE):
    from medimg_fast.chunking import memory_budget

    cases = numba_cases()
    names = ["gaussian sigma=2", "uniform size=5", "gradient magnitude"]
    budget = memory_budget()
    print(f"# scaling, numba threads {_numba_threads()}, output "
          f"{'reused (output=)' if reuse_output else 'new each call'}, memory budget "
          f"{budget / 2**30:.1f} GiB, load average before: {_load_average()}")
    rows = []
    for edge in edges:
        if not _fits(edge, 2.5):  # input, output and a transient
            print(f"{edge}^3: skipped (does not fit in memory)")
            continue
        x = volume(edge)
        n = rounds if edge <= 256 else max(2, rounds // 3)
        output = None
        if reuse_output:
            output = np.empty_like(x)
            output.fill(0.0)  # touched: its pages are in before the first timed call
        copy = copy_rate(x, n, out=output)  # the copy ceiling writes into it too
        rows.append({"edge": edge, "case": "copy", "min_mvox_s": copy[0] / 1e6,
                     "median_mvox_s": copy[1] / 1e6, "best_mvox_s": copy[2] / 1e6})
        for name in names:
            spread = _spread(x.size, _times(
                lambda name=name, x=x, output=output: cases[name](x, output=output), n))
            rows.append({"edge": edge, "case": name, "min_mvox_s": spread[0] / 1e6,
                         "median_mvox_s": spread[1] / 1e6, "best_mvox_s": spread[2] / 1e6})
        # by the default count (input, output, two temporaries); a Gaussian of one sweep
        # holds none and runs whole (see apply_filter)
        chunked = x.nbytes * 4 > budget
        print("  ".join(f"{r['case']}: {r['median_mvox_s']:.0f}" for r in rows[-4:]),
              f"Mvox/s median at {edge}^3" + (" (uniform and gradient magnitude chunked by "
                                              "the budget)" if chunked else ""),
              f"[load {_load_average()}]")
        del x, output
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "filter_scaling.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.1f}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    print(f"wrote {csv_path}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name in ["copy", *names]:
        pts = [r for r in rows if r["case"] == name]
        ax.plot([r["edge"] for r in pts], [r["median_mvox_s"] for r in pts], marker="o",
                label=name + (" (ceiling)" if name == "copy" else ", numba"))
        ax.fill_between([r["edge"] for r in pts], [r["min_mvox_s"] for r in pts],
                        [r["best_mvox_s"] for r in pts], alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([r["edge"] for r in rows if r["case"] == "copy"])
    ax.set_xticklabels([f"{r['edge']}^3" for r in rows if r["case"] == "copy"])
    ax.set_xlabel("volume (float32)")
    ax.set_ylabel("Mvox/s (median; band: min..best)")
    ax.set_title(f"Filter throughput vs size ({os.cpu_count()} cores"
                 + (", output= reused)" if reuse_output else ")"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    png_path = out_dir / "filter_scaling.png"
    fig.savefig(png_path, dpi=110)
    print(f"wrote {png_path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", choices=["ceilings", "load", "scaling"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--edges", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--reuse-output", action="store_true",
                        help="ceilings, scaling: pass one preallocated, touched output=")
    parser.add_argument("--out-dir", type=Path, default=HERE,
                        help="scaling: folder for filter_scaling.csv/png (default benchmarks/)")
    args = parser.parse_args(argv)
    if args.report == "ceilings":
        report_ceilings(args.rounds, args.reuse_output)
    elif args.report == "load":
        report_load(args.rounds)
    else:
        report_scaling(args.edges, args.rounds, args.reuse_output, args.out_dir)


if __name__ == "__main__":
    main()

"""Out-of-core throughput: a Zarr store read, filtered and written, beside the same job on
an uncompressed memory-mapped ``.npy``, and a plain store copy, in one run.

Data are CT-like: int16 Hounsfield units (air at -1000 inside the reconstruction circle
and -1024 outside it, a body ellipse of soft tissue at 40 HU, two lungs at -850, a spine
at 700, Gaussian noise of 10-40 HU), built slice by slice from a seeded generator so the
same edge always gives the same volume.  The filter is a 3^3 uniform filter (``uniform``)
or a Gaussian of sigma 1 (``gaussian``) on the numba backend, float32 out.

Jobs, timed in the same fresh process per edge (so the page cache and the load are the
ones of that run):

* ``npy``   the same job on memory-mapped ``.npy`` files: ``da.from_array`` over
  ``np.load(mmap_mode="r")``, the same filter call, ``da.store`` into
  ``np.lib.format.open_memmap`` in the same write steps;
* ``zarr``  ``open_volume`` -> filter -> ``save_volume`` (the public path, what
  ``medimg-fast filter in.zarr out.zarr`` runs);
* ``copy``  ``open_volume`` -> ``save_volume`` of the int16 store (read, decode, encode,
  write; no filter).

Run: ``python benchmarks/bench_out_of_core.py stream 512 1024 [uniform] [gaussian]
[--before=DIR] [--repeats=N]`` (one fresh process per job, best of N; the peak RSS of each is reported; for the
``npy`` job it includes the mapped file pages it touched; ``--before=DIR`` adds rows
run with the copy of ``medimg_fast`` in ``DIR``, e.g. the last commit's, on inputs that
copy writes), ``python benchmarks/bench_out_of_core.py codecs`` for the codec table (write and read of a 64 x 512 x 512 int16 sample and its
float32 Gaussian response, per codec setting, with the compression ratio).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

FILTERS = ("uniform", "gaussian")


def ct_slices(z0: int, z1: int, shape, seed: int = 0) -> np.ndarray:
    """Slices ``z0:z1`` of the CT-like int16 phantom of ``shape`` (z, y, x)."""
    nz, ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float32)
    y = (y - ny / 2) / (ny / 2)
    x = (x - nx / 2) / (nx / 2)
    fov = x**2 + y**2 <= 1.0
    out = np.empty((z1 - z0, ny, nx), dtype=np.int16)
    for k, z in enumerate(range(z0, z1)):
        rng = np.random.default_rng((seed, z))
        scale = 1.0 + 0.1 * np.sin(2 * np.pi * z / max(nz, 1))
        body = (x / (0.85 * scale)) ** 2 + (y / (0.62 * scale)) ** 2 <= 1.0
        lungs = (((np.abs(x) - 0.38 * scale) / 0.25) ** 2 + ((y + 0.05) / 0.38) ** 2) <= 1.0
        spine = x**2 + (y - 0.42 * scale) ** 2 <= 0.09**2
        hu = np.full((ny, nx), -1000.0, dtype=np.float32)
        sd = np.full((ny, nx), 10.0, dtype=np.float32)
        hu[body], sd[body] = 40.0, 20.0
        hu[body & lungs], sd[body & lungs] = -850.0, 30.0
        hu[spine], sd[spine] = 700.0, 40.0
        hu += sd * rng.standard_normal((ny, nx), dtype=np.float32)
        hu[~fov] = -1024.0
        out[k] = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return out


def _slab(edge):
    return max(1, (64 * 2**20) // (edge * edge * 2))


def make_inputs(edge: int, folder: str):
    """The phantom as a Zarr store (the writer's defaults) and as an ``.npy``."""
    import dask.array as da

    from medimg_fast.io import save_volume

    shape = (edge,) * 3
    step = _slab(edge)
    npy = np.lib.format.open_memmap(os.path.join(folder, "src.npy"), mode="w+",
                                    dtype=np.int16, shape=shape)
    for z0 in range(0, edge, step):
        npy[z0:z0 + step] = ct_slices(z0, min(edge, z0 + step), shape)
    npy.flush()
    del npy
    lazy = da.from_array(np.load(os.path.join(folder, "src.npy"), mmap_mode="r"),
                         chunks=(step, edge, edge))
    save_volume(lazy, os.path.join(folder, "src.zarr"))


def _filter(name):
    import medimg_fast.filters as mff

    if name == "uniform":
        return lambda x: mff.uniform_filter(x, 3, backend="numba")
    return lambda x: mff.gaussian_filter(x, 1.0, backend="numba")


def job(kind: str, filter_name: str, folder: str) -> float:
    """Seconds of one job (see the module docstring)."""
    import dask.array as da

    from medimg_fast.io import open_volume, save_volume

    src_zarr = os.path.join(folder, "src.zarr")
    src_npy = os.path.join(folder, "src.npy")
    run = _filter(filter_name)
    start = time.perf_counter()
    if kind == "npy":
        from medimg_fast.chunking import write_step_bytes
        from medimg_fast.io._zarr import _store_in_slabs

        source = np.load(src_npy, mmap_mode="r")
        chunks = open_volume(src_zarr).data.chunks  # the Zarr job's blocks
        result = run(da.from_array(source, chunks=chunks))
        target = np.lib.format.open_memmap(os.path.join(folder, "dst.npy"), mode="w+",
                                           dtype=result.dtype, shape=result.shape)
        _store_in_slabs(result, target, None, write_step_bytes())
        del target  # no flush: the Zarr jobs do not sync their files either
    elif kind == "zarr":
        vol = open_volume(src_zarr)
        save_volume(vol.__class__(data=run(vol.data), spacing=vol.spacing),
                    os.path.join(folder, "dst.zarr"), overwrite=True)
    elif kind == "copy":
        vol = open_volume(src_zarr)
        save_volume(vol, os.path.join(folder, "copy.zarr"), overwrite=True)
    else:
        raise ValueError(f"unknown job {kind!r}")
    return time.perf_counter() - start


def _job_child(kind, filter_name, folder):
    import resource

    import dask.array  # noqa: F401  (imports are not part of the timed job)
    import zarr  # noqa: F401

    import medimg_fast.filters as mff
    import medimg_fast.io  # noqa: F401

    mff.uniform_filter(np.zeros((8, 8, 8), np.float32), 3, backend="numba")  # JIT, untimed
    mff.gaussian_filter(np.zeros((8, 8, 8), np.float32), 1.0, backend="numba")
    seconds = job(kind, filter_name, folder)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{seconds:.3f},{peak:.0f}")


def _check_child(filter_name, folder):
    """The Zarr and npy results equal the filter of the whole array in memory, bit for bit."""
    from medimg_fast.io import open_volume

    src = np.load(os.path.join(folder, "src.npy"))
    expected = _filter(filter_name)(src)
    got = open_volume(os.path.join(folder, "dst.zarr")).data.compute()
    npy = np.load(os.path.join(folder, "dst.npy"))
    print(int(np.array_equal(got, expected) and np.array_equal(npy, expected)))


def _py(*args, src=None):
    env = dict(os.environ)
    if src:  # another copy of the package (the code before a change), for a same-run baseline
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, __file__, *args], check=True,
                          capture_output=True, text=True, env=env).stdout


def stream(edges, filters=("uniform",), check_up_to=512, before=None, repeats=1):
    """The table of the module docstring; ``before``: a folder holding another copy of
    ``medimg_fast`` (e.g. the last commit's), run as extra rows ("before") in the same run,
    its inputs written by that copy too.  Each job runs ``repeats`` times (fresh processes),
    the best time and the largest peak kept."""
    print(f"load average before: {os.getloadavg()}")
    print("| edge | filter | code | job | seconds | Mvox/s | / npy | peak RSS MiB | "
          "bit-identical |")
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    variants = [("now", None)] + ([("before", before)] if before else [])
    for edge in edges:
        for code, src in variants:
            folder = tempfile.mkdtemp(prefix=f"ooc{edge}-", dir=os.environ.get("BENCH_TMP"))
            try:
                _py("_make", str(edge), folder, src=src)
                voxels = edge**3
                for name in filters:
                    rows = {}
                    for kind in ("npy", "zarr", "copy"):
                        runs = [_py("_job", kind, name, folder, src=src).strip().split(",")
                                for _ in range(repeats)]
                        rows[kind] = (min(float(t) for t, _ in runs),
                                      max(int(p) for _, p in runs))
                    same = (_py("_check", name, folder, src=src).strip() == "1"
                            if edge <= check_up_to else "not checked")
                    base = voxels / rows["npy"][0] / 1e6
                    for kind, (seconds, peak) in rows.items():
                        mvox = voxels / seconds / 1e6
                        ratio = f"{mvox / base:.2f}" if kind != "npy" else ""
                        flag = same if kind in ("npy", "zarr") else ""
                        print(f"| {edge} | {name} | {code} | {kind} | {seconds:.2f} | "
                              f"{mvox:.0f} | {ratio} | {peak} | {flag} |", flush=True)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")


def codecs(depth=64, edge=512, repeats=3):
    """Write and read one (depth, edge, edge) block per codec setting, through zarr."""
    import scipy.ndimage as ndi
    import zarr
    from zarr.codecs import BloscCodec, ZstdCodec

    hu = ct_slices(0, depth, (edge, edge, edge))
    response = ndi.gaussian_filter(hu.astype(np.float32), 1.0)
    settings = {
        "none": None,
        "zstd 1": ZstdCodec(level=1),
        "zstd 3": ZstdCodec(level=3),
        "zstd 6": ZstdCodec(level=6),
        "blosc lz4 shuffle 1": BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),
        "blosc lz4 shuffle 3 (default)": BloscCodec(cname="lz4", clevel=3,
                                                     shuffle="shuffle"),
        "blosc lz4 shuffle 5": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        "blosc lz4 bitshuffle 5": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
        "blosc zstd shuffle 1": BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"),
        "blosc zstd shuffle 3": BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
        "blosc blosclz shuffle 5": BloscCodec(cname="blosclz", clevel=5, shuffle="shuffle"),
    }
    print(f"load average before: {os.getloadavg()}")
    print(f"chunks of 4 x {edge} x {edge}; best of {repeats}")
    print("| data | codec | ratio | write MB/s | read MB/s |")
    print("|---|---|---:|---:|---:|")
    folder = tempfile.mkdtemp(prefix="codecs-")
    try:
        for label, data in (("int16 HU", hu), ("float32 Gaussian", response)):
            for codec_name, codec in settings.items():
                path = os.path.join(folder, "c.zarr")
                writes, reads = [], []
                for _ in range(repeats):
                    shutil.rmtree(path, ignore_errors=True)
                    z = zarr.create_array(path, shape=data.shape, dtype=data.dtype,
                                          chunks=(4, edge, edge), compressors=codec,
                                          fill_value=0,
                                          config={"write_empty_chunks": True})
                    t = time.perf_counter()
                    z[...] = data
                    writes.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    back = zarr.open_array(path)[...]
                    reads.append(time.perf_counter() - t)
                assert np.array_equal(back, data)
                stored = sum(os.path.getsize(os.path.join(d, f))
                             for d, _, fs in os.walk(path) for f in fs)
                mb = data.nbytes / 1e6
                print(f"| {label} | {codec_name} | {data.nbytes / stored:.2f} | "
                      f"{mb / min(writes):.0f} | {mb / min(reads):.0f} |", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")


def main(argv):
    if argv[:1] == ["_make"]:
        return make_inputs(int(argv[1]), argv[2])
    if argv[:1] == ["_job"]:
        return _job_child(argv[1], argv[2], argv[3])
    if argv[:1] == ["_check"]:
        return _check_child(argv[1], argv[2])
    if argv[:1] == ["codecs"]:
        return codecs()
    if argv[:1] == ["stream"]:
        names = [a for a in argv[1:] if a in FILTERS] or ["uniform"]
        edges = [int(a) for a in argv[1:] if a.isdigit()] or [256, 512]
        before = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--before=")),
                      None)
        repeats = next((int(a.split("=", 1)[1]) for a in argv[1:]
                        if a.startswith("--repeats=")), 1)
        return stream(edges, names, before=before, repeats=repeats)
    print(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

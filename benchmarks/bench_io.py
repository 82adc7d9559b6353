"""I/O and archive throughput: volumes/s and megavoxels/s across volume sizes.

Cases (each records ``voxels`` in ``extra_info`` for ``benchmarks/report.py``):

* ``nifti_read``     open_volume + compute of a float32 ``.nii``, per edge;
* ``zarr_filter``    a chunked Zarr volume streamed through a 3^3 uniform filter into a new
  Zarr store (open_volume -> filter on Dask -> save_volume), per edge: cost should grow
  linearly with voxels;
* ``archive``        process_archive over a synthetic archive of NIfTI volumes on a 2-worker
  LocalCluster (one volume per task), reported as volumes/s and Mvox/s.

Run: ``pytest benchmarks/bench_io.py --benchmark-only``.

Peak memory of the streaming filter (one fresh process per size, so the figures do not mix):
``python benchmarks/bench_io.py memory 256 640 1024``.  The peak should level off near one
write step (64 MiB of output, its input with the halo planes) plus the interpreter, whatever
the volume size.

Out-of-core throughput against the same job on memory-mapped ``.npy`` files, a plain store
copy, and the codec measurements: ``benchmarks/bench_out_of_core.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

EDGES = sorted({64, 128, int(os.environ.get("MEDIMG_FAST_BENCH_EDGE", "256"))})
CHUNK = 64
ARCHIVE_VOLUMES = int(os.environ.get("MEDIMG_FAST_BENCH_ARCHIVE_N", "16"))
ARCHIVE_EDGE = 64


def volume_stats(image, mask=None, *, spacing=None, settings=None, backend="auto"):
    """A light feature step (so the archive case measures the I/O and the scheduling)."""
    values = np.asarray(image, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()),
            "p95": float(np.percentile(values, 95))}


def _synthetic(edge, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(40.0, 300.0, size=(edge,) * 3).astype(np.float32)


def _stream_filter(src, dst):
    import medimg_fast.filters as mff
    from medimg_fast.io import Volume, open_volume, save_volume

    vol = open_volume(src)
    filtered = mff.uniform_filter(vol.data, 3)
    save_volume(Volume(data=filtered, spacing=vol.spacing), dst, overwrite=True)


@pytest.mark.parametrize("edge", EDGES)
def test_nifti_read(benchmark, tmp_path, edge):
    import nibabel as nib

    from medimg_fast.io import open_volume

    path = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(_synthetic(edge), np.eye(4)), path)
    benchmark.extra_info.update(area="io", filter=f"nifti_read {edge}^3",
                                implementation="medimg_fast", voxels=edge**3, shape=[edge] * 3)
    out = benchmark(lambda: open_volume(path).data.compute())
    assert out.shape == (edge,) * 3


@pytest.mark.parametrize("edge", EDGES)
def test_zarr_filter(benchmark, tmp_path, edge):
    from medimg_fast.io import save_volume

    src = tmp_path / "src.zarr"
    save_volume(_synthetic(edge), src, chunks=(CHUNK,) * 3)
    benchmark.extra_info.update(area="io", filter=f"zarr_filter {edge}^3",
                                implementation="medimg_fast", voxels=edge**3, shape=[edge] * 3)
    benchmark.pedantic(_stream_filter, args=(src, tmp_path / "dst.zarr"), rounds=3,
                       warmup_rounds=1)


@pytest.fixture(scope="module")
def cluster_client():
    from distributed import Client, LocalCluster

    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:  # workers import volume_stats from this module
        sys.path.insert(0, here)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_archive(benchmark, tmp_path, cluster_client):
    import nibabel as nib

    from medimg_fast.archive import process_archive

    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(ARCHIVE_VOLUMES):
        nib.save(nib.Nifti1Image(_synthetic(ARCHIVE_EDGE, seed=i), np.eye(4)),
                 archive / f"v{i:03d}.nii")
    runs = iter(range(1000))
    voxels = ARCHIVE_VOLUMES * ARCHIVE_EDGE**3

    def run():
        # A fresh output folder per round, so nothing is reused from the previous round.
        return process_archive(archive, tmp_path / f"out{next(runs)}", features=volume_stats,
                               scheduler=cluster_client, progress=False)

    benchmark.extra_info.update(area="archive",
                                filter=f"archive {ARCHIVE_VOLUMES} x {ARCHIVE_EDGE}^3",
                                implementation="medimg_fast", voxels=voxels,
                                volumes=ARCHIVE_VOLUMES)
    result = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert result.n_succeeded == ARCHIVE_VOLUMES
    seconds = benchmark.stats.stats.min
    benchmark.extra_info["volumes_per_s"] = ARCHIVE_VOLUMES / seconds
    benchmark.extra_info["mvox_per_s"] = voxels / seconds / 1e6


def _make_input(edge: int, folder: str):
    import dask.array as da

    from medimg_fast.io import save_volume

    # Built chunk by chunk, so creating the input never needs the whole volume in memory.
    lazy = da.random.default_rng(0).normal(40.0, 300.0, size=(edge,) * 3,
                                           chunks=(CHUNK,) * 3).astype(np.float32)
    save_volume(lazy, os.path.join(folder, f"src{edge}.zarr"))


def _memory_child(edge: int, folder: str):
    import resource

    import dask

    import medimg_fast.filters  # noqa: F401  (import cost is not part of the peak below)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        _stream_filter(os.path.join(folder, f"src{edge}.zarr"),
                       os.path.join(folder, f"dst{edge}.zarr"))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{edge},{edge**3 * 4 / 2**20:.0f},{base:.0f},{peak:.0f},{seconds:.2f},"
          f"{edge**3 / seconds / 1e6:.1f}")


def main(argv):
    import tempfile

    if len(argv) == 3 and argv[0] in ("_make", "_child"):
        (_make_input if argv[0] == "_make" else _memory_child)(int(argv[1]), argv[2])
        return
    if not argv or argv[0] != "memory":
        print(__doc__)
        return
    edges = [int(a) for a in argv[1:]] or [128, 256, 384]
    print("| edge | volume MiB | RSS before MiB | peak RSS MiB | seconds | Mvox/s |")
    print("|---|---|---|---|---|---|")
    for edge in edges:
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run([sys.executable, __file__, "_make", str(edge), folder], check=True)
            line = subprocess.run([sys.executable, __file__, "_child", str(edge), folder],
                                  check=True, capture_output=True, text=True).stdout
        print("| " + " | ".join(line.strip().split(",")) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

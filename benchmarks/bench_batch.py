"""The batch machinery's own cost per volume (issue 12): ~100 small volumes on 2 workers.

Three cases in one run, on the same archive (NIfTI volumes of ``BATCH_EDGE``^3 with a mask,
first-order statistics):

``read+compute``
    :func:`medimg_fast.archive.run_pipeline` on every volume in a loop in this process: the
    reading and computing a batch cannot avoid (the baseline).
``archive[batch=1]``
    :func:`~medimg_fast.archive.process_archive` on a warm 2-worker ``LocalCluster``, one
    Dask task per volume (the behaviour before batching).
``archive[batch=auto]``
    The same with the default batching (several volumes per task).

``extra_info`` holds ``overhead_ms_per_volume`` = (wall time x workers - baseline) / volumes:
the time a worker spends on anything but reading and computing (scheduling, transfers,
writing the parts, assembling the tables), had the baseline parallelised perfectly.

Run: ``pytest benchmarks/bench_batch.py --benchmark-only -o python_files='bench_*.py'``, or
``python benchmarks/bench_batch.py`` for the figures as a table.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

BATCH_VOLUMES = int(os.environ.get("MEDIMG_FAST_BATCH_VOLUMES", "100"))
BATCH_EDGE = int(os.environ.get("MEDIMG_FAST_BATCH_EDGE", "24"))
N_WORKERS = 2
SETTINGS = {"families": ["stat"], "bin_count": 16}


def make_archive(folder, n=BATCH_VOLUMES, edge=BATCH_EDGE):
    """A manifest of `n` NIfTI volumes with spherical masks; returns its path."""
    import nibabel as nib

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(12)
    grid = np.indices((edge,) * 3) - edge / 2
    mask = ((grid**2).sum(axis=0) < (edge / 3) ** 2).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, np.eye(4)), os.path.join(folder, "mask.nii"))
    lines = ["path,label,mask"]
    for i in range(n):
        image = rng.normal(40.0, 30.0, (edge,) * 3).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), os.path.join(folder, f"v{i:03d}.nii"))
        lines.append(f"v{i:03d}.nii,{i % 2},mask.nii")
    manifest = os.path.join(folder, "manifest.csv")
    with open(manifest, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return manifest


def baseline(manifest):
    """Seconds to read and compute every volume in this process, one after the other."""
    from medimg_fast.archive import PipelineConfig, read_manifest, run_pipeline

    config = PipelineConfig(feature_settings=SETTINGS)
    entries = read_manifest(manifest)
    run_pipeline(entries[0], config)  # imports and JIT compilation are not per-volume cost
    start = time.perf_counter()
    for entry in entries:
        run_pipeline(entry, config)
    return time.perf_counter() - start


def archive_run(manifest, out, client, batch_size):
    from medimg_fast.archive import process_archive

    start = time.perf_counter()
    result = process_archive(manifest, out, scheduler=client, progress=False,
                             feature_settings=SETTINGS, batch_size=batch_size)
    seconds = time.perf_counter() - start
    assert result.n_succeeded == BATCH_VOLUMES, result.errors
    return seconds, result


def overhead_ms(wall, base, n=BATCH_VOLUMES, workers=N_WORKERS):
    return (wall * workers - base) / n * 1e3


def _cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    return cluster, Client(cluster)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    manifest = make_archive(folder / "archive")
    cluster, client = _cluster()
    # Warm the workers (imports, JIT) so the rounds measure the steady state.
    archive_run(manifest, folder / "warm", client, None)
    yield folder, manifest, client, {"baseline": baseline(manifest)}
    client.close()
    cluster.close()


def test_read_compute_baseline(benchmark, setup):
    _, manifest, _, shared = setup
    benchmark.extra_info.update(area="archive", implementation="run_pipeline loop",
                                filter=f"read+compute {BATCH_VOLUMES} x {BATCH_EDGE}^3",
                                volumes=BATCH_VOLUMES, voxels=BATCH_VOLUMES * BATCH_EDGE**3)
    seconds = benchmark.pedantic(baseline, args=(manifest,), rounds=3)
    shared["baseline"] = min(shared["baseline"], seconds)
    benchmark.extra_info["ms_per_volume"] = shared["baseline"] / BATCH_VOLUMES * 1e3


@pytest.mark.parametrize("batch_size", [1, None], ids=["batch=1", "batch=auto"])
def test_archive_overhead(benchmark, setup, batch_size):
    folder, manifest, client, shared = setup
    rounds = iter(range(1000))

    def run():
        # A fresh output folder per round, so nothing is reused.
        return archive_run(manifest, folder / f"out-{batch_size}-{next(rounds)}", client,
                           batch_size)[0]

    benchmark.extra_info.update(area="archive", implementation=f"process_archive {batch_size}",
                                filter=f"archive {BATCH_VOLUMES} x {BATCH_EDGE}^3 on "
                                       f"{N_WORKERS} workers",
                                volumes=BATCH_VOLUMES, voxels=BATCH_VOLUMES * BATCH_EDGE**3)
    benchmark.pedantic(run, rounds=3)
    wall = benchmark.stats.stats.min
    benchmark.extra_info["ms_per_volume"] = wall / BATCH_VOLUMES * 1e3
    benchmark.extra_info["overhead_ms_per_volume"] = overhead_ms(wall, shared["baseline"])


def main():
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        manifest = make_archive(os.path.join(folder, "archive"))
        cluster, client = _cluster()
        try:
            archive_run(manifest, os.path.join(folder, "warm"), client, None)
            base = min(baseline(manifest) for _ in range(3))
            print(f"{BATCH_VOLUMES} volumes of {BATCH_EDGE}^3, {N_WORKERS} workers, "
                  f"{os.cpu_count()} CPU cores")
            print(f"read+compute (1 process):  {base / BATCH_VOLUMES * 1e3:7.2f} ms/volume")
            for batch in (1, None):
                walls, tasks = [], []
                for k in range(3):
                    wall, result = archive_run(manifest, os.path.join(folder, f"o{batch}{k}"),
                                               client, batch)
                    walls.append(wall)
                    tasks.append(float(result.features["time_total_s"].sum()))
                wall = min(walls)
                name = "1" if batch == 1 else "auto"
                print(f"archive batch={name:<4}: wall {wall / BATCH_VOLUMES * 1e3:7.2f} "
                      f"ms/volume, in-task {min(tasks) / BATCH_VOLUMES * 1e3:6.2f} ms/volume, "
                      f"overhead {overhead_ms(wall, base):6.2f} ms/volume")
        finally:
            client.close()
            cluster.close()


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    main()

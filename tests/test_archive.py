"""process_archive on a real Dask scheduler with worker processes: values, errors, resumption,
a worker killed mid-batch, and a whole run killed with SIGKILL then rerun."""

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from medimg_fast.archive import (
    ArchiveSourceNotFoundError,
    ManifestError,
    PipelineConfig,
    process_archive,
)

HELPERS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "io")
SRC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
# Worker processes are spawned with the parent's sys.path, so they can import the helpers.
if HELPERS_DIR not in sys.path:
    sys.path.insert(0, HELPERS_DIR)

from _archive_helpers import basic_features, killing_features, slow_features

# An LPS-aligned affine (NIfTI RAS with x and y negated): voxel order is only transposed.
AFFINE = np.diag([-1.5, -1.5, 2.0, 1.0])
SPACING_PRODUCT = 1.5 * 1.5 * 2.0
N_GOOD = 6


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A manifest of good volumes (two with masks) and one of every kind of bad input."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(42)
    rows, expected = [], {}
    for i in range(N_GOOD):
        raw = rng.normal(100.0, 20.0, size=(6, 7, 8)).astype(np.float32)
        raw[0, 0, 0] = 1000 + i  # an id the kill test recognises in the first voxel
        path = root / f"img_{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(raw, AFFINE), path)
        mask_path = None
        selected = raw.astype(np.float64).ravel()
        if i < 2:
            mask = (rng.random(raw.shape) > 0.5).astype(np.uint8)
            mask_path = root / f"mask_{i:02d}.nii.gz"
            nib.save(nib.Nifti1Image(mask, AFFINE), mask_path)
            selected = raw.astype(np.float64)[mask.astype(bool)]
        rows.append({"path": path.name, "label": str(i % 2),
                     "mask": mask_path.name if mask_path else "", "subject": f"s{i}"})
        expected[str(path)] = {"mean": selected.mean(), "std": selected.std(),
                               "voxels": selected.size,
                               "volume_mm3": selected.size * SPACING_PRODUCT}

    bad = {}
    (root / "corrupt.nii.gz").write_bytes(b"\x1f\x8b this is not gzip data")
    bad["corrupt.nii.gz"] = ("read", "CorruptVolumeError")
    nan = np.ones((6, 7, 8), np.float32)
    nan[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, AFFINE), root / "nan.nii.gz")
    bad["nan.nii.gz"] = ("validate", "NonFiniteVoxelsError")
    nib.save(nib.Nifti1Image(np.ones((6, 7, 8, 2), np.float32), AFFINE), root / "fmri.nii.gz")
    bad["fmri.nii.gz"] = ("validate", "WrongDimensionalityError")
    nib.save(nib.Nifti1Image(np.ones((6, 7, 8), np.float32), AFFINE), root / "shape.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((6, 7, 9), np.uint8), AFFINE), root / "shape_mask.nii.gz")
    bad["shape.nii.gz"] = ("mask", "MaskMismatchError")
    shutil.copy(get_testdata_file("MR_truncated.dcm"), root / "MR_truncated.dcm")
    bad["MR_truncated.dcm"] = ("read", "CorruptVolumeError")
    bad["missing.nii.gz"] = ("read", "VolumeNotFoundError")
    for name in bad:
        rows.append({"path": name, "label": "1", "subject": "bad",
                     "mask": "shape_mask.nii.gz" if name == "shape.nii.gz" else ""})

    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "mask", "subject"])
        writer.writeheader()
        writer.writerows(rows)
    bad = {str(root / k): v for k, v in bad.items()}
    return manifest, expected, bad


def _untimed(table):
    from medimg_fast.archive import TIMING_COLUMNS

    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table.columns])


def _resolved(table, root):
    """The table with its paths, kept as the manifest writes them, resolved under ``root``."""
    return table.assign(path=[p if os.path.isabs(p) else str(root / p) for p in table["path"]])


def _check_tables(result, expected, bad):
    root = Path(min(expected)).parent
    # the tables keep the manifest's relative paths as written
    assert all(not os.path.isabs(p) for p in result.features["path"])
    features = _resolved(result.features, root)
    assert result.n_succeeded == len(expected) == len(features)
    assert result.n_failed == len(bad) == len(result.errors)
    assert list(features["path"]) == sorted(expected)
    for _, row in features.iterrows():
        ref = expected[row["path"]]
        # float32 voxels summed in float64 on both sides: agreement to rounding.
        for name in ("mean", "std"):
            assert row[name] == pytest.approx(ref[name], rel=1e-12)
        assert row["voxels"] == ref["voxels"]
        assert row["volume_mm3"] == pytest.approx(ref["volume_mm3"], rel=1e-6)
    labelled = features.set_index("path")
    assert labelled.loc[min(expected), "label"] == "0"
    assert labelled.loc[min(expected), "subject"] == "s0"
    errors = {r["path"]: (r["stage"], r["error_type"])
              for _, r in _resolved(result.errors, root).iterrows()}
    assert errors == bad
    assert all("\n" not in m and m for m in result.errors["message"])


def test_manifest_values_errors_and_resume(client, archive, tmp_path, caplog):
    manifest, expected, bad = archive
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="medimg_fast.archive"):
        result = process_archive(manifest, out, features=basic_features, scheduler=client)
    _check_tables(result, expected, bad)
    assert result.n_skipped == 0

    # Tables on disk equal the returned ones.
    pd.testing.assert_frame_equal(pd.read_parquet(out / "features.parquet"), result.features)
    on_disk = pd.read_csv(out / "errors.csv", keep_default_na=False)
    on_disk = _resolved(on_disk, manifest.parent)
    assert sorted(on_disk["path"]) == sorted(bad)
    assert "not a readable NIfTI" in on_disk.set_index("path").loc[str(manifest.parent / "corrupt.nii.gz"),
                                                            "message"]
    # Not a terminal: one JSON log line per volume.
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "medimg_fast.archive"]
    per_volume = [rec for rec in lines if rec["event"] == "volume"]
    assert len(per_volume) == len(expected) + len(bad)
    assert {rec["status"] for rec in per_volume} == {"ok", "error"}

    # A rerun reuses every stored part and gives the same tables.
    again = process_archive(manifest, out, features=basic_features, scheduler=client,
                            progress=False)
    assert again.n_skipped == len(expected) + len(bad)
    pd.testing.assert_frame_equal(again.features, result.features)
    pd.testing.assert_frame_equal(again.errors, result.errors)

    # A different configuration is a different result: nothing is reused.
    clipped = process_archive(manifest, tmp_path / "out", features=basic_features,
                              scheduler=client, progress=False, window=(0.0, 100.0))
    assert clipped.n_skipped == 0
    assert (clipped.features["mean"] <= 100.0).all()


def test_worker_killed_mid_batch(client, archive, tmp_path):
    manifest, expected, bad = archive
    marker = tmp_path / "killed.pid"
    pids_before = set(client.run(os.getpid).values())
    result = process_archive(
        manifest, tmp_path / "out", scheduler=client.scheduler.address,
        config=PipelineConfig(features=killing_features,
                              feature_settings={"sleep": 0.2, "marker": str(marker),
                                                "trigger": 1003.0}))
    killed_pid = int(marker.read_text())
    assert killed_pid in pids_before  # a real worker process of the cluster died mid-task
    _check_tables(result, expected, bad)
    client.wait_for_workers(2, timeout=30)  # the nanny restarted it


def test_sigkilled_run_then_rerun_equals_uninterrupted(client, archive, tmp_path):
    manifest, expected, bad = archive
    settings = {"sleep": 0.4}
    out = tmp_path / "interrupted"
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{SRC_DIR!r}, {HELPERS_DIR!r}]
        from _archive_helpers import slow_features
        from medimg_fast.archive import process_archive
        if __name__ == "__main__":
            process_archive({str(manifest)!r}, {str(out)!r}, features=slow_features,
                            feature_settings={settings!r}, n_workers=1, processes=False,
                            progress=False)
    """)
    # A new session, so the kill reaches the run and every process it started.
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115  closed in the finally below
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = list((out / "parts").glob("*.row.json")) if (out / "parts").exists() else []
            if len(done) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "run.log").read_text()[-2000:]
    assert not (out / "features.parquet").exists()
    n_done = len(list((out / "parts").glob("*.row.json")))
    assert 2 <= n_done < len(expected)

    resumed = process_archive(manifest, out, features=slow_features, feature_settings=settings,
                              scheduler=client, progress=False)
    assert resumed.n_skipped >= n_done
    reference = process_archive(manifest, tmp_path / "reference", features=slow_features,
                                feature_settings=settings, scheduler=client, progress=False)
    assert reference.n_skipped == 0
    # Equal but for the per-volume timings, which are measured anew.
    pd.testing.assert_frame_equal(_untimed(resumed.features), _untimed(reference.features))
    pd.testing.assert_frame_equal(_untimed(resumed.errors), _untimed(reference.errors))
    _check_tables(resumed, expected, bad)


def test_folder_scan_nifti_dicom_zarr(client, tmp_path):
    from medimg_fast.io import save_volume

    root = tmp_path / "scans"
    (root / "patient1" / "ct").mkdir(parents=True)
    ct5n = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                        "98892001", "CT5N")
    for f in os.listdir(ct5n):
        shutil.copy(os.path.join(ct5n, f), root / "patient1" / "ct" / f)
    raw = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    nib.save(nib.Nifti1Image(raw, AFFINE), root / "patient1" / "t1.nii")
    zarr_data = np.full((4, 5, 6), 7.0, np.float32)
    save_volume(zarr_data, root / "patient2.zarr", spacing=(2.0, 1.0, 1.0))
    (root / "readme.txt").write_text("ignored")

    result = process_archive(root, tmp_path / "out", features=basic_features, scheduler=client,
                             progress=False)
    assert result.n_failed == 0
    paths = list(result.features["path"])
    assert paths == sorted([str(root / "patient1" / "ct"), str(root / "patient1" / "t1.nii"),
                            str(root / "patient2.zarr")])
    table = result.features.set_index("path")
    # DICOM: mean HU of the series from pydicom's own modality LUT.
    import pydicom
    from pydicom.pixels import apply_modality_lut

    hu = [apply_modality_lut(pydicom.dcmread(os.path.join(ct5n, f)).pixel_array,
                             pydicom.dcmread(os.path.join(ct5n, f))) for f in os.listdir(ct5n)]
    assert table.loc[str(root / "patient1" / "ct"), "mean"] == pytest.approx(np.mean(hu))
    assert table.loc[str(root / "patient1" / "t1.nii"), "mean"] == pytest.approx(raw.mean())
    assert table.loc[str(root / "patient2.zarr"), "volume_mm3"] == 4 * 5 * 6 * 2.0


def test_preprocessing_resample_and_zscore(client, tmp_path):
    raw = np.random.default_rng(5).normal(50, 10, size=(8, 10, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(raw, AFFINE), tmp_path / "v.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nv.nii.gz,a\n")
    result = process_archive(manifest, tmp_path / "out", features=basic_features,
                             scheduler=client, progress=False, target_spacing=(1.0, 3.0, 3.0),
                             normalize="zscore")
    row = result.features.iloc[0]
    # (z, y, x) spacing (2, 1.5, 1.5) -> (1, 3, 3): shape (8*2, 10/2, 12/2).
    assert row["voxels"] == 16 * 5 * 6
    assert row["volume_mm3"] == pytest.approx(16 * 5 * 6 * 9.0)
    assert row["mean"] == pytest.approx(0.0, abs=1e-5)
    assert row["std"] == pytest.approx(1.0, rel=1e-5)


def test_user_errors(tmp_path):
    with pytest.raises(ArchiveSourceNotFoundError, match="archive source not found"):
        process_archive(tmp_path / "nope.csv", tmp_path / "out")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,diagnosis\na.nii,1\n")
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['path'\]"):
        process_archive(bad, tmp_path / "out")
    with pytest.raises(ValueError, match="`window` must be"):
        PipelineConfig(window=(5, 1))
    with pytest.raises(ValueError, match="`normalize` must be"):
        PipelineConfig(normalize="minmax")
    ok = tmp_path / "ok.csv"
    ok.write_text("path,label\na.nii,1\n")
    with pytest.raises(ValueError, match="`scheduler` must be"):
        process_archive(ok, tmp_path / "out", scheduler="localhost:8786", features=basic_features)


def test_unlabelled_manifest_rois_timings_duplicates_and_order(client, tmp_path):
    """Issue 12: no label column; two ROIs of one image are two rows; per-volume timings;
    exact duplicates reported once; the manifest's order kept; a CSV table on request."""
    raw = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    nib.save(nib.Nifti1Image(raw, AFFINE), tmp_path / "b.nii.gz")
    nib.save(nib.Nifti1Image(raw + 1, AFFINE), tmp_path / "a.nii.gz")
    labels = np.zeros(raw.shape, np.uint8)
    labels[:3], labels[3:] = 1, 2
    nib.save(nib.Nifti1Image(labels, AFFINE), tmp_path / "labels.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,mask,roi\nb.nii.gz,labels.nii.gz,2\nb.nii.gz,labels.nii.gz,1\n"
                        "a.nii.gz,,\na.nii.gz,,\n")
    result = process_archive(manifest, tmp_path / "out", features=basic_features,
                             scheduler=client, progress=False, table_format="csv")
    assert result.features_path.name == "features.csv" and result.features_path.is_file()
    table = result.features
    assert list(table.columns[:5]) == ["path", "mask", "roi", "label", "subject"]
    # Manifest order, not sorted by path; the ROI tells the two rows of b apart.
    assert [os.path.basename(p) for p in table["path"]] == ["b.nii.gz", "b.nii.gz", "a.nii.gz"]
    assert list(table["roi"].iloc[:2].astype(int)) == [2, 1]
    assert table["mean"].iloc[0] == pytest.approx(raw[3:].mean())
    assert table["mean"].iloc[1] == pytest.approx(raw[:3].mean())
    assert table["label"].isna().all()
    assert any("1 exact duplicate row(s)" in w and "a.nii.gz" in w for w in result.warnings)
    for column in ("time_read_s", "time_features_s", "time_write_s", "time_total_s",
                   "megavoxels_per_s"):
        assert (table[column] >= 0).all(), column
    assert table["megavoxels"].iloc[0] == pytest.approx(raw.size / 1e6)


def test_conflicting_labels_are_an_error(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nx.nii.gz,a\nx.nii.gz,b\n")
    with pytest.raises(ManifestError, match="two different labels"):
        process_archive(manifest, tmp_path / "out", features=basic_features)


def test_progress_lines_outside_a_terminal(tmp_path):
    import io

    from medimg_fast.archive import _Entry, _Progress

    stream = io.StringIO()
    bar = _Progress(2, "auto", stream=stream)
    bar.update(_Entry(path="/d/a.nii.gz"), {"status": "ok", "seconds": 0.5})
    bar.update(_Entry(path="/d/b.nii.gz", mask="/d/m.nii.gz", roi="GTV"),
               {"status": "error", "stage": "read", "error_type": "CorruptVolumeError"})
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("archive: [1/2] ok /d/a.nii.gz (0.50 s")
    assert "[2/2] error at read: CorruptVolumeError /d/b.nii.gz roi=GTV" in lines[1]


def test_first_call_is_timed_apart(client, tmp_path):
    raw = np.random.default_rng(2).normal(size=(6, 7, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(raw, AFFINE), tmp_path / "v.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\nv.nii.gz\n")
    result = process_archive(manifest, tmp_path / "out", scheduler=client, progress=False,
                             feature_settings={"families": ["stat"], "bin_count": 8})
    assert result.seconds_first_call is not None and result.seconds_first_call > 0
    assert result.features["stat_mean"].iloc[0] == pytest.approx(raw.astype(np.float64).mean(),
                                                                  rel=1e-6)
    # A user-supplied feature step is never called on made-up data.
    custom = process_archive(manifest, tmp_path / "out2", scheduler=client, progress=False,
                             features=basic_features)
    assert custom.seconds_first_call is None

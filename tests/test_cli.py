"""End to end: ``python -m medimg_fast`` as a subprocess on a small archive with a corrupt file."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from medimg_fast.demo import generate_archive
from medimg_fast.io import open_volume

SRC = Path(__file__).resolve().parents[1] / "src"


def cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(SRC), "MEDIMG_FAST_BACKEND": "numpy"}
    return subprocess.run([sys.executable, "-m", "medimg_fast", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """8 synthetic volumes (NIfTI, DICOM, Zarr) plus a truncated NIfTI in the manifest."""
    root = tmp_path_factory.mktemp("archive")
    info = generate_archive(root, size="small", n_volumes=8, shape_range=(32, 36), seed=1)
    with open(info["manifest"], newline="") as fh:
        good = next(r for r in csv.DictReader(fh) if r["path"].startswith("nifti/"))
    corrupt = root / "nifti" / "corrupt.nii.gz"
    payload = (root / good["path"]).read_bytes()
    corrupt.write_bytes(payload[: len(payload) // 2])
    with open(info["manifest"], "a", newline="") as fh:
        csv.writer(fh).writerow(["nifti/corrupt.nii.gz", "smooth", good["mask"], "S099"])
    return root, info["manifest"], corrupt


@pytest.fixture(scope="module")
def features_run(archive, tmp_path_factory):
    _, manifest, _ = archive
    out = tmp_path_factory.mktemp("features")
    proc = cli("--json", "features", manifest, "--out", out, "--workers", 2,
               "--bin-width", 10)
    return out, proc


def _a_nifti(root):
    return min(p for p in (root / "nifti").glob("case*.nii.gz"))


def _error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("medimg-fast: error:")
    return lines[0]


def test_features_records_the_corrupt_volume_and_exits_1(archive, features_run):
    root, _manifest, corrupt = archive
    out, proc = features_run
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["succeeded"] == 8 and summary["failed"] == 1
    table = pd.read_parquet(out / "features.parquet")
    errors = pd.read_csv(out / "errors.csv")
    assert len(table) == 8
    # paths as the manifest writes them: relative to its folder
    assert list(errors["path"]) == ["nifti/corrupt.nii.gz"]
    assert (root / errors.loc[0, "path"]).resolve() == corrupt.resolve()
    assert errors.loc[0, "stage"] == "read"
    # Independent reference: the ROI mean with NumPy on the voxels as read.
    row = table.iloc[0]
    image = np.asarray(open_volume(root / row["path"]).data.compute(), dtype=np.float64)
    mask = np.asarray(open_volume(root / row["mask"]).data.compute()) != 0
    assert row["stat_mean"] == pytest.approx(image[mask].mean(), rel=1e-9)
    assert row["morph_volume"] > 0
    assert set(table["label"]) == {"smooth", "speckled"}
    # Outside a terminal: one progress line per volume on stderr; timings in the table.
    assert proc.stderr.count("archive: [") == 9, proc.stderr
    assert (table["time_total_s"] > 0).all() and (table["megavoxels_per_s"] > 0).all()
    assert errors.loc[0, "time_read_s"] >= 0


def test_features_rerun_resumes(archive, features_run):
    _, manifest, _ = archive
    out, _ = features_run
    proc = cli("--json", "features", manifest, "--out", out, "--workers", 1,
               "--bin-width", 10, "--quiet")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["skipped"] == summary["reused"] == 9
    assert proc.stderr == ""  # --quiet: nothing from Dask either


@pytest.fixture(scope="module")
def trained(features_run, tmp_path_factory):
    out, _ = features_run
    model = tmp_path_factory.mktemp("model")
    proc = cli("--json", "train", out / "features.parquet", "--label", "label", "--group",
               "subject", "--cv", 2, "--out", model)
    return model, proc


def test_train_writes_model_card_and_metrics(trained):
    model, proc = trained
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    card = json.loads((model / "model_card.json").read_text())
    metrics = json.loads((model / "metrics.json").read_text())
    assert (model / "model.skops").is_file()
    assert card["classes"] == ["smooth", "speckled"]
    assert card["settings"]["bin_width"] == 10.0  # recorded by `features`, kept by `train`
    assert card["feature_names"] and "label" not in card["feature_names"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["grouped"] is True
    assert summary["metrics"]["accuracy"] == metrics["accuracy"]
    assert np.sum(metrics["confusion_matrix"]) == 8


def test_predict_from_table_and_from_archive(archive, features_run, trained, tmp_path):
    _, manifest, _ = archive
    out, _ = features_run
    model, _ = trained
    proc = cli("predict", model, out / "features.parquet", "--out", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 8 and set(pred["predicted"]) <= {"smooth", "speckled"}
    np.testing.assert_allclose(pred[["probability_smooth", "probability_speckled"]].sum(axis=1), 1)
    # From the manifest: features are extracted with the model's settings; the corrupt
    # volume makes the exit code 1 and the predictions match those from the table.
    proc = cli("predict", model, manifest, "--out", tmp_path / "q.parquet", "--workers", 2,
               "--quiet")
    assert proc.returncode == 1, proc.stderr
    again = pd.read_parquet(tmp_path / "q.parquet")
    assert list(again["path"]) == list(pred["path"])
    np.testing.assert_allclose(again["probability_smooth"], pred["probability_smooth"])


def test_run_writes_report_with_existing_images(archive, tmp_path):
    _, manifest, _ = archive
    proc = cli("--json", "run", manifest, "--label", "label", "--cv", 2, "--out", tmp_path,
               "--workers", 2, "--bin-width", 10)
    assert proc.returncode == 1, proc.stderr  # the corrupt volume
    summary = json.loads(proc.stdout)
    assert summary["failed"] == 1 and summary["succeeded"] == 8
    report = Path(summary["report"])
    text = report.read_text()
    import re
    # Self-contained: every image embedded; copies named in data-file.
    assert len(re.findall("<img ", text)) == len(re.findall('<img src="data:image/png', text))
    images = re.findall(r'data-file="([^"]+)"', text)
    assert {"roc_curve.png", "confusion_matrix.png"} <= {Path(i).name for i in images}
    assert "corrupt.nii.gz" in text
    assert "Per-volume timings" in text and "time_features_s" in text
    assert (tmp_path / "model" / "model.skops").is_file()


def test_info_lists_backends():
    proc = cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["backends"]["numpy"]["available"] is True
    assert set(info["backends"]) >= {"numpy", "numba", "cupy"}
    assert not info["backends"]["cupy"]["available"] or info["gpu"]["name"]
    assert info["cpu"]["cores_total"] == os.cpu_count()
    human = cli("info")
    assert "numba" in human.stdout and "cupy" in human.stdout


@pytest.mark.parametrize("args, reference", [
    (["--filter", "gaussian_filter", "--sigma", "1.5"],
     lambda a: ndimage.gaussian_filter(a, 1.5)),
    (["--filter", "median_filter", "--size", "3", "--chunks", "12"],
     lambda a: ndimage.median_filter(a, size=3)),
    (["--filter", "sobel", "--axis", "1", "--mode", "nearest", "--chunks", "10", "16", "16"],
     lambda a: ndimage.sobel(a, axis=1, mode="nearest")),
])
def test_filter_writes_zarr_equal_to_scipy(archive, tmp_path, args, reference):
    root, _, _ = archive
    source = _a_nifti(root)
    proc = cli("filter", source, tmp_path / "out.zarr", *args, "--backend", "numba",
               "--memory-limit", "64MiB")
    assert proc.returncode == 0, proc.stderr
    image = np.asarray(open_volume(source).data.compute(), dtype=np.float64)
    written = open_volume(tmp_path / "out.zarr")
    assert written.spacing == pytest.approx(open_volume(source).spacing)
    result = np.asarray(written.data.compute())
    assert result.dtype == np.float32
    # float32 output against float64 scipy: HU values up to ~1e3, rtol 1e-5 of the range.
    np.testing.assert_allclose(result, reference(image), rtol=1e-5, atol=1e-2)


def test_filter_options_from_config_and_cli_override(archive, tmp_path):
    root, _, _ = archive
    source = root / "dicom" / next(p.name for p in (root / "dicom").iterdir())
    config = tmp_path / "c.toml"
    config.write_text('quiet = true\n[filter]\nfilter = "gaussian_filter"\nsigma = [1.0, 2.0, 2.0]\n'
                      'backend = "numpy"\n')
    proc = cli("--config", config, "filter", source, tmp_path / "a.zarr", "--sigma", "0.7")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # quiet from the file
    image = np.asarray(open_volume(source).data.compute(), dtype=np.float64)
    result = np.asarray(open_volume(tmp_path / "a.zarr").data.compute())
    np.testing.assert_allclose(result, ndimage.gaussian_filter(image, 0.7), rtol=1e-5, atol=1e-2)

    config.write_text('[filter]\nfilter = "gaussian_filter"\nsigmaa = 1.0\n')
    proc = cli("--config", config, "filter", source, tmp_path / "b.zarr")
    assert proc.returncode == 2 and "sigmaa" in _error_line(proc)


@pytest.mark.parametrize("args, fragment", [
    (["filter", "{nifti}", "{tmp}/x.zarr", "--filter", "gausian_filter"],
     "did you mean 'gaussian_filter'"),
    (["filter", "{root}/nifti/nope.nii.gz", "{tmp}/x.zarr", "--filter", "sobel"],
     "no such file"),
    (["filter", "{nifti}", "{tmp}/x.zarr", "--filter", "sobel",
      "--sigma", "2"], "--sigma does not apply"),
    (["filter", "{nifti}", "{tmp}/x.zarr", "--filter", "gaussian_filter"],
     "needs --sigma"),
    (["filter", "{nifti}", "{tmp}/x.zarr", "--filter", "sobel", "--memory-limit", "lots"],
     "--memory-limit: expected a number of bytes or a size such as '1GiB'"),
    (["features", "{root}/missing.csv", "--out", "{tmp}/f"], "not found"),
    (["train", "{root}/manifest.csv", "--out", "{tmp}/m"], "--label is required"),
    (["bench", "--size", "many"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_exit_2_with_one_line(archive, tmp_path, args, fragment):
    root, _, _ = archive
    args = [a.format(root=root, tmp=tmp_path, nifti=_a_nifti(root)) for a in args]
    proc = cli(*args)
    assert proc.returncode == 2
    assert fragment in _error_line(proc)


def test_debug_shows_the_traceback(archive, tmp_path):
    root, _, _ = archive
    proc = cli("--debug", "filter", root / "nifti" / "nope.nii.gz", tmp_path / "x.zarr",
               "--filter", "sobel")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_bench_writes_table_json_and_chart(tmp_path):
    proc = cli("--json", "bench", "--size", 16, "--repeat", 1, "--filters", "gaussian_filter",
               "--backends", "numpy", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    rows = {r["backend"]: r for r in result["results"]}
    assert set(rows) == {"scipy.ndimage", "numpy"}
    assert rows["numpy"]["max_abs_diff_vs_scipy"] < 1e-3
    assert all(r["megavoxels_per_s"] > 0 for r in rows.values())
    assert json.loads((tmp_path / "bench.json").read_text())["results"] == result["results"]
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_every_command_has_help_with_examples():
    for command in ("info", "filter", "features", "train", "predict", "run", "bench", "demo"):
        proc = cli(command, "--help")
        assert proc.returncode == 0 and "examples:" in proc.stdout, command


def _settings_of(*argv):
    from medimg_fast.cli import _feature_settings, parse_args

    return _feature_settings(parse_args([str(a) for a in argv]))


def test_every_feature_setting_reaches_the_config_file(tmp_path):
    from medimg_fast.features import FeatureSettings

    config = tmp_path / "c.toml"
    config.write_text(
        '[features]\nbin_width = 25.0\n'
        '[features.settings]\nfamilies = "all"\ntexture_dims = ["2D", "2.5D"]\n'
        'resample_mm = [3.0, 2.0, 2.0]\nresample_order = 3\nround_intensities = true\n'
        'mask_threshold = 0.4\nreseg_range = [-500, 400]\nreseg_outliers_sigma = 3.0\n'
        'ivh_bin_width = 2.5\nglcm_distance = 2\nngldm_distance = 2\nngldm_alpha = 1\n'
        'diagnostics = true\nautocorrelation_max_voxels = 5000\n'
        'filters = [{name = "log", sigma_mm = 2.0}, {name = "mean", size = 3}]\n')
    got = FeatureSettings.from_dict(_settings_of("--config", config, "features", "m.csv",
                                                 "--out", tmp_path / "f"))
    assert got == FeatureSettings(
        bin_width=25.0, families="all", texture_dims=("2D", "2.5D"), resample_mm=(3, 2, 2),
        resample_order=3, round_intensities=True, mask_threshold=0.4,
        reseg_range=(-500, 400), reseg_outliers_sigma=3.0, ivh_bin_width=2.5,
        glcm_distance=2, ngldm_distance=2, ngldm_alpha=1, diagnostics=True,
        autocorrelation_max_voxels=5000,
        filters=({"name": "log", "sigma_mm": 2.0}, {"name": "mean", "size": 3}))


def test_feature_flags_override_the_config_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[run.settings]\nbin_count = 16\ntexture_dims = ["3D"]\n'
                      'reseg_range = [-1000, 400]\n')
    got = _settings_of("--config", config, "run", "m.csv", "--out", tmp_path / "r",
                       "--bin-width", "25", "--texture-dims", "2D", "--reseg-range", "none",
                       "300", "--families", "stat", "rlm", "--diagnostics")
    assert got["bin_width"] == 25.0 and got["bin_count"] is None
    assert got["texture_dims"] == ["2D"] and got["reseg_range"] == [None, 300.0]
    assert got["families"] == ["stat", "rlm"] and got["diagnostics"] is True


@pytest.mark.parametrize(("toml", "fragment"), [
    ('[features.settings]\ntexture_dim = ["2D"]\n', "unknown setting(s) ['texture_dim']"),
    ('[features.settings]\nreseg_range = [400, -500]\n', "`reseg_range` must have low <= high"),
    ('[features.settings]\nresample_order = 2\n', "`resample_order` must be 1"),
    ('[features]\nsettings = 3\n', "must be a table of feature settings"),
    ('[train.settings]\nbin_count = 3\n', "[train] has unknown option 'settings'"),
])
def test_bad_feature_settings_in_the_config_are_usage_errors(tmp_path, toml, fragment):
    from medimg_fast.cli import UsageError
    from medimg_fast.config import ConfigError

    config = tmp_path / "c.toml"
    config.write_text(toml)
    command = "train" if "[train" in toml else "features"
    with pytest.raises((UsageError, ConfigError)) as err:
        _settings_of("--config", config, command, "m.csv", "--out", tmp_path / "f",
                     *(["--label", "y"] if command == "train" else []))
    assert fragment in str(err.value)


def test_features_from_a_config_with_ibsi_settings(archive, tmp_path):
    _, manifest, _ = archive
    config = tmp_path / "c.toml"
    config.write_text('quiet = true\n[features]\nworkers = 1\nformat = "csv"\n'
                      '[features.settings]\n'
                      'families = ["stat", "rlm", "szm"]\ntexture_dims = ["2D", "3D"]\n'
                      'bin_count = 8\ndiagnostics = true\n')
    out = tmp_path / "f"
    proc = cli("--config", config, "features", manifest, "--out", out)
    assert proc.returncode == 1, proc.stderr  # the corrupt volume is an error row
    assert not (out / "features.parquet").exists()
    table = pd.read_csv(out / "features.csv")
    for column in ("rlm_sre_2D_avg", "rlm_sre_3D_comb", "szm_sze_2D", "szm_sze_3D",
                   "int_mask_vox_count_reseg_roi"):
        assert table[column].notna().all(), column
    stored = json.loads((out / "feature_settings.json").read_text())
    assert stored["texture_dims"] == ["2D", "3D"] and stored["families"] == ["stat", "rlm",
                                                                               "szm"]


def test_predict_an_unlabelled_manifest_keeps_its_columns(archive, features_run, trained,
                                                          tmp_path):
    """Issue 12: no label column needed to predict; the manifest's columns are kept; a
    prediction on the training table itself is flagged."""
    root, manifest, _ = archive
    out, _ = features_run
    model, _ = trained
    with open(manifest, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if "corrupt" not in r["path"]][:4]
    new = tmp_path / "new.csv"
    with open(new, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "mask", "site"])
        for i, r in enumerate(rows):
            writer.writerow([str(root / r["path"]), str(root / r["mask"]), f"site{i}"])
    proc = cli("--json", "predict", model, new, "--out", tmp_path / "p.csv", "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred["site"]) == ["site0", "site1", "site2", "site3"]
    assert "label" not in pred.columns and "mask" in pred.columns
    # Same features as the training table, so the same probabilities (and a warning).
    table = pd.read_parquet(out / "features.parquet").set_index("path")
    reference = cli("predict", model, out / "features.parquet", "--out", tmp_path / "t.csv")
    assert "rows the model was trained on" in reference.stderr
    by_path = pd.read_csv(tmp_path / "t.csv").set_index("path")
    # the new manifest gives absolute paths, the training one relative ones: both as written
    as_trained = [os.path.relpath(p, root) for p in pred["path"]]
    np.testing.assert_allclose(pred["probability_smooth"],
                               by_path.loc[as_trained, "probability_smooth"])
    assert set(as_trained) <= set(table.index)
    assert "rows the model was trained on" in json.loads(proc.stdout)["warnings"][0]


def test_predict_refuses_whole_volumes_for_a_masked_model(archive, trained, tmp_path):
    root, _, _ = archive
    model, _ = trained
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a.nii.gz").write_bytes(_a_nifti(root).read_bytes())
    proc = cli("predict", model, folder, "--out", tmp_path / "p.csv")
    assert proc.returncode == 2
    assert "trained on features of masked ROIs" in _error_line(proc)


def test_model_card_names_columns_and_warns_about_ungrouped_subjects(features_run, tmp_path):
    out, _ = features_run
    proc = cli("--json", "train", out / "features.parquet", "--label", "label", "--cv", 2,
               "--out", tmp_path / "m")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["label_column"] == "label" and card["group_column"] is None
    assert card["extraction"]["masked"] is True and card["extraction"]["pipeline"] == {}
    assert set(card["dropped_features"]) == {"constant", "non-finite"}
    assert not any(c.startswith("time_") for c in card["feature_names"])
    warning = next(w for w in card["warnings"] if "looks like a subject" in w)
    assert "--group subject" in warning and warning in summary["warnings"]
    assert "warning: column 'subject' looks like a subject identifier" in proc.stderr


def test_toml_option_types_are_checked_like_the_command_line(tmp_path):
    from medimg_fast.cli import UsageError, parse_args

    config = tmp_path / "c.toml"
    for text, fragment in (("workers = 1.5", "--workers expects int, got 1.5"),
                           ('workers = "2"', "--workers expects int, got '2'"),
                           ('bin_width = "25"', "--bin-width expects float"),
                           ("backend = 3", "--backend expects a string")):
        config.write_text(f"[features]\n{text}\n")
        with pytest.raises(UsageError, match=fragment.replace("(", r"\(")):
            parse_args(["--config", str(config), "features", "m.csv", "--out", "f"])
    config.write_text("[features]\nworkers = 2\nbin_width = 25\n")
    args = parse_args(["--config", str(config), "features", "m.csv", "--out", "f"])
    assert args.workers == 2 and args.bin_width == 25.0


def test_info_into_a_closed_pipe_exits_cleanly():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "medimg_fast", "info"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -1` having read its line and gone
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert b"BrokenPipeError" not in err and b"internal error" not in err


def test_filter_writes_the_format_of_the_extension(archive, tmp_path):
    root, _, _ = archive
    source = _a_nifti(root)
    image = np.asarray(open_volume(source).data.compute(), dtype=np.float64)
    reference = ndimage.gaussian_filter(image, 1.0)
    for name in ("out.nii.gz", "out.tif", "out.npy"):
        proc = cli("--json", "filter", source, tmp_path / name, "--filter", "gaussian_filter",
                   "--sigma", "1", "--backend", "numpy")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["seconds_filter"] > 0 and summary["seconds_compile"] >= 0
        assert (tmp_path / name).is_file(), name
        written = open_volume(tmp_path / name)
        np.testing.assert_allclose(np.asarray(written.data.compute()), reference, rtol=1e-5,
                                   atol=1e-2, err_msg=name)
        if name != "out.npy":
            assert written.spacing == pytest.approx(open_volume(source).spacing, rel=1e-5)
    proc = cli("filter", source, tmp_path / "out.png", "--filter", "sobel")
    assert proc.returncode == 2
    line = _error_line(proc)
    assert "cannot tell the output format" in line and ".nii.gz" in line and ".npy" in line


def test_filter_warns_when_sigma_is_below_the_spacing(archive, tmp_path):
    root, _, _ = archive
    source = _a_nifti(root)
    spacing = open_volume(source).spacing
    proc = cli("filter", source, tmp_path / "o.zarr", "--filter", "gaussian_filter",
               "--sigma", "1.0", "--physical", "--backend", "numpy")
    assert proc.returncode == 0, proc.stderr
    assert min(spacing) > 1.0
    for axis in range(3):
        assert f"along axis {axis}" in proc.stderr
    assert "megavoxels/s" in proc.stdout and "first-call compilation" in proc.stdout


def test_sigterm_ends_cleanly_and_keeps_finished_parts(archive, tmp_path):
    import signal
    import time

    _, manifest, _ = archive
    out = tmp_path / "f"
    env = {**os.environ, "PYTHONPATH": str(SRC), "MEDIMG_FAST_BACKEND": "numpy"}
    log = tmp_path / "logs" / "run.log"
    proc = subprocess.Popen([sys.executable, "-m", "medimg_fast", "--log-file", log,
                             "features", manifest, "--out", out, "--workers", "1",
                             "--families", "all"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # A volume is logged once its part is written.
        if log.is_file() and '"event": "volume"' in log.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 1:  # finished before the signal: nothing to check
        pytest.skip("the run finished before SIGTERM")
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "terminated; finished volumes are kept" in err
    assert list((out / "parts").glob("*.row.json"))
    # --log-file: the per-volume JSON records, which stderr (level warning) leaves out.
    records = [json.loads(line.split(": ", 1)[1]) for line in log.read_text().splitlines()
               if "medimg_fast.archive INFO" in line]
    assert any(r["event"] == "volume" and r["status"] == "ok" for r in records)


def _dicom_tree(tmp_path):
    """pydicom's 5-slice CT series with an RTSTRUCT of two ROIs, in one folder."""
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent / "io"))
    from _dicom_masks import CT5N, ct_slices, write_rtstruct

    tree = tmp_path / "pacs"
    shutil.copytree(CT5N, tree / "ct")
    rect = [(1.5, 1.5), (1.5, 9.5), (7.5, 9.5), (7.5, 1.5)]
    write_rtstruct(tree / "rs.dcm", ct_slices(), [("GTV-1", [(1, rect), (2, rect)]),
                                                  ("Node", [(3, rect)])])
    return tree


def test_info_lists_the_rois_of_a_structure_set(tmp_path):
    tree = _dicom_tree(tmp_path)
    proc = cli("--json", "info", tree / "rs.dcm")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["kind"] == "rtstruct"
    assert [(r["name"], r["n_contours"]) for r in summary["rois"]] == [("GTV-1", 2),
                                                                       ("Node", 1)]
    proc = cli("info", tree / "ct")
    assert proc.returncode == 0 and "volume 5x" in proc.stdout


def test_scan_writes_a_manifest_that_features_reads(tmp_path):
    tree = _dicom_tree(tmp_path)
    manifest = tmp_path / "manifest.csv"
    proc = cli("--json", "scan", tree, "--out", manifest, "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == 2
    rows = list(csv.DictReader(manifest.open()))
    assert sorted(r["roi"] for r in rows) == ["GTV-1", "Node"]
    assert {r["modality"] for r in rows} == {"CT"} and all(r["series_uid"] for r in rows)
    proc = cli("--quiet", "features", manifest, "--out", tmp_path / "f", "--workers", 1,
               "--families", "stat", "morph")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(tmp_path / "f" / "features.parquet")
    assert sorted(table["roi"]) == ["GTV-1", "Node"]
    assert table.set_index("roi")["morph_vol_approx"]["GTV-1"] > table.set_index(
        "roi")["morph_vol_approx"]["Node"]


def test_maps_writes_one_nifti_per_feature_with_the_image_geometry(tmp_path):
    data = Path(__file__).resolve().parent / "data" / "ibsi1"
    out = tmp_path / "maps"
    proc = cli("--json", "maps", data / "image.nii.gz", data / "mask.nii.gz", "--out", out,
               "--families", "stat", "--radius", 1, "--bin-width", 1, "--backend", "numba",
               "--report")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_maps"] == 18
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5  # image + 18 maps, 4 panels a row
    assert "stat_mean" in page and "z = " in page
    image = open_volume(data / "image.nii.gz")
    mean = open_volume(out / "stat_mean.nii.gz")
    assert mean.data.shape == image.data.shape
    np.testing.assert_allclose(mean.spacing, image.spacing)
    np.testing.assert_allclose(mean.origin, image.origin)
    mask = np.asarray(open_volume(data / "mask.nii.gz").data) > 0
    values = np.asarray(mean.data)
    assert np.isnan(values[~mask]).all() and np.isfinite(values[mask]).all()
    proc = cli("maps", data / "image.nii.gz", "--out", out, "--families", "szm",
               "--backend", "numba")
    assert proc.returncode == 2 and "szm" in _error_line(proc)

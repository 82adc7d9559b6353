"""The bundled demo: the synthetic archive is what it claims, and ``demo --size small`` runs."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from sklearn.metrics import roc_auc_score

from medimg_fast.demo import CLASSES, generate_archive, synthetic_ct
from medimg_fast.io import open_volume

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-archive")
    info = generate_archive(root, size="small", n_volumes=12, shape_range=(32, 40), seed=7)
    with open(info["manifest"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    return root, info, rows


@pytest.fixture(scope="module")
def demo_small(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-small")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-m", "medimg_fast", "--json", "demo", "--size",
                           "small", "--out", str(out), "--workers", "2"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    return out, proc


def test_manifest_and_every_format(archive):
    _root, info, rows = archive
    assert info["formats"]["dicom"] >= 1 and info["formats"]["zarr"] >= 1
    assert sum(info["formats"].values()) == len(rows) == 12
    assert list(rows[0]) == ["path", "label", "mask", "subject"]
    assert sorted({r["label"] for r in rows}) == sorted(CLASSES)
    # Pairs of scans share a subject and a label (a scan and its follow-up).
    by_subject = {}
    for r in rows:
        by_subject.setdefault(r["subject"], set()).add(r["label"])
    assert all(len(v) == 1 for v in by_subject.values()) and len(by_subject) == 6


def test_volumes_read_back_exactly_in_every_format(archive):
    root, _, rows = archive
    for i, row in enumerate(rows):
        rng = np.random.default_rng([7, i])
        shape = tuple(int(s) for s in rng.integers(32, 41, size=3))
        hu, mask = synthetic_ct(rng, shape, row["label"])
        image = open_volume(root / row["path"])
        np.testing.assert_array_equal(np.asarray(image.data.compute()), hu, err_msg=row["path"])
        np.testing.assert_array_equal(np.asarray(open_volume(root / row["mask"]).data.compute()),
                                      mask)
        assert image.spacing == pytest.approx((250 / shape[0], 350 / shape[1], 350 / shape[2]),
                                              rel=1e-4)


def test_dicom_series_is_a_proper_ct_series(archive):
    root, _, rows = archive
    row = next(r for r in rows if r["path"].startswith("dicom"))
    files = sorted((root / row["path"]).glob("*.dcm"))
    datasets = [pydicom.dcmread(f) for f in files]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(files)
    assert all(ds.Modality == "CT" and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
               for ds in datasets)
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert np.all(np.diff(z) > 0)
    # HU through pydicom's own modality LUT equal the volume as read by medimg_fast.
    volume = np.asarray(open_volume(root / row["path"]).data.compute())
    k = len(datasets) // 2
    np.testing.assert_array_equal(apply_modality_lut(datasets[k].pixel_array, datasets[k]),
                                  volume[k])
    assert volume.min() >= -1024 and -1000 <= np.median(volume) <= 100


def test_lesion_classes_share_mean_but_differ_in_texture():
    """Mean HU in the lesion does not separate the classes; neighbour differences do, with
    overlap (a realistic task, not a perfectly separable one)."""
    means, roughness, labels = [], [], []
    for i in range(40):
        label = CLASSES[i % 2]
        hu, mask = synthetic_ct(np.random.default_rng([11, i]), (40, 40, 40), label)
        roi = mask.astype(bool)
        means.append(hu[roi].mean())
        # Mean absolute difference of x-neighbours inside the lesion: a texture measure
        # computed here independently of the feature code.
        both = roi[:, :, 1:] & roi[:, :, :-1]
        diffs = np.abs(np.diff(hu.astype(float), axis=2))[both]
        roughness.append(diffs.mean() / hu[roi].std())
        labels.append(label == "speckled")
    assert abs(roc_auc_score(labels, means) - 0.5) < 0.25
    assert 0.7 < roc_auc_score(labels, roughness) < 0.97


def test_demo_small_runs_and_writes_its_report(demo_small):
    out, proc = demo_small
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["succeeded"] == 24 and summary["failed"] == 0
    report = out / "report.html"
    text = report.read_text()
    assert len(re.findall("<img ", text)) == len(re.findall('<img src="data:image/png', text))
    images = re.findall(r'data-file="([^"]+)"', text)
    names = {Path(i).name for i in images}
    assert {"roc_curve.png", "confusion_matrix.png", "feature_importance.png",
            "example_smooth.png", "example_speckled.png", "real_ct_small_dcm.png"} <= names
    assert all((out / i).is_file() for i in images)
    # The real scans are summarised, the truncated one reported rather than fatal.
    assert "CT_small.dcm" in text and "MR_truncated.dcm" in text and "error:" in text
    assert (out / "model" / "model.skops").is_file()


def test_demo_classes_need_texture_features(demo_small):
    """On the demo's own features: stat_mean alone is near chance, texture separates the
    classes well but not perfectly, and the report says which families help."""
    out, proc = demo_small
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_parquet(out / "features" / "features.parquet")
    y = table["label"] == "speckled"
    assert abs(roc_auc_score(y, table["stat_mean"]) - 0.5) < 0.25
    contrast = roc_auc_score(y, table["cm_contrast_3D_avg"])
    assert 0.75 < max(contrast, 1 - contrast) < 0.99
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert 0.7 <= metrics["roc_auc"] <= 0.97 and metrics["grouped"]
    text = (out / "report.html").read_text()
    assert "Feature families" in text and "<td>cm</td>" in text
    assert "near-perfect" not in text

"""The HTML report: self-contained (images embedded), numbers from the model."""

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medimg_fast import classify
from medimg_fast.report import (
    feature_importances,
    out_of_fold_probabilities,
    save_slices_png,
    write_report,
)


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(3)
    n = 40
    labels = np.array(["a", "b"] * (n // 2))
    informative = (labels == "b") * 1.5 + rng.normal(size=n)
    table = pd.DataFrame({
        "path": [f"/data/case{i:02d}.nii.gz" for i in range(n)],
        "mask": [None] * n,
        "label": labels,
        "subject": [f"S{i // 2:02d}" for i in range(n)],
        "stat_mean": rng.normal(size=n),
        "cm_contrast_3D_avg": informative,
        "noise_<script>": rng.normal(size=n),
    })
    cols = ["stat_mean", "cm_contrast_3D_avg", "noise_<script>"]
    training = classify.train(table[cols], labels, cv=4, groups=table["subject"])
    errors = pd.DataFrame([{"path": "/data/bad.nii.gz", "mask": None, "stage": "read",
                            "error_type": "CorruptVolumeError", "message": "truncated <gz>"}])
    return table, errors, training


def _referenced_images(report):
    """(text, the images' data-file names) after checking every image is an embedded PNG."""
    import base64

    text = report.read_text(encoding="utf-8")
    for data in re.findall(r'<img src="data:image/png;base64,([^"]+)"', text):
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(re.findall(r"<img ", text)) == len(re.findall(r'<img src="data:image/png', text))
    return text, [html.unescape(s) for s in re.findall(r'data-file="([^"]+)"', text)]


def test_report_images_are_embedded(tmp_path, study):
    table, errors, training = study
    example = save_slices_png(tmp_path / "out" / "images" / "example.png",
                              [("original", np.arange(64.0).reshape(8, 8)),
                               ("constant", np.zeros((8, 8)))])
    stages = [{"stage": "features", "seconds": 2.0, "volumes": 40, "megavoxels": 8.0}]
    report = write_report(tmp_path / "out" / "report.html", features=table, errors=errors,
                          training=training, stages=stages,
                          examples=[{"title": "example", "path": example}])
    text, images = _referenced_images(report)
    names = {Path(p).name for p in images}
    assert {"confusion_matrix.png", "roc_curve.png", "feature_importance.png",
            "stage_seconds.png", "example.png"} <= names
    for src in images:
        assert not Path(src).is_absolute()
        target = report.parent / src
        assert target.is_file() and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Untrusted text (feature names, error messages) is escaped, never markup.
    assert "<script>" not in text and "noise_&lt;script&gt;" in text
    assert "truncated &lt;gz&gt;" in text
    # The throughput row: 40 volumes in 2 s -> 20 volumes/s, 4 megavoxels/s.
    assert re.search(r"<td>features</td><td>2</td><td>40</td><td>20</td><td>4</td>", text)


def test_report_is_one_file_with_version_command_warnings_and_full_paths(tmp_path, study):
    from medimg_fast import __version__

    table, errors, training = study
    table = table.copy()
    # Two patients' images with the same last two path parts must stay distinguishable.
    table.loc[0, "path"] = "/archive/patient_A/CT/image.nii.gz"
    table.loc[1, "path"] = "/archive/patient_B/CT/image.nii.gz"
    report = write_report(tmp_path / "a" / "report.html", features=table, errors=errors,
                          training=training, warnings=["near-perfect <CV>"],
                          settings={"bin_width": 25}, command_line="medimg-fast run m.csv")
    (tmp_path / "a" / "images").rename(tmp_path / "gone")  # the page needs no other file
    text, _ = _referenced_images(report)
    assert f"medimg-fast {__version__}" in text and "medimg-fast run m.csv" in text
    assert "class='warning'>near-perfect &lt;CV&gt;" in text
    assert "patient_A/CT/image.nii.gz" in text and "patient_B/CT/image.nii.gz" in text
    assert "&quot;bin_width&quot;: 25" in text or '"bin_width": 25' in text
    assert "<th>mask</th>" in text  # the ROI column


def test_out_of_fold_probabilities_reproduce_the_cv(study):
    table, _, training = study
    y = table["label"].to_numpy()
    proba = out_of_fold_probabilities(training)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    # Independent check: sklearn's AUC of these probabilities is the pooled CV AUC that
    # train() computed from its own fold models.
    auc = roc_auc_score(y == "b", proba[:, 1])
    assert auc == pytest.approx(training.metrics["roc_auc_pooled"], abs=1e-12)
    pred = np.asarray(training.classes)[proba.argmax(axis=1)]
    cm = pd.crosstab(pd.Series(y), pd.Series(pred)).reindex(
        index=training.classes, columns=training.classes, fill_value=0).to_numpy()
    np.testing.assert_array_equal(cm, training.metrics["confusion_matrix"])
    # ...and each fold's rows are what a model fitted on the other folds predicts
    # (in-sample probabilities would differ), refitted here with scikit-learn
    from sklearn.base import clone

    X = table[["stat_mean", "cm_contrast_3D_avg", "noise_<script>"]]
    fold = np.asarray(training.fold_of_sample)
    for k in np.unique(fold):
        held = fold == k
        refit = clone(training.model).fit(X[~held], y[~held])
        np.testing.assert_allclose(proba[held], refit.predict_proba(X[held]), atol=1e-12)


def test_feature_importances_rank_the_informative_feature_first(study):
    table, _, training = study
    X = table[training.feature_names].to_numpy(float)
    kind, values = feature_importances(training, X, table["label"])
    assert "impurity" in kind and len(values) == 3
    assert training.feature_names[int(np.argmax(values))] == "cm_contrast_3D_avg"


def test_report_without_model(tmp_path):
    report = write_report(tmp_path / "r.html", features=pd.DataFrame(), errors=None,
                          note="no model trained: one class")
    text = report.read_text()
    assert "no model trained" in text and "<img" not in text

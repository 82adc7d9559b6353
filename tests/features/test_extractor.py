"""RadiomicsExtractor: a scikit-learn transformer over arrays, tuples and files."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medimg_fast.features import RadiomicsExtractor, extract_features

SETTINGS = {"families": ["stat", "ih", "cm"], "bin_count": 8}


def _textured(rng, smooth: bool):
    """A noisy block, spatially smoothed or not: the GLCM tells the two apart."""
    import scipy.ndimage as ndi

    x = rng.normal(0.0, 1.0, (10, 10, 10))
    if smooth:
        x = ndi.uniform_filter(x, 3)
        x = (x - x.mean()) / x.std()
    return x


def test_pipeline_with_a_real_classifier():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 12)
    volumes = []
    for lab in labels:
        image = _textured(rng, bool(lab))
        mask = np.zeros(image.shape, bool)
        mask[1:9, 1:9, 1:9] = True
        volumes.append((image, mask))
    pipe = make_pipeline(RadiomicsExtractor(settings=SETTINGS), StandardScaler(),
                         LogisticRegression(max_iter=2000))
    scores = cross_val_score(pipe, volumes, labels, cv=3)
    assert scores.mean() >= 0.9
    pipe.fit(volumes, labels)
    names = pipe[0].get_feature_names_out()
    assert names[0] == "stat_mean" and "cm_contrast_3D_comb" in names
    assert pipe[0].transform(volumes[:2]).shape == (2, len(names))


def test_transform_matches_extract_features_and_params():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(6, 7, 8))
    mask = image > -0.5
    ext = RadiomicsExtractor(settings=SETTINGS, spacing=(2.0, 1.0, 1.0)).fit([])
    row = ext.transform([(image, mask)])[0]
    want = extract_features(image, mask, spacing=(2.0, 1.0, 1.0), settings=SETTINGS)
    np.testing.assert_array_equal(row, [want[n] for n in ext.get_feature_names_out()])
    assert clone(ext).get_params()["spacing"] == (2.0, 1.0, 1.0)
    with pytest.raises(TypeError, match="sequence of samples"):
        ext.transform(image)
    with pytest.raises(ValueError, match=r"\(image, mask\)"):
        ext.transform([(image, mask, mask)])


def test_paths_are_read_with_open_volume(tmp_path):
    nib = pytest.importorskip("nibabel")
    pytest.importorskip("medimg_fast.io")
    rng = np.random.default_rng(2)
    image = rng.normal(100, 10, (9, 8, 7))
    mask = np.zeros(image.shape, np.uint8)
    mask[2:7, 1:6, 2:6] = 1
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "roi.nii.gz")
    settings = {**SETTINGS, "families": ["stat", "ih", "cm", "morph"]}
    ext = RadiomicsExtractor(settings=settings).fit(None)
    row = ext.transform([(str(tmp_path / "img.nii.gz"), tmp_path / "roi.nii.gz")])[0]
    # features are invariant to the axis order the reader chooses (isotropic voxels)
    want = extract_features(image, mask > 0, spacing=1.5, settings=settings)
    np.testing.assert_allclose(row, [want[n] for n in ext.get_feature_names_out()],
                               rtol=1e-9)

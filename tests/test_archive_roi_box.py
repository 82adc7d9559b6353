"""The batch reads a NIfTI pair on the ROI's box when nothing in the pipeline sees the
whole image: the same feature row as the whole read, the same error rows."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medimg_fast.archive import MaskMismatchError, PipelineConfig, _Entry, _StageError, run_pipeline
from medimg_fast.features import _extract, extract_features

SETTINGS = {"families": ["morph", "stat", "ih", "cm", "rlm", "szm", "ngl", "ngt", "loc"],
            "bin_width": 25.0, "reseg_range": [-400, 600]}
AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, 0.8, 0, -20.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1]])


def _pair(folder, *, mask_values=(1,), image_dtype=np.int16, mask_affine=AFFINE,
          stored_dtype=None):
    rng = np.random.default_rng(5)
    shape = (48, 40, 24)
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r2 = sum(((g - c) / s) ** 2 for g, c, s in zip(grid, (30, 18, 14), (8.0, 7.0, 4.0)))
    image = (50 + 200 * np.cos(grid[1] / 4.0) + rng.normal(0, 90, shape)).astype(image_dtype)
    labels = np.zeros(shape, np.int16)
    roi = r2 + 0.3 * rng.standard_normal(shape) < 1.0
    labels[roi] = rng.choice(np.asarray(mask_values, np.int16), size=int(roi.sum()))
    paths = folder / "image.nii.gz", folder / "mask.nii.gz"
    nifti = nib.Nifti1Image(image, AFFINE)
    if stored_dtype is not None:  # float values stored as integers with scl_slope/inter
        nifti.set_data_dtype(stored_dtype)
    nib.save(nifti, paths[0])
    nib.save(nib.Nifti1Image(labels, mask_affine), paths[1])
    return paths


def _rows(paths, monkeypatch):
    """The default pipeline's row, whether it came from the box, and the row of the whole
    read (an explicit feature step: the same function, so the same values)."""
    taken = []
    real = _extract.features_on_roi_box

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(_extract, "features_on_roi_box", spy)
    entry = _Entry(path=str(paths[0]), label="1", mask=str(paths[1]))
    row = run_pipeline(entry, PipelineConfig(feature_settings=SETTINGS))
    whole = run_pipeline(entry, PipelineConfig(features=extract_features,
                                               feature_settings=SETTINGS))
    return row, taken, whole


def _assert_identical(a, b):
    assert list(a) == list(b)
    differ = [k for k in a if not (a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])))]
    assert not differ, {k: (a[k], b[k]) for k in differ[:5]}


def test_an_integer_pair_is_read_on_its_box_with_the_same_row(tmp_path, monkeypatch):
    row, taken, whole = _rows(_pair(tmp_path), monkeypatch)
    assert taken == [True]
    _assert_identical(row, whole)


def test_a_label_map_with_negative_labels_keeps_every_nonzero_voxel(tmp_path, monkeypatch):
    row, taken, whole = _rows(_pair(tmp_path, mask_values=(-2, 3)), monkeypatch)
    assert taken == [True]
    _assert_identical(row, whole)
    assert row["morph_vol_approx"] == whole["morph_vol_approx"] > 0


def test_a_float_image_is_read_whole_for_its_nan_check(tmp_path, monkeypatch):
    row, taken, whole = _rows(_pair(tmp_path, image_dtype=np.float32), monkeypatch)
    assert taken == []  # not asked: the NaN check reads every voxel
    _assert_identical(row, whole)


def test_a_scaled_integer_image_is_read_on_its_box(tmp_path, monkeypatch):
    """Stored as int16 with a scale, the image reads as floats that cannot be NaN."""
    paths = _pair(tmp_path, image_dtype=np.float64, stored_dtype=np.int16)
    assert nib.load(paths[0]).dataobj.slope not in (None, 1.0)
    row, taken, whole = _rows(paths, monkeypatch)
    assert taken == [True]
    _assert_identical(row, whole)


def test_a_shifted_mask_is_still_a_mask_error(tmp_path):
    shifted = AFFINE.copy()
    shifted[2, 3] += 50.0
    image, mask = _pair(tmp_path, mask_affine=shifted)
    entry = _Entry(path=str(image), label="1", mask=str(mask))
    with pytest.raises(_StageError) as info:
        run_pipeline(entry, PipelineConfig(feature_settings=SETTINGS))
    assert info.value.stage == "mask" and type(info.value.exc) is MaskMismatchError


def test_a_truncated_image_is_a_read_error(tmp_path):
    image, mask = _pair(tmp_path)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 3])
    entry = _Entry(path=str(image), label="1", mask=str(mask))
    with pytest.raises(_StageError) as info:
        run_pipeline(entry, PipelineConfig(feature_settings=SETTINGS))
    assert info.value.stage == "read"

"""Extraction from files on the ROI's bounding box: every value equals the whole-volume
path, bit for bit."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medimg_fast.features import extract_features
from medimg_fast.features._extract import extract_features_from_files
from medimg_fast.features._partials import BlockGrid
from medimg_fast.io import open_volume

PYRADIOMICS_LIKE = {"families": ["morph", "stat", "ih", "cm", "rlm", "szm", "ngl", "ngt"],
                    "texture_dims": ["3D"], "bin_width": 25.0, "autocorrelation_max_voxels": 0}
EVERY_BOX_FAMILY = {"families": ["morph", "stat", "ih", "ivh", "cm", "rlm", "szm", "dzm",
                                 "ngt", "ngl"],
                    "texture_dims": ["2D", "2.5D", "3D"], "bin_width": 20.0}
# processing on the box too: re-segmentation, and the local intensity's sphere (the box
# widened by its radius)
WITH_RESEGMENTATION = dict(PYRADIOMICS_LIKE, reseg_range=[-500, 400])
WITH_LOCAL_INTENSITY = dict(PYRADIOMICS_LIKE, families=["stat", "loc"])


def _case(folder, seed, *, gz=True, flip=(-1, 1, 1)):
    """A CT-like NIfTI pair: noisy HU with a blob-shaped ROI off the volume's centre."""
    rng = np.random.default_rng(seed)
    shape = (40, 36, 20)
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    centre = (24, 15, 12)
    r2 = sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, (7.0, 6.0, 4.0)))
    image = (40 + 60 * np.sin(grid[0] / 3.0) + rng.normal(0, 80, shape)).astype(np.int16)
    roi = (r2 + 0.3 * rng.standard_normal(shape) < 1.0).astype(np.uint8)
    affine = np.diag([0.9 * flip[0], 0.7 * flip[1], 2.0 * flip[2], 1.0])
    affine[:3, 3] = (-20.0, 11.0, 5.0)
    ext = ".nii.gz" if gz else ".nii"
    paths = folder / f"image{seed}{ext}", folder / f"mask{seed}{ext}"
    nib.save(nib.Nifti1Image(image, affine), paths[0])
    nib.save(nib.Nifti1Image(roi, affine), paths[1])
    return paths


def _whole_volume_features(image_path, mask_path, settings):
    image = open_volume(image_path)
    mask = open_volume(mask_path)
    return extract_features(image.data.compute(), mask.data.compute() > 0,
                            spacing=image.spacing, settings=settings)


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    differ = [k for k in a if not (a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])))]
    assert not differ, {k: (a[k], b[k]) for k in differ[:5]}


@pytest.mark.parametrize("settings_", [PYRADIOMICS_LIKE, EVERY_BOX_FAMILY,
                                       WITH_RESEGMENTATION, WITH_LOCAL_INTENSITY])
@pytest.mark.parametrize(("gz", "flip"), [(True, (-1, 1, 1)), (False, (1, -1, -1))])
def test_from_files_equals_the_whole_volume_path(tmp_path, settings_, gz, flip):
    from medimg_fast.io._nifti import read_nifti_roi

    for seed in (0, 1):
        image, mask = _case(tmp_path, seed, gz=gz, flip=flip)
        assert read_nifti_roi(image, mask) is not None  # the pair is read on its box
        _assert_identical(extract_features_from_files(image, mask, settings=settings_),
                          _whole_volume_features(image, mask, settings_))


def test_from_files_on_the_ibsi_ct_phantom_when_present():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ibsi1_ct"
    if not (folder / "image.nii.gz").is_file():
        pytest.skip("the IBSI-1 CT phantom is absent")
    image, mask = folder / "image.nii.gz", folder / "mask.nii.gz"
    _assert_identical(extract_features_from_files(image, mask, settings=PYRADIOMICS_LIKE),
                      _whole_volume_features(image, mask, PYRADIOMICS_LIKE))


def test_the_transformer_reads_a_pair_of_files_as_the_arrays(tmp_path):
    from medimg_fast.features import RadiomicsExtractor

    pairs = [_case(tmp_path, seed) for seed in (4, 5)]
    extractor = RadiomicsExtractor(settings=PYRADIOMICS_LIKE).fit(None)
    got = extractor.transform([(str(image), mask) for image, mask in pairs])
    names = extractor.get_feature_names_out()
    for row, (image, mask) in zip(got, pairs):
        expected = _whole_volume_features(image, mask, PYRADIOMICS_LIKE)
        np.testing.assert_array_equal(row, [expected[n] for n in names])


def test_from_files_names_a_missing_file_as_open_volume_does(tmp_path):
    from medimg_fast.io import VolumeNotFoundError

    image, mask = _case(tmp_path, 6)
    with pytest.raises(VolumeNotFoundError):
        extract_features_from_files(tmp_path / "absent.nii.gz", mask, settings=PYRADIOMICS_LIKE)
    with pytest.raises(VolumeNotFoundError):
        extract_features_from_files(image, tmp_path / "absent.nii.gz", settings=PYRADIOMICS_LIKE)


def test_from_files_refuses_an_empty_roi(tmp_path):
    image, mask = _case(tmp_path, 2)
    nib.save(nib.Nifti1Image(np.zeros((40, 36, 20), np.uint8), nib.load(mask).affine), mask)
    with pytest.raises(ValueError, match="empty"):
        extract_features_from_files(image, mask, settings=PYRADIOMICS_LIKE)


def test_grid_from_a_box_is_the_grid_of_the_whole_volume():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(12, 10, 9))
    mask = np.zeros(image.shape, bool)
    mask[3:8, 2:6, 4:9] = rng.random((5, 4, 5)) < 0.5
    mask[3, 2, 4] = mask[7, 5, 8] = True
    whole = BlockGrid(image, mask)
    # a box with a margin around the ROI, cropped again to the ROI by from_box
    box = (slice(1, 10), slice(0, 8), slice(2, 9))
    part = BlockGrid.from_box(image[box], mask[box], (1, 0, 2), image.shape)
    assert part.shape == whole.shape and part.origin == whole.origin
    np.testing.assert_array_equal(part.image, whole.image)
    np.testing.assert_array_equal(part.mask, whole.mask)
    with pytest.raises(ValueError, match="empty"):
        BlockGrid.from_box(image[box], np.zeros(image[box].shape, bool), (1, 0, 2), image.shape)


def test_the_morphology_of_the_mask_runs_while_the_image_is_read(tmp_path, monkeypatch):
    """The mask's morphology is computed once, from the mask alone (before the image is
    inflated), and the features stay those of the whole-volume path."""
    from medimg_fast.features import _extract

    calls = []
    real = _extract._morph_shape

    def counted(grid, spacing):
        calls.append(grid.image.dtype == bool)  # the mask's grid: no image yet
        return real(grid, spacing)

    image, mask = _case(tmp_path, 7)
    expected = _whole_volume_features(image, mask, PYRADIOMICS_LIKE)
    monkeypatch.setattr(_extract, "_morph_shape", counted)
    _assert_identical(extract_features_from_files(image, mask, settings=PYRADIOMICS_LIKE),
                      expected)
    assert calls == [True]


def test_a_mask_of_another_spacing_gets_the_images_morphology(tmp_path):
    """The early morphology uses the mask file's spacing; the features use the image's,
    so a mask written with another voxel size is measured again on the image's."""
    image, mask = _case(tmp_path, 8)
    roi = nib.load(mask)
    nib.save(nib.Nifti1Image(np.asarray(roi.dataobj), np.diag([0.9 * -1, 0.7, 2.5, 1.0])),
             mask)
    from medimg_fast.io._nifti import read_nifti_roi

    region = read_nifti_roi(image, mask, on_mask=lambda *args: args[3])
    assert region is not None and region.early != region.spacing  # read on the box
    _assert_identical(extract_features_from_files(image, mask, settings=PYRADIOMICS_LIKE),
                      _whole_volume_features(image, mask, PYRADIOMICS_LIKE))

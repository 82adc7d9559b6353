"""NIfTI reading against nibabel's own voxel-to-world mapping (an independent reference)."""

import os

import nibabel as nib
import numpy as np
import pytest

from medimg_fast.io import VolumeNotFoundError, open_volume

NIB_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _check_world_mapping(volume, img, raw, n=200, seed=0):
    """Every sampled voxel of `volume` sits at the world position nibabel gives its value."""
    rng = np.random.default_rng(seed)
    data = np.asarray(volume.data)
    idx = np.stack([rng.integers(0, s, n) for s in data.shape], axis=1)
    world_lps = (volume.affine @ np.c_[idx, np.ones(n)].T)
    ijk = np.linalg.inv(img.affine) @ LPS_TO_RAS @ world_lps
    ijk = np.rint(ijk[:3]).astype(int).T
    assert np.all(ijk >= 0) and np.all(ijk < np.array(raw.shape[:3]))
    np.testing.assert_array_equal(data[tuple(idx.T)], raw[tuple(ijk.T)])


def test_anatomical_orientation_spacing_and_values():
    path = os.path.join(NIB_DATA, "anatomical.nii")
    img = nib.load(path)
    raw = np.asanyarray(img.dataobj)
    vol = open_volume(path)
    assert vol.shape == (25, 41, 33)
    assert vol.spacing == pytest.approx(tuple(float(z) for z in img.header.get_zooms()[::-1]))
    # LAS file: x (i) already runs to the Left, j runs Anterior so it is flipped to Posterior.
    np.testing.assert_array_equal(np.asarray(vol.data), raw[:, ::-1, :].transpose(2, 1, 0))
    _check_world_mapping(vol, img, raw)
    # Canonical orientation: z ~ +S, y ~ +P, x ~ +L (LPS).
    assert np.allclose(np.diag(vol.direction[::-1, :]), 1.0)
    assert vol.metadata["format"] == "nifti"


def test_4d_returns_time_axis_first_and_volume_index_selects():
    path = os.path.join(NIB_DATA, "example4d.nii.gz")
    img = nib.load(path)
    raw = np.asanyarray(img.dataobj)
    vol = open_volume(path)
    assert vol.shape == (2, 24, 96, 128)
    assert vol.metadata["time_axis"] == 0
    one = open_volume(path, volume_index=1)
    assert one.shape == (24, 96, 128)
    _check_world_mapping(one, img, raw[..., 1])
    np.testing.assert_array_equal(np.asarray(one.data), np.asarray(vol.data[1]))
    with pytest.raises(ValueError, match="volume_index"):
        open_volume(path, volume_index=2)
    with pytest.raises(ValueError, match="3-D"):
        open_volume(os.path.join(NIB_DATA, "anatomical.nii"), volume_index=0)


def test_scaled_nifti_applies_slope_and_intercept(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.integers(-500, 500, size=(7, 6, 5)).astype(np.int16)
    img = nib.Nifti1Image(raw, np.diag([1.5, 1.5, 3.0, 1.0]))
    img.header.set_slope_inter(2.0, -1024.0)
    path = tmp_path / "scaled.nii"
    nib.save(img, path)
    vol = open_volume(path)
    assert vol.data.dtype == np.float32
    expected = (raw.astype(np.float64) * 2.0 - 1024.0)
    # RAS-aligned file: i (R) and j (A) are flipped to L and P, then transposed to (k, j, i).
    np.testing.assert_array_equal(np.asarray(vol.data), expected[::-1, ::-1, :].transpose(2, 1, 0))
    assert vol.spacing == (3.0, 1.5, 1.5)


def test_uncompressed_nifti_is_chunked_lazily(tmp_path):
    raw = np.arange(4 * 5 * 40, dtype=np.float32).reshape(4, 5, 40)
    path = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(raw, np.diag([-1.0, -1.0, 1.0, 1.0])), path)
    from medimg_fast.io import _nifti

    old = _nifti._TARGET_CHUNK_BYTES
    _nifti._TARGET_CHUNK_BYTES = 4 * 5 * 4 * 8  # eight k-slices per chunk
    try:
        vol = open_volume(path)
    finally:
        _nifti._TARGET_CHUNK_BYTES = old
    assert vol.data.numblocks[0] == 5
    np.testing.assert_array_equal(np.asarray(vol.data), raw.transpose(2, 1, 0))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(VolumeNotFoundError, match="no such file") as info:
        open_volume(tmp_path / "absent.nii.gz")
    assert isinstance(info.value, FileNotFoundError)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match="not a readable NIfTI"):
        open_volume(bad)


def test_compressed_read_equals_nibabel(tmp_path):
    """The ISA-L path reads exactly what nibabel's own gzip stream gives, scaling included
    (NIfTI-1 and NIfTI-2, scaled int16 and float32)."""
    import nibabel as nib

    from medimg_fast.io._nifti import _read_nifti_region

    rng = np.random.default_rng(3)
    data = rng.integers(-1024, 3000, size=(7, 9, 5)).astype(np.int16)
    for cls, slope, inter, arr in [(nib.Nifti1Image, 1.0, -1024.0, data),
                                   (nib.Nifti1Image, 0.5, 3.0, data),
                                   (nib.Nifti2Image, None, None, rng.normal(size=(4, 5, 6))
                                    .astype(np.float32))]:
        img = cls(arr, np.eye(4))
        if slope is not None:
            img.header.set_slope_inter(slope, inter)
        path = tmp_path / f"{cls.__name__}_{slope}.nii.gz"
        nib.save(img, path)
        expected = np.asanyarray(nib.load(path).dataobj)
        got = _read_nifti_region(str(path), (slice(None),) * 3)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_canonical_axes_equal_nibabels_orientation_aligned_and_oblique():
    """The axis-aligned shortcut of ``canonical_axes`` finds what nibabel's
    ``io_orientation`` finds, for every signed axis permutation, exact or with tiny
    off-axis components, and oblique directions still go to nibabel."""
    import itertools

    from nibabel.orientations import io_orientation

    from medimg_fast.io._volume import _world_axes, canonical_axes

    rng = np.random.default_rng(7)
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product([1.0, -1.0], repeat=3):
            base = np.zeros((3, 3))
            base[list(perm), range(3)] = signs
            for noise in (0.0, 1e-9, 1e-7, 1e-4, 0.2):
                d = base + noise * rng.standard_normal((3, 3))
                d /= np.linalg.norm(d, axis=0)
                spacing = rng.uniform(0.3, 5.0, 3)
                affine = np.eye(4)
                affine[:3, :3] = d * spacing
                ornt = io_orientation(affine)
                world, flipped = _world_axes(spacing, d)
                assert world == [int(w) for w in ornt[:, 0]]
                assert flipped == tuple(bool(s < 0) for s in ornt[:, 1])
                flipped, order = canonical_axes(spacing, d)
                assert sorted(order) == [0, 1, 2]
                assert [2 - world[a] for a in order] == [0, 1, 2]

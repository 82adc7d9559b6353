"""The faster paths of the per-case IBSI extraction, each against an independent reference.

* GLCM formulas on a stack of matrices: scikit-image's ``graycoprops`` and explicit sums;
* zones labelled on a zero-padded volume: scipy.ndimage's 26-/8-connected ``label``;
* Moran's I / Geary's C by Parseval on a ``2 (b - 1)`` grid: scipy's pair distances, for
  boxes one and two voxels thick (where that grid is smallest);
* local means summed along image rows: a direct loop over the sphere's offsets;
* compressed NIfTI read as one task: nibabel's array, flipped and transposed by hand;
* the preprocessing chain without interpolation: the intensity range kept by hand.
"""

import math

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial.distance import pdist

from medimg_fast.features import extract_features
from medimg_fast.features._glcm import glcm_features, glcm_features_stack
from medimg_fast.features._glszm import count_glszm
from medimg_fast.features._local import local_intensity_features, sphere_offsets
from medimg_fast.io import open_volume
from medimg_fast.preprocessing import preprocess


def _symmetric_counts(rng, ng, fill):
    m = rng.integers(0, 40, (ng, ng)) * (rng.random((ng, ng)) < fill)
    return (m + m.T).astype(np.float64)


def test_glcm_stack_against_graycoprops_and_explicit_sums():
    skimage_feature = pytest.importorskip("skimage.feature")
    rng = np.random.default_rng(0)
    ng = 9
    stack = np.stack([_symmetric_counts(rng, ng, f) for f in (0.2, 0.5, 1.0)]
                     + [np.zeros((ng, ng))])
    got = glcm_features_stack(stack)
    # graycoprops takes (levels, levels, distances, angles); grey levels 0-based there
    p = stack[:3] / stack[:3].sum(axis=(1, 2), keepdims=True)
    props = np.moveaxis(p, 0, -1)[:, :, None, :]
    for name, ours in [("contrast", "contrast"), ("dissimilarity", "dissimilarity"),
                       ("homogeneity", "inv_diff_mom"), ("ASM", "energy"),
                       ("correlation", "corr")]:
        ref = skimage_feature.graycoprops(props, name)[0]
        for k in range(3):
            assert got[k][ours] == pytest.approx(ref[k], rel=1e-12), name
    i, j = np.indices((ng, ng)) + 1.0
    for k in range(3):
        pk = p[k]
        mu = float((i * pk).sum())
        cl = i + j - 2.0 * mu  # symmetric: mu_i = mu_j
        assert got[k]["clust_shade"] == pytest.approx(float((cl ** 3 * pk).sum()), rel=1e-10)
        assert got[k]["clust_prom"] == pytest.approx(float((cl ** 4 * pk).sum()), rel=1e-12)
        nz = pk[pk > 0]
        assert got[k]["joint_entr"] == pytest.approx(float(-(nz * np.log2(nz)).sum()),
                                                     rel=1e-12)
        p_diff = np.bincount(np.abs(i - j).astype(int).ravel(), weights=pk.ravel())
        assert got[k]["inv_var"] == pytest.approx(
            float((p_diff[1:] / np.arange(1, len(p_diff)) ** 2).sum()), rel=1e-12)
        # the one-matrix entry point is the stack of one
        assert glcm_features(stack[k]) == got[k]
    assert all(math.isnan(v) for v in got[3].values())


def _zones_by_label(levels, ng, planar):
    """GLSZM counts from scipy's connected-component labelling, one level at a time."""
    structure = np.ones((3, 3, 3), bool)
    if planar:
        structure[0] = structure[2] = False
    pairs = []
    for g in range(1, ng + 1):
        labels, n = ndi.label(levels == g, structure=structure)
        if n:
            pairs += [(g, s) for s in np.bincount(labels.ravel())[1:]]
    width = max(s for _, s in pairs)
    out = np.zeros((ng, width), np.int64)
    for g, s in pairs:
        out[g - 1, s - 1] += 1
    return out


@pytest.mark.parametrize("shape", [(6, 9, 11), (1, 12, 7), (5, 1, 1), (9, 8, 2)])
def test_padded_zone_labelling_against_ndimage(shape):
    rng = np.random.default_rng(sum(shape))
    levels = rng.integers(0, 4, shape).astype(np.int32)
    levels[0, 0, 0] = 1
    got = count_glszm(levels, 3, ["3D"]).volume[0]
    np.testing.assert_array_equal(got, _zones_by_label(levels, 3, planar=False))
    slices = count_glszm(levels, 3, ["2D"]).slices
    for z, m in slices.items():
        np.testing.assert_array_equal(m[0], _zones_by_label(levels[z:z + 1], 3, planar=True))


@pytest.mark.parametrize("box", [(1, 1, 9), (1, 5, 6), (2, 2, 7), (2, 6, 5), (3, 7, 2)])
def test_moran_geary_thin_boxes_against_pair_distances(box):
    """Boxes of one or two voxels along an axis: a Parseval grid of 2 there."""
    rng = np.random.default_rng(box[1] * 10 + box[2])
    shape = tuple(b + 4 for b in box)
    mask = np.zeros(shape, bool)
    mask[2:2 + box[0], 2:2 + box[1], 2:2 + box[2]] = rng.random(box) < 0.85
    mask[2, 2, 2] = mask[1 + box[0], 1 + box[1], 1 + box[2]] = True
    image = rng.normal(20.0, 5.0, shape) + np.indices(shape)[2]
    spacing = (2.5, 0.8, 0.7)
    f = extract_features(image, mask, spacing=spacing,
                         settings={"families": ["morph"], "autocorrelation_max_voxels": 10**6})
    pos = np.argwhere(mask) * np.asarray(spacing)
    x = image[mask]
    n = len(x)
    w = 1.0 / pdist(pos)
    i, j = np.triu_indices(n, 1)
    dev = x - x.mean()
    ss = float(dev @ dev)
    moran = n / (2 * w.sum()) * 2 * float(np.sum(w * dev[i] * dev[j])) / ss
    geary = (n - 1) / (4 * w.sum()) * 2 * float(np.sum(w * (x[i] - x[j]) ** 2)) / ss
    assert f["morph_moran_i"] == pytest.approx(moran, rel=1e-10, abs=1e-13)
    assert f["morph_geary_c"] == pytest.approx(geary, rel=1e-10)


def test_row_summed_local_means_against_a_direct_loop():
    rng = np.random.default_rng(5)
    shape = (9, 26, 27)
    image = rng.normal(0.0, 30.0, shape)
    mask = np.zeros(shape, bool)
    mask[1:8, 2:25, 0:27] = rng.random((7, 23, 27)) < 0.6  # reaches the x faces
    spacing = (2.0, 0.9, 0.85)
    got = local_intensity_features(image, mask, spacing)
    offsets = sphere_offsets(spacing)
    means = []
    for p in np.argwhere(mask):
        q = p + offsets
        inside = np.all((q >= 0) & (q < np.array(shape)), axis=1)
        means.append(image[tuple(q[inside].T)].mean())
    means = np.array(means)
    values = image[mask]
    assert got["loc_peak_glob"] == pytest.approx(means.max(), rel=1e-12)
    assert got["loc_peak_loc"] == pytest.approx(means[values == values.max()].max(),
                                                rel=1e-12)


@pytest.mark.parametrize("flips", [(1, 1, 1), (-1, 1, 1), (1, -1, -1)])
def test_compressed_nifti_single_task_read(tmp_path, flips):
    rng = np.random.default_rng(7)
    raw = rng.integers(-1000, 2000, (7, 6, 5)).astype(np.int16)  # i, j, k
    affine = np.diag([0.8 * flips[0], 0.9 * flips[1], 2.5 * flips[2], 1.0])
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(raw, affine), path)
    vol = open_volume(path)
    assert len(vol.data.dask) == 1  # one task: read, reorient, make contiguous
    # RAS -> LPS negates x and y: i runs to +L when flips[0] < 0, j to +P when flips[1] < 0
    expected = raw[:: -flips[0], :: -flips[1], :: flips[2]].transpose(2, 1, 0)
    data = vol.data.compute()
    assert data.flags.c_contiguous
    np.testing.assert_array_equal(data, expected)
    assert vol.spacing == pytest.approx((2.5, 0.9, 0.8))
    # the same geometry and voxels as the chunked reader of the uncompressed file
    plain = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(raw, affine), plain)
    ref = open_volume(plain)
    np.testing.assert_array_equal(np.asarray(ref.data), data)
    assert ref.spacing == vol.spacing and ref.origin == vol.origin
    np.testing.assert_array_equal(ref.direction, vol.direction)


def test_preprocess_without_interpolation_keeps_the_range_by_hand():
    rng = np.random.default_rng(9)
    image = rng.normal(0.0, 600.0, (6, 7, 8)).astype(np.float32)
    mask = rng.random(image.shape) < 0.5
    out = preprocess(image, mask, (2.0, 1.0, 1.0), reseg_range=(-500, 400),
                     round_intensities=True)
    expected_image = np.rint(image.astype(np.float64))
    np.testing.assert_array_equal(out.image, expected_image)
    assert out.image.dtype == np.float64
    np.testing.assert_array_equal(out.morph_mask, mask)
    np.testing.assert_array_equal(
        out.int_mask, mask & (expected_image >= -500) & (expected_image <= 400))
    assert out.morph_mask is not mask  # a copy: the caller's mask is not aliased
    uint_mask = mask.astype(np.uint8) * 3
    np.testing.assert_array_equal(
        preprocess(image, uint_mask, (2.0, 1.0, 1.0)).morph_mask, mask)

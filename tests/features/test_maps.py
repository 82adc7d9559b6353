"""Voxel-wise feature maps: the map at a voxel is ``extract_features`` of its window crop.

Reference: :func:`medimg_fast.features.extract_features` on the window crop (the crop
is the window, clipped to the image; its mask the window's ROI or, unmasked, all of
it), discretised with fixed bin size ``bin_width``/``bin_min`` so its grey levels are
the global ones.  The crop's number of levels ``Ng`` is that of its own maximum, the
map's the global one: the few features with ``Ng`` in their formula
(``cm_inv_diff_norm``, ``cm_inv_diff_mom_norm``, the ``ih`` histogram gradients) are
compared with the same formulas (:func:`glcm_aggregate`, :func:`histogram_features`)
on the crop's counts at the global ``Ng``.  Tolerance rtol 1e-9: the map kernels and
the reference sum in different orders (float64 rounding only);
``cm_info_corr2`` is a square root of a difference near zero, so its absolute error is
the square root of the rounding (atol 1e-6).  The run-length, NGTDM and NGLDM features
do not depend on ``Ng`` (their formulas run over the levels present).  The maps and the
extraction share their compiled formulas (``_formulas.py``); the maps' calls of them are
also compared with the NumPy references of ``_formula_reference.py`` on random matrices.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("numba")

from medimg_fast.features import extract_features, feature_maps
from medimg_fast.features._glcm import GLCM_FEATURES, glcm_aggregate
from medimg_fast.features._histogram import histogram_features
from medimg_fast.features._kernels import kernels_for
from medimg_fast.features._maps import map_feature_names, write_feature_maps
from medimg_fast.features._texture import TextureCounts, directions_2d, directions_3d

_NG_DEPENDENT = {"ih_max_grad", "ih_max_grad_g", "ih_min_grad", "ih_min_grad_g"}
_NG_DEPENDENT_CM = ("inv_diff_norm", "inv_diff_mom_norm")


def _case(seed, shape=(9, 11, 12), levels=7, fill=0.6):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, levels, shape).astype(np.float64) * 3.0 - 20.0
    mask = rng.random(shape) < fill
    # the image's extremes inside the ROI: unmasked windows then stay in the global range
    lo, hi = np.unravel_index(image.argmin(), shape), np.unravel_index(image.argmax(), shape)
    mask[lo] = mask[hi] = True
    return image, mask


def _window(v, r, dims, shape):
    rz = 0 if dims == "2D" else r
    rad = (rz, r, r)
    return tuple(slice(max(c - k, 0), min(c + k + 1, n)) for c, k, n in zip(v, rad, shape))


def _close(a, b, name):
    atol = 1e-6 if name.startswith("cm_info_corr2") else 1e-9
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=atol)


_ALL = ["stat", "ih", "cm", "rlm", "ngt", "ngl"]


# radius 3 at distance 1 takes the sliding path of the neighbourhood families (smaller
# radii rebuild each window: see _maps_kernels.compiled_texture); distance 2 is the
# GLCM's and NGLDM's
@pytest.mark.parametrize("dims", ["3D", "2D"])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("radius,distance,seed", [(1, 1, 0), (2, 1, 1), (2, 2, 2), (3, 1, 3),
                                                  (3, 2, 4)])
def test_map_equals_extract_features_of_window(dims, masked, radius, distance, seed):
    image, mask = _case(seed)
    bin_min, width = float(image[mask].min()), 3.0
    fams = _ALL
    settings = {"bin_width": width, "bin_min": bin_min, "glcm_distance": distance,
                "ngldm_distance": distance, "ngldm_alpha": seed % 2,
                "families": fams, "texture_dims": [dims]}
    maps = feature_maps(image, mask, settings=settings, radius=radius, dims=dims,
                        masked_window=masked)
    ng = math.floor((image[mask].max() - bin_min) / width) + 1
    rng = np.random.default_rng(100 + seed)
    roi = np.argwhere(mask)
    kern = kernels_for("numba")
    dirs = (directions_2d if dims == "2D" else directions_3d)(distance)
    checked = 0
    for v in map(tuple, roi[rng.choice(len(roi), 12, replace=False)]):
        w = _window(v, radius, dims, image.shape)
        crop, wmask = image[w], (mask[w] if masked else np.ones(image[w].shape, bool))
        ref = extract_features(crop, wmask, settings=settings)
        # the Ng-dependent features at the global Ng
        levels = kern.discretise(crop, wmask, bin_min, 1.0, width, ng)
        hist = np.bincount(levels.ravel(), minlength=ng + 1)[1:]
        ref.update({k: v2 for k, v2 in histogram_features(hist).items() if k in _NG_DEPENDENT})
        all_ = (slice(None),) * 3
        if dims == "3D":
            counts = TextureCounts(volume=kern.glcm(levels, all_, dirs, ng))
        else:
            counts = TextureCounts(slices={0: kern.glcm(levels, all_, dirs, ng)})
        agg = glcm_aggregate(counts, (f"{dims}_avg", f"{dims}_comb"))
        ref.update({k: x for k, x in agg.items() if k.split("_" + dims)[0][3:] in _NG_DEPENDENT_CM})
        for name, m in maps.items():
            assert _close(float(m[v]), ref[name], name), (name, v, float(m[v]), ref[name])
        checked += 1
    assert checked == 12


def test_glcm_formulas_equal_reference():
    # the maps' call of the shared formulas (int32 counts, a log2 table of the window's
    # counts) against the NumPy reference
    from _formula_reference import glcm_features_stack

    from medimg_fast.features._formulas import compiled_formulas, log2_table

    formulas = compiled_formulas().glcm
    rng = np.random.default_rng(7)
    for ng in (1, 2, 5, 16):
        for _ in range(20):
            c = rng.integers(0, 4, (ng, ng)) * (rng.random((ng, ng)) < 0.4)
            m = (c + c.T).astype(np.int32)
            if m.sum() == 0:
                m[0, 0] = 2
            marg = m.sum(axis=1).astype(np.int64)
            res = np.empty(25)
            formulas(m, marg, int(m.sum()), ng, log2_table(int(m.sum()) + 1),
                     np.empty(ng, np.int64), np.empty(ng, np.int64),
                     np.empty(2 * ng + 1, np.int64), res)
            ref = glcm_features_stack(m[None].astype(np.float64))[0]
            for k, name in enumerate(GLCM_FEATURES):
                assert _close(res[k], ref[name], "cm_" + name), (name, ng, res[k], ref[name])


def test_emphasis_formulas_equal_reference():
    from _formula_reference import dependence_energy, emphasis_features

    from medimg_fast.features._formulas import NV_GIVEN, NV_RUN_VOXELS, compiled_formulas

    emphasis = compiled_formulas().emphasis
    rng = np.random.default_rng(8)
    for nrow, ncol in ((1, 1), (1, 5), (4, 1), (5, 7), (16, 27)):
        for trial in range(20):
            m = (rng.integers(0, 6, (nrow, ncol)) * (rng.random((nrow, ncol)) < 0.35))
            if trial == 0:
                m[:] = 0  # empty: all NaN
            m = m.astype(np.int64)
            for n_voxels in (None, float(m.sum()) + 3.0):
                res = np.empty(17)
                emphasis(m, nrow, ncol, NV_RUN_VOXELS if n_voxels is None else NV_GIVEN,
                         0.0 if n_voxels is None else n_voxels, np.empty(nrow),
                         np.empty(ncol), np.empty(ncol, np.int64), res)
                ref = list(emphasis_features(m, n_voxels=n_voxels)) + [dependence_energy(m)]
                for k in range(17):
                    assert _close(res[k], ref[k], ""), (k, m, res[k], ref[k])


def test_ngt_formulas_equal_reference():
    from _formula_reference import NGTDM_FEATURES, ngtdm_features

    from medimg_fast.features._formulas import compiled_formulas

    formulas = compiled_formulas().ngt
    rng = np.random.default_rng(9)
    for ng in (1, 2, 3, 8, 20):
        for trial in range(30):
            n = rng.integers(0, 4, ng) * (rng.random(ng) < 0.6)
            num = rng.integers(0, 40, (ng, 27)) * (rng.random((ng, 27)) < 0.2)
            num[:, 0] = 0
            num[n == 0] = 0  # no neighbourhood, no difference
            if trial % 5 == 0:
                num[:] = 0  # no grey tone change: capped coarseness, strength 0
            if trial == 1:
                n[:] = 0
            if ng == 2 and trial == 2:
                n[:] = (2, 1)  # busyness denominator 0 with two levels: NaN
            # s_i from the integer numerators, as the NGTDM map kernel sums them
            s = (num / np.maximum(np.arange(27), 1)).sum(axis=1)
            res = np.empty(5)
            formulas(n.astype(np.float64), s, ng, np.empty(ng), np.empty(ng), np.empty(ng),
                     res)
            ref = ngtdm_features(np.stack([n.astype(float), s], axis=1))
            for k, name in enumerate(NGTDM_FEATURES):
                assert _close(res[k], ref[name], ""), (name, n, res[k], ref[name])


def test_names_match_extract_features():
    from medimg_fast.features._extract import feature_names

    s = {"families": _ALL}
    assert map_feature_names(s) == feature_names(s)
    s2 = {"families": ["cm", "rlm", "ngt", "ngl"], "texture_dims": ["2D"],
          "glcm_aggregations": ["2D_comb"]}
    assert map_feature_names(s2, dims="2D") == feature_names(s2)


def test_nan_outside_roi_and_isolated_voxel():
    image, mask = _case(3)
    mask[:] = False
    mask[4, 5, 6] = True
    maps = feature_maps(image, mask, settings={"bin_count": 8}, radius=1)
    m = maps["cm_contrast_3D_avg"]
    assert np.isnan(m).all()  # one voxel: no pair in its window
    assert maps["stat_mean"][4, 5, 6] == image[4, 5, 6]
    assert np.isnan(maps["stat_mean"]).sum() == mask.size - 1


def test_2d_image_and_radius_mm():
    image, mask = _case(4, shape=(1, 15, 15))
    a = feature_maps(image[0], mask[0], settings={"bin_count": 8}, radius=2)
    b = feature_maps(image, mask, settings={"bin_count": 8}, radius=2, dims="2D")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k][0])
    c = feature_maps(image, mask, settings={"bin_count": 8}, radius_mm=1.0, dims="2D",
                     spacing=(3.0, 0.5, 0.5))
    for k in b:
        np.testing.assert_array_equal(b[k], c[k])


def _dask_case_equal(seed, chunks, radius, dims, masked, distance):
    da = pytest.importorskip("dask.array")
    image, mask = _case(seed, shape=(10, 13, 14))
    settings = {"bin_count": 6, "glcm_distance": distance, "ngldm_distance": distance,
                "families": _ALL}
    ref = feature_maps(image, mask, settings=settings, radius=radius, dims=dims,
                       masked_window=masked)
    lazy = feature_maps(da.from_array(image, chunks=chunks), da.from_array(mask, chunks=chunks),
                        settings=settings, radius=radius, dims=dims, masked_window=masked)
    import dask

    got = dict(zip(lazy, dask.compute(*lazy.values(), scheduler="sync")))
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


@pytest.mark.parametrize("chunks,radius,dims,masked", [
    ((5, 7, 7), 1, "3D", True), ((4, 5, 6), 2, "3D", False), ((10, 4, 9), 2, "2D", True)])
def test_dask_chunked_bit_identical(chunks, radius, dims, masked):
    _dask_case_equal(5, chunks, radius, dims, masked, 1)


def test_dask_chunked_property():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=8, deadline=None)
    @hypothesis.given(seed=st.integers(0, 50), cz=st.integers(2, 10), cy=st.integers(2, 13),
                      cx=st.integers(2, 14), radius=st.integers(1, 3),
                      dims=st.sampled_from(["2D", "3D"]), masked=st.booleans(),
                      distance=st.integers(1, 2))
    def prop(seed, cz, cy, cx, radius, dims, masked, distance):
        # a chunk must hold the halo it lends to its neighbours
        chunks = (max(cz, radius), max(cy, radius), max(cx, radius))
        _dask_case_equal(seed, chunks, radius, dims, masked, distance)

    prop()


def test_write_feature_maps_roundtrip(tmp_path):
    from medimg_fast.io import open_volume
    from medimg_fast.io._volume import Volume

    image, mask = _case(6)
    maps = feature_maps(image, mask, settings={"bin_count": 8}, families=["stat"])
    # open_volume's orientation: array axis 0 along LPS z, 1 along y, 2 along x
    like = Volume(data=image, spacing=(2.0, 0.8, 0.7), origin=(10.0, -5.0, 3.0),
                  direction=np.eye(3)[:, ::-1])
    paths = write_feature_maps(maps, tmp_path, like)
    assert set(paths) == set(maps)
    back = open_volume(paths["stat_mean"])
    np.testing.assert_allclose(np.asarray(back.data), maps["stat_mean"].astype(np.float32),
                               equal_nan=True)
    np.testing.assert_allclose(back.spacing, like.spacing)
    np.testing.assert_allclose(back.origin, like.origin)
    np.testing.assert_allclose(back.direction, like.direction)
    with pytest.raises(FileExistsError):
        write_feature_maps(maps, tmp_path, like)


@pytest.mark.parametrize("kwargs,match", [
    ({"radius": 0}, "`radius`"), ({"radius": 1.5}, "`radius`"), ({"dims": "2.5D"}, "`dims`"),
    ({"families": ["szm"]}, "zones"), ({"families": ["ivh"]}, "`families`"),
    ({"backend": "numpy"}, "compiled"), ({"radius_mm": -1.0}, "`radius_mm`"),
    ({"settings": {"reseg_range": [0, 10]}}, "preprocess"),
])
def test_validation(kwargs, match):
    image, mask = _case(0)
    with pytest.raises(ValueError, match=match):
        feature_maps(image, mask, **kwargs)


def test_empty_roi():
    image, _ = _case(0)
    with pytest.raises(ValueError, match="empty"):
        feature_maps(image, np.zeros(image.shape, bool))

"""Run-length and zone matrices from chunk partials == the whole-volume counts.

Runs (``rlm``) and zones (``szm``, ``dzm``) cross chunk faces; their block partials keep
the pieces that touch a face and join them in ``merge``.  The references are the
whole-array counters (``count_glrlm``, ``count_glszm``, ``count_gldzm`` on a NumPy array,
themselves checked against hand-counted matrices, scipy.ndimage.label and the IBSI
reference values in test_glrlm.py / test_zones.py), scipy's taxicab distance transform
for the edge distances, and ``extract_features`` on the NumPy arrays.  Counts are
integers: chunked and whole counts must be equal exactly, shapes included; features
from equal matrices agree to float64 rounding of the merged sums (1e-12 relative).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from medimg_fast.features import extract_features
from medimg_fast.features._glrlm import RunPartial, count_glrlm, glrlm_block
from medimg_fast.features._glszm import (
    ZonePartial,
    count_gldzm,
    count_glszm,
    edge_distance_maps,
    zone_block,
)
from medimg_fast.features._partials import merge_all

da = pytest.importorskip("dask.array")

DIMS = ("2D", "2.5D", "3D")
DIM_SETS = [["2D"], ["3D"], ["2D", "2.5D", "3D"]]
RTOL = 1e-12


def assert_counts_equal(got, want):
    """Same units, same matrices, same shapes (the features depend on the widths)."""
    assert (got.volume is None) == (want.volume is None)
    if want.volume is not None:
        assert got.volume.shape == want.volume.shape
        np.testing.assert_array_equal(got.volume, want.volume)
    assert sorted(got.slices) == sorted(want.slices)
    for z, m in want.slices.items():
        assert got.slices[z].shape == m.shape, z
        np.testing.assert_array_equal(got.slices[z], m)


def blocky_levels(seed, shape, ng, zero_fraction=0.15):
    """Levels constant on random boxes (long runs, large zones), with a ragged ROI."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, ng + 1, size=(4, 4, 4))
    cell = [max(1, (n + 2) // 3) for n in shape]
    idx = np.ix_(*[np.arange(n) // c for n, c in zip(shape, cell)])
    levels = coarse[idx].astype(np.int32)
    noise = rng.random(shape)
    levels[noise < 0.1] = rng.integers(1, ng + 1, size=int((noise < 0.1).sum()))
    levels[noise > 1 - zero_fraction] = 0
    return levels


def taxicab_reference(mask, planar):
    """scipy's taxicab transform of the zero-padded mask (per slice when ``planar``)."""
    if planar:
        return np.stack([ndimage.distance_transform_cdt(np.pad(s, 1), metric="taxicab")
                         [1:-1, 1:-1] for s in mask]).astype(np.int32)
    padded = np.pad(mask, 1)
    return ndimage.distance_transform_cdt(padded, metric="taxicab")[1:-1, 1:-1, 1:-1]


def blocks_of(shape, cuts):
    """``(halo slices, core, offset)`` per block in C order: a one-voxel halo where a
    neighbouring block exists (none at the volume's edge), as BlockGrid gives."""
    edges = [[0, *sorted(c), n] for c, n in zip(cuts, shape)]
    ranges = [list(itertools.pairwise(e)) for e in edges]
    out = []
    for box in np.ndindex(*[len(r) for r in ranges]):
        halo, core, offset = [], [], []
        for ax, i in enumerate(box):
            lo, hi = ranges[ax][i]
            start, stop = max(lo - 1, 0), min(hi + 1, shape[ax])
            halo.append(slice(start, stop))
            core.append(slice(lo - start, hi - start))
            offset.append(start)
        out.append((tuple(halo), tuple(core), tuple(offset)))
    return out


def merge_in_order(parts, merge, order):
    """Merge ``parts`` as a balanced tree over the permutation ``order``."""
    items = [parts[i] for i in order]
    while len(items) > 1:
        items = [merge(*items[i:i + 2]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


@st.composite
def chunked_volumes(draw):
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 7)), draw(st.integers(1, 8)))
    ng = draw(st.integers(1, 3))
    levels = blocky_levels(draw(st.integers(0, 2**32 - 1)), shape, ng)
    cuts = tuple(sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else ()
                 for n in shape)
    order_seed = draw(st.integers(0, 2**32 - 1))
    return levels, ng, cuts, order_seed


# -- block partials, merged in C order (as BlockGrid does) and in any order -----------
@settings(max_examples=25, deadline=None)
@given(chunked_volumes())
def test_run_partials_merge_to_the_whole_volume_counts(case):
    levels, ng, cuts, order_seed = case
    blocks = blocks_of(levels.shape, cuts)
    for dims in DIM_SETS:
        want = count_glrlm(levels, ng, dims)
        parts = [glrlm_block(levels[h], ng, dims, core=c, offset=o, shape=levels.shape)
                 for h, c, o in blocks]
        assert_counts_equal(merge_all(parts, RunPartial.merge).finish(), want)
        order = np.random.default_rng(order_seed).permutation(len(parts))
        assert_counts_equal(merge_in_order(parts, RunPartial.merge, order).finish(), want)


@settings(max_examples=25, deadline=None)
@given(chunked_volumes(), st.integers(0, 2**32 - 1))
def test_zone_partials_merge_to_the_whole_volume_counts(case, grow_seed):
    levels, ng, cuts, order_seed = case
    # the distance mask holds the ROI and more (re-segmentation removes voxels)
    grow = np.random.default_rng(grow_seed).random(levels.shape) < 0.3
    distance_mask = (levels > 0) | grow
    distances = edge_distance_maps(distance_mask)
    blocks = blocks_of(levels.shape, cuts)
    for dims in DIM_SETS:
        want = {"szm": count_glszm(levels, ng, dims),
                "dzm": count_gldzm(levels, ng, dims, distance_mask=distance_mask)}
        parts = [zone_block(levels[h], ng, dims, core=c, offset=o, shape=levels.shape,
                            distances=(distances[0][h], distances[1][h]))
                 for h, c, o in blocks]
        order = np.random.default_rng(order_seed).permutation(len(parts))
        for got in (merge_all(parts, ZonePartial.merge).finish(),
                    merge_in_order(parts, ZonePartial.merge, order).finish()):
            assert_counts_equal(got["szm"], want["szm"])
            assert_counts_equal(got["dzm"], want["dzm"])


def test_one_block_partial_is_the_whole_volume_count():
    levels = blocky_levels(7, (5, 6, 7), 3)
    whole = (slice(None),) * 3
    for dims in DIM_SETS:
        runs = glrlm_block(levels, 3, dims, core=whole, offset=(0, 0, 0), shape=levels.shape)
        assert not runs.fragments["start"].size  # nothing leaves the volume
        assert_counts_equal(runs.finish(), count_glrlm(levels, 3, dims))
        zones = zone_block(levels, 3, dims, core=whole, offset=(0, 0, 0), shape=levels.shape,
                           distances=edge_distance_maps(levels > 0)).finish()
        assert_counts_equal(zones["szm"], count_glszm(levels, 3, dims))
        assert_counts_equal(zones["dzm"], count_gldzm(levels, 3, dims))


def test_zone_joins_across_a_block_corner_only():
    # two voxels of one level meeting at a corner of four blocks: one 3-D zone of 2
    levels = np.zeros((2, 2, 2), np.int32)
    levels[0, 0, 0] = levels[1, 1, 1] = 1
    blocks = blocks_of(levels.shape, ((1,), (1,), (1,)))
    parts = [zone_block(levels[h], 1, DIMS, core=c, offset=o, shape=levels.shape,
                        families=["szm"]) for h, c, o in blocks]
    got = merge_all(parts, ZonePartial.merge).finish()["szm"]
    np.testing.assert_array_equal(got.volume, [[[0, 1]]])
    assert_counts_equal(got, count_glszm(levels, 1, DIMS))


# -- edge distances ------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.tuples(st.integers(1, 6), st.integers(1, 7),
                                            st.integers(1, 8)))
def test_edge_distance_maps_are_scipys_taxicab_transform(seed, shape):
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_dilation(rng.random(shape) < 0.3, iterations=1)
    planar, volume = edge_distance_maps(mask)
    np.testing.assert_array_equal(planar, taxicab_reference(mask, planar=True))
    np.testing.assert_array_equal(volume, taxicab_reference(mask, planar=False))


@pytest.mark.parametrize("chunks", [(1, 1, 1), (2, 3, 5), (6, 1, 8)])
def test_chunked_edge_distance_maps_are_scipys(chunks):
    shape = (6, 7, 8)
    z, y, x = np.indices(shape)
    mask = ((z - 2.5) / 3.5) ** 2 + ((y - 3) / 4) ** 2 + ((x - 3.5) / 4.5) ** 2 <= 1
    mask[2, 3, 4] = False  # an inner hole: distances grow towards it from both sides
    planar, volume = edge_distance_maps(da.from_array(mask, chunks=chunks))
    assert planar.chunks == volume.chunks == da.from_array(mask, chunks=chunks).chunks
    np.testing.assert_array_equal(planar.compute(), taxicab_reference(mask, planar=True))
    np.testing.assert_array_equal(volume.compute(), taxicab_reference(mask, planar=False))


# -- the public counters on Dask arrays ----------------------------------------------
@pytest.mark.parametrize("chunks", [(2, 3, 4), (1, 7, 3), (6, 2, 1)])
def test_counters_on_dask_levels_equal_the_numpy_counts(chunks):
    levels = blocky_levels(11, (6, 7, 8), 3)
    distance_mask = (levels > 0) | (np.random.default_rng(5).random(levels.shape) < 0.3)
    lazy = da.from_array(levels, chunks=chunks)
    dims = list(DIMS)
    assert_counts_equal(count_glrlm(lazy, 3, dims), count_glrlm(levels, 3, dims))
    assert_counts_equal(count_glszm(lazy, 3, dims), count_glszm(levels, 3, dims))
    assert_counts_equal(count_gldzm(lazy, 3, dims), count_gldzm(levels, 3, dims))
    assert_counts_equal(
        count_gldzm(lazy, 3, dims, distance_mask=da.from_array(distance_mask, chunks=chunks)),
        count_gldzm(levels, 3, dims, distance_mask=distance_mask))


def test_dask_levels_out_of_range_are_refused():
    lazy = da.from_array(np.full((2, 2, 2), 4, np.int32), chunks=1)
    with pytest.raises(ValueError, match="0..3"):
        count_glrlm(lazy, 3, ["3D"])
    with pytest.raises(ValueError, match="ng=3"):
        count_glszm(lazy, 3, ["3D"])


# -- extract_features ----------------------------------------------------------------
TEXTURE_SETTINGS = {"families": ["rlm", "szm", "dzm"], "texture_dims": list(DIMS),
                    "bin_count": 5}


def _assert_features_close(got, want):
    assert list(got) == list(want)
    bad = [f"{k}: {got[k]!r} != {v!r}" for k, v in want.items()
           if not (math.isnan(v) and math.isnan(got[k]))
           and not abs(got[k] - v) <= RTOL * max(abs(v), 1.0)]
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def smooth_volume():
    shape = (6, 7, 8)
    rng = np.random.default_rng(2025)
    image = ndimage.gaussian_filter(rng.normal(size=shape), 1.2) * 50 + 100
    z, y, x = np.indices(shape)
    mask = ((z - 2.5) / 3.4) ** 2 + ((y - 3) / 4.0) ** 2 + ((x - 3.5) / 4.4) ** 2 <= 1
    mask[0, 0, 0] = True  # a lone voxel: a zone and runs of its own at the array corner
    return image, mask


@pytest.mark.parametrize("chunks", [(2, 3, 4), (1, 7, 8), (6, 1, 3), (3, 2, 1)])
def test_extract_features_chunked_equals_in_memory(smooth_volume, chunks):
    image, mask = smooth_volume
    want = extract_features(image, mask, settings=TEXTURE_SETTINGS)
    got = extract_features(da.from_array(image, chunks=chunks),
                           da.from_array(mask, chunks=chunks), settings=TEXTURE_SETTINGS)
    _assert_features_close(got, want)


def test_extract_features_resegmented_chunked_equals_in_memory(smooth_volume):
    image, mask = smooth_volume
    lo = float(np.quantile(image[mask], 0.2))
    settings_ = dict(TEXTURE_SETTINGS, reseg_range=(lo, 1e9))
    want = extract_features(image, mask, settings=settings_)
    got = extract_features(da.from_array(image, chunks=(2, 3, 4)),
                           da.from_array(mask, chunks=(2, 3, 4)), settings=settings_)
    _assert_features_close(got, want)


def test_chunked_distance_zones_measure_the_morphological_mask(smooth_volume):
    # extract_features re-segments in memory; drive the texture step with Dask grids
    # whose distance mask (morphological) differs from the intensity mask
    from medimg_fast.features._extract import _texture
    from medimg_fast.features._intensity import roi_moments
    from medimg_fast.features._kernels import kernels_for
    from medimg_fast.features._partials import BlockGrid
    from medimg_fast.features._settings import FeatureSettings

    image, morph = smooth_volume
    int_mask = morph & (image > np.quantile(image[morph], 0.3))
    kernels = kernels_for("numba")
    settings_ = FeatureSettings.coerce(TEXTURE_SETTINGS)

    def run(img, msk, dmask):
        grid = BlockGrid(img, msk)
        return _texture(grid, kernels, roi_moments(grid, kernels), settings_,
                        BlockGrid(img, dmask))

    want = run(image, int_mask, morph)
    chunks = (2, 3, 4)
    got = run(da.from_array(image, chunks=chunks), da.from_array(int_mask, chunks=chunks),
              da.from_array(morph, chunks=chunks))
    _assert_features_close(got, want)
    # and the distance mask mattered
    plain = run(image, int_mask, int_mask)
    assert any(plain[k] != want[k] for k in want if k.startswith("dzm_"))

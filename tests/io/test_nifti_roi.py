"""``read_nifti_roi``: the image on the ROI's bounding box equals the whole-volume read
(``open_volume``) cropped there, in every orientation, dtype and container; a gzip
stream is inflated only as far as the box needs."""

import gzip
import itertools
import zlib

import nibabel as nib
import numpy as np
import pytest

from medimg_fast.io import open_volume
from medimg_fast.io._nifti import read_nifti_roi

SHAPE = (13, 11, 9)  # stored (i, j, k)


def _affine(perm, signs, spacing=(0.8, 1.3, 2.5)):
    """An affine whose array axis ``a`` runs along world axis ``perm[a]`` with sign
    ``signs[a]`` (flips and axis swaps of the canonical reorientation)."""
    aff = np.zeros((4, 4))
    for a, (w, s) in enumerate(zip(perm, signs)):
        aff[w, a] = s * spacing[a]
    aff[:3, 3] = (12.0, -7.5, 30.0)
    aff[3, 3] = 1.0
    return aff


def _roi(seed, shape=SHAPE):
    rng = np.random.default_rng(seed)
    roi = np.zeros(shape, np.uint8)
    lo = [int(rng.integers(0, n - 3)) for n in shape]
    hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape)]
    block = tuple(slice(a, b) for a, b in zip(lo, hi))
    roi[block] = rng.random(roi[block].shape) < 0.6
    roi[tuple(lo)] = 1  # never empty
    return roi


def _write(folder, name, data, affine, *, cls=nib.Nifti1Image, dtype=None, gz=True,
           endianness=None):
    header = None
    if endianness is not None:
        header = nib.Nifti1Header(endianness=endianness)
    img = cls(data, affine, header)
    if dtype is not None:
        img.set_data_dtype(dtype)
    path = folder / (name + (".nii.gz" if gz else ".nii"))
    nib.save(img, path)
    return path


def _check_equals_whole_read(image_path, mask_path, margin=0):
    region = read_nifti_roi(image_path, mask_path, margin=margin)
    assert region is not None
    image = open_volume(image_path)
    whole = np.asarray(image.data.compute())
    roi = np.asarray(open_volume(mask_path).data.compute()) > 0
    assert region.shape == whole.shape
    assert region.spacing == tuple(image.spacing)
    box = tuple(slice(o, o + n) for o, n in zip(region.origin, region.image.shape))
    assert region.image.dtype == whole.dtype and region.mask.dtype == bool
    assert region.image.flags.c_contiguous and region.mask.flags.c_contiguous
    np.testing.assert_array_equal(region.image, whole[box])
    np.testing.assert_array_equal(region.mask, roi[box])
    assert region.mask.sum() == roi.sum()  # the box holds the whole ROI
    # the box is the ROI's bounding box widened by ``margin`` and clipped to the volume
    for ax in range(3):
        hit = np.flatnonzero(roi.any(axis=tuple(a for a in range(3) if a != ax)))
        assert box[ax].start == max(0, hit[0] - margin)
        assert box[ax].stop == min(roi.shape[ax], hit[-1] + 1 + margin)
    return region


ORIENTATIONS = [((0, 1, 2), (1, 1, 1)), ((0, 1, 2), (-1, 1, -1)), ((2, 0, 1), (1, -1, 1)),
                ((1, 2, 0), (-1, -1, -1))]


@pytest.mark.parametrize(("perm", "signs"), ORIENTATIONS)
@pytest.mark.parametrize("gz", [True, False])
def test_box_equals_the_whole_read_in_every_orientation(tmp_path, perm, signs, gz):
    rng = np.random.default_rng(1)
    aff = _affine(perm, signs)
    data = rng.integers(-1000, 1500, SHAPE).astype(np.int16)
    image = _write(tmp_path, "image", data, aff, gz=gz)
    for seed in range(3):
        mask = _write(tmp_path, f"mask{seed}", _roi(seed), aff, gz=gz)
        for margin in (0, 2, 50):
            _check_equals_whole_read(image, mask, margin)


@pytest.mark.parametrize("kind", ["float32", "scaled_int16", "big_endian", "nifti2", "uint8"])
def test_box_equals_the_whole_read_for_each_dtype_and_container(tmp_path, kind):
    rng = np.random.default_rng(2)
    aff = _affine((0, 1, 2), (-1, 1, 1))
    values = rng.normal(40.0, 300.0, SHAPE)
    kwargs = {}
    if kind == "float32":
        data = values.astype(np.float32)
    elif kind == "scaled_int16":  # float data stored as int16 with scl_slope/scl_inter
        data, kwargs = values, {"dtype": np.int16}
    elif kind == "big_endian":
        data, kwargs = values.astype(np.int16), {"endianness": ">", "dtype": np.int16}
    elif kind == "nifti2":
        data, kwargs = values.astype(np.int16), {"cls": nib.Nifti2Image}
    else:
        data = np.clip(values, 0, 255).astype(np.uint8)
    image = _write(tmp_path, "image", data, aff, **kwargs)
    stored = nib.load(image)
    if kind == "scaled_int16":
        assert stored.dataobj.slope not in (None, 1.0)  # the file is scaled
    if kind == "big_endian":
        assert stored.get_data_dtype().byteorder == ">"
    mask = _write(tmp_path, "mask", _roi(5), aff)
    region = _check_equals_whole_read(image, mask, margin=1)
    expected = np.float32 if kind == "scaled_int16" else data.dtype
    assert region.image.dtype == expected


def test_a_scaled_mask_is_its_voxels_above_zero(tmp_path):
    aff = _affine((0, 1, 2), (1, 1, 1))
    roi = _roi(3).astype(np.float64) * 0.7 - 0.2  # -0.2 outside, 0.5 inside
    mask = _write(tmp_path, "mask", roi, aff, dtype=np.int16)
    image = _write(tmp_path, "image", np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE),
                   aff)
    _check_equals_whole_read(image, mask)


def _inflated_length(packed):
    return len(zlib.decompressobj(31).decompress(packed))


def test_only_the_slabs_up_to_the_box_are_inflated(tmp_path):
    # the image's gzip stream cut soon after the box's last slab: the whole-volume read
    # fails, the box read needs none of the missing bytes
    shape = (64, 48, 16)
    aff = _affine((0, 1, 2), (1, 1, 1))
    data = np.random.default_rng(4).integers(-500, 500, shape).astype(np.int16)
    image = _write(tmp_path, "image", data, aff)
    roi = np.zeros(shape, np.uint8)
    roi[3:17, 2:25, 4:7] = 1  # slabs k = 4..6 of 16
    mask = _write(tmp_path, "mask", roi, aff)
    region = _check_equals_whole_read(image, mask)
    packed = image.read_bytes()
    need = 352 + 7 * shape[0] * shape[1] * 2  # the header and slabs 0..6
    lo, hi = 1, len(packed)  # the shortest prefix that inflates to ``need`` bytes
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if _inflated_length(packed[:mid]) < need else (lo, mid)
    assert lo < len(packed) * 0.6  # most of the stream is cut off
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(packed[:lo])
    with pytest.raises(EOFError):
        gzip.decompress(truncated.read_bytes())
    again = read_nifti_roi(truncated, mask)
    np.testing.assert_array_equal(again.image, region.image)
    np.testing.assert_array_equal(again.mask, region.mask)


def test_a_multi_member_gzip_stream_is_read_whole(tmp_path):
    aff = _affine((0, 1, 2), (1, -1, 1))
    data = np.random.default_rng(6).integers(-500, 500, SHAPE).astype(np.int16)
    plain = _write(tmp_path, "plain", data, aff, gz=False).read_bytes()
    image = tmp_path / "members.nii.gz"
    image.write_bytes(gzip.compress(plain[:400]) + gzip.compress(plain[400:]))
    mask = _write(tmp_path, "mask", _roi(7), aff)
    _check_equals_whole_read(image, mask)


def test_an_empty_or_truncated_image_stream_is_a_corrupt_volume(tmp_path):
    from medimg_fast.io import CorruptVolumeError

    aff = _affine((0, 1, 2), (1, 1, 1))
    mask = _write(tmp_path, "mask", _roi(8), aff)
    whole = _write(tmp_path, "image", np.ones(SHAPE, np.int16), aff).read_bytes()
    for name, content in (("empty", b""), ("cut", whole[:len(whole) // 2])):
        image = tmp_path / f"{name}.nii.gz"
        image.write_bytes(content)
        with pytest.raises(CorruptVolumeError, match=name):
            read_nifti_roi(image, mask)


def test_pairs_it_cannot_crop_are_left_to_the_whole_read(tmp_path):
    aff = _affine((0, 1, 2), (1, 1, 1))
    data = np.zeros(SHAPE, np.int16)
    image = _write(tmp_path, "image", data, aff)
    other_shape = _write(tmp_path, "m1", np.ones((13, 11, 8), np.uint8), aff)
    assert read_nifti_roi(image, other_shape) is None
    other_axes = _write(tmp_path, "m2", _roi(1), _affine((1, 0, 2), (1, 1, 1)))
    assert read_nifti_roi(image, other_axes) is None
    four_d = _write(tmp_path, "m3", np.ones(SHAPE + (2,), np.uint8), aff)
    assert read_nifti_roi(image, four_d) is None
    empty = _write(tmp_path, "m4", np.zeros(SHAPE, np.uint8), aff)
    with pytest.raises(ValueError, match="empty"):
        read_nifti_roi(image, empty)
    with pytest.raises(ValueError, match="margin"):
        read_nifti_roi(image, other_shape, margin=-1)


def test_every_cut_of_the_box_matches(tmp_path):
    # ROIs touching each face of the volume (the box clipped there)
    aff = _affine((2, 1, 0), (-1, 1, -1))
    data = np.random.default_rng(8).normal(0, 100, SHAPE).astype(np.float32)
    image = _write(tmp_path, "image", data, aff)
    for n, (ax, end) in enumerate(itertools.product(range(3), (0, -1))):
        roi = np.zeros(SHAPE, np.uint8)
        index = [slice(2, 5)] * 3
        index[ax] = slice(0, 2) if end == 0 else slice(SHAPE[ax] - 2, SHAPE[ax])
        roi[tuple(index)] = 1
        mask = _write(tmp_path, f"mask{n}", roi, aff)
        _check_equals_whole_read(image, mask, margin=3)


def test_on_mask_sees_the_regions_mask_before_the_image(tmp_path):
    image_path, mask_path = _case_pair(tmp_path)
    seen = []

    def on_mask(mask, origin, shape, spacing):
        seen.append((mask.copy(), origin, shape, spacing))
        return "early result"

    region = read_nifti_roi(image_path, mask_path, on_mask=on_mask)
    assert region.early == "early result" and len(seen) == 1
    mask, origin, shape, spacing = seen[0]
    np.testing.assert_array_equal(mask, region.mask)
    assert (origin, shape, spacing) == (region.origin, region.shape, region.spacing)
    assert read_nifti_roi(image_path, mask_path).early is None


def test_an_error_in_on_mask_reaches_the_caller(tmp_path):
    image_path, mask_path = _case_pair(tmp_path)

    def on_mask(*_):
        raise RuntimeError("from on_mask")

    with pytest.raises(RuntimeError, match="from on_mask"):
        read_nifti_roi(image_path, mask_path, on_mask=on_mask)
    assert read_nifti_roi(image_path, mask_path) is not None  # nothing left behind


def _case_pair(folder):
    aff = _affine((2, 0, 1), (1, -1, 1))
    data = np.random.default_rng(7).integers(-1000, 1500, SHAPE).astype(np.int16)
    return (_write(folder, "image", data, aff), _write(folder, "mask", _roi(3), aff))

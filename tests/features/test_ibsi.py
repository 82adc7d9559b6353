"""Conformance with the IBSI-1 digital phantom reference values."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medimg_fast import available_backends
from medimg_fast.features import extract_features

IBSI_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ibsi1"
FAMILY_PREFIXES = ("stat_", "ih_", "morph_")
BACKENDS = [b for b in ("numpy", "numba") if available_backends()[b].available]


def _in_scope(tag: str) -> bool:
    return tag.startswith(FAMILY_PREFIXES) or (
        tag.startswith("cm_") and tag.endswith(("_3D_avg", "_3D_comb"))
    )


@pytest.fixture(scope="module")
def phantom():
    if not (IBSI_DIR / "image.nii.gz").is_file():
        pytest.skip(f"IBSI-1 phantom not found at {IBSI_DIR} (the shared data folder is absent)")
    nib = pytest.importorskip("nibabel")
    img = nib.load(IBSI_DIR / "image.nii.gz")
    msk = nib.load(IBSI_DIR / "mask.nii.gz")
    image = np.asarray(img.dataobj, dtype=np.float64)
    mask = np.asarray(msk.dataobj) > 0
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return image, mask, spacing


@pytest.fixture(scope="module")
def reference():
    path = IBSI_DIR / "reference_values.csv"
    if not path.is_file():
        pytest.skip(f"IBSI-1 reference values not found at {path}")
    ref = {}
    with path.open(encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            if row["reference value"] and _in_scope(row["tag"]):
                ref[row["tag"]] = (float(row["reference value"]), float(row["tolerance"]))
    return ref


def _round_sig(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant digits, as the IBSI values are published."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _mismatches(features, reference):
    bad = []
    for tag, (ref, tol) in reference.items():
        value = features[tag]
        ok = abs(value - ref) <= tol if tol > 0 else _round_sig(value) == ref
        if not ok:
            bad.append(f"{tag}: got {value!r}, reference {ref} (tolerance {tol})")
    return bad


def test_phantom_geometry(phantom):
    image, mask, spacing = phantom
    assert image.shape == (5, 4, 4)
    assert spacing == (2.0, 2.0, 2.0)
    assert mask.sum() == 74
    assert set(np.unique(image[mask])) <= {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}


def test_reference_covers_every_family(reference):
    for prefix in ("stat_", "ih_", "morph_"):
        assert any(t.startswith(prefix) for t in reference)
    assert sum(t.startswith("cm_") for t in reference) == 50


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("discretisation", [{"bin_width": 1.0}, {"bin_count": 6}])
def test_phantom_matches_ibsi(phantom, reference, backend, discretisation):
    image, mask, spacing = phantom
    feats = extract_features(image, mask, spacing=spacing, settings=discretisation,
                             backend=backend)
    missing = sorted(set(reference) - set(feats))
    assert not missing, f"features not computed: {missing}"
    bad = _mismatches(feats, reference)
    assert not bad, "\n".join(bad)


def test_phantom_matches_ibsi_from_chunks(phantom, reference):
    da = pytest.importorskip("dask.array")
    image, mask, spacing = phantom
    feats = extract_features(da.from_array(image, chunks=(2, 3, 2)),
                             da.from_array(mask, chunks=(2, 3, 2)), spacing=spacing,
                             settings={"bin_width": 1.0})
    bad = _mismatches(feats, reference)
    assert not bad, "\n".join(bad)


def test_rounding_check_can_fail(reference):
    # guards the comparison itself: a value off in the third significant digit fails
    feats = {tag: ref for tag, (ref, _) in reference.items()}
    feats["stat_mean"] = 2.16
    assert _mismatches(feats, reference) == [
        "stat_mean: got 2.16, reference 2.15 (tolerance 0.0)"
    ]

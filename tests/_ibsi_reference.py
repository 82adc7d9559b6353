"""IBSI reference tables and their pass rule, shared by the conformance tests.

Imported as ``_ibsi_reference`` (tests/ is on sys.path).  The digital phantom and its
table live in tests/data/ibsi1 (CC BY 4.0); the CT phantom stays in the shared data folder
(non-commercial licence) and its tests skip where it is absent.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

DIGITAL_DIR = Path(__file__).resolve().parent / "data" / "ibsi1"
CT_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ibsi1_ct"


class Reference(dict):
    """``{tag: (value, tolerance, published text)}`` of the rows with a value."""


def load_nifti(path):
    """``(array, spacing)`` of a NIfTI file in our (z, y, x) order (NIfTI is x, y, z)."""
    nib = pytest.importorskip("nibabel")
    img = nib.load(path)
    return (np.asarray(img.dataobj).transpose(2, 1, 0),
            tuple(float(z) for z in img.header.get_zooms()[:3][::-1]))


def digital_phantom():
    """The IBSI-1 digital phantom: float64 image (4, 4, 5), boolean mask, spacing."""
    image, spacing = load_nifti(DIGITAL_DIR / "image.nii.gz")
    mask, _ = load_nifti(DIGITAL_DIR / "mask.nii.gz")
    return image.astype(np.float64), mask > 0, spacing


def ct_phantom():
    """The IBSI-1 CT phantom (image in HU, mask, spacing), or skip with the reason."""
    if not (CT_DIR / "image.nii.gz").is_file():
        pytest.skip(f"IBSI-1 CT phantom not found at {CT_DIR} (the shared data folder is "
                    f"absent; its non-commercial licence keeps it out of the repository)")
    image, spacing = load_nifti(CT_DIR / "image.nii.gz")
    mask, _ = load_nifti(CT_DIR / "mask.nii.gz")
    return image.astype(np.float64), mask > 0, spacing


def read_digital_reference(path=DIGITAL_DIR / "reference_values.csv", *,
                           prefix: str = "") -> Reference:
    """The digital phantom's table (the tags starting with ``prefix``, e.g. ``"rlm_"``)."""
    ref = Reference()
    with Path(path).open(encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            if row["reference value"] and row["tag"].startswith(prefix):
                text = row["reference value"]
                ref[row["tag"]] = (float(text), float(row["tolerance"]), text)
    return ref


def read_ct_reference(config: str) -> Reference:
    """Configuration ``config`` ("a", "b", "c") of the CT phantom, or skip."""
    path = CT_DIR / f"reference_config_{config}.csv"
    if not path.is_file():
        pytest.skip(f"IBSI-1 CT reference values not found at {path}")
    ref = Reference()
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=";")
        next(reader)  # header
        for text, tol, tag in reader:
            if text:
                ref[tag] = (float(text), float(tol), text)
    return ref


def significant_digits(text: str) -> int:
    digits = text.lower().split("e")[0].lstrip("+-").replace(".", "").lstrip("0").rstrip("0")
    return len(digits)


def round_sig(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant digits, as the IBSI values are published."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def passes(value: float, ref: float, tol: float, text: str) -> bool:
    """The IBSI rule: the value rounded as the reference is published (three significant
    digits, or every digit of an exact count such as 125256) within the tolerance; a
    tolerance of 0 asks for equality after rounding."""
    rounded = round_sig(value, max(3, significant_digits(text)))
    return math.isclose(rounded, ref, rel_tol=1e-12, abs_tol=1e-12) or (
        abs(rounded - ref) <= tol * (1 + 1e-12))


def mismatches(features, reference) -> list[str]:
    """The reference values that ``features`` misses or computes outside tolerance."""
    bad = []
    for tag, (ref, tol, text) in reference.items():
        if tag not in features:
            bad.append(f"{tag}: not computed")
        elif not passes(features[tag], ref, tol, text):
            bad.append(f"{tag}: got {features[tag]!r}, reference {text} (tolerance {tol:g})")
    return bad

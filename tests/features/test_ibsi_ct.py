"""Conformance with the IBSI-1 CT radiomics phantom, configurations A, B and C.

The phantom's licence is non-commercial, so it is read from the shared data folder and
these tests skip with the reason where it is absent.  Settings from the IBSI-1 reference
manual (arXiv:1612.07003), section 5, as tabulated in the data folder's README.
"""

from __future__ import annotations

import pytest
from _ibsi_reference import ct_phantom, mismatches, read_ct_reference

from medimg_fast.features import extract_features

_2D = {"texture_dims": ["2D", "2.5D"]}
CONFIGS = {
    "a": {**_2D, "reseg_range": [-500, 400], "bin_width": 25.0},
    "b": {**_2D, "resample_mm": [None, 2.0, 2.0], "resample_order": 1,
          "round_intensities": True, "mask_threshold": 0.5, "reseg_range": [-500, 400],
          "bin_count": 32},
    "c": {"texture_dims": ["3D"], "resample_mm": [2.0, 2.0, 2.0], "resample_order": 1,
          "round_intensities": True, "mask_threshold": 0.5, "reseg_range": [-1000, 400],
          "bin_width": 25.0, "ivh_bin_width": 2.5},
}


@pytest.fixture(scope="module")
def phantom():
    return ct_phantom()


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_ct_phantom_matches_ibsi(phantom, config):
    image, mask, spacing = phantom
    reference = read_ct_reference(config)
    settings = {"families": "all", "diagnostics": True, **CONFIGS[config]}
    feats = extract_features(image, mask, spacing=spacing, settings=settings)
    bad = mismatches(feats, reference)
    assert not bad, f"{len(bad)} of {len(reference)} values off:\n" + "\n".join(bad)

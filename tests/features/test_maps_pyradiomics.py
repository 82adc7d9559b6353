"""Voxel-wise maps against PyRadiomics 3.1's voxel-based extraction (maskedKernel), feature
by feature where the definitions are IBSI's, on a small CT-like ROI.

PyRadiomics runs in its own Python 3.9 environment (``bash benchmarks/anchors/
setup_anchors.sh``) as a subprocess; the test skips with the reason where it is absent.
The feature correspondences are those of ``test_pyradiomics_agreement.py`` (PyRadiomics'
texture classes average the 13 directions: our ``_3D_avg``; GLDM is our NGLDM with
alpha 0).  Left out as there: kurtosis (PyRadiomics omits the -3), MCC, and the first-order
features PyRadiomics computes on discretised values (entropy, uniformity; ours are the
``ih_*`` maps, with PyRadiomics' bin edges the same).
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_pyradiomics_agreement import FIRSTORDER, GLDM, GLRLM, NGTDM, PYRAD_PY

from medimg_fast.features import feature_maps

ANCHORS = Path(__file__).resolve().parents[2] / "benchmarks" / "anchors"


def _case(seed=3):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    shape = (9, 14, 14)
    image = np.round(gaussian_filter(rng.normal(0, 1, shape), 2) * 800 + rng.normal(0, 40, shape))
    z, y, x = np.indices(shape)
    mask = ((z - 4) / 3.5) ** 2 + ((y - 7) / 5) ** 2 + ((x - 7) / 5.5) ** 2 <= 1
    return image, mask


@pytest.fixture(scope="module")
def pyradiomics_maps(tmp_path_factory):
    if not PYRAD_PY.is_file():
        pytest.skip(f"PyRadiomics venv not built ({PYRAD_PY}): "
                    f"bash benchmarks/anchors/setup_anchors.sh")
    image, mask = _case()
    tmp = tmp_path_factory.mktemp("pyradiomics_maps")
    np.save(tmp / "img.npy", image)
    np.save(tmp / "mask.npy", mask)
    width = 25.0
    subprocess.run([str(PYRAD_PY), str(ANCHORS / "run_pyradiomics_maps.py"), "--image",
                    str(tmp / "img.npy"), "--mask", str(tmp / "mask.npy"), "--bin-width",
                    str(width), "--radius", "1", "--out", str(tmp / "maps.npz"), "--classes",
                    "firstorder", "glrlm", "gldm", "ngtdm"],
                   check=True, capture_output=True, timeout=900)
    return image, mask, width, dict(np.load(tmp / "maps.npz"))


def test_maps_agree_with_pyradiomics_voxel_based(pyradiomics_maps):
    image, mask, width, theirs = pyradiomics_maps
    # PyRadiomics' fixed bin width starts at the multiple of the width below the ROI minimum
    settings = {"bin_width": width, "bin_min": math.floor(image[mask].min() / width) * width}
    ours = feature_maps(image, mask, settings=settings, radius=1,
                        families=["stat", "rlm", "ngl", "ngt"])
    pairs = {f"firstorder_{k}": v for k, v in FIRSTORDER.items()
             if v.startswith("stat_")}
    pairs.update({f"glrlm_{k}": f"rlm_{v}_3D_avg" for k, v in GLRLM.items()})
    pairs.update({f"gldm_{k}": f"ngl_{v}_3D" for k, v in GLDM.items()})
    pairs.update({f"ngtdm_{k}": f"ngt_{v}_3D" for k, v in NGTDM.items()})
    bad = []
    for name, tag in pairs.items():
        a, b = theirs[name][mask], ours[tag][mask]
        finite = np.isfinite(a) & np.isfinite(b)
        if not np.array_equal(np.isfinite(a), np.isfinite(b)):
            bad.append(f"{tag}: NaN at other voxels than PyRadiomics {name}")
            continue
        err = np.max(np.abs(a[finite] - b[finite]) / np.maximum(np.abs(a[finite]), 1.0),
                     initial=0.0)
        if err > 1e-9:
            bad.append(f"{tag} vs PyRadiomics {name}: largest relative difference {err:.2e}")
    assert not bad, "\n".join(bad)
    assert len(pairs) == 14 + 16 + 14 + 5

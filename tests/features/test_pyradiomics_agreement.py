"""PyRadiomics as an independent reference, feature by feature where its definitions are
IBSI's, on the IBSI-1 digital phantom.

PyRadiomics 3.1 lives in its own Python 3.9 environment (``bash
benchmarks/anchors/setup_anchors.sh``) and runs as a subprocess; the test skips with the
reason where that environment is absent.  Its texture classes average the 13 directions
(our ``_3D_avg``) or work on 3-D matrices (``_3D``).  Left out, because the definitions
differ: the PCA axis lengths and their ratios (PyRadiomics takes the population covariance,
IBSI the sample one), the 2-D diameters, TotalEnergy (energy times voxel volume), the GLCM's
MCC, and kurtosis, which PyRadiomics reports without the -3.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _ibsi_reference import DIGITAL_DIR, digital_phantom

from medimg_fast.features import extract_features

ANCHORS = Path(__file__).resolve().parents[2] / "benchmarks" / "anchors"
PYRAD_PY = ANCHORS / ".venv-pyradiomics" / "bin" / "python"

SHAPE = {"MeshVolume": "morph_volume", "VoxelVolume": "morph_vol_approx",
         "SurfaceArea": "morph_area_mesh", "SurfaceVolumeRatio": "morph_av",
         "Sphericity": "morph_sphericity", "Maximum3DDiameter": "morph_diam"}
FIRSTORDER = {"Mean": "stat_mean", "Variance": "stat_var", "Skewness": "stat_skew",
              "Energy": "stat_energy", "Minimum": "stat_min", "Maximum": "stat_max",
              "Median": "stat_median", "10Percentile": "stat_p10", "90Percentile": "stat_p90",
              "InterquartileRange": "stat_iqr", "Range": "stat_range",
              "MeanAbsoluteDeviation": "stat_mad", "RobustMeanAbsoluteDeviation": "stat_rmad",
              "RootMeanSquared": "stat_rms", "Entropy": "ih_entropy",
              "Uniformity": "ih_uniformity"}
GLCM = {"Autocorrelation": "auto_corr", "ClusterProminence": "clust_prom",
        "ClusterShade": "clust_shade", "ClusterTendency": "clust_tend", "Contrast": "contrast",
        "Correlation": "corr", "DifferenceAverage": "diff_avg",
        "DifferenceEntropy": "diff_entr", "DifferenceVariance": "diff_var", "Id": "inv_diff",
        "Idm": "inv_diff_mom", "Idmn": "inv_diff_mom_norm", "Idn": "inv_diff_norm",
        "Imc1": "info_corr1", "Imc2": "info_corr2", "InverseVariance": "inv_var",
        "JointAverage": "joint_avg", "JointEnergy": "energy", "JointEntropy": "joint_entr",
        "MaximumProbability": "joint_max", "SumAverage": "sum_avg", "SumEntropy": "sum_entr",
        "SumSquares": "joint_var"}
GLRLM = {"GrayLevelNonUniformity": "glnu", "GrayLevelNonUniformityNormalized": "glnu_norm",
         "GrayLevelVariance": "gl_var", "HighGrayLevelRunEmphasis": "hgre",
         "LongRunEmphasis": "lre", "LongRunHighGrayLevelEmphasis": "lrhge",
         "LongRunLowGrayLevelEmphasis": "lrlge", "LowGrayLevelRunEmphasis": "lgre",
         "RunEntropy": "rl_entr", "RunLengthNonUniformity": "rlnu",
         "RunLengthNonUniformityNormalized": "rlnu_norm", "RunPercentage": "r_perc",
         "RunVariance": "rl_var", "ShortRunEmphasis": "sre",
         "ShortRunHighGrayLevelEmphasis": "srhge", "ShortRunLowGrayLevelEmphasis": "srlge"}
GLSZM = {"GrayLevelNonUniformity": "glnu", "GrayLevelNonUniformityNormalized": "glnu_norm",
         "GrayLevelVariance": "gl_var", "HighGrayLevelZoneEmphasis": "hgze",
         "LargeAreaEmphasis": "lze", "LargeAreaHighGrayLevelEmphasis": "lzhge",
         "LargeAreaLowGrayLevelEmphasis": "lzlge", "LowGrayLevelZoneEmphasis": "lgze",
         "SizeZoneNonUniformity": "zsnu", "SizeZoneNonUniformityNormalized": "zsnu_norm",
         "SmallAreaEmphasis": "sze", "SmallAreaHighGrayLevelEmphasis": "szhge",
         "SmallAreaLowGrayLevelEmphasis": "szlge", "ZoneEntropy": "zs_entr",
         "ZonePercentage": "z_perc", "ZoneVariance": "zs_var"}
GLDM = {"DependenceEntropy": "dc_entr", "DependenceNonUniformity": "dcnu",
        "DependenceNonUniformityNormalized": "dcnu_norm", "DependenceVariance": "dc_var",
        "GrayLevelNonUniformity": "glnu", "GrayLevelVariance": "gl_var",
        "HighGrayLevelEmphasis": "hgce", "LargeDependenceEmphasis": "hde",
        "LargeDependenceHighGrayLevelEmphasis": "hdhge",
        "LargeDependenceLowGrayLevelEmphasis": "hdlge", "LowGrayLevelEmphasis": "lgce",
        "SmallDependenceEmphasis": "lde", "SmallDependenceHighGrayLevelEmphasis": "ldhge",
        "SmallDependenceLowGrayLevelEmphasis": "ldlge"}
NGTDM = {n: n.lower() for n in ("Busyness", "Coarseness", "Complexity", "Contrast",
                                "Strength")}


def _tag_map() -> dict[str, str]:
    out = {f"original_shape_{k}": v for k, v in SHAPE.items()}
    out.update({f"original_firstorder_{k}": v for k, v in FIRSTORDER.items()})
    out.update({f"original_glcm_{k}": f"cm_{v}_3D_avg" for k, v in GLCM.items()})
    out.update({f"original_glrlm_{k}": f"rlm_{v}_3D_avg" for k, v in GLRLM.items()})
    out.update({f"original_glszm_{k}": f"szm_{v}_3D" for k, v in GLSZM.items()})
    out.update({f"original_gldm_{k}": f"ngl_{v}_3D" for k, v in GLDM.items()})
    out.update({f"original_ngtdm_{k}": f"ngt_{v}_3D" for k, v in NGTDM.items()})
    return out


@pytest.fixture(scope="module")
def pyradiomics_features(tmp_path_factory):
    if not PYRAD_PY.is_file():
        pytest.skip(f"PyRadiomics venv not built ({PYRAD_PY}): "
                    f"bash benchmarks/anchors/setup_anchors.sh")
    out = tmp_path_factory.mktemp("pyradiomics") / "phantom.json"
    subprocess.run([str(PYRAD_PY), str(ANCHORS / "run_pyradiomics.py"), "--image",
                    str(DIGITAL_DIR / "image.nii.gz"), "--mask", str(DIGITAL_DIR / "mask.nii.gz"),
                    "--out", str(out), "--repeat", "0", "--config", "bin1"],
                   check=True, capture_output=True, timeout=300)
    return json.loads(out.read_text())["features"]


def test_phantom_agrees_with_pyradiomics(pyradiomics_features):
    image, mask, spacing = digital_phantom()
    ours = extract_features(image, mask, spacing=spacing,
                            settings={"families": ["morph", "stat", "ih", "cm", "rlm", "szm",
                                                   "ngl", "ngt"], "bin_width": 1.0})
    tags = _tag_map()
    # PyRadiomics' default set less the 11 left out (8 shape, TotalEnergy, Kurtosis, MCC)
    assert len(tags) == 107 - 11
    bad = []
    for theirs, tag in tags.items():
        value = pyradiomics_features[theirs]
        if abs(ours[tag] - value) > 1e-9 * max(1.0, abs(value)):
            bad.append(f"{tag} = {ours[tag]!r}, PyRadiomics {theirs} = {value!r}")
    assert not bad, "\n".join(bad)


def test_ct_phantom_agrees_with_pyradiomics(tmp_path):
    import math

    from _ibsi_reference import CT_DIR, ct_phantom

    if not PYRAD_PY.is_file():
        pytest.skip(f"PyRadiomics venv not built ({PYRAD_PY})")
    image, mask, spacing = ct_phantom()
    out = tmp_path / "ct.json"
    subprocess.run([str(PYRAD_PY), str(ANCHORS / "run_pyradiomics.py"), "--image",
                    str(CT_DIR / "image.nii.gz"), "--mask", str(CT_DIR / "mask.nii.gz"),
                    "--out", str(out), "--repeat", "0", "--config", "default"],
                   check=True, capture_output=True, timeout=600)
    theirs = json.loads(out.read_text())["features"]
    # PyRadiomics' fixed bin width starts at the multiple of the width below the ROI minimum
    bin_min = math.floor(image[mask].min() / 25.0) * 25.0
    ours = extract_features(image, mask, spacing=spacing,
                            settings={"families": ["morph", "stat", "ih", "cm", "rlm", "szm",
                                                   "ngl", "ngt"], "bin_width": 25.0,
                                      "bin_min": bin_min})
    # PyRadiomics' marching cubes resolves ambiguous cell configurations unlike the mesh
    # IBSI takes (ours passes the IBSI values of this phantom): its mesh volume is 0.06 %
    # lower here, so the mesh features are compared on the digital phantom only
    mesh = {"morph_volume", "morph_area_mesh", "morph_av", "morph_sphericity"}
    bad = [f"{tag} = {ours[tag]!r}, PyRadiomics {name} = {theirs[name]!r}"
           for name, tag in _tag_map().items()
           if tag not in mesh and abs(ours[tag] - theirs[name]) > 1e-6 * max(1.0, abs(theirs[name]))]
    assert not bad, "\n".join(bad)

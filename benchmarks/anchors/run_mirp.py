#!/usr/bin/env python3
"""MIRP anchor runner. Run with benchmarks/anchors/.venv-mirp/bin/python.

Computes all IBSI-1 feature families in 3D with MIRP's extract_features for one image/mask
case. Each timed call is a complete mirp.extract_features(image=path, mask=path, ...), i.e.
it includes MIRP reading both NIfTI files (via itk) and all its pre-processing.

  .venv-mirp/bin/python run_mirp.py --image IMG.nii.gz --mask MASK.nii.gz \
      --out result.json [--repeat N] [--config ibsi_c_nointerp|ibsi_c]
"""
import logging
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _anchor_common as common

FAMILIES = ["morphology", "local_intensity", "statistics", "intensity_histogram",
            "intensity_volume_histogram", "glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm"]

_BASE = {
    "image_modality": "CT",
    "by_slice": False,                                   # 3D
    "ibsi_compliant": True,
    "resegmentation_intensity_range": [-1000.0, 400.0],  # range re-segmentation -1000..400 HU
    "base_feature_families": FAMILIES,
    "base_discretisation_method": "fixed_bin_size",      # FBS 25 HU, first bin edge at -1000
    "base_discretisation_bin_width": 25.0,
    "ivh_discretisation_method": "fixed_bin_size",       # IVH as in IBSI config C: FBS 2.5 HU
    "ivh_discretisation_bin_width": 2.5,
    "glcm_distance": 1.0,
    "glcm_spatial_method": ["3d_average", "3d_volume_merge"],
    "glrlm_spatial_method": ["3d_average", "3d_volume_merge"],
    "glszm_spatial_method": "3d",
    "gldzm_spatial_method": "3d",
    "ngtdm_spatial_method": "3d",
    "ngldm_distance": 1.0,
    "ngldm_difference_level": 0.0,
    "ngldm_spatial_method": "3d",
}

CONFIGS = {
    "ibsi_c_nointerp": (
        "IBSI-1 configuration C without interpolation: 3D, no resampling, re-segmentation "
        "-1000..400 HU, fixed bin size 25 HU from -1000 (IH + texture), IVH fixed bin size 2.5 HU, "
        "GLCM/GLRLM 3D average + 3D merged, GLSZM/GLDZM/NGTDM/NGLDM 3D, distance 1, NGLDM alpha 0; "
        "families: " + ", ".join(FAMILIES) + ".",
        dict(_BASE, new_spacing=None)),
    "ibsi_c": (
        ("IBSI-1 configuration C: as ibsi_c_nointerp plus resampling to 2x2x2 mm (image trilinear "
        "(MIRP rounds CT intensities to integers itself), mask trilinear with partial-volume threshold 0.5). For checking "
        "MIRP against /work/shared/data/ibsi1_ct/reference_config_c.csv."),
        dict(_BASE, new_spacing=2.0, spline_order=1, anti_aliasing=False,
             roi_spline_order=1, roi_interpolation_mask_inclusion_threshold=0.5)),
    "ibsi_d": (
        ("IBSI-1 configuration D: 3D, 2x2x2 mm trilinear (rounded), mask trilinear 0.5, "
         "re-segmentation of outliers at 3 sigma (no range), fixed bin number 32, IVH without "
         "discretisation, exact Moran's I / Geary's C (no_approximation)."),
        dict(_BASE, new_spacing=2.0, spline_order=1, anti_aliasing=False,
             roi_spline_order=1, roi_interpolation_mask_inclusion_threshold=0.5,
             resegmentation_intensity_range=None, resegmentation_sigma=3.0,
             base_discretisation_method="fixed_bin_number", base_discretisation_n_bins=32,
             base_discretisation_bin_width=None, ivh_discretisation_method="none",
             ivh_discretisation_bin_width=None, no_approximation=True)),
    "ibsi_e": (
        ("IBSI-1 configuration E: as D with tricubic spline interpolation, re-segmentation by "
         "range -1000..400 HU and outliers at 3 sigma, IVH fixed bin number 1000."),
        dict(_BASE, new_spacing=2.0, spline_order=3, anti_aliasing=False,
             roi_spline_order=1, roi_interpolation_mask_inclusion_threshold=0.5,
             resegmentation_sigma=3.0, base_discretisation_method="fixed_bin_number",
             base_discretisation_n_bins=32, base_discretisation_bin_width=None,
             ivh_discretisation_method="fixed_bin_number", ivh_discretisation_n_bins=1000,
             ivh_discretisation_bin_width=None, no_approximation=True)),
}

# Columns of MIRP's feature table that describe the input, not features.
_FEATURE_PREFIXES = ("morph_", "loc_", "stat_", "ih_", "ivh_", "cm_", "rlm_", "szm_", "dzm_",
                     "ngt_", "ngl_")


def main(argv=None):
    args = common.parse_args("mirp", CONFIGS, "ibsi_c_nointerp", argv)
    # MIRP calls logging.basicConfig(level=INFO) on every call; configuring the root logger
    # first turns that into a no-op and keeps its per-case INFO lines out of the output.
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    import mirp
    from mirp import extract_features
    import_seconds = time.perf_counter() - t0
    try:
        from importlib.metadata import version
        mirp_version = version("mirp")
    except Exception:  # pragma: no cover
        mirp_version = getattr(mirp, "__version__", "unknown")

    desc, settings = CONFIGS[args.config]
    image, mask = os.path.abspath(args.image), os.path.abspath(args.mask)

    def compute():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tables = extract_features(image=image, mask=mask, export_features=True,
                                      write_features=False, num_cpus=None, **settings)
        if not tables or len(tables) != 1:
            raise RuntimeError("MIRP returned %r feature tables, expected 1" % (len(tables) if tables else 0))
        row = tables[0].iloc[0]
        return {k: row[k] for k in tables[0].columns if k.startswith(_FEATURE_PREFIXES)}

    common.run_and_report("mirp", mirp_version, args.config, desc, import_seconds, compute, args)


if __name__ == "__main__":
    main()

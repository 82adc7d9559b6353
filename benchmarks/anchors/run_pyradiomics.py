#!/usr/bin/env python3
"""PyRadiomics anchor runner. Run with benchmarks/anchors/.venv-pyradiomics/bin/python.

Computes the full PyRadiomics default feature set (shape, firstorder, glcm, glrlm, glszm,
gldm, ngtdm) on the original image with binWidth 25, for one image/mask case.
Each timed call is a complete RadiomicsFeatureExtractor.execute(image_path, mask_path),
i.e. it includes reading both NIfTI files with SimpleITK.

  .venv-pyradiomics/bin/python run_pyradiomics.py --image IMG.nii.gz --mask MASK.nii.gz \
      --out result.json [--repeat N] [--config default]
"""
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _anchor_common as common

CONFIGS = {
    # PyRadiomics defaults (no resampling, no normalisation, label 1, force2D off,
    # correctMask off) with a fixed bin width of 25 (PyRadiomics bins start at a multiple
    # of binWidth below the ROI minimum, not at a re-segmentation bound).
    "default": (("PyRadiomics 3.1 defaults: Original image only, feature classes shape, firstorder, "
                "glcm, glrlm, glszm, gldm, ngtdm (all features of each), binWidth 25, no resampling, "
                "no re-segmentation, label 1."), {"binWidth": 25}),
    # the IBSI-1 digital phantom's discretisation (grey levels 1..6 are their own bins)
    "bin1": ("As default with binWidth 1 (the IBSI-1 digital phantom).", {"binWidth": 1}),
}


def main(argv=None):
    args = common.parse_args("pyradiomics", CONFIGS, "default", argv)
    t0 = time.perf_counter()
    import radiomics
    from radiomics import featureextractor
    import_seconds = time.perf_counter() - t0
    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)

    desc, settings = CONFIGS[args.config]
    extractor = featureextractor.RadiomicsFeatureExtractor(**settings)
    extractor.disableAllImageTypes()
    extractor.enableImageTypeByName("Original")
    extractor.disableAllFeatures()
    for cls in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"):
        extractor.enableFeatureClassByName(cls)  # all features of the class

    image, mask = os.path.abspath(args.image), os.path.abspath(args.mask)

    def compute():
        res = extractor.execute(image, mask, label=1)
        return {k: v for k, v in res.items() if not k.startswith("diagnostics_")}

    try:
        from importlib.metadata import version
        pyrad_version = version("pyradiomics")
    except Exception:  # pragma: no cover
        pyrad_version = str(radiomics.__version__).lstrip("v")
    common.run_and_report("pyradiomics", pyrad_version, args.config, desc,
                          import_seconds, compute, args)


if __name__ == "__main__":
    main()

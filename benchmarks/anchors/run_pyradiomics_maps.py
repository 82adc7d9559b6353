#!/usr/bin/env python3
"""PyRadiomics voxel-based feature maps for the maps benchmark and tests. Run with
benchmarks/anchors/.venv-pyradiomics/bin/python (PyRadiomics 3.1, Python 3.9).

  run_pyradiomics_maps.py --image IMG.npy --mask MASK.npy --bin-width W --radius R \
      --out maps.npz [--unmasked] [--classes glcm glrlm ...]

Reads (z, y, x) arrays (1 mm voxels, origin 0), runs ``execute(..., voxelBased=True)``
with the feature classes asked (default GLCM: symmetric, distance 1, 13 directions
averaged; maskedKernel unless --unmasked), and writes one full-size map per feature (NaN
outside the ROI), named ``<class>_<feature>``, plus ``seconds`` (the execute call alone) to
an .npz.
"""
import argparse
import logging
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--image", required=True)
    p.add_argument("--mask", required=True)
    p.add_argument("--bin-width", type=float, required=True)
    p.add_argument("--radius", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--unmasked", action="store_true")
    p.add_argument("--classes", nargs="+", default=["glcm"])
    args = p.parse_args(argv)

    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    image = np.load(args.image)
    mask = np.load(args.mask).astype(np.uint8)
    img = sitk.GetImageFromArray(image.astype(np.float64))
    msk = sitk.GetImageFromArray(mask)
    ext = featureextractor.RadiomicsFeatureExtractor(
        binWidth=args.bin_width, kernelRadius=args.radius, maskedKernel=not args.unmasked,
        initValue=np.nan, voxelBatch=-1)
    ext.disableAllImageTypes()
    ext.enableImageTypeByName("Original")
    ext.disableAllFeatures()
    for cls in args.classes:
        ext.enableFeatureClassByName(cls)
    t0 = time.perf_counter()
    res = ext.execute(img, msk, label=1, voxelBased=True)
    seconds = time.perf_counter() - t0
    out = {"seconds": np.float64(seconds)}
    for key, val in res.items():
        if not isinstance(val, sitk.Image):
            continue
        arr = sitk.GetArrayFromImage(val).astype(np.float64)
        # the map covers the ROI's box (plus padding): place it by its origin (1 mm voxels)
        off = [round(o) for o in val.GetOrigin()[::-1]]
        full = np.full(image.shape, np.nan)
        full[tuple(slice(o, o + n) for o, n in zip(off, arr.shape))] = arr
        full[mask == 0] = np.nan
        out[key.replace("original_", "")] = full
    np.savez(args.out, **out)


if __name__ == "__main__":
    main()

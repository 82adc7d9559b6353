#!/usr/bin/env python3
"""PyRadiomics filter-step timing. Run with benchmarks/anchors/.venv-pyradiomics/bin/python.

Times PyRadiomics' own image-type generators on one SimpleITK image, nothing else:
``imageoperations.getLoGImage`` (SimpleITK ``LaplacianRecursiveGaussian``, sigma in mm,
sigma^2-normalised) and ``imageoperations.getWaveletImage`` (PyWavelets ``swtn``).  The
wavelet generator computes every band of a level at once (8 in 3-D); the time is that of
all of them, which is what a user pays for the one band asked for.  Level 2 is
``start_level=1, level=1`` (PyRadiomics' a trous start).

  .venv-pyradiomics/bin/python run_pyradiomics_filters.py --image IMG.nii.gz --out r.json \
      [--configs log,wavelet_db2_l1,wavelet_db2_l2] [--repeat N]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _anchor_common as common

CONFIGS = {
    "log": ("getLoGImage", {"sigma": [1.5]}),
    "wavelet_db2_l1": ("getWaveletImage", {"wavelet": "db2", "start_level": 0, "level": 1}),
    "wavelet_db2_l2": ("getWaveletImage", {"wavelet": "db2", "start_level": 1, "level": 1}),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    import logging

    import radiomics
    import SimpleITK as sitk
    from radiomics import imageoperations
    radiomics.setVerbosity(logging.ERROR)
    from importlib.metadata import version

    image = sitk.Cast(sitk.ReadImage(os.path.abspath(args.image)), sitk.sitkFloat32)
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    results = {}
    load_before = common._loadavg()
    for name in [c for c in args.configs.split(",") if c]:
        func, kwargs = CONFIGS[name]
        seconds = []
        for i in range(args.repeat + 1):
            t = time.perf_counter()
            outputs = [sitk.GetArrayViewFromImage(img).shape
                       for img, _, _ in getattr(imageoperations, func)(image, mask, **kwargs)]
            if i:
                seconds.append(time.perf_counter() - t)
        results[name] = {"function": func, "kwargs": kwargs, "n_outputs": len(outputs),
                         "filter_seconds": seconds}
        print(f"[pyradiomics] {name}: {seconds}", file=sys.stderr)
    with open(args.out, "w") as fh:
        json.dump({"tool": "pyradiomics", "version": version("pyradiomics"),
                   "image": os.path.abspath(args.image), "configs": results,
                   "environment": {"loadavg_1min_before": load_before,
                                   "loadavg_1min_after": common._loadavg()}}, fh, indent=1)


if __name__ == "__main__":
    main()

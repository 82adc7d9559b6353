#!/usr/bin/env python3
"""MIRP runner for IBSI-2 filters. Run with benchmarks/anchors/.venv-mirp/bin/python.

For each filter configuration (``CONFIGS``), one ``mirp.extract_features`` call with that
filter in ``filter_kernels`` and the intensity statistics of the base image and of the
response map (``base_feature_families="statistics"``,
``response_map_feature_families="statistics"``).  What comes back per configuration:

* ``features``: MIRP's ``stat_*`` values of the response map in the ROI, keyed by the
  IBSI tag (``stat_mean``, ``stat_var``, ...);
* ``filter_seconds``: the time of the filter step alone, measured by wrapping MIRP's
  ``StandardWorkflow.transform_images`` generator (each item it yields is one
  ``Filter.transform(image)``: the response map of the whole processed image, nothing
  else), one entry per timed call;
* ``seconds``: the whole ``extract_features`` call (file reading, interpolation,
  re-segmentation, filter, features).

Processing (``--processing``):

* ``ibsi2`` (default): IBSI-2 phase 2.  2-D configurations: no interpolation; 3-D: 1 mm
  isotropic cubic spline (``spline_order=3``, no anti-aliasing), ROI trilinear with
  partial volume 0.5; re-segmentation -1000..400 HU; CT modality (MIRP rounds
  interpolated CT intensities to integers).
* ``none``: no interpolation, no re-segmentation (for timing a filter on a volume that is
  already isotropic, e.g. the 256^3 benchmark volume).

  .venv-mirp/bin/python run_mirp_filters.py --image IMG.nii.gz --mask MASK.nii.gz \
      --out result.json [--configs mean_2d,log_3d] [--repeat N] [--processing ibsi2|none]
"""
import argparse
import json
import logging
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _anchor_common as common

#: configuration -> (dims, MIRP filter settings).  The boundary condition is MIRP's
#: default "mirror" (scipy's ``mode="mirror"``: d c b | a b c d); the Simoncelli wavelet
#: is computed by MIRP on the unpadded grid's FFT (periodic, our ``mode="wrap"``).
CONFIGS = {
    "mean_2d": ("2D", {"filter_kernels": "mean", "mean_filter_kernel_size": 5}),
    "log_3d": ("3D", {"filter_kernels": "laplacian_of_gaussian",
                          "laplacian_of_gaussian_sigma": 1.5,
                          "laplacian_of_gaussian_kernel_truncate": 4.0}),
    "laws_3d": ("3D", {"filter_kernels": "laws", "laws_kernel": "E5L5S5", "laws_delta": 7,
                           "laws_compute_energy": True, "laws_rotation_invariance": True,
                           "laws_pooling_method": "max"}),
    "laws_3d_plain": ("3D", {"filter_kernels": "laws", "laws_kernel": "E5L5S5",
                                 "laws_compute_energy": False, "laws_rotation_invariance": False}),
    "gabor_2d": ("2D", {"filter_kernels": "gabor", "gabor_sigma": 5.0, "gabor_lambda": 2.0,
                            "gabor_gamma": 1.5, "gabor_theta": 0.0, "gabor_theta_step": 22.5,
                            "gabor_response": "modulus", "gabor_rotation_invariance": False,
                            "gabor_pooling_method": "mean"}),
    "wavelet_3d": ("3D", {"filter_kernels": "separable_wavelet",
                              "separable_wavelet_families": "db3", "separable_wavelet_set": "LLH",
                              "separable_wavelet_decomposition_level": 1,
                              "separable_wavelet_rotation_invariance": True,
                              "separable_wavelet_pooling_method": "mean"}),
    "simoncelli_3d": ("3D", {"filter_kernels": "nonseparable_wavelet",
                                 "nonseparable_wavelet_families": "simoncelli",
                                 "nonseparable_wavelet_decomposition_level": 2,
                                 "nonseparable_wavelet_response": "real"}),
    # benchmark-only: the filters of bench_ibsi2.py on an isotropic volume
    "mean_3d": ("3D", {"filter_kernels": "mean", "mean_filter_kernel_size": 5}),
    "wavelet_db2_l1": ("3D", {"filter_kernels": "separable_wavelet",
                                  "separable_wavelet_families": "db2", "separable_wavelet_set": "LHL",
                                  "separable_wavelet_decomposition_level": 1,
                                  "separable_wavelet_rotation_invariance": False}),
    "wavelet_db2_l2": ("3D", {"filter_kernels": "separable_wavelet",
                                  "separable_wavelet_families": "db2", "separable_wavelet_set": "LHL",
                                  "separable_wavelet_decomposition_level": 2,
                                  "separable_wavelet_rotation_invariance": False}),
    "simoncelli_3d_l1": ("3D", {"filter_kernels": "nonseparable_wavelet",
                                    "nonseparable_wavelet_families": "simoncelli",
                                    "nonseparable_wavelet_decomposition_level": 1,
                                    "nonseparable_wavelet_response": "real"}),
    "none": ("3D", {"filter_kernels": None}),
}
DEFAULT_CONFIGS = ["mean_2d", "log_3d", "laws_3d", "gabor_2d", "wavelet_3d", "simoncelli_3d"]


def _settings(dims, filter_settings, processing):
    s = dict(image_modality="CT", by_slice=(dims == "2D"), ibsi_compliant=True,
             base_feature_families="statistics", response_map_feature_families="statistics",
             boundary_condition="mirror", **filter_settings)
    if processing == "ibsi2":
        s["resegmentation_intensity_range"] = [-1000.0, 400.0]
        if dims == "3D":
            s.update(new_spacing=1.0, spline_order=3, anti_aliasing=False,
                     roi_spline_order=1, roi_interpolation_mask_inclusion_threshold=0.5)
    return s


def _run(extract_features, image, mask, settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return extract_features(image=image, mask=mask, export_features=True,
                                write_features=False, num_cpus=None, **settings)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True)
    p.add_argument("--mask", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help=f"comma-separated, of {sorted(CONFIGS)}")
    p.add_argument("--repeat", type=int, default=1, help="timed calls after one warm-up call")
    p.add_argument("--processing", choices=("ibsi2", "none"), default="ibsi2")
    args = p.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        p.error(f"unknown configs {unknown}; known: {sorted(CONFIGS)}")

    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    from mirp import extract_features
    from mirp._workflows import standardWorkflow
    import_seconds = time.perf_counter() - t0
    from importlib.metadata import version

    filter_seconds = []
    original = standardWorkflow.StandardWorkflow.transform_images

    def timed_transform_images(self, image):
        items = original(self, image)
        while True:
            t = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            filter_seconds.append(time.perf_counter() - t)
            yield item

    standardWorkflow.StandardWorkflow.transform_images = timed_transform_images

    image, mask = os.path.abspath(args.image), os.path.abspath(args.mask)
    results = {}
    load_before = common._loadavg()
    for name in names:
        dims, filter_settings = CONFIGS[name]
        settings = _settings(dims, filter_settings, args.processing)
        calls, filters, row = [], [], None
        try:
            tables = _run(extract_features, image, mask, settings)
        except Exception as exc:  # e.g. a 3-D filter on anisotropic voxels: MIRP refuses
            results[name] = {"dims": dims, "error": f"{type(exc).__name__}: {exc}"}
            print(f"[mirp] {name}: {results[name]['error']}", file=sys.stderr)
            continue
        for _ in range(args.repeat):  # the call above was the warm-up
            del filter_seconds[:]
            t = time.perf_counter()
            tables = _run(extract_features, image, mask, settings)
            calls.append(time.perf_counter() - t)
            filters.append(sum(filter_seconds))
        row = tables[0].iloc[0]
        columns = [c for c in tables[0].columns if "_stat_" in c and not c.startswith("stat_")]
        features = {"stat_" + c.split("_stat_", 1)[1]: common.clean_value(row[c])
                    for c in columns}
        results[name] = {"dims": dims, "settings": {k: v for k, v in settings.items()},
                         "mirp_columns": columns, "features": features, "seconds": calls,
                         "filter_seconds": filters}
        print(f"[mirp] {name}: filter {filters} s, call {calls} s", file=sys.stderr)
    out = {"tool": "mirp", "version": version("mirp"), "processing": args.processing,
           "image": image, "mask": mask, "import_seconds": import_seconds,
           "configs": results,
           "environment": {"cpu_count": os.cpu_count(), "loadavg_1min_before": load_before,
                           "loadavg_1min_after": common._loadavg()}}
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1, default=str)
        fh.write("\n")


if __name__ == "__main__":
    main()

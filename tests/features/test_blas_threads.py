"""Features do not depend on how many threads NumPy's BLAS has.

OpenBLAS splits a product of more than about 10,000 elements among its threads (the
partial sums then differ in their last bits with the thread count, and the threads spin
on the cores for about 0.1 s after the call, where the feature threads run): the
per-case path sums without BLAS (``_morphology._weighted_sum``).  Two processes, one
with a single BLAS thread and one with four, compute morphology, statistics, GLCM and
GLSZM of a 22,157-voxel ROI, in memory and from Dask chunks, with and without
re-segmentation: the same bits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PROBE = r"""
import json
import numpy as np
import dask.array as da
import medimg_fast as mf

rng = np.random.default_rng(11)
z, y, x = np.mgrid[:24, :48, :48]
mask = ((z - 12) / 11.0) ** 2 + ((y - 24) / 22.0) ** 2 + ((x - 24) / 22.0) ** 2 < 1.0
image = rng.normal(20.0, 60.0, mask.shape).round()
out = {"roi_voxels": int(mask.sum())}
base = {"families": ["morph", "stat", "cm", "szm"], "bin_width": 25.0}
for name, extra in [("plain", {}), ("reseg", {"reseg_range": [-100.0, 150.0]})]:
    settings = {**base, **extra}
    out[name] = mf.extract_features(image, mask, spacing=(2.0, 0.8, 0.8), settings=settings)
    out[name + "_dask"] = mf.extract_features(
        da.from_array(image, chunks=(12, 48, 24)), da.from_array(mask, chunks=(12, 48, 24)),
        spacing=(2.0, 0.8, 0.8), settings=settings)
print(json.dumps({k: v if isinstance(v, int) else {f: repr(x) for f, x in v.items()}
                  for k, v in out.items()}))
"""


def _probe(blas_threads: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas_threads))
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_features_do_not_depend_on_the_blas_thread_count():
    one, four = _probe(1), _probe(4)
    assert one["roi_voxels"] > 20_000  # products above OpenBLAS's threading threshold
    for key in ("plain", "reseg", "plain_dask", "reseg_dask"):
        assert one[key]["morph_moran_i"] != "nan"
        assert one[key] == four[key], key

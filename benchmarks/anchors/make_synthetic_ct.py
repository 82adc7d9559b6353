#!/usr/bin/env python3
"""Write a seeded synthetic CT-like case (image + mask NIfTI) for the anchor benchmarks.

Volume: 160 x 160 x 80 voxels in NIfTI x, y, z order (numpy z, y, x = 80 x 160 x 160,
2,048,000 voxels), int16 HU, spacing 1.0 x 1.0 x 2.0 mm. Air outside an elliptic body of
soft tissue, two lungs, a spine-like bone column, Gaussian scanner noise; a lobulated
heterogeneous "tumour" ROI of ~50k voxels abutting the right lung, with a hypodense core and
a few calcifications above 400 HU (so -1000..400 re-segmentation removes some ROI voxels).
Uses numpy + nibabel only; output depends only on --seed and the numpy version (the README
figures were made with the MIRP venv's numpy; the script prints array hashes to check).

  .venv-mirp/bin/python make_synthetic_ct.py --out-dir /tmp/anchor_synth [--seed 20240601]
"""
import argparse
import hashlib
import os

import nibabel as nib
import numpy as np

SHAPE_ZYX = (80, 160, 160)
SPACING_XYZ = (1.0, 1.0, 2.0)


def smooth_noise(rng, shape, sigma_vox):
    """Gaussian-filtered white noise via FFT (numpy only), unit variance."""
    noise = rng.standard_normal(shape)
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij")
    gain = np.exp(-2.0 * np.pi ** 2 * sum((f * s) ** 2 for f, s in zip(freqs, sigma_vox)))
    out = np.fft.irfftn(np.fft.rfftn(noise) * gain, s=shape, axes=(0, 1, 2))
    return out / out.std()


def make_case(seed):
    rng = np.random.default_rng(seed)
    nz, ny, nx = SHAPE_ZYX
    z, y, x = np.meshgrid(np.arange(nz) * SPACING_XYZ[2], np.arange(ny) * SPACING_XYZ[1],
                          np.arange(nx) * SPACING_XYZ[0], indexing="ij")  # mm
    cz, cy, cx = nz * SPACING_XYZ[2] / 2, ny / 2, nx / 2

    img = np.full(SHAPE_ZYX, -1000.0)
    body = ((x - cx) / 72) ** 2 + ((y - cy) / 55) ** 2 <= 1.0
    img[body] = 40.0
    fat = body & (((x - cx) / 72) ** 2 + ((y - cy) / 55) ** 2 > 0.82)
    img[fat] = -90.0
    for side in (-1, 1):
        lung = ((x - (cx + side * 32)) / 24) ** 2 + ((y - (cy - 5)) / 34) ** 2 + ((z - cz) / 90) ** 2 <= 1.0
        img[lung] = -850.0
    spine = ((x - cx) / 9) ** 2 + ((y - (cy + 38)) / 9) ** 2 <= 1.0
    img[spine] = 650.0

    # Lobulated tumour: ellipsoid (28, 28, 15 voxel radii) with a low-frequency radial
    # perturbation, centred at the medial edge of the right lung.
    tx, ty, tz = cx + 12, cy - 2, cz
    r = np.sqrt(((x - tx) / 28) ** 2 + ((y - ty) / 28) ** 2 + ((z - tz) / 30) ** 2)
    lobes = smooth_noise(rng, SHAPE_ZYX, (3.0, 6.0, 6.0))
    roi = r <= 1.0 + 0.08 * lobes
    texture = smooth_noise(rng, SHAPE_ZYX, (1.0, 2.0, 2.0))
    tumour = 35.0 + 45.0 * texture
    tumour[r < 0.35] -= 60.0                           # hypodense (necrotic) core
    calc = roi & (smooth_noise(rng, SHAPE_ZYX, (0.7, 1.2, 1.2)) > 3.0)
    tumour[calc] = 900.0                               # a few calcifications > 400 HU
    img[roi] = tumour[roi]

    img += 18.0 * rng.standard_normal(SHAPE_ZYX)       # scanner noise
    img = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    return img, roi.astype(np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=20240601)
    args = p.parse_args()
    img_zyx, roi_zyx = make_case(args.seed)
    affine = np.diag(list(SPACING_XYZ) + [1.0])
    os.makedirs(args.out_dir, exist_ok=True)
    paths = {}
    for name, arr in (("image", img_zyx), ("mask", roi_zyx)):
        arr_xyz = np.ascontiguousarray(arr.transpose(2, 1, 0))  # NIfTI x, y, z
        nim = nib.Nifti1Image(arr_xyz, affine)
        nim.header.set_xyzt_units("mm")
        paths[name] = os.path.join(args.out_dir, name + ".nii.gz")
        nib.save(nim, paths[name])
    roi = roi_zyx.astype(bool)
    print("image %s shape(x,y,z)=%s int16, mask %s: %d ROI voxels (of %d), ROI HU min/mean/max = %d/%.1f/%d, "
          "ROI voxels outside -1000..400: %d" % (
              paths["image"], tuple(reversed(img_zyx.shape)), paths["mask"], roi.sum(), img_zyx.size,
              img_zyx[roi].min(), img_zyx[roi].mean(), img_zyx[roi].max(),
              int(((img_zyx[roi] < -1000) | (img_zyx[roi] > 400)).sum())))
    print(f"sha256(image array)={hashlib.sha256(img_zyx.tobytes()).hexdigest()[:16]} sha256(mask array)={hashlib.sha256(roi_zyx.tobytes()).hexdigest()[:16]} numpy {np.__version__}")


if __name__ == "__main__":
    main()

"""A generated DICOM tree for measuring scan_dicom's header-reading throughput.

Copies pydicom's ``CT_small.dcm`` (128 x 128, 39 kB) with new UIDs and positions into series of
`per_series` slices.  Run as a script to time a scan::

    .venv/bin/python tests/io/_scan_tree.py --files 3000 --workers 2
"""

import argparse
import os
import tempfile
import time

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def make_ct_tree(root, n_files=3000, per_series=100):
    """Write `n_files` CT slices under `root`, `per_series` per folder; returns the folders."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    folders = []
    for s in range(-(-n_files // per_series)):
        folder = os.path.join(root, f"series{s:04d}")
        os.makedirs(folder, exist_ok=True)
        folders.append(folder)
        source.SeriesInstanceUID = generate_uid()
        for i in range(min(per_series, n_files - s * per_series)):
            source.SOPInstanceUID = generate_uid()
            source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
            source.ImagePositionPatient = [0.0, 0.0, 2.0 * i]
            source.InstanceNumber = i + 1
            source.save_as(os.path.join(folder, f"{i:04d}.dcm"))
    return folders


def main():
    from medimg_fast.io import scan_dicom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        make_ct_tree(root, args.files)
        scan_dicom(root, workers=args.workers)  # warm the page cache
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = scan_dicom(root, workers=args.workers)
            seconds = time.perf_counter() - start
            print(f"{result.n_files} files, {len(result.rows)} series, "
                  f"{len(result.errors)} errors, workers={args.workers}: {seconds:.2f} s, "
                  f"{result.n_files / seconds:.0f} files/s")


if __name__ == "__main__":
    main()

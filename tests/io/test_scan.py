"""scan_dicom on a tree of two patients: flat PACS-style and nested layouts, masks, bad files."""

import collections
import csv
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from _dicom_masks import truncate, write_rtstruct, write_seg
from _pet_series import write_ct_copy, write_pet_series
from pydicom.uid import generate_uid

from medimg_fast.io import ScanResult, _scan, open_mask, open_volume, scan_dicom

SQUARE = [(4, 4), (4, 10), (10, 10), (10, 4)]
SMALL = [(6, 6), (6, 9), (9, 9), (9, 6)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    expected = {}
    # Patient A: a PACS export, every series and mask in one folder.
    flat = root / "PA_export"
    ct = write_ct_copy(flat, patient_id="PA")
    write_pet_series(flat, patient_id="PA", study_uid=str(ct[0].StudyInstanceUID),
                     frame_of_reference_uid=str(ct[0].FrameOfReferenceUID))
    write_rtstruct(flat / "RS.dcm", ct, [("GTV", [(2, SQUARE)]),
                                         ("Lung", [(1, SMALL), (3, SMALL)])])
    masks = np.zeros((5, 16, 16, 2), bool)
    masks[1:4, 2:8, 3:9, 0] = True
    masks[2, 10:14, 10:14, 1] = True
    write_seg(flat / "SEG.dcm", ct, masks, ["Tumour", "Node"])
    (flat / "README.txt").write_text("exported by a PACS\n")
    # centre sampling of a square with corners on voxel centres: a half-open 6 x 6 block
    expected.update({("RS.dcm", "GTV"): 6 * 6, ("RS.dcm", "Lung"): 2 * 3 * 3,
                     ("SEG.dcm", "Tumour"): int(masks[..., 0].sum()),
                     ("SEG.dcm", "Node"): int(masks[..., 1].sum())})

    # Patient B: nested folders, one series each, and everything that can go wrong.
    study = root / "PB" / "2024" / "study1"
    write_ct_copy(study / "CT", patient_id="PB")
    write_pet_series(study / "PET" / "recon", patient_id="PB")
    gap = write_ct_copy(study / "CT_gap", patient_id="PB", drop=(2,))
    write_rtstruct(study / "CT_gap" / "RS_gap.dcm", gap, [("GTV", [(1, SQUARE)])])
    write_rtstruct(study / "RS_cut.dcm", gap, [("GTV", [(1, SQUARE)])])
    truncate(study / "RS_cut.dcm", 0.7)
    write_ct_copy(study / "CT_mixed", patient_id="PB",
                  orientation={3: [1, 0, 0, 0, 0.8660254, -0.5]})
    ghost = write_ct_copy(root / "scratch", patient_id="PB")
    write_rtstruct(study / "RS_orphan.dcm", ghost, [("GTV", [(2, SQUARE)])],
                   series_uid=generate_uid())
    shutil.rmtree(root / "scratch")  # the series the orphan structure set references is gone
    broken = write_ct_copy(study / "CT_broken", patient_id="PB")
    truncate(broken[1].filename, 0.6)
    header_cut = study / "junk" / "cut.dcm"
    header_cut.parent.mkdir()
    header_cut.write_bytes(Path(broken[0].filename).read_bytes()[:400])  # inside the header
    (study / ".hidden").mkdir()
    (study / ".hidden" / "x.dcm").write_bytes(b"ignored")
    return root, expected


@pytest.fixture(scope="module")
def scanned(tree):
    root, _ = tree
    return scan_dicom(root)


def _by(rows, **where):
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def test_rows_pair_series_with_their_masks(tree, scanned):
    root, expected = tree
    rows = scanned.rows
    assert isinstance(scanned, ScanResult)
    assert all(tuple(r) == _scan.ROW_COLUMNS for r in rows)
    flat = str((root / "PA_export").resolve())
    ct_a = _by(rows, subject="PA", modality="CT")
    assert {(Path(r["mask"]).name, r["roi"]) for r in ct_a} == set(expected)
    assert {r["path"] for r in ct_a} == {flat}
    assert {r["n_slices"] for r in ct_a} == {5}
    assert {r["series_description"] for r in ct_a} == {"CT chest"}
    pet_a = _by(rows, subject="PA", modality="PT")
    assert len(pet_a) == 1 and pet_a[0]["mask"] == "" and pet_a[0]["n_slices"] == 4
    assert pet_a[0]["path"] == flat  # shares the folder: selected by series_uid
    b = _by(rows, subject="PB")
    assert sorted((Path(r["path"]).name, r["modality"], r["n_slices"]) for r in b) == [
        ("CT", "CT", 5), ("recon", "PT", 4)]
    assert len(rows) == len(expected) + 3


def test_errors_name_the_reason(tree, scanned):
    root, _ = tree
    errors = {os.path.relpath(e["path"], root.resolve()): e for e in scanned.errors}
    study = os.path.join("PB", "2024", "study1")
    assert set(errors) == {os.path.join(study, name) for name in (
        "CT_gap", "CT_mixed", "CT_broken", "RS_orphan.dcm", os.path.join("junk", "cut.dcm"),
        os.path.join("CT_gap", "RS_gap.dcm"), "RS_cut.dcm")}
    assert "1 missing slice(s)" in errors[os.path.join(study, "CT_gap")]["reason"]
    assert "mixed orientations" in errors[os.path.join(study, "CT_mixed")]["reason"]
    reason = errors[os.path.join(study, "CT_broken")]["reason"]
    assert "CT001.dcm" in reason and "truncated" in reason
    reason = errors[os.path.join(study, "RS_orphan.dcm")]["reason"]
    assert "RTSTRUCT references series" in reason and "not in the scanned tree" in reason
    # Where byte 400 falls depends on the generated UIDs' lengths: inside an element (the walk
    # finds the element cut short) or between two (the header lacks Rows); both name the cut.
    reason = errors[os.path.join(study, "junk", "cut.dcm")]["reason"]
    assert "truncated" in reason
    assert "no Rows (0028,0010)" in reason or re.search(r"stops at byte \d+ of 400", reason), reason
    reason = errors[os.path.join(study, "CT_gap", "RS_gap.dcm")]["reason"]
    assert "which has errors" in reason
    assert "truncated" in errors[os.path.join(study, "RS_cut.dcm")]["reason"]
    assert all(e["subject"] == "PB" for k, e in errors.items() if "junk" not in k)
    assert [Path(s["path"]).name for s in scanned.skipped] == ["README.txt"]
    # 5 + 4 + 1 + 1 + 1 (patient A) and 5 + 4 + 4 + 2 + 5 + 1 + 5 + 1 (patient B); hidden
    # files are not counted
    assert scanned.n_files == 12 + 27


def test_manifest_rows_open(tree, scanned, tmp_path):
    _, expected = tree
    manifest, errors = scanned.to_manifest(tmp_path / "out" / "manifest.csv")
    assert errors == tmp_path / "out" / "errors.csv"
    with open(manifest, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == _scan.MANIFEST_COLUMNS
        rows = list(reader)
    assert len(rows) == len(scanned.rows) and all(r["label"] == "" for r in rows)
    with open(errors, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(scanned.errors)
    for row, scanned_row in zip(rows, scanned.rows):
        image = open_volume(row["path"], series_uid=row["series_uid"])
        assert image.modality == row["modality"]
        assert image.shape[0] == scanned_row["n_slices"]
        if row["mask"]:
            mask = open_mask(row["mask"], image, roi=row["roi"])
            assert int(np.asarray(mask.data).sum()) == expected[(Path(row["mask"]).name,
                                                                 row["roi"])]
    single = [r for r in rows if r["subject"] == "PB"]
    for row in single:  # a folder with one series opens without the UID
        assert open_volume(row["path"]).metadata["series_instance_uid"] == row["series_uid"]


def test_worker_processes_give_the_same_result(tree, scanned, monkeypatch):
    root, _ = tree
    monkeypatch.setattr(_scan, "_SERIAL_BELOW", 0)
    parallel = scan_dicom(root, workers=2)
    assert parallel.rows == scanned.rows
    assert parallel.errors == scanned.errors
    assert parallel.skipped == scanned.skipped


def test_progress_bar(tree, capsys):
    root, _ = tree
    scan_dicom(root / "PA_export", workers=1, progress=True)
    assert "scan" in capsys.readouterr().err


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_dicom(tmp_path / "absent")
    (tmp_path / "f.dcm").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        scan_dicom(tmp_path / "f.dcm")
    with pytest.raises(ValueError, match="`workers` must be a positive int"):
        scan_dicom(tmp_path, workers=0)
    empty = scan_dicom(tmp_path)
    assert empty.rows == [] and empty.errors == [] and len(empty.skipped) == 1


def test_fast_header_walk_agrees_with_pydicom(monkeypatch):
    """The fast path (a walk over element headers) and pydicom read every one of pydicom's
    test files alike: implicit and explicit VR, big endian, compressed, multi-frame, odd
    files."""
    import pydicom.data

    folder = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    fast = _scan._read_batch(files)
    used = sum(_scan._fast_image_header(Path(f).read_bytes()[:_scan._PREFIX_BYTES]) is not None
               for f in files)
    monkeypatch.setattr(_scan, "_fast_image_header", lambda prefix: None)
    assert _scan._read_batch(files) == fast
    assert used > 50  # the fast path is the common one
    kinds = collections.Counter(r["kind"] for r in fast)
    assert kinds["image"] > 50 and kinds["error"] >= 3  # MR_truncated, rtplan_truncated, ...


def test_truncated_compressed_image(tmp_path):
    import pydicom.data

    path = tmp_path / "rle.dcm"
    shutil.copy(pydicom.data.get_testdata_file("MR_small_RLE.dcm"), path)
    assert _scan._read_batch([str(path)])[0]["kind"] == "image"
    truncate(path, 0.8)
    record = _scan._read_batch([str(path)])[0]
    assert record["kind"] == "error" and "compressed pixel data" in record["reason"]

"""Cohort integrity check, the cases users plausibly hit beyond tests/test_validate.py.

Each test builds the bad sheet or file and checks that the report names the scan, the file and a reason the
user can act on. Warnings (reported, the study runs) are checked apart from errors (the study stops).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from layer.io import affine_from_spacing, save_nifti
from layer.cohort.validate import Rules, validate_cohort
from toy_cohort import SHAPE, SPACING, cohort, volumes

RULES = Rules(n_folds=2)


def table(sheet: Path) -> pd.DataFrame:
    return pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)


def save(t: pd.DataFrame, sheet: Path) -> None:
    t.to_csv(sheet, sep="\t", index=False)


def check(sheet: Path, rules: Rules = RULES):
    """(report, clean sheet, errors, warnings); problems as (scan_id, file name, reason)."""
    report, clean = validate_cohort(sheet, rules)
    def rows(items):
        return [(p.scan_id, Path(p.file).name, p.reason) for p in items]
    return report, clean, rows(report.errors), rows(report.warnings)


def has(problems, text: str, scan: str | None = None, file: str | None = None) -> bool:
    return any(
        text in r and (scan is None or s == scan) and (file is None or f == file) for s, f, r in problems
    )


def write_raw_header(arr: np.ndarray, path: Path, patch: dict[int, bytes]) -> None:
    """Write a NIfTI file, then overwrite header bytes (nibabel repairs some fields on save)."""
    nib.save(nib.Nifti1Image(arr, affine_from_spacing(SPACING)), str(path))
    raw = bytearray(gzip.decompress(path.read_bytes()))
    for offset, value in patch.items():
        raw[offset : offset + len(value)] = value
    path.write_bytes(gzip.compress(bytes(raw), mtime=0))


# ----------------------------------------------------------------------------------------------- the sheet


@pytest.mark.parametrize(("sep", "what"), [(",", "commas (a CSV file?)"), (";", "semicolons")])
def test_sheet_not_tab_separated(tmp_path, sep, what):
    sheet = cohort(tmp_path)
    table(sheet).to_csv(sheet, sep=sep, index=False)
    _, _, errors, _ = check(sheet)
    assert len(errors) == 1
    assert has(errors, f"the sheet is not tab-separated: its header line has no tab but 5 {what}")


def test_row_with_a_stray_tab(tmp_path):
    sheet = cohort(tmp_path)
    lines = sheet.read_text().splitlines()
    lines[3] += "\tleft"
    sheet.write_text("\n".join(lines) + "\n")
    _, _, errors, _ = check(sheet)
    assert has(errors, "cannot parse the sheet as TSV (Error tokenizing data. C error: Expected 6 fields in line 4, "
                       "saw 7)", file="cohort.tsv")


def test_empty_sheet_file(tmp_path):
    sheet = tmp_path / "cohort.tsv"
    sheet.write_text("\n")
    _, _, errors, _ = check(sheet)
    assert errors == [("-", "cohort.tsv", "the sheet is empty (no header line); it needs the columns "
                       "scan_id, subject_id, label, bmode, swe, layers")]


def test_sheet_path_is_a_directory(tmp_path):
    _, _, errors, _ = check(tmp_path)
    assert has(errors, "the sheet path is a directory")


def test_byte_order_marks_and_utf16_are_read(tmp_path):
    sheet = cohort(tmp_path)
    text = sheet.read_text()
    sheet.write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel's "CSV UTF-8" adds a byte-order mark
    report, clean, _, _ = check(sheet)
    assert report.ok and list(clean.columns)[0] == "scan_id"
    sheet.write_bytes(text.encode("utf-16"))  # Excel's "Unicode Text" is UTF-16, tab-separated
    report, clean, _, _ = check(sheet)
    assert report.ok and len(clean) == 8


def test_sheet_in_another_encoding(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t["note"] = "ok"
    t.loc[2, "note"] = "M\u00fcller"
    sheet.write_bytes(t.to_csv(sep="\t", index=False).encode("latin-1"))
    _, _, errors, _ = check(sheet)
    assert errors == [("-", "cohort.tsv", "the sheet is not UTF-8 text (byte 0xfc on line 4); "
                       "save it as UTF-8 tab-separated text")]


def test_spaces_in_headers_and_cells_are_stripped_with_a_warning(tmp_path):
    sheet = cohort(tmp_path)
    lines = sheet.read_text().splitlines()
    lines[0] = "\t".join(f" {c} " if c in ("scan_id", "label") else c for c in lines[0].split("\t"))
    lines[1] = lines[1].replace("scans/s0-0_bmode.nii.gz", "scans/s0-0_bmode.nii.gz  ")
    sheet.write_text("\n".join(lines) + "\n")
    report, clean, errors, warnings = check(sheet)
    assert errors == [] and report.ok
    assert has(warnings, "spaces around column name(s) ' scan_id ', ' label ' ignored")
    assert has(warnings, "spaces around 1 value(s) of column 'bmode' ignored")
    assert clean.loc[0, "bmode"].endswith("s0-0_bmode.nii.gz")


def test_duplicate_column(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t.insert(3, "label ", t["label"])  # pandas would rename a second 'label' silently
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert has(errors, "column 'label' appears 2 times")


def test_labels_as_words(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t["label"] = t["label"].map({"0": "no", "1": "yes"})
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert has(errors, "label 'yes' is not 0 or 1 (1 = pain, 0 = no pain) (row 4)", scan="s1-0")
    assert len(errors) == 8  # one per row; no follow-on "0 subjects per class" noise


def test_labels_as_decimals_are_accepted(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t["label"] = t["label"] + ".0"
    save(t, sheet)
    report, clean, _, _ = check(sheet)
    assert report.ok and clean["label"].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]


def test_subject_id_missing_for_some_rows(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t.loc[[0, 5], "subject_id"] = ""
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert ("s0-0", "sheet", "empty value in column 'subject_id' (row 2)") in errors
    assert ("s2-1", "sheet", "empty value in column 'subject_id' (row 7)") in errors


@pytest.mark.parametrize("bad", ["left/L4", "P01 L4", ".hidden", "a:b"])
def test_scan_id_unsafe_in_file_names(tmp_path, bad):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t.loc[0, "scan_id"] = bad
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert has(errors, f"scan_id '{bad}' (row 2) cannot be used in file names", scan=bad)
    assert has(errors, "use letters, digits, '.', '_' and '-' only")


def test_scan_id_that_reads_as_missing(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t.loc[0, "scan_id"] = "NA"
    t.loc[2, "subject_id"] = "null"
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert has(errors, "scan_id 'NA' (row 2) reads as a missing value in later steps; rename it", scan="NA")
    assert has(errors, "subject_id 'null' (row 4) reads as a missing value", scan="s1-0")


def test_numeric_ids_that_collide_or_change(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t["scan_id"] = [f"{i:03d}" for i in range(8)]  # all numbers: later steps read them as numbers
    save(t, sheet)
    report, _, errors, warnings = check(sheet)
    assert report.ok and errors == []
    assert has(warnings, "8 scan_id(s) will appear differently in result tables, which read them as numbers "
                         "(e.g. '000' as '0')")
    t.loc[1, "scan_id"] = "0"  # '000' and '0' are one id once read as numbers
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert has(errors, "scan_ids '0', '000' become the same id '0' in later steps")


def test_too_few_subjects_for_the_inner_split(tmp_path):
    """Enough subjects per class for the folds, too few for the early-stopping split inside them."""
    rules = Rules(n_folds=2, val_fraction=0.2)
    sheet = cohort(tmp_path / "a", n_subjects=4)
    _, _, errors, _ = check(sheet, rules)
    assert errors == [("-", "sheet", "the subject-level split cannot be made (Cannot have number of splits "
                       "n_splits=5 greater than the number of samples: n_samples=4.) (2 subjects with label 0, "
                       "2 with label 1; split.n_folds = 2, split.val_fraction = 0.2): add subjects, lower "
                       "split.n_folds or raise split.val_fraction")]
    assert check(sheet, Rules(n_folds=2))[0].ok  # without split settings (layer validate) it is not tried
    sheet = cohort(tmp_path / "b", n_subjects=12, scans=2)
    _, _, errors, _ = check(sheet, rules)
    assert has(errors, "too few subjects for the split (6 subjects with label 0, 6 with label 1;")
    assert has(errors, "validation (early stopping) part has no subject with label")
    report, _, _, _ = check(cohort(tmp_path / "c", n_subjects=16, scans=2), rules)  # the smoke preset's size
    assert report.ok


# ---------------------------------------------------------------------------------------------- the files


def test_path_is_a_directory(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t.loc[0, "bmode"] = "scans"
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert errors == [("s0-0", "scans", "is a directory, not a NIfTI file (the path must name the volume file)")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "file is empty (0 bytes)"),
        (b"scan exported as text\n" * 40, "not a NIfTI file (plain text); convert it to NIfTI (.nii.gz)"),
        (gzip.compress(b"\x00\x01" * 400), "not a NIfTI file (gzip-compressed an unknown format)"),
        (b"\x00" * 128 + b"DICM" + b"\x00" * 600, "not a NIfTI file (a DICOM file); convert it to NIfTI (.nii.gz)"),
        (b"NRRD0004\ntype: float\n" + b"\x00" * 600, "not a NIfTI file (an NRRD file)"),
        (b"ObjectType = Image\nNDims = 3\n" + b" " * 600, "not a NIfTI file (a MetaImage (.mha/.mhd) file)"),
    ],
)
def test_file_that_is_not_nifti(tmp_path, content, reason):
    sheet = cohort(tmp_path)
    (tmp_path / "scans/s1-0_swe.nii.gz").write_bytes(content)
    _, _, errors, _ = check(sheet)
    assert has(errors, reason, scan="s1-0", file="s1-0_swe.nii.gz"), errors


def test_nifti_with_a_misleading_name(tmp_path):
    sheet = cohort(tmp_path)
    scans = tmp_path / "scans"
    plain = gzip.decompress((scans / "s0-0_bmode.nii.gz").read_bytes())
    (scans / "s0-0_bmode.nii.gz").write_bytes(plain)  # uncompressed, named .nii.gz
    (scans / "s0-1_swe.nii").write_bytes((scans / "s0-1_swe.nii.gz").read_bytes())  # compressed, named .nii
    (scans / "s1-0_layers.img").write_bytes((scans / "s1-0_layers.nii.gz").read_bytes())
    t = table(sheet)
    t.loc[1, "swe"] = "scans/s0-1_swe.nii"
    t.loc[2, "layers"] = "scans/s1-0_layers.img"
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert has(errors, "an uncompressed NIfTI file named s0-0_bmode.nii.gz: rename it to .nii (or gzip it)")
    assert has(errors, "a gzip-compressed NIfTI file named s0-1_swe.nii: rename it to end in .nii.gz")
    assert has(errors, "a NIfTI file named s1-0_layers.img: the study reads files ending in .nii or .nii.gz")


def test_absolute_path_outside_the_sheet_directory(tmp_path):
    sheet = cohort(tmp_path / "cohort")
    outside = tmp_path / "elsewhere.nii.gz"
    outside.write_bytes((tmp_path / "cohort/scans/s0-0_bmode.nii.gz").read_bytes())
    t = table(sheet)
    t.loc[0, "bmode"] = str(outside)
    save(t, sheet)
    _, _, errors, _ = check(sheet)
    assert has(errors, f"path escapes the sheet's directory through an absolute path ({outside})", scan="s0-0")
    inside = tmp_path / "cohort/scans/s0-0_bmode.nii.gz"
    t.loc[0, "bmode"] = str(inside)  # an absolute path inside the sheet's directory is fine
    save(t, sheet)
    assert check(sheet)[0].ok


def test_windows_paths_and_paths_relative_to_the_wrong_directory(tmp_path, monkeypatch):
    sheet = cohort(tmp_path / "cohort")
    t = table(sheet)
    t.loc[0, "bmode"] = "scans\\s0-0_bmode.nii.gz"
    t.loc[1, "bmode"] = "cohort/scans/s0-1_bmode.nii.gz"  # relative to the current directory, not the sheet's
    save(t, sheet)
    monkeypatch.chdir(tmp_path)
    _, _, errors, _ = check(sheet)
    assert has(errors, "file not found (the path contains '\\': write paths with '/')", scan="s0-0")
    assert has(errors, "file not found next to the sheet (it exists relative to the current directory, but paths "
                       "are relative to the sheet's directory)", scan="s0-1")


def test_broken_symlink(tmp_path):
    sheet = cohort(tmp_path)
    link = tmp_path / "scans/s0-0_bmode.nii.gz"
    link.unlink()
    link.symlink_to(tmp_path / "scans/gone.nii.gz")
    _, _, errors, _ = check(sheet)
    assert ("s0-0", "s0-0_bmode.nii.gz", "broken symlink (its target does not exist)") in errors


def test_same_file_listed_twice(tmp_path):
    sheet = cohort(tmp_path)
    t = table(sheet)
    t.loc[0, "swe"] = t.loc[0, "bmode"]  # within a scan: B-mode given as SWE
    t.loc[3, "layers"] = t.loc[2, "layers"]  # across scans: copy-paste down a column
    save(t, sheet)
    _, _, errors, warnings = check(sheet)
    assert has(errors, "the same file is listed 2 times (bmode of scan s0-0, swe of scan s0-0)", scan="s0-0")
    assert has(warnings, "the same file is listed 2 times (layers of scan s1-0, layers of scan s1-1)")


# --------------------------------------------------------------------------------------------- the images


def _all_three(root: Path, scan: str, write) -> None:
    for kind, arr in volumes(0).items():
        write(arr, root / f"scans/{scan}_{kind}.nii.gz")


@pytest.mark.parametrize(
    ("affine", "reason"),
    [
        (np.diag([0.0, 1.0, 1.0, 1.0]), "voxel spacing along array axis 0 is 0: the affine is singular"),
        (np.diag([np.nan, 1.0, 1.0, 1.0]), "the affine (voxel-to-mm transform) has NaN or inf entries"),
        (
            np.array([[0.5, 0.5, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
            "the affine is singular (two array axes map to the same direction)",
        ),
    ],
)
def test_unusable_affine(tmp_path, affine, reason):
    sheet = cohort(tmp_path)

    rows = {280 + 16 * i: affine[i].astype("<f4").tobytes() for i in range(3)}  # srow_x, srow_y, srow_z
    patch = {252: np.array([0, 1], "<i2").tobytes(), **rows}  # qform_code 0, sform_code 1
    _all_three(tmp_path, "s0-0", lambda arr, path: write_raw_header(arr, path, patch))
    _, _, errors, _ = check(sheet)
    assert has(errors, reason, scan="s0-0", file="s0-0_bmode.nii.gz"), errors


def test_zero_voxel_size_without_orientation(tmp_path):
    """pixdim 0 and no sform/qform: nibabel silently assumes 1 mm; the check reads the stored header."""
    sheet = cohort(tmp_path)
    zeros = {80: np.zeros(3, "<f4").tobytes(), 252: np.zeros(2, "<i2").tobytes()}  # pixdim[1:4]; q/sform codes
    _all_three(tmp_path, "s0-0", lambda arr, path: write_raw_header(arr, path, zeros))
    _, _, errors, _ = check(sheet)
    assert has(errors, "voxel size (pixdim 0, 0, 0) is zero, negative or NaN and there is no sform/qform: "
                       "spacing unknown", scan="s0-0")


def test_negative_axis_direction_is_accepted(tmp_path):
    """A negative affine diagonal is an orientation (axis points the other way), not a negative spacing."""
    sheet = cohort(tmp_path)
    _all_three(tmp_path, "s0-0", lambda arr, path: save_nifti(arr, np.diag([-0.5, 1.0, -1.0, 1.0]), path))
    report, _, errors, warnings = check(sheet)
    assert report.ok and warnings == []


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(SHAPE, np.complex64) + 1j,
        np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]),
    ],
    ids=["complex", "rgb"],
)
def test_bmode_that_is_not_a_grey_level(tmp_path, array):
    sheet = cohort(tmp_path)
    nib.save(nib.Nifti1Image(array, affine_from_spacing(SPACING)), str(tmp_path / "scans/s0-0_bmode.nii.gz"))
    _, _, errors, _ = check(sheet)
    assert has(errors, "is not a real number type (RGB or complex?): store one grey value per voxel", scan="s0-0")


def test_integer_bmode_and_bmode_max(tmp_path):
    """8-bit B-mode is fine with input.bmode_max 255, saturated with 1; [0, 1] data with 255 is nearly black."""
    sheet = cohort(tmp_path)
    for s in range(4):
        for k in range(2):
            arr = (volumes(s * 10 + k)["bmode"] * 255).astype(np.uint8)
            save_nifti(arr, affine_from_spacing(SPACING), tmp_path / f"scans/s{s}-{k}_bmode.nii.gz")
    save_nifti(
        (volumes(1)["bmode"] * 255).astype(np.int16) - 3,
        affine_from_spacing(SPACING),
        tmp_path / "scans/s3-1_bmode.nii.gz",
    )
    report, _, errors, warnings = check(sheet, Rules(n_folds=2, bmode_max=255))
    assert report.ok and errors == []
    assert warnings == [("s3-1", "bmode", "B-mode of 1 scan(s) has negative values (down to -3): the model input "
                         "clips them to 0; B-mode is expected as grey levels from 0 to input.bmode_max")]
    _, _, _, warnings = check(sheet, Rules(n_folds=2, bmode_max=1))
    assert has(warnings, "B-mode of 8 scan(s) reaches 254, above input.bmode_max = 1: the model input clips it "
                         "there (saturated); set input.bmode_max to the export's white level (255 for 8-bit)")
    _, _, _, warnings = check(cohort(tmp_path / "float"), Rules(n_folds=2, bmode_max=255))
    assert has(warnings, "under 5% of input.bmode_max = 255: the model sees nearly black images")


def test_swe_entirely_nan(tmp_path):
    sheet = cohort(tmp_path)
    save_nifti(np.full(SHAPE, np.nan, np.float32), affine_from_spacing(SPACING), tmp_path / "scans/s1-1_swe.nii.gz")
    _, _, errors, _ = check(sheet)
    assert errors == [("s1-1", "s1-1_swe.nii.gz",
                       "SWE has no finite voxel (empty SWE box): the scan has no shear-wave estimate at all")]


def test_swe_without_nan_is_a_warning(tmp_path):
    """No NaN anywhere: the box is the whole volume. Fine if the export filled it with 0; warned, not stopped."""
    sheet = cohort(tmp_path)
    swe = np.nan_to_num(volumes(0)["swe"], nan=0.0)
    save_nifti(swe, affine_from_spacing(SPACING), tmp_path / "scans/s0-1_swe.nii.gz")
    report, _, _, warnings = check(sheet)
    assert report.ok
    assert warnings == [("s0-1", "swe", "SWE of 1 scan(s) has no NaN, so the SWE box cannot be told apart: "
                         "export NaN outside the box (0 also reads as 'no estimate'; any other fill value is read "
                         "as a speed)")]


def test_swe_in_kilopascal(tmp_path):
    sheet = cohort(tmp_path)
    swe = 3 * volumes(0)["swe"] ** 2 * 4  # Young's modulus in kPa of speeds twice as fast: 48-108
    save_nifti(swe.astype(np.float32), affine_from_spacing(SPACING), tmp_path / "scans/s0-0_swe.nii.gz")
    report, _, _, warnings = check(sheet)
    assert report.ok
    assert has(warnings, "SWE of 1 scan(s) looks like another unit (a 99th percentile over 20 m/s", scan="s0-0")
    assert has(warnings, "If the export is Young's modulus in kPa, convert: m/s = sqrt(kPa / 3)")
    swe = 3 * volumes(0)["swe"] ** 2  # soft tissue in kPa: 12-27, no value above 20 m/s, but 4x the others
    save_nifti(swe.astype(np.float32), affine_from_spacing(SPACING), tmp_path / "scans/s0-0_swe.nii.gz")
    _, _, _, warnings = check(sheet)
    assert has(warnings, "or a median over 3x the cohort's 2.5 m/s", scan="s0-0")


def test_depth_axis_and_upside_down(tmp_path):
    sheet = cohort(tmp_path)
    for kind, arr in volumes(0).items():
        save_nifti(np.moveaxis(arr, 0, 2).copy(), affine_from_spacing(SPACING), tmp_path / f"scans/s0-0_{kind}.nii.gz")
        save_nifti(arr[::-1].copy(), affine_from_spacing(SPACING), tmp_path / f"scans/s0-1_{kind}.nii.gz")
    _, _, errors, _ = check(sheet)
    assert has(errors, "the layers run from dermis to muscle along array axis 2, but depth must be axis 0: store "
                       "all three volumes as (depth, lateral, elevation), e.g. numpy.moveaxis(array, 2, 0)",
               scan="s0-0", file="s0-0_layers.nii.gz")
    assert has(errors, "the muscle lies above the dermis: depth index 0 must be the skin; flip axis 0 of all "
                       "three volumes", scan="s0-1")


def test_single_frame_4d_is_accepted(tmp_path):
    sheet = cohort(tmp_path)
    for kind, arr in volumes(0).items():
        save_nifti(arr[..., None], affine_from_spacing(SPACING), tmp_path / f"scans/s0-0_{kind}.nii.gz")
    assert check(sheet)[0].ok


def test_report_separates_errors_and_warnings(tmp_path):
    sheet = cohort(tmp_path)
    (tmp_path / "scans/s0-0_swe.nii.gz").write_bytes(b"")
    t = table(sheet)
    t.loc[3, "layers"] = t.loc[2, "layers"]
    save(t, sheet)
    report, _, _, _ = check(sheet)
    text = report.text(sheet)
    errors, warnings = text.split("Warnings:\n")
    assert "1 error(s), 1 warning(s)" in errors and "file is empty" in errors and "listed 2 times" in warnings

"""Cohort integrity check: each bad input builds its own bad file and gets a message naming scan, file, reason."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from layer.io import affine_from_spacing, save_nifti
from layer.cohort.validate import Rules, validate_cohort

from toy_cohort import SHAPE, cohort as make_cohort, volumes as _volumes  # noqa: E402

RULES = Rules(n_folds=2)


def _edit_sheet(sheet: Path, fn) -> None:
    table = pd.read_csv(sheet, sep="\t", dtype=str)
    edited = fn(table)  # edits in place (returns None) or returns a new table
    table = table if edited is None else edited
    table.to_csv(sheet, sep="\t", index=False)


def rename(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns={"subject_id": "Subject ID"})


def _rewrite(root: Path, rel: str, arr: np.ndarray, spacing=(0.5, 1.0, 1.0)) -> None:
    save_nifti(arr, affine_from_spacing(spacing), root / rel)


def _reasons(sheet: Path, rules: Rules = RULES):
    report, clean = validate_cohort(sheet, rules)
    return report, clean, [(p.scan_id, Path(p.file).name, p.reason) for p in report.errors]


def test_valid_cohort_passes(tmp_path):
    sheet = make_cohort(tmp_path)
    report, clean, errors = _reasons(sheet)
    assert errors == [] and report.ok
    assert len(clean) == 8 and all(Path(p).is_absolute() for p in clean["bmode"])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (rename, "missing column 'subject_id' (found 'Subject ID'"),
        (lambda t: t.loc.__setitem__((1, "scan_id"), "s0-0"), "duplicate scan_id (rows 2, 3)"),
        (lambda t: t.loc.__setitem__((2, "label"), "2"), "label '2' is not 0 or 1"),
        (lambda t: t.loc.__setitem__((1, "label"), "1"), "subject sub0 has scans with both labels 0 and 1"),
    ],
)
def test_sheet_problems(tmp_path, edit, expected):
    sheet = make_cohort(tmp_path)
    _edit_sheet(sheet, edit)
    _, _, errors = _reasons(sheet)
    assert any(expected in reason for _, _, reason in errors), errors


def test_too_few_subjects_per_class(tmp_path):
    sheet = make_cohort(tmp_path, n_subjects=4)
    _, _, errors = _reasons(sheet, Rules(n_folds=3))
    assert sum("needs at least 3 per class" in r for _, _, r in errors) == 2


def test_missing_and_truncated_files(tmp_path):
    sheet = make_cohort(tmp_path)
    (tmp_path / "scans/s0-0_swe.nii.gz").unlink()
    data = (tmp_path / "scans/s1-1_bmode.nii.gz").read_bytes()
    (tmp_path / "scans/s1-1_bmode.nii.gz").write_bytes(data[: len(data) // 2])
    _, _, errors = _reasons(sheet)
    assert ("s0-0", "s0-0_swe.nii.gz", "file not found") in errors
    assert any(s == "s1-1" and f == "s1-1_bmode.nii.gz" and "unreadable or truncated" in r for s, f, r in errors)


def test_paths_escaping_the_sheet_directory(tmp_path):
    cohort = tmp_path / "cohort"
    sheet = make_cohort(cohort)
    outside = tmp_path / "elsewhere.nii.gz"
    outside.write_bytes((cohort / "scans/s0-0_bmode.nii.gz").read_bytes())
    (cohort / "scans/link.nii.gz").symlink_to(outside)
    _edit_sheet(sheet, lambda t: t.loc.__setitem__((0, "bmode"), "../elsewhere.nii.gz"))
    _edit_sheet(sheet, lambda t: t.loc.__setitem__((1, "bmode"), "scans/link.nii.gz"))
    _, _, errors = _reasons(sheet)
    assert any(s == "s0-0" and "escapes the sheet's directory through '..'" in r for s, _, r in errors)
    assert any(s == "s0-1" and "escapes the sheet's directory through a symlink" in r for s, _, r in errors)
    report, _, _ = _reasons(sheet, Rules(n_folds=2, allow_outside_paths=True))
    assert report.ok


def test_not_3d(tmp_path):
    sheet = make_cohort(tmp_path)
    _rewrite(tmp_path, "scans/s0-0_bmode.nii.gz", np.zeros((12, 6), np.float32) + np.arange(6))
    _rewrite(tmp_path, "scans/s0-1_bmode.nii.gz", np.random.rand(12, 6, 6, 2).astype(np.float32))
    _, _, errors = _reasons(sheet)
    assert any(s == "s0-0" and "2-D" in r and "expected 3-D" in r for s, _, r in errors)
    assert any(s == "s0-1" and "4-D with shape (12, 6, 6, 2)" in r for s, _, r in errors)


def test_shape_and_affine_mismatch(tmp_path):
    sheet = make_cohort(tmp_path)
    vols = _volumes(0)
    _rewrite(tmp_path, "scans/s0-0_swe.nii.gz", vols["swe"][:, :, :5])
    _rewrite(tmp_path, "scans/s0-1_layers.nii.gz", vols["layers"], spacing=(0.5, 1.0, 1.1))
    _, _, errors = _reasons(sheet)
    assert any(s == "s0-0" and f.endswith("swe.nii.gz") and "shape (12, 6, 5) differs" in r for s, f, r in errors)
    assert any(s == "s0-1" and "affine differs from bmode by up to 0.1 mm" in r for s, _, r in errors)
    report, _, _ = _reasons(sheet, Rules(n_folds=2, affine_tolerance_mm=0.2))
    assert not any("affine" in p.reason for p in report.errors)


def test_layer_values(tmp_path):
    sheet = make_cohort(tmp_path)
    vols = _volumes(0)
    _rewrite(tmp_path, "scans/s0-0_layers.nii.gz", vols["layers"].astype(np.float32) + 0.5)
    bad = vols["layers"].copy()
    bad[0, 0, 0] = 9
    _rewrite(tmp_path, "scans/s0-1_layers.nii.gz", bad)
    absent = np.where(vols["layers"] == 3, 2, vols["layers"]).astype(np.uint8)
    _rewrite(tmp_path, "scans/s1-0_layers.nii.gz", absent)
    report, clean, errors = _reasons(sheet)
    assert any(s == "s0-0" and "non-integer" in r for s, _, r in errors)
    assert any(s == "s0-1" and "layer values [9] out of range 0..6" in r for s, _, r in errors)
    assert any(s == "s1-0" and "layer(s) absent: sfm" in r for s, _, r in errors)
    # exclude policy: the absent-layer scan becomes a warning and is dropped
    _rewrite(tmp_path, "scans/s0-0_layers.nii.gz", vols["layers"])
    _rewrite(tmp_path, "scans/s0-1_layers.nii.gz", vols["layers"])
    report, clean, errors = _reasons(sheet, Rules(n_folds=2, absent_layer="exclude"))
    assert report.ok and report.excluded == ["s1-0"] and "s1-0" not in set(clean["scan_id"])


def test_bmode_and_swe_values(tmp_path):
    sheet = make_cohort(tmp_path)
    vols = _volumes(0)
    b = vols["bmode"].copy()
    b[3, 3, 3] = np.nan
    b[4, 4, 4] = np.inf
    _rewrite(tmp_path, "scans/s0-0_bmode.nii.gz", b)
    _rewrite(tmp_path, "scans/s0-1_bmode.nii.gz", np.full(SHAPE, 0.5, np.float32))
    s = vols["swe"].copy()
    s[3:8, 1:5, 1:5] = np.nan  # 80 of 216 = 37 % of the box, inside it (the box's edges stay finite)
    _rewrite(tmp_path, "scans/s1-0_swe.nii.gz", s)
    _, _, errors = _reasons(sheet)
    assert any(sid == "s0-0" and "B-mode has 2 NaN/inf voxel(s)" in r for sid, _, r in errors)
    assert any(sid == "s0-1" and "B-mode is constant (0.5)" in r for sid, _, r in errors)
    assert any(sid == "s1-0" and "37% of the SWE box is NaN (tolerance 25%)" in r for sid, _, r in errors)


def test_spacing_warning_is_not_an_error(tmp_path):
    sheet = make_cohort(tmp_path)
    for kind, arr in _volumes(0).items():
        _rewrite(tmp_path, f"scans/s0-0_{kind}.nii.gz", arr, spacing=(1.0, 1.0, 1.0))
    report, _, errors = _reasons(sheet)
    assert errors == []
    assert [w.scan_id for w in report.warnings] == ["s0-0"]
    assert "far from the cohort median" in report.warnings[0].reason


def test_report_lists_everything_at_once(tmp_path):
    sheet = make_cohort(tmp_path)
    (tmp_path / "scans/s0-0_swe.nii.gz").unlink()
    (tmp_path / "scans/s1-1_layers.nii.gz").unlink()
    _edit_sheet(sheet, lambda t: t.loc.__setitem__((3, "label"), "x"))
    report, _, _ = _reasons(sheet)
    text = report.text(sheet)
    assert text.startswith(f"Cohort validation of {sheet}: 3 error(s)")
    assert "scan s0-0 |" in text and "scan s1-1 |" in text and "label 'x'" in text


def test_nifti_header_text_is_not_copied(tmp_path):
    """save_nifti writes a fresh header: no free text from anywhere."""
    path = tmp_path / "x.nii.gz"
    save_nifti(np.zeros((2, 2, 2), np.float32), np.eye(4), path)
    header = nib.load(path).header
    assert header["descrip"].item() == b"" and header["aux_file"].item() == b"" and header["intent_name"].item() == b""


def test_layer_validate_command(tmp_path, capsys):
    """`layer validate` runs the same check: exit 1 and the report on a broken cohort, 0 on a clean one."""
    from layer.cli import main

    sheet = make_cohort(tmp_path)
    assert main(["validate", str(sheet), "--n-folds", "2"]) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
    (tmp_path / "scans/s0-0_swe.nii.gz").unlink()
    assert main(["validate", str(sheet), "--n-folds", "2"]) == 1
    out = capsys.readouterr().out
    assert "1 error(s)" in out and "scan s0-0 |" in out and "file not found" in out

"""B-mode-only and mixed cohorts: a sheet without ``swe`` (or with it empty) runs the bmode model only; a
sheet with SWE for some scans runs bmode on all and swe/fused on the scans with SWE, and says so."""

from __future__ import annotations

import pandas as pd
import pytest

from layer.cohort.modalities import sheet_modalities, swe_count
from layer.cohort.validate import Rules, validate_cohort
from toy_cohort import cohort

ALL = ["bmode", "swe", "fused"]


def _edit(sheet, change) -> None:
    t = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    change(t).to_csv(sheet, sep="\t", index=False)


def test_sheet_without_swe_column(tmp_path):
    sheet = cohort(tmp_path)
    _edit(sheet, lambda t: t.drop(columns="swe"))
    report, clean = validate_cohort(sheet, Rules(n_folds=2))
    assert report.ok and not report.warnings
    assert report.text(sheet).splitlines()[1] == (
        "Modalities: B-mode only (no scan has an SWE volume): the bmode model runs on all 8 scans"
    )
    assert list(clean.columns[:6]) == ["scan_id", "subject_id", "label", "bmode", "swe", "layers"]
    assert clean["swe"].isna().all()
    assert swe_count(sheet) == (8, 0)
    assert sheet_modalities(sheet, ALL) == ["bmode"]


def test_sheet_with_empty_swe_column(tmp_path):
    sheet = cohort(tmp_path)
    _edit(sheet, lambda t: t.assign(swe=""))
    report, _ = validate_cohort(sheet, Rules(n_folds=2))
    assert report.ok and "B-mode only" in report.text(sheet)
    assert sheet_modalities(sheet, ALL) == ["bmode"]


def test_swe_only_modalities_on_a_bmode_sheet_stop_at_parse_time(tmp_path):
    sheet = cohort(tmp_path)
    _edit(sheet, lambda t: t.drop(columns="swe"))
    with pytest.raises(ValueError, match=r"train.modalities \['swe', 'fused'\] all need SWE volumes"):
        sheet_modalities(sheet, ["swe", "fused"])


def test_full_sheet_keeps_every_modality_and_says_nothing(tmp_path):
    sheet = cohort(tmp_path)
    report, _ = validate_cohort(sheet, Rules(n_folds=2))
    assert sheet_modalities(sheet, ALL) == ALL
    assert "Modalities" not in report.text(sheet)  # the report of a full cohort is unchanged


def test_unreadable_sheet_keeps_the_requested_modalities(tmp_path):
    (tmp_path / "c.tsv").write_bytes(b"\xff\xfe\x00")  # validate_cohort reports it
    assert sheet_modalities(tmp_path / "c.tsv", ALL) == ALL
    assert sheet_modalities(tmp_path / "missing.tsv", ALL) == ALL


def test_mixed_sheet(tmp_path):
    sheet = cohort(tmp_path, n_subjects=8)
    _edit(sheet, lambda t: t.assign(swe=[v if int(t.subject_id[i][3:]) < 4 else "" for i, v in enumerate(t.swe)]))
    report, clean = validate_cohort(sheet, Rules(n_folds=2))
    assert report.ok, report.text(sheet)
    assert report.text(sheet).splitlines()[1] == (
        "Modalities: bmode on all 16 scans; swe and fused on the 8 scan(s) with SWE (8 without)"
    )
    assert clean["swe"].notna().sum() == 8
    assert sheet_modalities(sheet, ALL) == ALL


def test_mixed_sheet_with_too_few_swe_subjects(tmp_path):
    sheet = cohort(tmp_path, n_subjects=6)
    # SWE only for sub0, sub1, sub2: labels 0, 1, 0 -> one subject with label 1
    _edit(sheet, lambda t: t.assign(swe=[v if int(t.subject_id[i][3:]) < 3 else "" for i, v in enumerate(t.swe)]))
    report, _ = validate_cohort(sheet, Rules(n_folds=2))
    assert [p.reason for p in report.errors] == [
        "swe/fused train on the 6 scan(s) with SWE, of only 1 subject(s) with label 1; 2-fold "
        "cross-validation needs at least 2 per class: add SWE or set train.modalities: [bmode]"
    ]
    # a B-mode-only study of the same sheet does not need them
    report, _ = validate_cohort(sheet, Rules(n_folds=2, modalities=("bmode",)))
    assert report.ok
    assert report.modality_line() == (
        "Modalities: bmode on all 12 scans (6 with SWE, not used: train.modalities has no swe/fused)"
    )


def test_misnamed_swe_column_is_an_error(tmp_path):
    sheet = cohort(tmp_path)
    _edit(sheet, lambda t: t.rename(columns={"swe": "SWE"}))
    report, _ = validate_cohort(sheet, Rules(n_folds=2))
    assert [p.reason for p in report.errors] == [
        "no column 'swe' but a column 'SWE' (misnamed?): rename it to 'swe', or drop it to run a B-mode-only study"
    ]


def test_models_read_only_scans_with_their_volumes(tmp_path):
    from layer.nets.data import with_channels

    sheet = pd.read_csv(cohort(tmp_path), sep="\t")
    sheet.loc[[1, 2], "swe"] = float("nan")
    assert len(with_channels(sheet, "bmode")) == 8
    assert with_channels(sheet, "swe")["scan_id"].tolist() == with_channels(sheet, "fused")["scan_id"].tolist()
    assert len(with_channels(sheet, "fused")) == 6
    assert with_channels(sheet.drop(columns="swe"), "swe").empty


def test_mixed_sheet_whose_swe_scans_miss_a_class_in_a_fold(tmp_path):
    """With the study's split tried (workflow), the scans with SWE must give each fold's training and
    early-stopping parts both labels, since the swe and fused models learn from them alone."""
    sheet = cohort(tmp_path, n_subjects=12)
    _edit(sheet, lambda t: t.assign(swe=[v if int(t.subject_id[i][3:]) < 8 else "" for i, v in enumerate(t.swe)]))
    report, _ = validate_cohort(sheet, Rules(n_folds=2, val_fraction=0.2))
    swe = [p.reason for p in report.errors if p.file == "swe"]
    assert swe == [
        "swe/fused train on the 16 scan(s) with SWE, too few for the split: fold 0 validation part has no "
        "label 0 and label 1; fold 1 validation part has no label 0; add SWE or set train.modalities: [bmode]"
    ], swe
    assert all(len(r) <= 200 for r in swe)

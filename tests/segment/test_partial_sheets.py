"""Sheets with layer maps for some scans only: the validator counts them, and refuses too few (or none) with
one line saying how many annotated subjects the segment stage needs."""

from __future__ import annotations

import pandas as pd

from layer.cohort.modalities import missing_maps
from layer.cohort.validate import Rules, validate_cohort

from toy_cohort import cohort as make_cohort


def _blank(sheet, subjects) -> None:
    table = pd.read_csv(sheet, sep="\t", dtype=str)
    table.loc[table["subject_id"].isin(subjects), "layers"] = ""
    table.to_csv(sheet, sep="\t", index=False)


def test_partial_maps_pass_and_are_counted(tmp_path):
    sheet = make_cohort(tmp_path)
    _blank(sheet, ["sub2", "sub3"])
    assert missing_maps(sheet)
    report, clean = validate_cohort(sheet, Rules(n_folds=2, min_annotated_subjects=2))
    assert report.ok, report.text(sheet)
    assert report.maps.startswith("Layer maps: drawn for 4 of 8 scans, of 2 of 4 subjects (2 with every scan drawn")
    assert "Scans with each layer drawn: dermis 4, superficial_fat 4, sfm 4, deep_fat 4, dfm 4, muscle 4" in report.maps
    assert clean["layers"].isna().sum() == 4 and report.maps in report.text(sheet)


def test_too_few_annotated_subjects_fail(tmp_path):
    sheet = make_cohort(tmp_path)
    _blank(sheet, ["sub1", "sub2", "sub3"])
    report, _ = validate_cohort(sheet, Rules(n_folds=2, min_annotated_subjects=2))
    assert [(p.scan_id, p.file) for p in report.errors] == [("-", "layers")]
    assert report.errors[0].reason.startswith("only 1 subject(s) have a drawn layer map; the segment stage needs")


def test_a_sheet_without_any_map_fails_with_one_line(tmp_path):
    sheet = make_cohort(tmp_path)
    _blank(sheet, ["sub0", "sub1", "sub2", "sub3"])
    report, _ = validate_cohort(sheet, Rules(n_folds=2))
    assert len(report.errors) == 1
    assert report.errors[0].reason == (
        "no scan has a layer map (column 'layers' empty in all 8 rows); the segment stage needs drawn maps of at "
        "least 10 subjects (segmentation.min_annotated_subjects) to train a segmentation and test it on held-out "
        "subjects"
    )


def test_a_fully_drawn_sheet_has_no_map_line(tmp_path):
    sheet = make_cohort(tmp_path)
    report, _ = validate_cohort(sheet, Rules(n_folds=2))
    assert report.ok and report.maps == "" and not missing_maps(sheet)

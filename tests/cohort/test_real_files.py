"""The report on real files of other kinds: nibabel's own test data (and a CIFTI-2, an Analyze pair and an
MGH file built with nibabel) placed in a cohort sheet, as a new user might.

Every line names the scan, the file and the reason, is at most 200 characters, summarises long value lists,
names a file's kind, and says one problem of one file once, with every place the file is used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from layer.cohort.validate import Rules, validate_cohort

DATA = Path(nib.__file__).parent / "tests" / "data"
LIMIT = 200


def _copy_or_build(name: str, target: Path) -> None:
    """nibabel's test file, or an equivalent built with nibabel when the installed package lacks it."""
    if (DATA / name).exists():
        shutil.copy(DATA / name, target)
        return
    rng = np.random.default_rng(0)
    if name == "anatomical.nii":  # a brain MRI: thousands of distinct integer grey values
        nib.save(nib.Nifti1Image(rng.integers(-610, 30394, (33, 41, 25)).astype(np.int16), np.eye(4)), target)
    elif name in ("example4d.nii.gz", "functional.nii"):
        nib.save(nib.Nifti1Image(rng.random((12, 10, 6, 2)).astype(np.float32), np.eye(4)), target)
    elif name == "standard.nii.gz":
        nib.save(nib.Nifti1Image(np.zeros((4, 5, 7), np.uint8), np.diag([1.0, 3.0, 2.0, 1.0])), target)
    else:
        raise AssertionError(name)


def _cifti(path: Path) -> None:
    """A small dense CIFTI-2 file (a brain-model axis of 3 surface vertices x a series of 4)."""
    brain = nib.cifti2.cifti2_axes.BrainModelAxis.from_surface(np.arange(3), 10, "CortexLeft")
    series = nib.cifti2.cifti2_axes.SeriesAxis(start=0, step=1, size=4)
    header = nib.cifti2.Cifti2Header.from_axes((series, brain))
    nib.save(nib.Cifti2Image(np.zeros((4, 3), np.float32), header), str(path))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    folder = root / "exports"
    folder.mkdir()
    for name in ("anatomical.nii", "example4d.nii.gz", "functional.nii", "standard.nii.gz"):
        _copy_or_build(name, folder / name)
    _cifti(folder / "brain.dconn.nii")
    nib.save(nib.AnalyzeImage(np.zeros((8, 4, 4), np.int16), np.eye(4)), str(folder / "scan.img"))
    nib.save(nib.MGHImage(np.zeros((8, 4, 4), np.float32), np.eye(4)), str(folder / "scan.mgh"))
    nib.save(nib.MGHImage(np.zeros((8, 4, 4), np.float32), np.eye(4)), str(folder / "scan.mgz"))
    rows = [
        ("r1", "p1", 1, "anatomical.nii", "functional.nii", "anatomical.nii"),
        ("r2", "p2", 0, "example4d.nii.gz", "example4d.nii.gz", "example4d.nii.gz"),
        ("r3", "p3", 1, "standard.nii.gz", "brain.dconn.nii", "scan.mgh"),
        ("r4", "p4", 0, "scan.hdr", "scan.img", "functional.nii"),
        ("r5", "p5", 1, "scan.mgz", "", "standard.nii.gz"),
    ]
    table = pd.DataFrame(rows, columns=["scan_id", "subject_id", "label", "bmode", "swe", "layers"])
    for col in ("bmode", "swe", "layers"):
        table[col] = [f"exports/{v}" if v else "" for v in table[col]]
    table.to_csv(root / "cohort.tsv", sep="\t", index=False)
    old = Path.cwd()
    import os

    os.chdir(root)  # paths in the report as a user sees them when running in the cohort's folder
    try:
        rep, _ = validate_cohort(Path("cohort.tsv"), Rules(n_folds=1))
        text = rep.text("cohort.tsv")
    finally:
        os.chdir(old)
    return rep, text


def lines_about(text: str, file: str) -> list[str]:
    return [line for line in text.splitlines() if f"| exports/{file} |" in line]


def test_every_line_is_short(report):
    _, text = report
    lengths = [len(line) for line in text.splitlines()]
    assert max(lengths) <= LIMIT, [line for line in text.splitlines() if len(line) > LIMIT]


def test_thousands_of_values_are_summarised(report):
    _, text = report
    (line,) = [line for line in lines_about(text, "anatomical.nii") if "label map" in line]
    assert "not a label map: " in line and " distinct values from -610 to 30,393 (e.g. -610, " in line
    count = int(line.split("not a label map: ")[1].split(" distinct")[0].replace(",", ""))
    assert count > 1000
    # used twice in one scan: said in the same line, with both places
    assert line.startswith("  - scan r1 | ") and "listed 2 times (bmode, layers of scan r1)" in line


def test_one_problem_of_one_file_is_said_once(report):
    _, text = report
    (four_d,) = lines_about(text, "example4d.nii.gz")
    assert "volume is 4-D with shape (" in four_d and "expected 3-D" in four_d
    assert "listed 3 times (bmode, swe, layers of scan r2): a copy-paste error?" in four_d
    (functional,) = lines_about(text, "functional.nii")
    assert functional.startswith("  - scan r1, r4 | ") and "listed 2 times (swe of scan r1; layers of scan r4)" in functional


@pytest.mark.parametrize(
    ("file", "reason"),
    [
        ("brain.dconn.nii", "not an image volume (a CIFTI-2 file: brain grayordinate data); export the ultrasound volume as NIfTI"),
        ("scan.mgh", "not a NIfTI file (an MGH/MGZ (FreeSurfer) file); convert it to NIfTI (.nii.gz)"),
        ("scan.mgz", "not a NIfTI file (an MGZ (FreeSurfer, gzip-compressed MGH) file)"),
        ("scan.hdr", "not a NIfTI file (an Analyze 7.5 header (.hdr/.img pair))"),
        ("scan.img", "not a NIfTI file (the image half of an Analyze .hdr/.img pair)"),
    ],
)
def test_other_kinds_are_named(report, file, reason):
    _, text = report
    (line,) = lines_about(text, file)
    assert reason in line and "Error" not in line, line


def test_no_python_exception_reaches_the_report(report):
    _, text = report
    assert "AttributeError" not in text and "object has no attribute" not in text


def test_each_problem_names_scan_file_and_reason(report):
    rep, _ = report
    for p in rep.problems:
        assert p.scan_id and p.file and p.reason
    # anatomical, example4d, functional, CIFTI, MGH, MGZ, Analyze .hdr and .img, standard (as a layer map)
    assert len(rep.errors) == 9


def test_a_file_reused_is_blamed_where_the_problem_is(report):
    _, text = report
    (line,) = [line for line in lines_about(text, "standard.nii.gz") if "out of range" in line]
    # standard.nii.gz is a fine B-mode of r3 but not a layer map of r5: the error is r5's, both uses named
    assert line.startswith("  - scan r5 | ") and "layer values [255] out of range 0..6; listed 2 times" in line
    assert "(bmode of scan r3; layers of scan r5)" in line


def test_mixed_sheet_states_the_modalities(report):
    _, text = report
    assert text.splitlines()[1] == "Modalities: bmode on all 5 scans; swe and fused on the 4 scan(s) with SWE (1 without)"

"""End to end on a user's cohort without SWE (B-mode only) and with SWE for some scans (mixed), on the smoke
cohort from ``layer synth`` with a slim study (Grad-CAM, no null models, two epochs).

- B-mode only: the DAG trains and attributes the bmode model only; the report says so; every result table
  holds the bmode modality alone.
- Mixed: bmode runs on every scan, swe on the scans with SWE (fused, which reads the same scans, is left out
  to keep CI short; the full smoke study with all three was run by hand): its out-of-fold predictions and
  attribution tables cover exactly those scans (the ``n_scans`` of the layer tables says how many).
"""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from conftest import ROOT, SLIM, planned_jobs, snakemake

#: Subjects of the smoke cohort (seed 0) left without SWE in the mixed sheet: two per label, so that the scans
#: with SWE still fill both labels of every fold's training and early-stopping parts (checked by validate).
NO_SWE = ("sub-0001", "sub-0002", "sub-0003", "sub-0005")


@pytest.fixture(scope="module")
def smoke_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    layer = str(ROOT / ".venv" / "bin" / "layer") if (ROOT / ".venv" / "bin" / "layer").exists() else "layer"
    cmd = [layer, "synth", "--preset", "strong", "--n-subjects", "16", "--scans-per-subject", "2",
           "--shape", "32", "16", "16", "--spacing", "1.2", "2.5", "2.5", "--seed", "0", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sheet = pd.read_csv(out / "cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet.drop(columns="swe").to_csv(out / "bmode_only.tsv", sep="\t", index=False)
    mixed = sheet.assign(swe=sheet["swe"].where(~sheet["subject_id"].isin(NO_SWE), ""))
    mixed.to_csv(out / "mixed.tsv", sep="\t", index=False)
    return out


def _study(tmp_path_factory, cohort_sheet, extra: str = "") -> dict:
    work = tmp_path_factory.mktemp("study")
    shutil.copytree(ROOT / "config", work / "config")
    config = work / "study.yaml"
    config.write_text(SLIM + extra + f"cohort:\n  sheet: {cohort_sheet}\n")
    dry = snakemake(work, "-n", configs=(config,))
    assert dry.returncode == 0, dry.stderr[-3000:]
    run = snakemake(work, configs=(config,))
    assert run.returncode == 0, run.stderr[-4000:]
    return {"results": work / "results", "jobs": planned_jobs(dry.stdout + dry.stderr)}


@pytest.fixture(scope="module")
def bmode_only(tmp_path_factory, smoke_cohort):
    return _study(tmp_path_factory, smoke_cohort / "bmode_only.tsv")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, smoke_cohort):
    # fused reads the same scans as swe (both channels): swe alone stands for both, to keep CI short
    return _study(tmp_path_factory, smoke_cohort / "mixed.tsv", "split:\n  val_fraction: 0.34\ntrain:\n  modalities: [bmode, swe]\n")


@pytest.mark.slow
def test_bmode_only_study_runs_bmode_alone(bmode_only):
    results = bmode_only["results"]
    assert bmode_only["jobs"]["train"] == 2  # bmode x 2 folds, nothing else
    assert bmode_only["jobs"]["attribute"] == 2  # one per model: gradcam, the primary and the checks' Shapley runs
    assert sorted(p.name for p in (results / "models").iterdir()) == ["bmode"]
    report = (results / "cohort" / "validation_report.txt").read_text().splitlines()
    assert report[1] == "Modalities: B-mode only (no scan has an SWE volume): the bmode model runs on all 32 scans"
    validated = pd.read_csv(results / "cohort" / "validated.tsv", sep="\t")
    assert "swe" in validated.columns and validated["swe"].isna().all()
    for table in ("performance.tsv", "layer_saliency.tsv"):
        assert set(pd.read_csv(results / "stats" / table, sep="\t")["modality"]) == {"bmode"}


@pytest.mark.slow
def test_mixed_study_runs_swe_models_on_the_scans_with_swe(mixed):
    results = mixed["results"]
    assert mixed["jobs"]["train"] == 4  # bmode, swe x 2 folds
    report = (results / "cohort" / "validation_report.txt").read_text().splitlines()
    assert report[1] == "Modalities: bmode on all 32 scans; swe on the 24 scan(s) with SWE (8 without)"
    validated = pd.read_csv(results / "cohort" / "validated.tsv", sep="\t")
    with_swe = set(validated.loc[validated["swe"].notna(), "scan_id"])
    assert len(with_swe) == 24
    oof = {m: pd.concat([pd.read_csv(p, sep="\t") for p in sorted((results / "models" / m).glob("fold*_oof.tsv"))])
           for m in ("bmode", "swe")}  # fmt: skip
    assert len(oof["bmode"]) == 32 and set(oof["swe"]["scan_id"]) == with_swe
    saliency = pd.read_csv(results / "stats" / "layer_saliency.tsv", sep="\t")
    most = saliency.groupby("modality")["n_scans"].max().to_dict()
    assert most == {"bmode": 16, "swe": 12}  # one scan per subject (attribution.scans_per_subject)

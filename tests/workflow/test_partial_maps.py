"""End to end on a synthetic smoke cohort whose sheet keeps drawn layer maps for 30 % of the subjects
(config/presets/partial_maps.yaml): the segment stage trains on some annotated subjects, is scored on the
others (and on the true maps of the rest), predicts the missing maps, and every later step reads them; the
calls are made twice (all scans, drawn maps only) and the robustness check gains the measured Dice.
B-mode only, Grad-CAM and the primary method, no null models, to keep CI short."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from conftest import ROOT, SLIM, planned_jobs, snakemake


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("partial_maps")
    shutil.copytree(ROOT / "config", work / "config")
    slim = work / "slim.yaml"
    slim.write_text(SLIM)
    bmode = work / "bmode.yaml"  # a file of its own: a second train: key in one YAML file replaces the first
    bmode.write_text("train:\n  modalities: [bmode]\n")
    configs = (ROOT / "config" / "presets" / "partial_maps.yaml", slim, bmode)
    dry = snakemake(work, "-n", configs=configs)
    assert dry.returncode == 0, dry.stderr[-3000:]
    run = snakemake(work, configs=configs)
    assert run.returncode == 0, run.stderr[-4000:]
    report = snakemake(work, "--report", "results/report.html", configs=configs)
    assert report.returncode == 0, report.stderr[-3000:]
    return {"results": work / "results", "jobs": planned_jobs(dry.stdout + dry.stderr)}


@pytest.mark.slow
def test_partial_maps_study_segments_and_reports(partial):
    results, jobs = partial["results"], partial["jobs"]
    assert jobs["segment_train"] == jobs["segment_predict"] == jobs["segment_quality"] == jobs["figure_segmentation"] == 1
    assert jobs["calls"] == 2  # all scans, and drawn maps only
    report = (results / "cohort" / "validation_report.txt").read_text()
    assert "Layer maps: drawn for 10 of 32 scans, of 5 of 16 subjects" in report
    mapped = pd.read_csv(results / "cohort" / "mapped.tsv", sep="\t")
    assert mapped["map_source"].value_counts().to_dict() == {"predicted": 22, "drawn": 10}
    assert mapped["layers"].notna().all()
    split = pd.read_csv(results / "segmentation" / "split.tsv", sep="\t")
    assert split.groupby("subject_id")["role"].nunique().max() == 1  # by subject
    quality = pd.read_csv(results / "segmentation" / "quality.tsv", sep="\t").set_index(["reference", "metric", "layer"])
    assert set(quality.index.get_level_values("reference")) == {"drawn", "true"}
    assert quality.at[("true", "dice", "mean"), "n_scans"] == 22
    # 8 training scans of 16 x 16 x 32 voxels, 40 epochs: measured 0.83 (the default cohort is the real bar)
    assert quality.at[("true", "dice", "mean"), "estimate"] > 0.7
    drawn_calls = pd.read_csv(results / "stats" / "layer_calls_drawn_maps.tsv", sep="\t")
    all_calls = pd.read_csv(results / "stats" / "layer_calls.tsv", sep="\t")
    assert list(drawn_calls.columns) == list(all_calls.columns) and len(drawn_calls) == len(all_calls)
    robustness = pd.read_csv(results / "checks" / "robustness.tsv", sep="\t")
    assert {"dice", "measured_dice"} <= set(robustness["perturbation"])
    features = pd.read_csv(results / "stats" / "layer_features.tsv", sep="\t")
    assert features.drop_duplicates("scan_id")["map_source"].value_counts().to_dict() == {"predicted": 22, "drawn": 10}
    aggregated = pd.read_csv(next((results / "aggregate" / "bmode" / "gradcam").glob("fold*.tsv")), sep="\t")
    assert set(aggregated["map_source"]) <= {"drawn", "predicted"}
    html = (results / "report.html").read_text(errors="replace")
    assert "segmentation.png" in html and "quality.tsv" in html

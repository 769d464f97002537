"""The workflow end to end on the smoke preset, and "rerun only stale steps" proved with dry runs (the
session's runs are in conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from layer.attribution_files import stored_methods
from layer.names import LAYERS
from layer.stats.paper import CHECK_COLUMNS, PAPER_COLUMNS
from study_outputs import STUDY_FILES, SYNTHETIC_FILES

pytestmark = pytest.mark.slow


MODELS = 3 * 2 + 2  # 3 modalities x 2 folds of the smoke preset + the fold-0 null models of bmode and fused
#: Aggregations: every method of a model reruns when its model's attribution file is rewritten; trained models
#: have gradcam, integrated_gradients, shapley_background, the paper's gradcam_last and the checks'
#: shapley_blur, null models four.
AGGREGATIONS = 5 * 3 * 2 + 4 * 2
METHODS = {"gradcam", "integrated_gradients", "shapley_background", "gradcam_last", "shapley_blur"}


def test_adding_a_method_reruns_attribution_not_training(smoke):
    """One attribution job per model runs every method (one process per model): adding a method reruns
    each model's attribution and what follows, never training."""
    jobs = smoke["add_method"]
    assert jobs == {
        "attribute": MODELS,
        "aggregate": AGGREGATIONS,
        "profile_check": 3 * 2,  # sanity and robustness: one job per modality runs every method
        "statistics": 1,
        "calls": 1,
        "paper_table": 1,
        "checks": 1,
        "figure_saliency": 1,
        "figure_performance": 1,
        "figure_overlays": 1,
        "figure_calls": 1,
        "figure_checks": 1,
        "all": 1,
    }


def test_a_setting_no_method_reads_reruns_nothing(smoke):
    """``road_iterations`` reaches only ROAD removal, which the smoke study does not run: a model's job
    carries the settings its methods read (layer.explain.registry), so nothing reruns."""
    assert "Nothing to be done" in smoke["change_road"]


def test_changing_n_resamples_reruns_only_statistics(smoke):
    assert "Nothing to be done" in smoke["nothing"]
    assert smoke["change_bootstrap"] == {
        "statistics": 1, "calls": 1, "paper_table": 1, "layer_features": 1, "figure_saliency": 1,
        "figure_performance": 1, "figure_calls": 1, "all": 1,
    }


def test_changing_the_membrane_margin_reruns_removal_methods_not_training(smoke):
    """The margin reaches the removal methods' attribution (their masks: every model runs one) and every
    aggregation (its regions). Snakemake's params trigger compares the set of a job's param values without
    their names, so the rules carry a ``signature`` param (common.smk ``signed``) that names every value:
    without it margin 1 -> 0 reran nothing (0 and 1 were held by other params)."""
    jobs = smoke["change_margin"]
    assert jobs["attribute"] == MODELS and jobs["aggregate"] == AGGREGATIONS
    assert jobs["profile_check"] == 3 * 2 and jobs["calls"] == 1
    assert "train" not in jobs and "split" not in jobs


def test_changing_ig_steps_reruns_attribution_not_training(smoke):
    jobs = smoke["change_steps"]
    assert jobs["attribute"] == MODELS and jobs["aggregate"] == AGGREGATIONS
    assert jobs["profile_check"] == 3 * 2  # every method's profile, IG included
    assert "train" not in jobs


def test_outputs_exist(smoke):
    res = smoke["results"]
    for rel in SYNTHETIC_FILES + STUDY_FILES:
        assert (res / rel).stat().st_size > 0, rel
    for modality in ("bmode", "swe", "fused"):
        for fold in (0, 1):
            assert (res / f"models/{modality}/fold{fold}.pt").exists()
            assert not (res / f"checkpoints/{modality}/fold{fold}.ckpt").exists()  # removed after success
            methods = ["gradcam", "integrated_gradients", "shapley_background", "gradcam_last", "shapley_blur"]
            assert stored_methods(str(res / f"attribution/{modality}/fold{fold}.npz")) == methods
            null_run = res / f"null/r0/attribution/{modality}/fold{fold}.npz"
            assert null_run.exists() == (modality != "swe" and fold == 0)  # null.folds: [0]
            if null_run.exists():
                assert stored_methods(str(null_run)) == methods[:4]
            for method in methods:
                assert (res / f"attribution/{modality}/fold{fold}_examples/{method}/identity.json").exists()
    for fig in (res / "figures").glob("*.png"):
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_folds_have_no_leakage(smoke):
    folds = pd.read_csv(smoke["results"] / "splits/folds.tsv", sep="\t")
    assert list(folds.columns) == ["fold", "scan_id", "subject_id", "label", "role"]
    assert folds.groupby(["fold", "subject_id"])["role"].nunique().max() == 1
    sheet = pd.read_csv(smoke["results"] / "cohort/synthetic/cohort.tsv", sep="\t")
    assert len(sheet) == 16 * 2 and (folds.role == "test").sum() == len(sheet)


def test_layer_feature_tables(smoke):
    """The classical per-layer measurements: every scan x layer, thickness within the scan's depth (32 voxels
    of 1.2 mm), and the oracle of each modality over the 16 subjects."""
    res = smoke["results"]
    features = pd.read_csv(res / "stats/layer_features.tsv", sep="\t")
    assert list(features.columns) == [
        "scan_id", "subject_id", "label", "layer", "thickness_mm", "echo_mean", "echo_sd", "swe_mean",
    ]
    assert len(features) == 32 * 6 and list(features["layer"].iloc[:6]) == list(LAYERS)
    assert features.groupby("scan_id")["thickness_mm"].sum().max() <= 32 * 1.2 + 1e-6
    assert features["swe_mean"].notna().all() and (features["echo_sd"] >= 0).all()
    differences = pd.read_csv(res / "stats/layer_feature_differences.tsv", sep="\t")
    assert len(differences) == 6 * 4 and set(differences["n_subjects"]) == {16}
    assert (differences["ci_low"] <= differences["difference"]).all()
    assert (differences["difference"] <= differences["ci_high"]).all()
    oracle = pd.read_csv(res / "stats/image_oracle.tsv", sep="\t")
    assert list(oracle["modality"]) == ["bmode", "swe", "fused"] and set(oracle["n_subjects"]) == {16}
    assert ((oracle["ci_low"] <= oracle["auc"]) & (oracle["auc"] <= oracle["ci_high"])).all()


def test_layer_saliency_table(smoke):
    table = pd.read_csv(smoke["results"] / "stats/layer_saliency.tsv", sep="\t")
    assert list(table.columns) == [
        "modality", "method", "channel", "layer", "measure", "estimate", "ci_low", "ci_high", "n_subjects", "n_scans",
    ]
    assert set(table.modality) == {"bmode", "swe", "fused"}
    assert set(table.method) == METHODS
    assert set(LAYERS) <= set(table.layer) and set(table.layer) <= set(LAYERS) | {"non_muscle"}
    # Shares and gains of the positive part are undefined for a scan with no positive contribution at all
    # (it happens with a removal method: shapley_blur gave one such scan here); every other row has every scan.
    # A last-block Grad-CAM (gradcam_last: 2 x 1 x 1 cells here) is zero on a scan whose class evidence is
    # negative everywhere (the CAM's ReLU), so its shares are undefined there: it is checked on its own.
    last = table.method == "gradcam_last"
    assert table[last & table.measure.eq("n_voxels")].n_subjects.eq(16).all()
    table = table[~last]
    positive_part = table.measure.isin(["mass_share_pos", "gain_pos"])
    assert (table[~positive_part].n_subjects == 16).all() and table[positive_part].n_subjects.between(12, 16).all()
    full = ~positive_part
    assert (table[full].n_scans == 16).all()  # every method scores one scan per subject
    shares = table[table.measure.isin(["mass_share_abs", "volume_share"])]
    assert shares.estimate.between(0, 1).all()
    ok = table.dropna(subset=["ci_low", "ci_high"])
    assert len(ok) > 0.9 * len(table)
    assert (ok.ci_low <= ok.estimate + 1e-9).all() and (ok.estimate <= ok.ci_high + 1e-9).all()
    # shares over the six layers add up to 1 per modality x method x channel
    six = table[(table.measure == "volume_share") & table.layer.isin(LAYERS)]
    sums = six.groupby(["modality", "method", "channel"]).estimate.sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-6)


def test_performance_table(smoke):
    table = pd.read_csv(smoke["results"] / "stats/performance.tsv", sep="\t")
    assert list(table.columns) == ["modality", "metric", "estimate", "ci_low", "ci_high"]
    assert set(table.metric) == {"auc", "balanced_accuracy", "sensitivity", "specificity"}
    assert len(table) == 3 * 4
    assert table.estimate.between(0, 1).all()


def test_paper_table(smoke):
    """Every map x variant x modality x region, trained against the one null replicate (bmode, fused)."""
    table = pd.read_csv(smoke["results"] / "stats/paper_table.tsv", sep="\t")
    assert list(table.columns) == list(PAPER_COLUMNS)
    assert len(table) == 3 * 3 * 3 * 7  # maps x variants x modalities x (six layers + non_muscle)
    assert set(table["map"]) == {"gradcam_last", "gradcam", "integrated_gradients"}
    assert set(table.groupby(["modality", "map", "variant"]).size()) == {7}
    assert sorted(table.paper_value.dropna().round(3).unique().tolist()) == [0.316, 0.317, 0.42]
    with_null = table.modality.isin(["bmode", "fused"])
    fine = with_null & (table["map"] != "gradcam_last")  # a null last-block CAM can be zero everywhere
    assert table[fine].null_mean.notna().all() and table[~with_null].null_mean.isna().all()
    assert set(table[fine].p_value) <= {0.5, 1.0} and set(table[with_null].p_floor) == {0.5}
    np.testing.assert_allclose(table.excess, table.trained - table.null_mean, atol=2e-6)  # 6 significant figures
    inside = table[(table.variant == "mass_share_abs") & table.layer.isin(["non_muscle", "muscle"])]
    np.testing.assert_allclose(inside.groupby(["modality", "map"]).trained.sum(), 1.0, atol=1e-9)
    ig = table[(table["map"] == "integrated_gradients") & (table.variant == "mass_share_abs")
               & (table.modality == "fused")].set_index("layer")
    saliency = pd.read_csv(smoke["results"] / "stats/layer_saliency.tsv", sep="\t")
    same = saliency[(saliency.modality == "fused") & (saliency.method == "integrated_gradients")
                    & (saliency.channel == "all") & (saliency.measure == "mass_share_abs")].set_index("layer")
    np.testing.assert_allclose(ig.loc[same.index, "trained"], same.estimate, rtol=1e-5)
    bmode = table[table.modality == "bmode"]
    assert bmode.primary_driving.isin(["yes", "no"]).groupby(bmode.layer != "non_muscle").all().to_dict() == {
        True: True, False: False}


def test_paper_check(smoke):
    """The paper check on the main study and one cohort: both questions, trained and null, every map x variant."""
    check = pd.read_csv(smoke["results"] / "stats/paper_check.tsv", sep="\t")
    assert list(check.columns) == list(CHECK_COLUMNS)
    assert list(check.cohort.unique()) == ["strong", "dfm_only"]
    assert len(check) == 2 * 3 * 3 * 2 * 2  # cohorts x maps x variants x questions x (trained, null)
    assert set(check.answer) <= {"yes", "no", "undefined"} and check.sentence.str.endswith(".").all()
    assert set(check.models) == {"trained", "null_models"}
    assert check[check["map"] != "gradcam_last"].answer.isin(["yes", "no"]).all()
    assert check.auc_bmode.between(0, 1).all()
    assert (smoke["results"] / "paper_check/dfm_only/stats/paper_table.tsv").exists()


def test_ground_truth_and_validation_report(smoke):
    truth = json.loads((smoke["results"] / "cohort/synthetic/ground_truth.json").read_text())
    assert truth["preset"] == "strong" and 0.5 < truth["oracle_auc"] <= 1.0
    report = (smoke["results"] / "cohort/validation_report.txt").read_text()
    assert "0 error(s)" in report


def test_layer_calls_and_contrasts(smoke):
    calls = pd.read_csv(smoke["results"] / "stats/layer_calls.tsv", sep="\t")
    assert list(calls.columns) == [
        "modality", "method", "channel", "layer", "measure", "kind", "estimate", "ci_low", "ci_high", "p_value",
        "p_holm", "driving", "top1_frequency", "null_mean", "n_null_models",
    ]
    assert set(calls.measure) == {"label_gap", "mass_share_abs"}
    assert set(calls.method) == METHODS
    family = ["modality", "method", "channel", "measure"]
    assert all(list(group.layer) == list(LAYERS) for _, group in calls.groupby(family, sort=False))
    tests, described = calls[calls.kind == "test"], calls[calls.kind == "description"]
    assert set(tests.measure) == {"label_gap"} and set(described.measure) == {"mass_share_abs"}
    assert tests.p_value.between(0, 1).all() and (tests.p_holm >= tests.p_value - 1e-12).all()
    assert set(tests.driving) <= {True, False}
    # a stored measure is a description: no p-value, no call
    assert described.p_value.isna().all() and described.p_holm.isna().all() and described.driving.isna().all()
    np.testing.assert_allclose(calls.groupby(family).top1_frequency.sum(), 1.0, atol=1e-9)
    # null models (bmode and fused, one replicate) are a diagnostic beside the rows that have them
    with_null = calls.modality.isin(["bmode", "fused"]) & (calls.method != "shapley_blur")
    # a null model's last-block Grad-CAM can be zero on every scan (no shares): see test_layer_saliency_table
    defined = with_null & (calls.method != "gradcam_last")
    assert calls[defined].null_mean.notna().all() and (calls[defined].n_null_models == 1).all()
    assert calls[~with_null].null_mean.isna().all() and (calls[~with_null].n_null_models == 0).all()
    fused = calls[calls.modality == "fused"]
    assert set(fused[fused.method == "integrated_gradients"].channel) == {"bmode", "swe", "all"}
    assert set(fused[fused.method == "shapley_background"].channel) == {"all"}
    contrasts = pd.read_csv(smoke["results"] / "stats/layer_contrasts.tsv", sep="\t")
    assert set(contrasts.method) == {"shapley_background"} and set(contrasts.measure) == {"label_gap"}
    assert {"dfm_minus_muscle", "non_muscle_minus_muscle", "dfm_vs_rest"} <= set(contrasts.contrast)


def test_checks_tables(smoke):
    res = smoke["results"]
    sanity = pd.read_csv(res / "checks/sanity.tsv", sep="\t")
    assert set(sanity.blocks_randomised) == set(range(8))  # none + 7 parameter blocks of the ResNet
    assert (sanity[sanity.blocks_randomised == 0].spearman == 1).all()
    faith = pd.read_csv(res / "checks/faithfulness.tsv", sep="\t")
    curves = pd.read_csv(res / "checks/deletion_curves.tsv", sep="\t")
    assert {"random", "shapley_exact"} <= set(curves.method)
    assert set(faith.operator) == set(curves.operator) == {"background", "blur"}
    exact = faith.set_index(["operator", "modality", "method"])
    for modality in ("bmode", "swe", "fused"):  # a Shapley order is the exact order of its own game
        for operator in ("background", "blur"):
            assert exact.loc[(operator, modality, f"shapley_{operator}"), "aopc"] == pytest.approx(
                exact.loc[(operator, modality, "shapley_exact"), "aopc"])
            assert bool(exact.loc[(operator, modality, f"shapley_{operator}"), "own_operator"])
        assert not bool(exact.loc[("blur", modality, "shapley_background"), "own_operator"])
        assert not bool(exact.loc[("blur", modality, "gradcam"), "own_operator"])
    robust = pd.read_csv(res / "checks/robustness.tsv", sep="\t")
    assert {"none", "deeper", "shallower", "dilate_sfm", "erode_dfm", "dice"} <= set(robust.perturbation)
    assert (robust[robust.perturbation == "none"].change.abs() < 1e-12).all()
    for path in (res / "attribution").glob("*/shapley_background/fold*_qc.tsv"):
        qc = pd.read_csv(path, sep="\t")
        assert qc[qc.check == "efficiency_error"].value.max() < 1e-5, path


def test_validation_target_writes_recovery(validation):
    res = validation["results"] / "validation"
    recovery = pd.read_csv(res / "recovery.tsv", sep="\t")
    assert list(recovery.columns[:12]) == [
        "scenario", "modality", "method", "replicate", "driver_layers", "model_auc", "auc_drop_without_driver",
        "top1_accuracy", "driver_rank", "spearman", "false_positive_rate", "recall",
    ]
    row = recovery.iloc[0]
    assert (row.scenario, row.modality, row.method, row.driver_layers) == (
        "dfm_echogenicity", "bmode", "shapley_background", "dfm")
    assert 0 <= row.model_auc <= 1 and row.top1_accuracy in (0.0, 1.0) and 1 <= row.driver_rank <= 6
    assert 0 <= row.false_positive_rate <= 1 and row.recall in (0.0, 1.0)
    summary = pd.read_csv(res / "summary.tsv", sep="\t")
    assert list(summary.method) == ["shapley_background"]
    assert (res / "recovery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (res / "dfm_echogenicity/seed0/stats/layer_calls.tsv").exists()
    assert not (res / "dfm_echogenicity/seed0/null").exists()  # no call needs null models


def test_adding_a_scenario_plans_only_its_jobs(validation):
    jobs = validation["add_scenario"]
    # the added "null" scenario takes its size and chunks (2) from the smoke preset's synthetic block
    assert jobs["synth_chunk"] == 2 and jobs["train"] == 2  # the trained models of 2 folds, no null models
    assert jobs["recovery"] == 1 and jobs["validation_summary"] == 1


def test_a_scenario_ignores_study_keys_it_sets_itself(validation):
    """The scenario sets its own preset and effects, so switching the default study's preset reruns none
    of its jobs (its synthesis jobs carry their own signature, not the study rule's)."""
    assert "Nothing to be done" in validation["study_change"], validation["study_change"][-3000:]

"""Subject-level bootstrap: coverage on simulated clustered data (and the naive scan bootstrap failing on
the same data), the patients-minus-controls interval at 25 % and 50 % prevalence, metrics against sklearn, degenerate cases, table layouts, composites, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from layer.stats import bootstrap
from layer.stats import tables as stats
from layer.aggregate import aggregate_scans, measure_names
from layer.names import LAYERS

N_SUBJECTS, SCANS_PER_SUBJECT, ICC, TRUE_MEAN = 30, 4, 0.7, 1.0


def clustered(rng: np.random.Generator, n_sets: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_sets`` independent data sets as columns: 30 subjects x 4 scans, ICC 0.7, mean 1."""
    subjects = np.repeat(np.arange(N_SUBJECTS), SCANS_PER_SUBJECT)
    between = rng.normal(size=(N_SUBJECTS, n_sets)) * np.sqrt(ICC)
    within = rng.normal(size=(subjects.size, n_sets)) * np.sqrt(1 - ICC)
    return TRUE_MEAN + between[subjects] + within, subjects


def coverage(cluster_by_subject: bool, n_calls: int = 10, sets_per_call: int = 250) -> float:
    """Share of nominal 95 % BCa intervals containing the true mean over 2,500 simulated data sets.

    Each call bootstraps 250 data sets (columns) with shared subject resamples; calls differ in data
    and resampling seed.
    """
    hits = []
    for call in range(n_calls):
        values, subjects = clustered(np.random.default_rng(1000 + call), sets_per_call)
        clusters = subjects if cluster_by_subject else np.arange(subjects.size)
        ci = bootstrap.cluster_bootstrap_mean(values, clusters, 999, 0.95, seed=call)
        hits.append((ci.ci_low <= TRUE_MEAN) & (TRUE_MEAN <= ci.ci_high))
    return float(np.concatenate(hits).mean())


def test_subject_bootstrap_covers_and_scan_bootstrap_does_not():
    subject_level = coverage(cluster_by_subject=True)
    scan_level = coverage(cluster_by_subject=False)
    assert subject_level >= 0.92, subject_level
    assert scan_level <= 0.85, scan_level  # the failure the subject resampling exists to prevent


def gap_data(rng: np.random.Generator, prevalence: float, effect: float, k: int):
    """``k`` data sets as columns: 80 subjects x 4 scans, ICC 0.7; patients (``prevalence`` of the subjects)
    add a subject-level effect of mean ``effect`` and SD ``effect / 2`` (so the classes' spreads differ)."""
    n = 80
    subjects = np.repeat(np.arange(n), 4)
    y_subject = np.zeros(n)
    y_subject[rng.permutation(n)[: int(round(prevalence * n))]] = 1
    slope = effect * (1 + 0.5 * rng.standard_normal((n, k)))
    x = (np.sqrt(ICC) * rng.standard_normal((n, k)) + y_subject[:, None] * slope)[subjects]
    return x + np.sqrt(1 - ICC) * rng.standard_normal((4 * n, k)), y_subject[subjects], subjects


@pytest.mark.parametrize(("prevalence", "effect"), [(0.25, 0.0), (0.25, 2.0), (0.5, 0.0), (0.5, 2.0)])
def test_gap_interval_covers_at_any_prevalence(prevalence, effect):
    """2,000 data sets per case (40 calls x 50 columns). The subject BCa of the difference in means covers
    0.93-0.97; the linearised interval it replaced (per-scan values with the centring and prevalence fixed
    at full-sample values, bootstrapped as a mean) is 1.3 times as wide and covers 0.98 at 25 % and effect 2."""
    rng = np.random.default_rng(7)
    hits, widths, linear_hits, linear_widths = [], [], [], []
    for call in range(40):
        x, y, subjects = gap_data(rng, prevalence, effect, 50)
        ci = bootstrap.cluster_bootstrap_gap(x, y, subjects, 1000, 0.95, seed=call)
        hits.append((ci.ci_low <= effect) & (effect <= ci.ci_high))
        widths.append(ci.ci_high - ci.ci_low)
        p = y.mean()
        linear = bootstrap.cluster_bootstrap_mean((x - x.mean(axis=0)) * ((y - p) / (p * (1 - p)))[:, None], subjects,
                                                  1000, 0.95, seed=call)
        linear_hits.append((linear.ci_low <= effect) & (effect <= linear.ci_high))
        linear_widths.append(linear.ci_high - linear.ci_low)
    cover = float(np.mean(hits))
    assert 0.93 <= cover <= 0.97, cover  # measured 0.937, 0.935, 0.940, 0.942
    np.testing.assert_allclose(ci.estimate, x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0))
    if prevalence == 0.25 and effect:
        assert np.mean(linear_hits) >= 0.975 and np.mean(linear_widths) >= 1.2 * np.mean(widths)


def test_gap_interval_degenerate_cases():
    y = np.array([0, 0, 1, 1, 1, 0])
    subjects = np.array(["a", "a", "b", "b", "c", "d"])
    ci = bootstrap.cluster_bootstrap_gap(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), y, subjects, 200, 0.95, seed=0)
    assert ci.estimate[0] == pytest.approx(4.0 - 3.0) and np.isfinite(ci.ci_low[0])
    one_patient = bootstrap.cluster_bootstrap_gap(np.arange(6.0), np.array([0, 0, 0, 0, 1, 0]), subjects, 200, 0.95, 0)
    assert np.isnan(one_patient.ci_low[0]) and one_patient.ci_method == ("none",)
    with pytest.raises(ValueError, match="different labels"):
        bootstrap.cluster_bootstrap_gap(np.arange(6.0), np.array([0, 1, 1, 1, 1, 0]), subjects, 200, 0.95, seed=0)


def test_singleton_clusters_reproduce_plain_scipy_bootstrap():
    """With one scan per subject the machinery must be exactly scipy's bootstrap of the mean."""
    x = np.random.default_rng(5).gamma(2.0, size=40)
    subjects = [f"{i:02d}" for i in range(40)]  # codes follow sorted labels: keep scan order
    ours = bootstrap.cluster_bootstrap_mean(x, subjects, 2000, 0.9, seed=11)
    ref = sps.bootstrap((x,), np.mean, n_resamples=2000, confidence_level=0.9, rng=np.random.default_rng(11))
    assert ours.estimate[0] == pytest.approx(x.mean())
    assert ours.ci_low[0] == pytest.approx(ref.confidence_interval.low, rel=1e-10)
    assert ours.ci_high[0] == pytest.approx(ref.confidence_interval.high, rel=1e-10)


def test_pooled_estimate_with_missing_values_and_counts():
    values = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, np.nan], [7.0, 4.0], [9.0, 6.0]])
    subjects = ["a", "a", "b", "c", "c"]
    ci = bootstrap.cluster_bootstrap_mean(values, subjects, 200, 0.95, seed=0)
    np.testing.assert_allclose(ci.estimate, [5.0, 4.0])
    np.testing.assert_array_equal(ci.n_subjects, [3, 2])
    np.testing.assert_array_equal(ci.n_scans, [5, 3])


def no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def test_degenerate_cases_give_estimate_and_nan_ci_silently():
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.normal(size=12), np.full(12, 2.5), np.full(12, np.nan)])
    subjects = np.repeat(np.arange(3), 4)
    ci = no_warnings(bootstrap.cluster_bootstrap_mean, values, subjects, 500, 0.95, 0)
    assert np.isfinite([ci.ci_low[0], ci.ci_high[0]]).all()
    assert ci.estimate[1] == 2.5 and np.isnan([ci.ci_low[1], ci.ci_high[1]]).all()
    assert np.isnan([ci.estimate[2], ci.ci_low[2], ci.ci_high[2]]).all()
    assert ci.ci_method == ("BCa", "none", "none")
    one = no_warnings(bootstrap.cluster_bootstrap_mean, values[:, :1], np.zeros(12), 500, 0.95, 0)
    assert np.isfinite(one.estimate[0]) and np.isnan([one.ci_low[0], one.ci_high[0]]).all()


def test_sparse_column_with_undefined_resamples_falls_back_to_percentile():
    """A layer present in 3 of 20 subjects: some resamples draw none of them."""
    rng = np.random.default_rng(2)
    subjects = np.repeat(np.arange(20), 2)
    values = np.where(subjects[:, None] < 3, rng.normal(size=(40, 1)), np.nan)
    ci = no_warnings(bootstrap.cluster_bootstrap_mean, values, subjects, 999, 0.95, 0)
    assert ci.ci_method == ("percentile",)
    assert ci.ci_low[0] <= ci.estimate[0] <= ci.ci_high[0]


def easy_predictions(n_subjects: int, seed: int, shift: float = 1.5) -> tuple[np.ndarray, ...]:
    """Subject-level labels; score = shift * label + subject effect + scan noise (within-class var 1).

    True AUC = Phi(shift / sqrt(2)); prob = logistic(score - shift / 2), so at threshold 0.5
    sensitivity = specificity = balanced accuracy = Phi(shift / 2).
    """
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(n_subjects), 4)
    labels = (np.arange(n_subjects) % 2)[subjects]
    score = shift * labels + rng.normal(size=n_subjects)[subjects] * np.sqrt(0.5)
    score = score + rng.normal(size=subjects.size) * np.sqrt(0.5)
    return labels, 1.0 / (1.0 + np.exp(-(score - shift / 2))), subjects


def test_metric_estimates_equal_sklearn():
    labels, prob, subjects = easy_predictions(40, seed=1)
    prob = np.round(prob, 1)  # many ties
    ci = bootstrap.cluster_bootstrap_metric(labels, prob, subjects, 200, 0.95, seed=0)
    predicted = (prob >= 0.5).astype(int)
    expected = [
        roc_auc_score(labels, prob),
        balanced_accuracy_score(labels, predicted),
        recall_score(labels, predicted),
        recall_score(labels, predicted, pos_label=0),
    ]
    assert ci.columns == bootstrap.METRICS
    np.testing.assert_allclose(ci.estimate, expected, rtol=1e-12)


def test_weighted_auc_equals_sklearn_sample_weight_on_a_resample():
    labels, prob, subjects = easy_predictions(30, seed=2)
    prob = np.round(prob, 2)
    rng = np.random.default_rng(0)
    draws = np.bincount(rng.integers(0, 30, size=30), minlength=30)  # one subject resample
    weights = draws[subjects].astype(float)
    order = np.argsort(prob, kind="stable")
    s = prob[order]
    ties = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    got = bootstrap.weighted_auc(weights[order][None, :], labels[order].astype(float), ties)[0]
    assert got == pytest.approx(roc_auc_score(labels, prob, sample_weight=weights), rel=1e-12)


def test_performance_cis_contain_the_truth_in_a_large_easy_case():
    labels, prob, subjects = easy_predictions(300, seed=3)
    ci = bootstrap.cluster_bootstrap_metric(labels, prob, subjects, 2000, 0.95, seed=0)
    truth = [sps.norm.cdf(1.5 / np.sqrt(2))] + [sps.norm.cdf(0.75)] * 3
    assert ci.ci_method == ("BCa",) * 4
    assert np.all(ci.ci_low <= truth) and np.all(truth <= ci.ci_high), (ci, truth)
    assert np.all(ci.ci_high - ci.ci_low < 0.12)


def test_one_class_resamples_are_handled_without_warnings():
    labels, prob, subjects = easy_predictions(4, seed=4)
    ci = no_warnings(bootstrap.cluster_bootstrap_metric, labels, prob, subjects, 999, 0.95, 0)
    assert np.isfinite(ci.estimate).all()
    assert "percentile" in ci.ci_method or "none" in ci.ci_method
    single = no_warnings(bootstrap.cluster_bootstrap_metric, np.zeros(8, int), prob[:8], subjects[:8], 99, 0.95, 0)
    assert np.isnan(single.estimate[0]) and single.ci_method[0] == "none"


def fake_agg(n_subjects: int = 12, seed: int = 0) -> pd.DataFrame:
    """Aggregation output of two modalities (one- and two-channel) and two methods, 3 scans/subject."""
    rng = np.random.default_rng(seed)
    n = 3 * n_subjects
    shape = (8, 4, 4)
    lab = np.clip(np.arange(shape[0])[None, :, None, None] + rng.integers(-1, 2, size=(n, 1) + shape[1:]), 0, 6)
    ids = [f"s{i:03d}" for i in range(n)]
    parts = []
    for modality, channels in (("bmode", ("bmode",)), ("fused", ("bmode", "swe"))):
        for method in ("gradcam", "integrated_gradients"):
            chans = ("all",) if method == "gradcam" else channels
            att = rng.normal(0.2, 1.0, size=(n, len(chans)) + shape)
            table = aggregate_scans(att, lab, ids, chans)
            table.insert(1, "subject_id", [f"p{int(s[1:]) // 3}" for s in table["scan_id"]])
            table.insert(2, "modality", modality)
            table.insert(3, "method", method)
            table.insert(4, "fold", 0)
            parts.append(table)
    return pd.concat(parts, ignore_index=True)


def test_saliency_table_layout_and_rows():
    sal = stats.layer_saliency_table(fake_agg(), 200, 0.95, 0)
    assert list(sal.columns) == list(stats.SALIENCY_COLUMNS)
    layers = list(LAYERS) + ["non_muscle"]
    n_measures = len(measure_names())
    # bmode: 1 + 1 channel; fused: gradcam 1, IG bmode + swe + all
    assert len(sal) == (1 + 1 + 1 + 3) * len(layers) * n_measures
    fused_ig = sal[(sal["modality"] == "fused") & (sal["method"] == "integrated_gradients")]
    assert fused_ig["channel"].drop_duplicates().tolist() == ["bmode", "swe", "all"]
    assert fused_ig["layer"].drop_duplicates().tolist() == layers
    assert (sal["n_subjects"] == 12).all() and (sal.loc[sal["measure"] == "mass_abs", "n_scans"] == 36).all()


def per_scan(agg: pd.DataFrame, modality: str, method: str, channel: str, measure: str) -> pd.DataFrame:
    sub = agg[(agg["modality"] == modality) & (agg["method"] == method) & (agg["channel"] == channel)]
    return sub[sub["measure"] == measure].pivot(index="scan_id", columns="layer", values="value")


def test_composites_are_computed_per_scan_from_the_layers():
    agg = fake_agg()
    sal = stats.layer_saliency_table(agg, 100, 0.95, 0)
    est = sal.set_index(["modality", "method", "channel", "layer", "measure"])["estimate"]
    five = [layer for layer in LAYERS if layer != "muscle"]
    key = ("fused", "integrated_gradients")
    share = per_scan(agg, *key, "swe", "mass_share_abs")[five].sum(axis=1).mean()
    assert est[key + ("swe", "non_muscle", "mass_share_abs")] == pytest.approx(share)
    mass = per_scan(agg, *key, "bmode", "mass_pos")[five].sum(axis=1)
    voxels = per_scan(agg, *key, "bmode", "n_voxels")[five].sum(axis=1)
    assert est[key + ("bmode", "non_muscle", "density_pos")] == pytest.approx((mass / voxels).mean())
    both = per_scan(agg, *key, "bmode", "mass_abs") + per_scan(agg, *key, "swe", "mass_abs")
    pooled_share = (both["dfm"] / both[list(LAYERS)].sum(axis=1)).mean()
    assert est[key + ("all", "dfm", "mass_share_abs")] == pytest.approx(pooled_share)
    pooled = est[key + ("all", "non_muscle", "mass_share_abs")] + est[key + ("all", "muscle", "mass_share_abs")]
    assert pooled == pytest.approx(1.0)
    total = per_scan(agg, *key, "bmode", "mass_pos")[list(LAYERS)].sum(axis=1)
    volume = per_scan(agg, *key, "bmode", "volume_share")[five].sum(axis=1)
    gain = (mass / total) / volume
    assert est[key + ("bmode", "non_muscle", "gain_pos")] == pytest.approx(gain.mean())


def test_performance_table():
    labels, prob, subjects = easy_predictions(20, seed=5)
    oof = pd.DataFrame({"scan_id": np.arange(labels.size), "subject_id": subjects, "modality": "fused",
                        "fold": subjects % 5, "label": labels, "prob": prob})
    perf = stats.performance_table(pd.concat([oof, oof.assign(modality="bmode")]), 200, 0.95, 0)
    assert list(perf.columns) == list(stats.PERFORMANCE_COLUMNS)
    assert perf["modality"].tolist() == ["bmode"] * 4 + ["fused"] * 4
    assert perf["metric"].tolist() == list(bootstrap.METRICS) * 2


def test_same_seed_same_numbers_other_seed_other_intervals():
    agg = fake_agg(seed=7)
    a = stats.layer_saliency_table(agg, 300, 0.95, seed=1)
    b = stats.layer_saliency_table(agg.sample(frac=1.0, random_state=0), 300, 0.95, seed=1)  # row order irrelevant
    c = stats.layer_saliency_table(agg, 300, 0.95, seed=2)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_series_equal(a["estimate"], c["estimate"])
    assert not np.allclose(a["ci_low"].fillna(0), c["ci_low"].fillna(0))

"""Null calibration, subject-level sign-flip tests, Holm and top-1 frequency: hand-computed numbers, type-I
error and power on simulated clustered data (and the naive scan-level test failing on the same data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layer import inference as inf
from layer.names import LAYERS
from layer.stats import cluster_bootstrap_mean

# --------------------------------------------------------------------------------------------------
# Holm
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        # 0.01*4 = 0.04, 0.04*3 = 0.12, 0.2*2 = 0.4, 0.3*1 = 0.3 -> 0.4 (monotone)
        ([0.04, 0.2, 0.01, 0.3], [0.12, 0.4, 0.04, 0.4]),
        # 0.2*3 = 0.6, 0.3*2 = 0.6, 0.5*1 = 0.5 -> 0.6 for all
        ([0.5, 0.3, 0.2], [0.6, 0.6, 0.6]),
        # capped at 1
        ([0.4, 0.6], [0.8, 0.8]),
        # NaN is not a test: m = 2
        ([0.01, np.nan, 0.02], [0.02, np.nan, 0.02]),
    ],
)
def test_holm_hand_computed(p, expected):
    np.testing.assert_allclose(inf.holm(p), expected, atol=1e-15)


# --------------------------------------------------------------------------------------------------
# Sign-flip test
# --------------------------------------------------------------------------------------------------


def test_sign_flip_exact_by_hand():
    """Subject means 1, 2, -0.5 (sum 2.5). The 8 sign vectors give sums +-3.5, +-2.5, +-1.5, +-0.5."""
    values = np.array([0.5, 1.5, 2.0, -1.0, 0.0])
    subjects = ["a", "a", "b", "c", "c"]
    for alternative, expected in (("two-sided", 4 / 8), ("greater", 2 / 8), ("less", 7 / 8)):
        t, p, exact = inf.sign_flip_test(values, subjects, 1000, seed=0, alternative=alternative)
        assert exact and t[0] == pytest.approx(2.5 / 3)
        assert p[0] == pytest.approx(expected)


def clustered(rng: np.random.Generator, n_sets: int, effect: float) -> tuple[np.ndarray, np.ndarray]:
    """``n_sets`` data sets as columns: 20 subjects x 4 scans, ICC 0.7, mean contrast ``effect``."""
    subjects = np.repeat(np.arange(20), 4)
    between = rng.normal(size=(20, n_sets)) * np.sqrt(0.7)
    within = rng.normal(size=(80, n_sets)) * np.sqrt(0.3)
    return effect + between[subjects] + within, subjects


def test_sign_flip_type_one_error_power_and_naive_failure():
    rng = np.random.default_rng(2024)
    null_data, subjects = clustered(rng, 2000, effect=0.0)
    _, p_subject, exact = inf.sign_flip_test(null_data, subjects, 999, seed=1)
    _, p_scan, _ = inf.sign_flip_test(null_data, np.arange(subjects.size), 999, seed=1)
    type1_subject = float((p_subject <= 0.05).mean())
    type1_scan = float((p_scan <= 0.05).mean())
    assert not exact
    assert 0.03 <= type1_subject <= 0.07, type1_subject
    assert type1_scan >= 0.15, type1_scan  # scans are not independent: the naive test is anti-conservative
    effect_data, subjects = clustered(rng, 1000, effect=0.7)
    _, p_effect, _ = inf.sign_flip_test(effect_data, subjects, 999, seed=2)
    power = float((p_effect <= 0.05).mean())
    assert power > 0.8, power


def test_paired_contrasts_find_the_planted_dfm_minus_muscle():
    rng = np.random.default_rng(5)
    subjects = np.repeat(np.arange(12), 3)
    values = rng.normal(size=(36, 6)) * 0.1 + rng.normal(size=(12, 1))[subjects]  # subject level shared
    values[:, LAYERS.index("dfm")] += 0.5
    table = inf.paired_contrasts(values, subjects, n_permutations=5000, seed=0)
    assert table["contrast"].tolist()[:2] == ["dfm_minus_muscle", "dermis_vs_rest"]
    row = table.set_index("contrast")
    assert bool(row.loc["dfm_minus_muscle", "exact"])  # 2^12 = 4096 <= 5000: every sign vector
    assert row.loc["dfm_minus_muscle", "p_value"] == pytest.approx(2 / 4096)  # only all +, all - as extreme
    assert row.loc["dfm_vs_rest", "p_holm"] <= 0.05
    assert row.loc["dfm_minus_muscle", "estimate"] == pytest.approx(
        (values[:, 4] - values[:, 5]).mean()  # equal scans per subject: mean of subject means = mean
    )


# --------------------------------------------------------------------------------------------------
# Top-1 frequency
# --------------------------------------------------------------------------------------------------


def test_top1_frequency_sums_to_one_and_finds_a_dominant_layer():
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(15), 3)
    values = rng.normal(size=(45, 6))
    values[:, 2] += 3.0
    freq = inf.top1_frequency(values, subjects, 2000, seed=1)
    assert freq.sum() == pytest.approx(1.0)
    assert freq[2] >= 0.99
    # A close race: layer 1 leads by 1 in subjects 0-7, layer 3 by about 1 in subjects 8-15.
    subjects = np.repeat(np.arange(16), 2)
    tied = np.zeros((32, 6))
    lead = 1.0 + 0.01 * rng.normal(size=16)
    tied[subjects < 8, 1] = lead[subjects[subjects < 8]]
    tied[subjects >= 8, 3] = lead[subjects[subjects >= 8]]
    freq = inf.top1_frequency(tied, subjects, 2000, seed=1)
    assert freq[1] + freq[3] == pytest.approx(1.0)
    assert 0.3 < freq[1] < 0.7
    same = np.ones((32, 6))
    assert inf.top1_frequency(same, subjects, 10, seed=0)[0] == 1.0  # exact ties go to the first layer
    assert np.array_equal(freq, inf.top1_frequency(tied, subjects, 2000, seed=1))


# --------------------------------------------------------------------------------------------------
# Null models
# --------------------------------------------------------------------------------------------------


def test_permute_subject_labels_keeps_subjects_together_and_balance():
    subjects = [f"s{i:02d}" for i in range(10) for _ in range(3)]
    labels = [int(i < 4) for i in range(10) for _ in range(3)]
    sheet = pd.DataFrame({"scan_id": range(30), "subject_id": subjects, "label": labels, "bmode": "x"})
    out = inf.permute_subject_labels(sheet, seed=3)
    per_subject = out.groupby("subject_id")["label"].agg(["nunique", "first"])
    assert (per_subject["nunique"] == 1).all()
    assert per_subject["first"].sum() == 4  # 4 positive subjects before and after
    assert not out["label"].equals(sheet["label"])
    assert out.drop(columns="label").equals(sheet.drop(columns="label"))
    assert out["label"].equals(inf.permute_subject_labels(sheet, seed=3)["label"])
    mixed = sheet.copy()
    mixed.loc[0, "label"] = 1 - mixed.loc[0, "label"]
    with pytest.raises(ValueError, match="different labels"):
        inf.permute_subject_labels(mixed, seed=0)


# Hand example: subjects A (scans a1, a2) and B (b1); two layers; three null models.
TRAINED = np.array([[3.0, 1.0], [5.0, 1.0], [4.0, 2.0]])
NULL = np.array(
    [
        [[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]],
        [[2.0, 1.0], [2.0, 2.0], [2.0, 3.0]],
        [[3.0, 1.0], [3.0, 2.0], [3.0, 3.0]],
    ]
)
SUBJECTS = np.array(["A", "A", "B"])


def test_null_calibration_by_hand():
    table = inf.null_calibration(TRAINED, NULL, SUBJECTS, 999, 0.95, seed=0)
    # Layer 0: trained (3+5+4)/3 = 4; per-scan null mean 2, 2, 2 -> 2; excess 2; null models pooled 1, 2, 3,
    # none >= 4 -> p = (1 + 0) / (1 + 3). Layer 1: trained 4/3; per-scan null means 1, 2, 3 -> 2; every null
    # model pools to 2 >= 4/3 -> p = 4/4.
    np.testing.assert_allclose(table["trained"], [4.0, 4.0 / 3.0])
    np.testing.assert_allclose(table["null_mean"], [2.0, 2.0])
    np.testing.assert_allclose(table["excess"], [2.0, -2.0 / 3.0])
    np.testing.assert_allclose(table["p_value"], [0.25, 1.0])
    excess_scan = TRAINED - NULL.mean(axis=0)  # [[1, 0], [3, -1], [2, -1]]
    ci = cluster_bootstrap_mean(excess_scan, SUBJECTS, 999, 0.95, seed=0)
    np.testing.assert_allclose(table["ci_low"], ci.ci_low)
    np.testing.assert_allclose(table["ci_high"], ci.ci_high)

    # A null model that did not score b1 is compared on a1, a2 only: trained (3+5)/2 = 4 vs 9 -> a hit.
    partial = NULL.copy()
    partial[2, :, 0] = [9.0, 9.0, np.nan]
    table = inf.null_calibration(TRAINED, partial, SUBJECTS, 99, 0.95, seed=0)
    assert table["p_value"].iloc[0] == pytest.approx(2 / 4)
    # per-scan null means of layer 0: (1+2+9)/3 = 4, 4, (1+2)/2 = 1.5 -> pooled 9.5/3
    assert table["null_mean"].iloc[0] == pytest.approx(9.5 / 3)


def long_table(
    values: np.ndarray, scans: list[str], subjects: list[str], measure: str = "mass_share_abs"
) -> pd.DataFrame:
    """Long per-scan table (aggregate layout) of ``values [n_scans, 6]``."""
    n = len(scans)
    return pd.DataFrame(
        {
            "scan_id": np.repeat(scans, 6),
            "subject_id": np.repeat(subjects, 6),
            "modality": "bmode",
            "method": "shapley_road",
            "channel": "all",
            "layer": np.tile(LAYERS, n),
            "measure": measure,
            "value": np.asarray(values, dtype=float).reshape(-1),
        }
    )


def planted(n_null: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """12 subjects x 2 scans; trained models put 0.3 more on the DFM than the null models do."""
    rng = np.random.default_rng(seed)
    scans = [f"s{i:02d}_{j}" for i in range(12) for j in range(2)]
    subjects = [f"s{i:02d}" for i in range(12) for _ in range(2)]
    base = rng.dirichlet(np.ones(6), size=24) * 0.5
    trained = base.copy()
    trained[:, LAYERS.index("dfm")] += 0.3
    nulls = []
    for r in range(n_null):
        t = long_table(base + rng.normal(0, 0.02, size=base.shape), scans, subjects)
        nulls.append(t.assign(null_model=r))
    table = long_table(trained, scans, subjects)
    voxels = long_table(np.ones((24, 6)), scans, subjects, "n_voxels")  # label-map measure: dropped
    return pd.concat([table, voxels], ignore_index=True), pd.concat(nulls, ignore_index=True)


def test_layer_calls_table_columns_and_calls():
    trained, null = planted(n_null=199, seed=0)
    calls = inf.layer_calls_table(trained, null, 499, 0.95, seed=0)
    assert list(calls.columns) == list(inf.CALLS_COLUMNS)
    assert calls["layer"].tolist() == list(LAYERS) and set(calls["measure"]) == {"mass_share_abs"}
    row = calls.set_index("layer")
    assert row.loc["dfm", "p_value"] == pytest.approx(1 / 200)  # no null model reaches the trained score
    assert row.loc["dfm", "p_holm"] == pytest.approx(6 / 200)
    assert bool(row.loc["dfm", "driving"])
    assert row.loc["dfm", "excess"] == pytest.approx(0.3, abs=0.01)
    assert row.loc["dfm", "ci_low"] > 0.25
    assert row.loc["dfm", "top1_frequency"] == pytest.approx(1.0)
    assert calls["top1_frequency"].sum() == pytest.approx(1.0)
    assert calls.loc[calls["layer"] != "dfm", "driving"].sum() == 0
    np.testing.assert_allclose(calls["excess"], calls["trained"] - calls["null_mean"])

    # Too few null models: p >= 1/20 and Holm over six layers cannot call anything ...
    trained, null = planted(n_null=19, seed=0)
    calls = inf.layer_calls_table(trained, null, 199, 0.95, seed=0).set_index("layer")
    assert calls.loc["dfm", "p_value"] == pytest.approx(1 / 20) and not calls["driving"].any()
    # ... the subject-level sign-flip of the per-scan excess can (2^12 sign vectors, exact). It treats the
    # null mean as known, so noise-level excesses are called at the nominal family-wise rate; these fixed
    # data (seed 1) have none.
    trained, null = planted(n_null=19, seed=1)
    calls = inf.layer_calls_table(trained, null, 199, 0.95, seed=0, test="sign_flip").set_index("layer")
    assert calls.loc["dfm", "p_value"] == pytest.approx(1 / 4096)
    assert bool(calls.loc["dfm", "driving"]) and calls["driving"].sum() == 1
    with pytest.raises(ValueError, match="null_model"):
        inf.layer_calls_table(trained, null.drop(columns="null_model"), 99, 0.95, seed=0)

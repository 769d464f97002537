"""Null calibration, subject-level sign-flip tests, Holm and top-1 frequency: hand-computed numbers, type-I
error and power on simulated clustered data (and the naive scan-level test failing on the same data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layer import aggregate as agg
from layer import games as G
from layer.stats import calls as inf
from layer.names import LAYERS
from layer.cohort.split import permute_subject_labels
from layer.stats.bootstrap import cluster_bootstrap_mean

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
    out = permute_subject_labels(sheet, seed=3)
    per_subject = out.groupby("subject_id")["label"].agg(["nunique", "first"])
    assert (per_subject["nunique"] == 1).all()
    assert per_subject["first"].sum() == 4  # 4 positive subjects before and after
    assert not out["label"].equals(sheet["label"])
    assert out.drop(columns="label").equals(sheet.drop(columns="label"))
    assert out["label"].equals(permute_subject_labels(sheet, seed=3)["label"])
    mixed = sheet.copy()
    mixed.loc[0, "label"] = 1 - mixed.loc[0, "label"]
    with pytest.raises(ValueError, match="different labels"):
        permute_subject_labels(mixed, seed=0)


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


def score_table(scores: np.ndarray, scans: list[str], subjects: list[str], method: str = "shapley_road") -> pd.DataFrame:
    """Aggregated long table (all measures) of layer scores ``[n_scans, 6]``, as the aggregate rule writes."""
    values = agg._scan_measures(agg.score_masses(scores[:, None, :]), np.full((len(scans), 7), 10))
    table = agg._long_table(values, scans, ("all",))
    table.insert(1, "subject_id", np.repeat(subjects, 6 * len(agg.measure_names())))
    return table.assign(modality="bmode", method=method)


def planted(n_null: int, seed: int, effect: float = 1.0, sfm_bias: float = 0.0):
    """30 subjects x 2 scans. Trained models: the DFM adds ``effect`` logits in patients and removes it in
    controls; every model (trained and null) adds ``sfm_bias`` to the SFM of every scan, whatever the
    label (a layer a model leans on for all scans, e.g. a bright membrane: not a driver)."""
    rng = np.random.default_rng(seed)
    scans = [f"s{i:02d}_{j}" for i in range(30) for j in range(2)]
    subjects = [f"s{i:02d}" for i in range(30) for _ in range(2)]
    labels = pd.Series(np.repeat(np.arange(30) % 2, 2), index=scans)

    def scores(dfm_effect: float, model_seed: int) -> np.ndarray:
        g = np.random.default_rng([seed, model_seed])
        subject_effect = np.repeat(g.normal(0, 0.3, size=(30, 6)), 2, axis=0)
        x = subject_effect + g.normal(0, 0.2, size=(60, 6))
        x[:, LAYERS.index("dfm")] += dfm_effect * (2 * labels.to_numpy() - 1)
        x[:, LAYERS.index("sfm")] += sfm_bias
        return x

    trained = score_table(scores(effect, 0), scans, subjects)
    null = pd.concat(
        [score_table(scores(0.0, r + 1), scans, subjects).assign(null_model=r) for r in range(n_null)],
        ignore_index=True,
    )
    return trained, null, labels


def test_label_permutation_test_by_hand_and_type_one_error():
    # Two subjects per class, one scan each: gap = mean(patients) - mean(controls).
    c = np.array([[1.0], [2.0], [5.0], [6.0]])
    y = np.array([0, 0, 1, 1])
    gap, p = inf.label_permutation_test(c, y, ["a", "b", "c", "d"], 4000, seed=0)
    assert gap[0] == pytest.approx(4.0)
    # Of the 6 equally likely labelings only the observed one reaches 4.0: p ~ 1/6.
    assert p[0] == pytest.approx(1 / 6, abs=0.02)
    np.testing.assert_allclose(inf.label_gap(c, y).mean(axis=0), gap)
    # Simulated clustered data (ICC 0.7, 20 subjects x 3 scans, labels independent of the scores):
    rng = np.random.default_rng(5)
    rejections = 0
    n_sets = 400
    for _ in range(n_sets):
        subjects = np.repeat(np.arange(20), 3)
        x = np.sqrt(0.7) * rng.standard_normal(20)[subjects] + np.sqrt(0.3) * rng.standard_normal(60)
        labels = np.repeat(rng.permutation(np.arange(20) % 2), 3)
        rejections += inf.label_permutation_test(x[:, None], labels, subjects, 199, seed=1)[1][0] <= 0.05
    assert rejections / n_sets <= 0.07  # measured 0.0375


def test_layer_calls_table_label_gap_calls_the_driver_only():
    trained, null, labels = planted(n_null=2, seed=0, sfm_bias=2.0)
    calls = inf.layer_calls_table(trained, null, labels, ["label_gap", "mass_share_abs"], 499, 0.95, seed=0,
                                  n_permutations=999)
    assert list(calls.columns) == list(inf.CALLS_COLUMNS)
    gap = calls[calls["measure"] == "label_gap"].set_index("layer")
    assert gap.index.tolist() == list(LAYERS)
    assert bool(gap.loc["dfm", "driving"]) and gap["driving"].sum() == 1
    assert gap.loc["dfm", "p_value"] == pytest.approx(1 / 1000)
    # trained gap = mean(+1 | patients) - mean(-1 | controls) = 2 up to noise; null models about 0.
    assert gap.loc["dfm", "trained"] == pytest.approx(2.0, abs=0.4)
    assert abs(gap.loc["dfm", "null_mean"]) < 0.4
    assert gap.loc["dfm", "ci_low"] > 1.0 and gap.loc["dfm", "top1_frequency"] == pytest.approx(1.0)
    np.testing.assert_allclose(gap["excess"], gap["trained"] - gap["null_mean"], atol=1e-12)
    # The SFM bias (same in every model) is no label gap ...
    assert abs(gap.loc["sfm", "excess"]) < 0.3 and not gap.loc["sfm", "driving"]
    # ... but the raw share puts the SFM first in trained and null models alike; with 2 null models the
    # rank p-value cannot go below 1/3, so nothing is called on it.
    share = calls[calls["measure"] == "mass_share_abs"].set_index("layer")
    assert share["trained"].idxmax() == "sfm" and share["null_mean"].idxmax() == "sfm"
    assert share["p_value"].min() >= 1 / 3 and not share["driving"].any()
    with pytest.raises(ValueError, match="null_model"):
        inf.layer_calls_table(trained, null.drop(columns="null_model"), labels, ["label_gap"], 99, 0.95, seed=0)


def test_layer_calls_table_null_cohort_calls_nothing():
    trained, null, labels = planted(n_null=2, seed=3, effect=0.0, sfm_bias=2.0)
    calls = inf.layer_calls_table(trained, null, labels, ["label_gap"], 299, 0.95, seed=0, n_permutations=999)
    assert not calls["driving"].any()
    # The same data under a sign-flip test of the raw share's excess: a model-level difference is no
    # subject-level effect, yet sign flips across subjects would call it. Shown on a planted model bias.
    trained_biased, _, _ = planted(n_null=1, seed=3, effect=0.0, sfm_bias=3.0)
    calls = inf.layer_calls_table(trained_biased, null, labels, ["mass_share_abs"], 299, 0.95, seed=0,
                                  test="sign_flip").set_index("layer")
    assert bool(calls.loc["sfm", "driving"])


def coalition_game(y: np.ndarray, rng: np.random.Generator, muscle: float) -> np.ndarray:
    """Per-scan values of the 64 layer coalitions ``[n, 64]``: the DFM adds ``1 + y`` logits, the DFM and the
    deep fat together add ``1.5 * y`` more (the model reads the DFM by its contrast with the fat), the
    muscle adds ``muscle * y``; each term has scan noise. The deep fat carries nothing of its own."""
    n = len(y)
    bits = ((np.arange(64)[:, None] >> np.arange(6)) & 1).astype(float)  # [64, 6], bit i = layer i present
    fat, dfm, muscle_bit = bits[:, LAYERS.index("deep_fat")], bits[:, LAYERS.index("dfm")], bits[:, 5]
    a = 1.0 + y + rng.normal(0, 0.3, n)
    b = 1.5 * y + rng.normal(0, 0.3, n)
    c = muscle * y + rng.normal(0, 0.3, n)
    return a[:, None] * dfm + b[:, None] * (dfm * fat) + c[:, None] * muscle_bit


@pytest.mark.parametrize("muscle", [0.0, 1.0])
def test_conditional_calls_drop_a_layer_credited_only_through_an_interaction(muscle):
    from layer.games import shapley_from_values

    rng = np.random.default_rng(11)
    n = 80
    scans = [f"s{i:02d}" for i in range(n)]
    y = np.arange(n) % 2
    labels = pd.Series(y, index=scans)
    trained_v = coalition_game(y.astype(float), rng, muscle)
    null_v = np.stack([coalition_game(rng.permutation(y).astype(float), rng, muscle) for _ in range(2)])
    trained = score_table(shapley_from_values(trained_v, 6), scans, scans, "shapley_background")
    null = pd.concat([score_table(shapley_from_values(v, 6), scans, scans, "shapley_background").assign(null_model=r)
                      for r, v in enumerate(null_v)], ignore_index=True)
    args = (trained, null, labels, ["label_gap"], 199, 0.95, 0, 0.05, 999)
    plain = inf.calls_and_contrasts(*args)[0].set_index("layer")
    # Shapley gives the deep fat half of the interaction: 0.75 logits of label gap, called driving.
    assert plain.loc["deep_fat", "excess"] == pytest.approx(0.75, abs=0.25) and bool(plain.loc["deep_fat", "driving"])
    cv = inf.ConditionalValues(scans, G.conditional_shapley(trained_v, 6), G.conditional_shapley(null_v, 6))
    calls, contrasts = inf.calls_and_contrasts(*args, conditional={("bmode", "shapley_background"): cv})
    calls = calls.set_index("layer")
    # Same trained / excess / p_value; only p_holm and driving change.
    pd.testing.assert_series_equal(calls["excess"], plain["excess"])
    pd.testing.assert_series_equal(calls["p_value"], plain["p_value"])
    expected = {"dfm"} | ({"muscle"} if muscle else set())
    assert set(calls.index[calls["driving"]]) == expected
    pairs = contrasts.set_index("contrast")
    # With the DFM held absent the deep fat has no gap; the DFM without the deep fat keeps its own 1 logit.
    assert abs(pairs.loc["deep_fat_without_dfm", "estimate"]) < 0.25
    assert pairs.loc["deep_fat_without_dfm", "p_holm"] > 0.05
    assert pairs.loc["dfm_without_deep_fat", "estimate"] == pytest.approx(1.0, abs=0.25)
    assert calls.loc["deep_fat", "p_holm"] == pairs.loc["deep_fat_without_dfm", "p_holm"]
    if muscle:  # two real drivers survive each other's removal
        assert pairs.loc["muscle_without_dfm", "p_holm"] <= 0.05 and pairs.loc["dfm_without_muscle", "p_holm"] <= 0.05


def test_load_conditional_pairs_trained_and_null_runs_by_their_stored_identity(tmp_path):
    """Each file names its modality, method and null replicate inside; file names and folders are not read."""
    from layer.io import save_arrays

    rng = np.random.default_rng(0)
    values = {run: rng.normal(size=(3, 64)) for run in (None, 0, 1)}
    for i, (run, v) in enumerate(values.items()):
        order = [2, 0, 1] if run is not None else [0, 1, 2]  # a null run may store its scans in another order
        identity = {"modality": "fused", "method": "shapley_background", "fold": 0}
        if run is not None:
            identity["null_model"] = run
        save_arrays(tmp_path / f"job{i}.npz", scores=np.zeros((3, 1, 6)), scan_ids=np.array([f"s{i}" for i in order]),
                    channels=np.array(["all"]), coalitions=v[order], **identity)
    paths = sorted(str(p) for p in tmp_path.glob("job*.npz"))
    cv = inf.load_conditional(paths)[("fused", "shapley_background")]
    assert cv.scans == ["s0", "s1", "s2"] and cv.null.shape == (2, 3, 6, 6)
    np.testing.assert_allclose(cv.trained, G.conditional_shapley(values[None], 6))
    np.testing.assert_allclose(cv.null[1], G.conditional_shapley(values[1], 6))
    save_arrays(tmp_path / "elsewhere.npz", scores=np.zeros((3, 1, 6)))
    with pytest.raises(ValueError, match="not an attribution file"):
        inf.load_conditional([str(tmp_path / "elsewhere.npz")])

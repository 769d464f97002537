"""Layer calls: label permutation test, Holm, conditional calls, top-1 frequency, descriptions of stored
measures. Hand-computed numbers; type-I error on simulated clustered data at balanced and unbalanced
prevalence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layer import aggregate as agg
from layer import games as G
from layer.stats import calls as inf
from layer.names import LAYERS
from layer.cohort.split import permute_subject_labels
from layer.stats.bootstrap import cluster_bootstrap_gap

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


def score_table(scores: np.ndarray, scans: list[str], subjects: list[str], method: str = "shapley_road") -> pd.DataFrame:
    """Aggregated long table (all measures) of layer scores ``[n_scans, 6]``, as the aggregate rule writes."""
    values = agg._scan_measures(agg.score_masses(scores[:, None, :]), np.full((len(scans), 7), 10))
    table = agg._long_table(values, scans, ("all",))
    table.insert(1, "subject_id", np.repeat(subjects, 6 * len(agg.measure_names())))
    return table.assign(modality="bmode", method=method)


def planted(n_null: int, seed: int, effect: float = 1.0, sfm_bias: float = 0.0, every: int = 2):
    """30 subjects x 2 scans, every ``every``-th subject a patient. Trained models: the DFM adds ``effect``
    logits in patients and removes it in controls; every model (trained and null) adds ``sfm_bias`` to the
    SFM of every scan, whatever the label (a layer a model leans on for all scans, e.g. a bright membrane:
    not a driver)."""
    scans = [f"s{i:02d}_{j}" for i in range(30) for j in range(2)]
    subjects = [f"s{i:02d}" for i in range(30) for _ in range(2)]
    labels = pd.Series(np.repeat((np.arange(30) % every == 0).astype(int), 2), index=scans)

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


def test_label_permutation_test_by_hand():
    # Two subjects per class, one scan each: gap = mean(patients) - mean(controls).
    c = np.array([[1.0], [2.0], [5.0], [6.0]])
    y = np.array([0, 0, 1, 1])
    gap, p = inf.label_permutation_test(c, y, ["a", "b", "c", "d"], 4000, seed=0)
    assert gap[0] == pytest.approx(4.0)
    # Of the 6 equally likely labelings only the observed one reaches 4.0: p ~ 1/6; two-sided also its mirror.
    assert p[0] == pytest.approx(1 / 6, abs=0.02)
    _, p2 = inf.label_permutation_test(c, y, ["a", "b", "c", "d"], 4000, seed=0, alternative="two-sided")
    assert p2[0] == pytest.approx(2 / 6, abs=0.02)
    # Scans of one subject move together: subject a has two scans, so gap = (5 + 6) / 2 - (1 + 2 + 2) / 3.
    c = np.array([[1.0], [2.0], [2.0], [5.0], [6.0]])
    gap, _ = inf.label_permutation_test(c, np.array([0, 0, 0, 1, 1]), ["a", "b", "b", "c", "d"], 99, seed=0)
    assert gap[0] == pytest.approx(5.5 - 5 / 3)
    with pytest.raises(ValueError, match="different labels"):
        inf.label_permutation_test(c, np.array([0, 1, 0, 1, 1]), ["a", "b", "b", "c", "d"], 99, seed=0)


def clustered_null(rng: np.random.Generator, n_subjects: int, prevalence: float, k: int):
    """``k`` data sets as columns: ``n_subjects`` x 4 scans, ICC 0.7, labels independent of the values."""
    subjects = np.repeat(np.arange(n_subjects), 4)
    y_subject = np.zeros(n_subjects)
    y_subject[rng.permutation(n_subjects)[: int(round(prevalence * n_subjects))]] = 1
    x = np.sqrt(0.7) * rng.standard_normal((n_subjects, k))[subjects] + np.sqrt(0.3) * rng.standard_normal((4 * n_subjects, k))
    return x, y_subject[subjects], subjects


@pytest.mark.parametrize("prevalence", [0.25, 0.5])
def test_label_permutation_type_one_error_on_clustered_data(prevalence):
    """4,000 null data sets (80 x 50 columns; a new label draw per 50), 60 subjects x 4 scans, ICC 0.7, 199
    permutations: the share with p <= 0.05 must be <= 0.06. A scan-level permutation of the same data,
    which ignores the subjects, rejects far more often: the test can fail."""
    rng = np.random.default_rng(int(prevalence * 100))
    subject_level, scan_level = [], []
    for rep in range(80):
        x, y, subjects = clustered_null(rng, 60, prevalence, 50)
        subject_level.append(inf.label_permutation_test(x, y, subjects, 199, seed=rep)[1] <= 0.05)
        if rep < 10:
            scan_level.append(inf.label_permutation_test(x, y, np.arange(y.size), 199, seed=rep)[1] <= 0.05)
    type1 = float(np.mean(subject_level))
    assert type1 <= 0.06, type1  # measured 0.048 (0.25) and 0.055 (0.5)
    assert float(np.mean(scan_level)) >= 0.15  # measured 0.18 and 0.17


def settings(measures=("label_gap",), describe=(), n_resamples=499, n_permutations=999, seed=0):
    return inf.CallSettings(tuple(measures), tuple(describe), 0.05, n_permutations, n_resamples, 0.95, seed)


def test_top1_frequency_of_the_label_gap_recomputes_both_classes():
    rng = np.random.default_rng(3)
    subjects = np.repeat(np.arange(40), 2)
    y = np.repeat((np.arange(40) % 4 == 0).astype(float), 2)  # 10 patients of 40
    values = rng.normal(size=(80, 6))
    values[:, 3] += 2.0  # large everywhere: no gap
    values[:, 4] += 1.5 * y  # a gap
    freq = inf.top1_frequency(values, subjects, 2000, seed=0, labels=y)
    assert freq.sum() == pytest.approx(1.0) and freq[4] >= 0.99
    assert inf.top1_frequency(values, subjects, 2000, seed=0)[3] >= 0.99  # without labels: the pooled mean


@pytest.mark.parametrize("every", [2, 4])
def test_calls_test_the_trained_gap_and_describe_stored_measures(every):
    trained, null, labels = planted(n_null=2, seed=0, sfm_bias=2.0, every=every)
    calls, contrasts = inf.calls_and_contrasts(
        trained, null, labels, settings(describe=["mass_share_abs"]), contrast_method="shapley_road"
    )
    assert list(calls.columns) == list(inf.CALLS_COLUMNS)
    gap = calls[calls["measure"] == "label_gap"].set_index("layer")
    assert gap.index.tolist() == list(LAYERS) and set(gap["kind"]) == {"test"}
    assert bool(gap.loc["dfm", "driving"]) and gap["driving"].sum() == 1
    assert gap.loc["dfm", "p_value"] == pytest.approx(1 / 1000)
    # trained gap = mean(+1 | patients) - mean(-1 | controls) = 2 up to noise, at 50 % and at 25 % patients
    assert gap.loc["dfm", "estimate"] == pytest.approx(2.0, abs=0.4)
    y = labels.to_numpy()
    dfm = trained[(trained["layer"] == "dfm") & (trained["measure"] == "mass_pos")]["value"].to_numpy() * 2 - \
        trained[(trained["layer"] == "dfm") & (trained["measure"] == "mass_abs")]["value"].to_numpy()
    assert gap.loc["dfm", "estimate"] == pytest.approx(dfm[y == 1].mean() - dfm[y == 0].mean(), abs=1e-9)
    ci = cluster_bootstrap_gap(dfm, y, [sid.split("_")[0] for sid in labels.index], 499, 0.95, seed=0)
    assert (gap.loc["dfm", "ci_low"], gap.loc["dfm", "ci_high"]) == pytest.approx((ci.ci_low[0], ci.ci_high[0]))
    assert gap.loc["dfm", "ci_low"] > 1.0 and gap.loc["dfm", "top1_frequency"] == pytest.approx(1.0)
    # Null models are a diagnostic: their gap is reported, it is not subtracted.
    assert abs(gap.loc["dfm", "null_mean"]) < 0.4 and set(gap["n_null_models"]) == {2}
    # The SFM bias (same in every model) is no label gap ...
    assert abs(gap.loc["sfm", "estimate"]) < 0.3 and not gap.loc["sfm", "driving"]
    # ... but the raw share puts the SFM first in trained and null models alike: described, never called.
    share = calls[calls["measure"] == "mass_share_abs"].set_index("layer")
    assert set(share["kind"]) == {"description"}
    assert share["estimate"].idxmax() == "sfm" and share["null_mean"].idxmax() == "sfm"
    assert share["p_value"].isna().all() and share["driving"].isna().all() and share["ci_low"].notna().all()
    rows = contrasts.set_index("contrast")
    assert rows.loc["dfm_minus_muscle", "p_holm"] <= 0.05 and rows.loc["dfm_minus_muscle", "estimate"] > 1.5
    assert set(contrasts["test"]) == {inf.TWO_SIDED}
    # Without null models the calls are the same numbers; only the diagnostic is empty.
    alone, _ = inf.calls_and_contrasts(trained, None, labels, settings(describe=["mass_share_abs"]))
    pd.testing.assert_series_equal(alone["p_holm"], calls["p_holm"])
    assert alone["null_mean"].isna().all() and set(alone["n_null_models"]) == {0}
    with pytest.raises(ValueError, match="null_model"):
        inf.calls_and_contrasts(trained, null.drop(columns="null_model"), labels, settings())


def test_a_null_model_of_one_fold_is_scored_on_the_scans_it_saw():
    """null.folds: a null model scores one fold's held-out scans, a subset of the trained models'. Its gap is
    the difference in means on those scans (by hand: 4 subjects, one scan each); a scan the trained models
    did not score is refused."""
    scans, subjects = ["a", "b", "c", "d", "e", "f"], ["a", "b", "c", "d", "e", "f"]
    labels = pd.Series([0, 0, 1, 1, 0, 1], index=scans)
    trained = score_table(np.ones((6, 6)), scans, subjects)
    sub = np.zeros((4, 6))
    sub[:, LAYERS.index("dfm")] = [1.0, 3.0, 6.0, 10.0]  # scans a, b (controls), c, d (patients)
    null = score_table(sub, scans[:4], subjects[:4]).assign(null_model=0)
    calls, _ = inf.calls_and_contrasts(trained, null, labels, settings(n_permutations=99, n_resamples=99))
    gap = calls[calls["measure"] == "label_gap"].set_index("layer")
    assert gap.loc["dfm", "null_mean"] == pytest.approx((6 + 10) / 2 - (1 + 3) / 2)
    assert gap.loc["muscle", "null_mean"] == pytest.approx(0.0) and set(gap["n_null_models"]) == {1}
    stray = score_table(np.zeros((1, 6)), ["z"], ["z"]).assign(null_model=0)
    with pytest.raises(ValueError, match=r"null model 0 scored scans \['z'\] that the trained models did not"):
        inf.calls_and_contrasts(trained, stray, pd.concat([labels, pd.Series({"z": 0})]), settings())


def test_a_stored_measure_is_refused_as_a_test():
    trained, null, labels = planted(n_null=1, seed=0)
    with pytest.raises(ValueError, match=r"calls.measures: mass_share_abs cannot be tested.*calls.describe"):
        inf.calls_and_contrasts(trained, null, labels, settings(measures=["label_gap", "mass_share_abs"]))
    with pytest.raises(ValueError, match="calls.describe: label_gap is a test"):
        inf.check_measures(["label_gap"], ["label_gap"])


@pytest.mark.parametrize("every", [2, 4])
def test_null_cohort_calls_nothing(every):
    trained, null, labels = planted(n_null=2, seed=3, effect=0.0, sfm_bias=2.0, every=every)
    calls, _ = inf.calls_and_contrasts(trained, null, labels, settings(n_resamples=299))
    assert not calls["driving"].any() and calls["p_holm"].min() > 0.05


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
    trained = score_table(shapley_from_values(trained_v, 6), scans, scans, "shapley_background")
    args = (trained, None, labels, settings(n_resamples=199))
    plain = inf.calls_and_contrasts(*args)[0].set_index("layer")
    # Shapley gives the deep fat half of the interaction: 0.75 logits of label gap, called driving.
    assert plain.loc["deep_fat", "estimate"] == pytest.approx(0.75, abs=0.25) and bool(plain.loc["deep_fat", "driving"])
    cv = inf.ConditionalValues(scans, G.conditional_shapley(trained_v, 6))
    calls, contrasts = inf.calls_and_contrasts(*args, conditional={("bmode", "shapley_background"): cv})
    calls = calls.set_index("layer")
    # Same estimate and p_value; only p_holm and driving change.
    pd.testing.assert_series_equal(calls["estimate"], plain["estimate"])
    pd.testing.assert_series_equal(calls["p_value"], plain["p_value"])
    expected = {"dfm"} | ({"muscle"} if muscle else set())
    assert set(calls.index[calls["driving"].to_numpy(dtype=bool)]) == expected
    pairs = contrasts.set_index("contrast")
    assert set(pairs.loc[pairs.index.str.contains("_without_"), "test"]) == {inf.CONDITIONAL}
    # With the DFM held absent the deep fat has no gap; the DFM without the deep fat keeps its own 1 logit.
    assert abs(pairs.loc["deep_fat_without_dfm", "estimate"]) < 0.25
    assert pairs.loc["deep_fat_without_dfm", "p_holm"] > 0.05
    assert pairs.loc["dfm_without_deep_fat", "estimate"] == pytest.approx(1.0, abs=0.25)
    assert calls.loc["deep_fat", "p_holm"] == pairs.loc["deep_fat_without_dfm", "p_holm"]
    if muscle:  # two real drivers survive each other's removal
        assert pairs.loc["muscle_without_dfm", "p_holm"] <= 0.05 and pairs.loc["dfm_without_muscle", "p_holm"] <= 0.05


def test_load_conditional_reads_the_trained_runs_by_their_stored_identity(tmp_path):
    """Each per-model file names its modality and null replicate inside; file names and folders are not read.
    Only its exact-Shapley methods are read (a Grad-CAM map beside them is not), and null-model files are
    skipped (the calls do not subtract null models)."""
    import pandas as pd

    from layer.attribution_files import Attribution, save_model_attributions
    from layer.io import save_arrays

    rng = np.random.default_rng(0)
    values = {run: rng.normal(size=(3, 64)) for run in (None, 0)}
    ids, qc = ["s0", "s1", "s2"], pd.DataFrame(columns=["scan_id", "check", "value"])
    for i, (run, v) in enumerate(values.items()):
        results = {
            "gradcam": Attribution("maps", np.zeros((3, 1, 2, 2, 2)), ids, ("all",), qc),
            "shapley_background": Attribution("scores", np.zeros((3, 1, 6)), ids, ("all",), qc, coalitions=v),
        }
        save_model_attributions(str(tmp_path / f"job{i}.npz"), results, modality="fused", fold=0, null_model=run)
    paths = sorted(str(p) for p in tmp_path.glob("job*.npz"))
    conditional = inf.load_conditional(paths)
    assert list(conditional) == [("fused", "shapley_background")]
    cv = conditional[("fused", "shapley_background")]
    assert cv.scans == ["s0", "s1", "s2"] and cv.trained.shape == (3, 6, 6)
    np.testing.assert_allclose(cv.trained, G.conditional_shapley(values[None], 6))
    save_arrays(tmp_path / "elsewhere.npz", scores=np.zeros((3, 1, 6)))
    with pytest.raises(ValueError, match="not a per-model attribution file"):
        inf.load_conditional([str(tmp_path / "elsewhere.npz")])

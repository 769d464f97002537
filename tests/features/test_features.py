"""Per-layer image statistics by hand, the patients-minus-controls differences and the image-level oracle
on data with known answers."""

import numpy as np
import pandas as pd
import pytest

from layer.features.compare import DIFFERENCE_COLUMNS, feature_differences, image_oracle
from layer.features.measure import IMAGE_FEATURES, scan_features
from layer.names import LAYERS


def test_scan_features_by_hand():
    # depth 4 x 2 columns (1 x 2 lateral/elevation); dermis 1 voxel in column 0, 2 in column 1
    labels = np.array([[[1, 1]], [[2, 1]], [[6, 6]], [[6, 6]]])
    bmode = np.array([[[0.2, 0.4]], [[0.9, 0.6]], [[0.1, 0.3]], [[0.5, 0.7]]])
    swe = np.array([[[1.0, np.nan]], [[2.0, 3.0]], [[4.0, 4.0]], [[np.nan, np.nan]]])
    f = pd.DataFrame(scan_features(bmode, swe, labels, depth_mm=0.8), index=list(LAYERS), columns=list(IMAGE_FEATURES))
    assert f.loc["dermis", "thickness_mm"] == pytest.approx(3 * 0.8 / 2)
    assert f.loc["dermis", "echo_mean"] == pytest.approx((0.2 + 0.4 + 0.6) / 3)
    assert f.loc["dermis", "echo_sd"] == pytest.approx(np.std([0.2, 0.4, 0.6]))
    assert f.loc["dermis", "swe_mean"] == pytest.approx((1.0 + 3.0) / 2)  # the NaN voxel has no speed
    assert f.loc["superficial_fat", "thickness_mm"] == pytest.approx(0.8 / 2)
    assert f.loc["muscle", "swe_mean"] == pytest.approx(4.0) and f.loc["muscle", "echo_sd"] == pytest.approx(np.std([0.1, 0.3, 0.5, 0.7]))
    assert f.loc["sfm", "thickness_mm"] == 0.0 and np.isnan(f.loc["sfm", ["echo_mean", "echo_sd", "swe_mean"]]).all()
    bmode_only = scan_features(bmode, None, labels, depth_mm=0.8)
    assert np.isnan(bmode_only[:, 3]).all() and np.allclose(bmode_only[:, :3], f.to_numpy()[:, :3], equal_nan=True)
    with pytest.raises(ValueError, match="differ from the map"):
        scan_features(bmode[:2], swe, labels, 0.8)


def cohort(n_subjects: int, effect: float, prevalence: float, seed: int, scans: int = 4, icc: float = 0.7) -> pd.DataFrame:
    """Per scan x layer table: every statistic N(0, 1) with subject ICC ``icc``; the DFM's echo mean
    shifted by ``effect`` subject SDs in patients (the planted d of a subject-level feature)."""
    rng = np.random.default_rng(seed)
    label = (np.arange(n_subjects) < round(prevalence * n_subjects)).astype(int)
    rows = []
    for s in range(n_subjects):
        subject = rng.normal(0, np.sqrt(icc), size=(len(LAYERS), len(IMAGE_FEATURES)))
        for k in range(scans):
            x = subject + rng.normal(0, np.sqrt(1 - icc), size=subject.shape)
            x[LAYERS.index("dfm"), 1] += effect * label[s]
            for i, layer in enumerate(LAYERS):
                rows.append({"scan_id": f"s{s:03d}_{k}", "subject_id": f"s{s:03d}", "label": int(label[s]),
                             "layer": layer, **dict(zip(IMAGE_FEATURES, x[i]))})
    return pd.DataFrame(rows)


def test_differences_by_hand_on_one_scan_per_subject():
    table = cohort(6, 0.0, 0.5, seed=1, scans=1)
    out = feature_differences(table, 199, 0.95, seed=0).set_index(["layer", "feature"])
    assert list(out.reset_index().columns) == list(DIFFERENCE_COLUMNS)
    dfm = table[table["layer"] == "dfm"]
    expected = dfm.loc[dfm["label"] == 1, "echo_mean"].mean() - dfm.loc[dfm["label"] == 0, "echo_mean"].mean()
    assert out.loc[("dfm", "echo_mean"), "difference"] == pytest.approx(expected)
    assert out.loc[("dfm", "echo_mean"), "patients"] - out.loc[("dfm", "echo_mean"), "controls"] == pytest.approx(expected)
    assert len(out) == len(LAYERS) * len(IMAGE_FEATURES) and set(out["n_subjects"]) == {6}


@pytest.mark.parametrize("prevalence", [0.5, 0.25])
def test_differences_recover_a_planted_shift_and_its_d(prevalence):
    """Subject d 1.0 of the DFM echo (ICC 0.7, 4 scans): the interval covers the true scan-level difference
    (1.0) and excludes 0; d is read on the subject means' scale; a null statistic's interval covers 0."""
    out = feature_differences(cohort(240, 1.0, prevalence, seed=3), 999, 0.95, seed=0).set_index(["layer", "feature"])
    dfm = out.loc[("dfm", "echo_mean")]
    assert dfm["ci_low"] <= 1.0 <= dfm["ci_high"] and dfm["ci_low"] > 0.5
    # subject means: SD sqrt(0.7 + 0.3 / 4) = 0.88, so d = 1 / 0.88 = 1.14
    assert dfm["d"] == pytest.approx(1.0 / np.sqrt(0.7 + 0.3 / 4), abs=0.2)
    null = out.loc[("muscle", "echo_mean")]
    assert null["ci_low"] <= 0.0 <= null["ci_high"]


def test_image_oracle_sees_a_planted_echo_shift_only_in_modalities_that_show_echo():
    table = cohort(200, 1.5, 0.5, seed=5)
    oracle = image_oracle(table, ["bmode", "swe", "fused"], n_folds=5, n_resamples=199, confidence_level=0.95,
                          seed=0).set_index("modality")
    assert oracle.loc["bmode", "auc"] > 0.8 and oracle.loc["fused", "auc"] > 0.75
    # SWE models see thickness and speed, not echo: nothing to learn
    assert oracle.loc["swe", "ci_low"] < 0.5 < oracle.loc["swe", "ci_high"] + 0.05
    assert oracle.loc["bmode", "ci_low"] < oracle.loc["bmode", "auc"] < oracle.loc["bmode", "ci_high"]
    assert set(oracle["n_subjects"]) == {200}

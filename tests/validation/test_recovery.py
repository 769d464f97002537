"""Recovery metrics on hand-made calls whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from layer.validation import recovery as rec
from layer.names import LAYERS

TRUTH = {
    "expected_marginal_d": [
        {"layer": "dfm", "feature": "echogenicity", "d": 1.5},
        {"layer": "muscle", "feature": "stiffness", "d": -0.75},
        {"layer": "deep_fat", "feature": "thickness", "d": 0.0},
    ]
}


def family(excess: list[float], driving: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"layer": list(LAYERS), "estimate": excess, "driving": driving})


def test_planted_strength_follows_what_each_modality_can_see():
    assert rec.planted_strength(TRUTH, "bmode") == {**dict.fromkeys(LAYERS, 0.0), "dfm": 1.5}
    assert rec.planted_strength(TRUTH, "swe") == {**dict.fromkeys(LAYERS, 0.0), "muscle": 0.75}
    assert rec.planted_strength(TRUTH, "fused")["muscle"] == 0.75


def test_recovery_row_by_hand():
    strength = rec.planted_strength(TRUTH, "fused")  # drivers dfm (1.5) and muscle (0.75)
    # excess ranks: dfm 1st, superficial_fat 2nd, muscle 3rd; sfm wrongly called driving
    row = rec.recovery_row(
        family([0.0, 0.5, 0.1, -0.2, 1.0, 0.3], [False, False, True, False, True, False]), strength, 0.8, 0.75, 0.2
    )
    assert row["driver_layers"] == "dfm,muscle"
    assert row["top1_accuracy"] == 1.0
    assert row["driver_rank"] == pytest.approx((1 + 3) / 2)
    assert row["recall"] == 0.5 and row["false_positive_rate"] == pytest.approx(1 / 4)
    assert row["relevance_mass"] == pytest.approx(1.3 / 1.9) and row["relevance_mass_chance"] == pytest.approx(2 / 6)
    assert row["rank_accuracy"] == 0.5 and row["rank_accuracy_chance"] == pytest.approx(2 / 6)
    planted = [0, 0, 0, 0, 1.5, 0.75]
    assert row["spearman"] == pytest.approx(spearmanr(planted, [0.0, 0.5, 0.1, -0.2, 1.0, 0.3]).statistic)
    # Null scenario: no driver -> driver numbers undefined, false positives still counted.
    null = rec.recovery_row(family([0.1] * 6, [False] * 5 + [True]), dict.fromkeys(LAYERS, 0.0), 0.5, 0.4, 0.0)
    assert null["driver_layers"] == "none" and np.isnan(null["top1_accuracy"]) and np.isnan(null["recall"])
    assert null["false_positive_rate"] == pytest.approx(1 / 6)


def test_auc_without_drivers_from_coalition_values():
    # Additive game per scan: the DFM carries the label, the muscle noise.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    weights = np.zeros((40, 6))
    weights[:, LAYERS.index("dfm")] = labels * 2.0 - 1.0
    weights[:, LAYERS.index("muscle")] = rng.normal(0, 1, 40)
    bits = (np.arange(64)[:, None] >> np.arange(6)) & 1
    values = weights @ bits.T
    full, without = rec.auc_without(values, labels, ["dfm"])
    assert full > 0.85 and without == pytest.approx(roc_auc_score(labels, weights[:, LAYERS.index("muscle")]))
    assert rec.auc_without(values, labels, []) == (full, full)


def test_summary_counts_only_learned_rows():
    rows = pd.DataFrame({
        "scenario": ["a", "b", "null"], "modality": "bmode", "method": "m", "replicate": 0,
        "driver_layers": ["dfm", "dfm", "none"], "model_auc": [0.9, 0.6, 0.5], "model_auc_low": [0.8, 0.5, 0.4],
        "top1_accuracy": [1.0, 0.0, np.nan], "recall": [1.0, 0.0, np.nan], "spearman": [0.8, 0.1, np.nan],
        "false_positive_rate": [0.0, 0.2, 0.1], "image_oracle_auc": [0.92, 0.85, 0.55],
    })
    summary = rec.summary_table(rows, learned_auc=0.7).iloc[0]
    assert list(summary.index) == list(rec.SUMMARY_COLUMNS)
    assert summary["n_learned"] == 1 and summary["top1_accuracy"] == 1.0 and summary["recall"] == 1.0
    assert summary["false_positive_rate"] == pytest.approx(0.1) and summary["false_positive_rate_null"] == 0.1
    # Gaps of the two driven rows: 0.92 - 0.9 = 0.02 and 0.85 - 0.6 = 0.25; median 0.135, one above 0.05.
    assert summary["n_driven"] == 2 and summary["oracle_gap_median"] == pytest.approx(0.135)
    assert summary["n_gap_above"] == 1


def test_tables_keep_words_that_pandas_would_read_as_missing(tmp_path):
    from layer.io import read_tsv, write_tsv

    table = pd.DataFrame({"scenario": ["null", "NA", "None"], "value": [1.0, np.nan, 2.0]})
    write_tsv(table, tmp_path / "t.tsv")
    back = read_tsv(tmp_path / "t.tsv")
    assert back["scenario"].tolist() == ["null", "NA", "None"]
    assert np.isnan(back["value"].iloc[1])


def _rungs(recalls: dict[str, tuple[int, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"scenario": name, "modality": "fused", "method": "m", "replicate": 0,
                          "driver_layers": "dfm,muscle", "recall": recall, "model_auc": 0.7, "n_subjects": n}
                         for name, (n, recall) in recalls.items()])  # fmt: skip


def test_power_table_and_subjects_needed_by_hand():
    rows = pd.concat([
        _rungs({"realistic_n60": (60, 0.0), "realistic_n120": (120, 0.5), "realistic": (240, 1.0)}),
        _rungs({"dfm_echogenicity": (240, 1.0)}),  # one size only: no curve
        pd.DataFrame([{"scenario": "null", "modality": "fused", "method": "m", "replicate": 0, "driver_layers": "none",
                       "recall": np.nan, "model_auc": 0.5, "n_subjects": 240}]),  # fmt: skip
    ], ignore_index=True)
    power = rec.power_table(rows)
    assert list(power.columns) == list(rec.POWER_COLUMNS)
    assert power["family"].unique().tolist() == ["realistic"]
    assert power["n_subjects"].tolist() == [60, 120, 240] and power["recall"].tolist() == [0.0, 0.5, 1.0]
    needed = rec.subjects_needed(power, 0.8).iloc[0]
    # 0.8 lies 0.6 of the way from 0.5 (120) to 1.0 (240) in log subjects: 120 * 2 ** 0.6 = 181.9.
    assert needed["subjects_needed"] == pytest.approx(120 * 2**0.6) and needed["largest_n"] == 240
    short = rec.subjects_needed(rec.power_table(_rungs({"a_n60": (60, 0.2), "a": (240, 0.6)})), 0.8).iloc[0]
    assert np.isnan(short["subjects_needed"])  # the ladder never reaches 0.8

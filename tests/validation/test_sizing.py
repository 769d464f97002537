"""Scenario sizing (layer.validation.sizing): the probit fit by hand, the in-memory measurement equal to the
workflow's written-cohort measurement, and a planted effect sized on a rendered cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from layer.features.table import feature_table
from layer.synth import SynthConfig, synthesize_cohort
from layer.validation.sizing import (
    LADDER_COLUMNS,
    SIZING_COLUMNS,
    ladder_point,
    probit_slope,
    rendered_features,
    single_driver,
    size_strengths,
)

SMALL = {"shape": (32, 16, 16), "spacing": (1.2, 2.5, 2.5)}  # the smoke preset's volumes


def _ladder(layer: str, feature: str, slope: float, ds=(1.0, 2.0, 3.0)) -> pd.DataFrame:
    return pd.DataFrame([{"layer": layer, "feature": feature, "modality": "bmode", "planted_d": d,
                          "image_d": np.nan, "oracle_auc": float(sps.norm.cdf(slope * d)), "n_subjects": 120,
                          "scans_per_subject": 2, "seed": 501} for d in ds], columns=list(LADDER_COLUMNS))  # fmt: skip


def test_probit_slope_by_hand():
    # AUC = Phi(0.5 d) exactly: slope 0.5; two rungs 0.60 and 0.80 by hand: z = 0.2533, 0.8416,
    # slope = (1 * 0.2533 + 2 * 0.8416) / (1 + 4) = 0.3873.
    assert probit_slope([1, 2, 3], sps.norm.cdf([0.5, 1.0, 1.5])) == pytest.approx(0.5)
    assert probit_slope([1, 2], [0.60, 0.80]) == pytest.approx(0.3873, abs=1e-4)


def test_size_strengths_by_hand():
    ladder = pd.concat([_ladder("dfm", "echogenicity", 0.5), _ladder("sfm", "texture", 0.3),
                        _ladder("muscle", "thickness", -0.1)])  # fmt: skip
    out = size_strengths(ladder, 0.85).set_index(["layer", "feature"])
    assert list(out.reset_index().columns) == list(SIZING_COLUMNS)
    # Phi^-1(0.85) = 1.0364; / 0.5 = 2.0729, rounded up to 2.1; / 0.3 = 3.455 > 3: not testable, AUC at the
    # bound Phi(0.9) = 0.816; a negative slope never reaches the target.
    assert out.loc[("dfm", "echogenicity"), "d"] == pytest.approx(2.1)
    assert out.loc[("dfm", "echogenicity"), "testable"]
    assert not out.loc[("sfm", "texture"), "testable"] and np.isnan(out.loc[("sfm", "texture"), "d"])
    assert out.loc[("sfm", "texture"), "auc_at_bound"] == pytest.approx(0.8159, abs=1e-4)
    assert "0.82 at the bound d 3" in out.loc[("sfm", "texture"), "reason"]
    assert not out.loc[("muscle", "thickness"), "testable"]
    # Layers in LAYERS order: dermis < ... < dfm < muscle.
    assert list(out.index.get_level_values("layer")) == ["sfm", "dfm", "muscle"]


def test_rendered_features_equal_the_written_cohorts_table(tmp_path):
    cfg = single_driver({"n_subjects": 4, "scans_per_subject": 2, "seed": 7, **SMALL}, "deep_fat", "stiffness", 2.0)
    sheet = synthesize_cohort(cfg, tmp_path)
    for col in ("bmode", "swe", "layers"):
        sheet[col] = [str(tmp_path / p) for p in sheet[col]]
    written = feature_table(sheet).sort_values(["scan_id", "layer"]).reset_index(drop=True)
    memory = rendered_features(cfg).sort_values(["scan_id", "layer"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(memory, written, check_dtype=False, rtol=1e-6)


def test_single_driver_keeps_the_cohort_and_plants_one_effect():
    cfg = single_driver({"preset": "realistic", "n_subjects": 30, "chunks": 4, "annotated_fraction": 0.5, "seed": 3},
                        "sfm", "thickness", 1.5)  # fmt: skip
    assert cfg.preset == "custom" and cfg.n_subjects == 30 and cfg.seed == 3
    assert [e.as_dict() for e in cfg.effects] == [{"layer": "sfm", "feature": "thickness", "d": 1.5}]


def test_a_strong_planted_stiffness_shows_in_the_image_and_the_swe_oracle():
    base = {"n_subjects": 60, "scans_per_subject": 1, "seed": 11, **SMALL}
    strong = ladder_point(base, "muscle", "stiffness", 3.0, 3)
    none = ladder_point(base, "muscle", "stiffness", 0.0, 3)
    assert strong["modality"] == "swe" and none["modality"] == "swe"
    # Planted 3 in a thick layer: most of it reaches the image (ratio ~0.9 at default size) and the oracle.
    assert strong["image_d"] > 1.5 and strong["oracle_auc"] > 0.8
    assert abs(none["image_d"]) < 0.8 and none["oracle_auc"] < 0.75


def test_the_grids_strengths_are_the_committed_sizing_table():
    """Every single-driver scenario of the default grid plants the d of docs/validation/sizing.tsv, and a
    cell that table declares not testable is not in the grid (nothing set by hand, nothing from results)."""
    from pathlib import Path

    import yaml

    from layer.config import defaults
    from layer.io import read_tsv

    root = Path(__file__).resolve().parents[2]
    sizing = read_tsv(root / "docs" / "validation" / "sizing.tsv").set_index(["layer", "feature"])
    for scenarios in (yaml.safe_load((root / "config" / "config.yaml").read_text())["validation"]["scenarios"],
                      defaults("validation")["scenarios"]):  # fmt: skip
        for (layer, feature), row in sizing.iterrows():
            name = f"{layer}_{feature}"
            if not row["testable"]:
                assert name not in scenarios
                continue
            assert scenarios[name]["effects"] == [{"layer": layer, "feature": feature, "d": row["d"]}]
        assert sum(n.split("_")[-1] in ("thickness", "echogenicity", "texture", "stiffness") for n in scenarios) == int(
            sizing["testable"].sum())


def test_size_scenarios_command(tmp_path, capsys):
    from layer.cli import main

    assert main(["size-scenarios", "--target-auc", "1.5"]) == 2
    assert "--target-auc must be between 0.5 and 1" in capsys.readouterr().err
    out = tmp_path / "sizing"
    code = main(["size-scenarios", "--n-subjects", "12", "--scans-per-subject", "1", "--cell", "muscle:stiffness",
                 "--ladder", "2", "3", "--workers", "1", "--out", str(out)])  # fmt: skip
    assert code == 0 and "of 1 testable" in capsys.readouterr().out
    ladder = pd.read_csv(out / "ladder.tsv", sep="\t")
    sizing = pd.read_csv(out / "sizing.tsv", sep="\t")
    assert list(ladder.columns) == list(LADDER_COLUMNS) and list(sizing.columns) == list(SIZING_COLUMNS)
    assert ladder["planted_d"].tolist() == [2.0, 3.0] and set(ladder["modality"]) == {"swe"}
    assert (ladder["n_subjects"] == 12).all() and (ladder["seed"] == 501).all()  # synthetic.seed 1 + 500
    assert len(sizing) == 1 and sizing["layer"].iloc[0] == "muscle"

"""Scenario strengths sized by what the images show, before any network is trained.

Why: a planted Cohen's d is a property of the drawn physical features; the rendered images carry less of
it (speckle, partial volume, the SWE resolution: docs/synthetic-cohort.md, "Planted d against image d"),
so a grid with one d for every layer x feature asks the networks to learn effects the pixels do not hold
and judges the recovery bars on nothing. Here each single-driver scenario's d is set so that the
**image-level oracle** (:func:`layer.features.compare.oracle_predictions`: a logistic regression on the
per-layer image statistics of the feature's own modality, subject-level cross-validated) reaches a
stated AUC at the grid's cohort size. Only the synthetic cohort's own rendering and measurement enter;
no network and no attribution method is run, so no strength is set from the methods' results.

How: cohorts are rendered in memory (:func:`layer.synth.cohort.render_design`, the scans the workflow
writes) at a ladder of planted d on a sizing seed that no grid study uses, the oracle AUC is measured at
each rung, and the rungs are fitted on the probit scale: under the equal-variance binormal model
``AUC = Phi(d_image / sqrt 2)`` and the image d is proportional to the planted d (the measured
attenuation), so ``Phi^-1(AUC) = b d``; the least-squares slope through the origin gives
``d = Phi^-1(target) / b``. A cell whose d exceeds the synthetic cohort's bound on |d|
(:data:`layer.synth.config.MAX_ABS_D`) cannot reach the target here and is **not testable**, with the
oracle AUC it reached at the bound as its reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from layer.features.compare import modality_columns, oracle_predictions, subject_d, subject_means
from layer.features.measure import SHOWS, scan_features
from layer.features.table import scan_rows
from layer.names import FEATURES, LAYERS, VISIBLE_FEATURES
from layer.synth.cohort import render_design
from layer.synth.config import CONFIG_KEYS, MAX_ABS_D, SynthConfig
from layer.synth.truth import draw_design

#: The modality in which each feature is sized: the single-input model that shows it
#: (:data:`layer.names.VISIBLE_FEATURES`; fused shows every feature).
HOME_MODALITY: dict[str, str] = {
    feature: next(m for m in ("bmode", "swe") if feature in VISIBLE_FEATURES[m]) for feature in FEATURES
}
#: Sizing seed = synthetic.seed + this: a draw no grid study uses (they take seed + 1000 r).
SIZING_SEED_OFFSET: int = 500
LADDER_COLUMNS: tuple[str, ...] = (
    "layer", "feature", "modality", "planted_d", "image_d", "oracle_auc", "n_subjects", "scans_per_subject", "seed",
)
SIZING_COLUMNS: tuple[str, ...] = (
    "layer", "feature", "modality", "target_auc", "slope", "d", "testable", "auc_at_bound", "reason",
)


def grid_cohort(**overrides: Any) -> tuple[dict[str, Any], int]:
    """The recovery grid's cohort (schema defaults of ``synthetic:`` under ``validation.cohort``) on the sizing
    seed, ``synthetic.seed + SIZING_SEED_OFFSET`` (grid studies use ``seed + 1000 r``), with ``overrides``
    that are not None; and the grid's number of folds."""
    from layer import config

    block = {**config.defaults("synthetic"), **config.defaults("validation")["cohort"]}
    block["seed"] = int(block["seed"]) + SIZING_SEED_OFFSET
    block.update({k: v for k, v in overrides.items() if v is not None})
    return block, int(config.defaults("split")["n_folds"])


def ladder_cells(cells: Sequence[tuple[str, str]], ladder: Sequence[float]) -> list[tuple[str, str, float]]:
    """(layer, feature, d) of every rung: ``cells`` (default every layer x feature) x ``ladder``."""
    chosen = list(cells) or [(layer, feature) for layer in LAYERS for feature in FEATURES]
    return [(layer, feature, float(d)) for layer, feature in chosen for d in ladder]


def single_driver(base: Mapping[str, Any], layer: str, feature: str, d: float) -> SynthConfig:
    """The synthetic cohort of ``base`` (a ``synthetic:`` block) with one planted effect and nothing else."""
    block = {k: v for k, v in base.items() if k in CONFIG_KEYS}
    return SynthConfig.from_mapping({**block, "preset": "custom", "effects": [{"layer": layer, "feature": feature,
                                                                               "d": d}]})  # fmt: skip


def rendered_features(cfg: SynthConfig) -> pd.DataFrame:
    """The per-scan x layer image statistics of ``cfg``'s cohort, rendered in memory and measured in the true
    layer maps: the rows ``layer_features.tsv`` would hold for the written cohort (same scans, same
    measurement), without writing a volume. ``[n_scans * 6]`` rows of FEATURE_TABLE_COLUMNS."""
    design = draw_design(cfg)
    parts = [
        scan_rows(str(scan.scan_id), str(scan.subject_id), int(scan.label),
                  scan_features(out.bmode, out.swe, out.layers.astype(np.int16), float(cfg.voxel_mm[0])))
        for scan, out in render_design(cfg, design)
    ]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def oracle_auc(subjects: pd.DataFrame, modality: str, n_folds: int, seed: int) -> float:
    """Subject-level cross-validated AUC of the image oracle in ``modality`` (its statistics of all six
    layers) on :func:`layer.features.compare.subject_means`, the number
    :func:`layer.features.compare.image_oracle` reports without its interval."""
    p = oracle_predictions(subjects, modality_columns(subjects, modality), n_folds, seed)
    return float(roc_auc_score(subjects["label"].to_numpy(dtype=int), p))


def ladder_point(base: Mapping[str, Any], layer: str, feature: str, d: float, n_folds: int) -> dict[str, Any]:
    """One rung: render ``base`` with ``layer:feature`` at ``d`` and measure the image d of the statistic
    that reads the feature and the oracle AUC in the feature's home modality (a row of LADDER_COLUMNS)."""
    cfg = single_driver(base, layer, feature, d)
    subjects = subject_means(rendered_features(cfg))
    modality = HOME_MODALITY[feature]
    return {
        "layer": layer, "feature": feature, "modality": modality, "planted_d": float(d),
        "image_d": subject_d(subjects, f"{layer}:{SHOWS[feature]}"),
        "oracle_auc": oracle_auc(subjects, modality, n_folds, cfg.seed),
        "n_subjects": cfg.n_subjects, "scans_per_subject": cfg.scans_per_subject, "seed": cfg.seed,
    }  # fmt: skip


def probit_slope(planted_d: Sequence[float], auc: Sequence[float]) -> float:
    """Least-squares slope through the origin of ``Phi^-1(AUC)`` on the planted d (AUCs clipped to
    [0.001, 0.999] so a perfect rung stays finite)."""
    d = np.asarray(planted_d, dtype=float)
    z = sps.norm.ppf(np.clip(np.asarray(auc, dtype=float), 0.001, 0.999))
    return float((d * z).sum() / (d * d).sum())


def size_strengths(ladder: pd.DataFrame, target_auc: float, bound: float = MAX_ABS_D) -> pd.DataFrame:
    """Per layer x feature of ``ladder`` (LADDER_COLUMNS): the planted d at which the oracle reaches
    ``target_auc`` (:func:`probit_slope`), rounded up to 0.05, and whether it is testable (d <= ``bound``).
    Columns SIZING_COLUMNS; ``auc_at_bound`` is the fitted oracle AUC at the bound."""
    z_target = float(sps.norm.ppf(target_auc))
    rows = []
    for layer in LAYERS:
        for feature in FEATURES:
            rungs = ladder[(ladder["layer"] == layer) & (ladder["feature"] == feature)]
            if rungs.empty:
                continue
            b = probit_slope(rungs["planted_d"], rungs["oracle_auc"])
            d = float(np.ceil(20 * z_target / b - 1e-9) / 20) if b > 0 else np.inf
            auc_bound = float(sps.norm.cdf(b * bound))
            testable = d <= bound
            rows.append({
                "layer": layer, "feature": feature, "modality": rungs["modality"].iloc[0],
                "target_auc": target_auc, "slope": b, "d": d if testable else np.nan, "testable": testable,
                "auc_at_bound": auc_bound,
                "reason": "" if testable else f"image oracle AUC {auc_bound:.2f} at the bound d {bound:g}",
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(SIZING_COLUMNS))


__all__ = [
    "HOME_MODALITY", "LADDER_COLUMNS", "SIZING_COLUMNS", "SIZING_SEED_OFFSET", "grid_cohort", "ladder_cells",
    "ladder_point", "oracle_auc", "probit_slope",
    "rendered_features", "single_driver", "size_strengths",
]

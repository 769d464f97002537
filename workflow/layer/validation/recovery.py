"""Ground-truth recovery: score the layer calls of a planted synthetic cohort against the planted truth.

Why: no published layer-saliency study shows that its method recovers known drivers. On a synthetic
cohort the planted effects are known (``ground_truth.json``), so every answer of the workflow can be
scored: did the model learn the effect, did it use the driver layer, and did the attribution point at it?

A layer is a **driver in a modality** when one of its planted features with a non-zero marginal Cohen's d
(``expected_marginal_d``: direct effect plus confounder loading) can show in that modality's input:
thickness, echogenicity and texture in B-mode; stiffness in SWE; all four in the fused model. Its planted
strength is the largest such |d|.

Per scenario x modality x method x replicate (one row of ``recovery.tsv``), on the family of the method's
calls on the channel that stands for the whole model (``all`` if present), measure ``label_gap``:

* ``model_auc`` (+ ``model_auc_low``): pooled out-of-fold AUC with its subject-level BCa lower bound;
* ``auc_drop_without_driver``: AUC of the trained models minus their AUC with every driver layer removed
  (exact coalition values of the Shapley run, so the removal is the checks' operator);
* ``top1_accuracy``: 1 if the layer with the largest label gap is a driver (pointing game), else 0;
* ``driver_rank``: mean rank (1 = largest gap) of the driver layers;
* ``spearman``: rank correlation of planted strength (0 for non-drivers) with the gap;
* ``relevance_mass``: share of the positive gap on driver layers (chance: drivers / 6);
* ``rank_accuracy``: share of the top-k layers (k = number of drivers) that are drivers (chance: k / 6);
* ``false_positive_rate``: non-driver layers called driving / non-driver layers;
* ``recall``: driver layers called driving / driver layers.

Driver-dependent numbers are NaN where a scenario has no driver in that modality (e.g. the null cohort).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from layer.names import LAYERS, N_LAYERS, VISIBLE_FEATURES

RECOVERY_COLUMNS: tuple[str, ...] = (
    "scenario", "modality", "method", "replicate", "driver_layers", "model_auc", "auc_drop_without_driver",
    "top1_accuracy", "driver_rank", "spearman", "false_positive_rate", "recall", "model_auc_low",
    "relevance_mass", "relevance_mass_chance", "rank_accuracy", "rank_accuracy_chance", "image_oracle_auc",
    "n_subjects",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "method", "modality", "n_learned", "top1_accuracy", "recall", "false_positive_rate", "false_positive_rate_null",
    "spearman", "n_driven", "oracle_gap_median", "n_gap_above",
)
#: A model this far below the image oracle has not learned what the images show (issue "The recovery proof").
ORACLE_GAP: float = 0.05


def planted_strength(truth: Mapping, modality: str) -> dict[str, float]:
    """Largest |marginal d| over the features of each layer that show in ``modality`` (0 = not a driver)."""
    strength = dict.fromkeys(LAYERS, 0.0)
    for effect in truth.get("expected_marginal_d", []):
        if effect["feature"] in VISIBLE_FEATURES[modality]:
            strength[effect["layer"]] = max(strength[effect["layer"]], abs(float(effect["d"])))
    return strength


def auc_without(coalitions: np.ndarray, labels: np.ndarray, removed: Sequence[str]) -> tuple[float, float]:
    """(AUC of the unchanged logits, AUC with the ``removed`` layers removed) from all 64 coalition values."""
    v = np.asarray(coalitions, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    if v.shape[1] != 2**N_LAYERS or not 0 < y.sum() < len(y):
        return float("nan"), float("nan")
    mask = 2**N_LAYERS - 1
    for layer in removed:
        mask &= ~(1 << LAYERS.index(layer))
    return float(roc_auc_score(y, v[:, -1])), float(roc_auc_score(y, v[:, mask]))


def recovery_row(
    family: pd.DataFrame, strength: Mapping[str, float], model_auc: float, model_auc_low: float, auc_drop: float
) -> dict[str, float | str]:
    """Recovery numbers of one family of calls (six rows: ``layer, estimate, driving``); see module doc."""
    calls = family.set_index("layer").reindex(list(LAYERS))
    excess = calls["estimate"].to_numpy(dtype=np.float64)
    driving = calls["driving"].astype(bool).to_numpy()
    planted = np.array([float(strength[layer]) for layer in LAYERS])
    driver = planted > 0
    k = int(driver.sum())
    order = np.argsort(-excess, kind="stable")
    rank = np.empty(N_LAYERS)
    rank[order] = np.arange(1, N_LAYERS + 1)
    positive = np.maximum(excess, 0.0)
    nan = float("nan")
    row: dict[str, float | str] = {
        "driver_layers": ",".join(layer for layer, d in zip(LAYERS, driver) if d) or "none",
        "model_auc": model_auc,
        "model_auc_low": model_auc_low,
        "auc_drop_without_driver": auc_drop if k else nan,
        "false_positive_rate": float(driving[~driver].mean()) if k < N_LAYERS else nan,
    }
    if k:
        row.update(
            top1_accuracy=float(driver[order[0]]),
            driver_rank=float(rank[driver].mean()),
            spearman=float(sps.spearmanr(planted, excess).statistic) if k < N_LAYERS else nan,
            recall=float(driving[driver].mean()),
            relevance_mass=float(positive[driver].sum() / positive.sum()) if positive.sum() > 0 else 0.0,
            relevance_mass_chance=k / N_LAYERS,
            rank_accuracy=float(driver[order[:k]].mean()),
            rank_accuracy_chance=k / N_LAYERS,
        )
    else:
        row.update(top1_accuracy=nan, driver_rank=nan, spearman=nan, recall=nan, relevance_mass=nan,
                   relevance_mass_chance=nan, rank_accuracy=nan, rank_accuracy_chance=nan)
    return row


def whole_model_channel(channels: Sequence[str]) -> str:
    """``all`` when several channels exist, else the only one."""
    channels = list(dict.fromkeys(channels))
    return "all" if "all" in channels else channels[0]


def recovery_table(
    scenario: str,
    replicate: int,
    calls: pd.DataFrame,
    truth: Mapping,
    performance: pd.DataFrame,
    drops: Mapping[str, float],
    measure: str = "label_gap",
    oracle: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Rows of ``recovery.tsv`` for one scenario replicate (every modality x method in ``calls``).

    ``performance``: ``layer.stats.tables.performance_table`` of the replicate; ``drops``: AUC drop without the
    drivers per modality (:func:`auc_without`); ``oracle``: the image-level oracle's AUC per modality
    (``image_oracle.tsv``, :func:`layer.features.compare.image_oracle`), what the model could have learned
    from the per-layer image statistics.
    """
    auc = performance[performance["metric"] == "auc"].set_index("modality")
    rows = []
    for (modality, method), family in calls[calls["measure"] == measure].groupby(["modality", "method"], sort=False):
        family = family[family["channel"] == whole_model_channel(family["channel"])]
        strength = planted_strength(truth, modality)
        row = recovery_row(family, strength, float(auc.loc[modality, "estimate"]), float(auc.loc[modality, "ci_low"]),
                           float(drops.get(modality, float("nan"))))
        rows.append({"scenario": scenario, "modality": modality, "method": method, "replicate": replicate, **row,
                     "image_oracle_auc": float((oracle or {}).get(modality, float("nan"))),
                     "n_subjects": int(truth.get("config", {}).get("n_subjects", 0)) or np.nan})  # fmt: skip
    return pd.DataFrame(rows, columns=list(RECOVERY_COLUMNS))


#: A scenario family's cohort-size ladder: ``realistic_n60`` is ``realistic`` at 60 subjects.
_SIZE_SUFFIX = re.compile(r"_n\d+$")
POWER_COLUMNS: tuple[str, ...] = ("family", "modality", "method", "n_subjects", "n_rows", "recall", "model_auc")
NEEDED_COLUMNS: tuple[str, ...] = ("family", "modality", "method", "target_recall", "subjects_needed", "largest_n")


def scenario_family(name: str) -> str:
    """The scenario a cohort-size rung belongs to: its name without a trailing ``_n<subjects>``."""
    return _SIZE_SUFFIX.sub("", name)


def power_table(recovery: pd.DataFrame) -> pd.DataFrame:
    """Recall of the planted drivers against the number of subjects: per scenario family (``realistic`` and
    its ``realistic_n*`` rungs) x modality x method x cohort size, the mean recall over the rows with a
    driver (seeds pooled). Only families run at two sizes or more. Columns :data:`POWER_COLUMNS`."""
    driven = recovery[recovery["driver_layers"] != "none"].assign(family=recovery["scenario"].map(scenario_family))
    rows = []
    for (family, modality, method), part in driven.groupby(["family", "modality", "method"], sort=True):
        if part["n_subjects"].nunique() < 2:
            continue
        for n, rung in part.groupby("n_subjects", sort=True):
            rows.append([family, modality, method, int(n), len(rung), rung["recall"].mean(), rung["model_auc"].mean()])
    return pd.DataFrame(rows, columns=list(POWER_COLUMNS))


def subjects_needed(power: pd.DataFrame, target: float = 0.8) -> pd.DataFrame:
    """Per family x modality x method of :func:`power_table`: the number of subjects at which recall first
    reaches ``target``, interpolated linearly in log subjects between the rungs that bracket it (NaN when the
    largest rung is below it: more subjects than the ladder holds). Columns :data:`NEEDED_COLUMNS`."""
    rows = []
    for (family, modality, method), part in power.groupby(["family", "modality", "method"], sort=True):
        part = part.sort_values("n_subjects")
        n, r = np.log(part["n_subjects"].to_numpy(dtype=float)), part["recall"].to_numpy(dtype=float)
        needed = np.nan
        if r[0] >= target:
            needed = float(np.exp(n[0]))
        else:
            for i in range(1, len(r)):
                if r[i] >= target > r[i - 1]:
                    needed = float(np.exp(n[i - 1] + (target - r[i - 1]) / (r[i] - r[i - 1]) * (n[i] - n[i - 1])))
                    break
        rows.append([family, modality, method, target, needed, int(part["n_subjects"].max())])
    return pd.DataFrame(rows, columns=list(NEEDED_COLUMNS))


def summary_table(recovery: pd.DataFrame, learned_auc: float = 0.7) -> pd.DataFrame:
    """Per method x modality: recovery over the rows whose model learned the effect (AUC lower bound >
    ``learned_auc``), false-positive rates over every row with non-driver layers and over null rows; over
    the rows with a driver (``n_driven``), the median of image oracle AUC minus model AUC and how many rows
    exceed :data:`ORACLE_GAP` (NaN and 0 where ``recovery`` has no ``image_oracle_auc``)."""
    rows = []
    for (method, modality), part in recovery.groupby(["method", "modality"], sort=True):
        driven = part[part["driver_layers"] != "none"]
        learned = driven[driven["model_auc_low"] > learned_auc]
        null = part[part["driver_layers"] == "none"]
        gap = driven["image_oracle_auc"] - driven["model_auc"] if "image_oracle_auc" in driven else pd.Series(dtype=float)
        rows.append([method, modality, len(learned), learned["top1_accuracy"].mean(), learned["recall"].mean(),
                     part["false_positive_rate"].mean(), null["false_positive_rate"].mean(),
                     learned["spearman"].mean(), len(driven), gap.median() if gap.notna().any() else np.nan,
                     int((gap > ORACLE_GAP).sum())])  # fmt: skip
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


__all__ = [
    "NEEDED_COLUMNS",
    "ORACLE_GAP",
    "POWER_COLUMNS",
    "RECOVERY_COLUMNS",
    "SUMMARY_COLUMNS",
    "VISIBLE_FEATURES",
    "auc_without",
    "planted_strength",
    "power_table",
    "recovery_row",
    "recovery_table",
    "scenario_family",
    "subjects_needed",
    "summary_table",
    "whole_model_channel",
]

"""Patients against controls on each per-layer image statistic, and the image-level oracle.

Both work on subjects: a subject's scans share its label, so the difference in means gets a subject-level
BCa interval (:func:`layer.stats.bootstrap.cluster_bootstrap_gap`, classes recomputed in every resample,
valid at any prevalence) and the oracle's cross-validation splits subjects, never a subject's scans.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from layer.features.measure import IMAGE_FEATURES, MODALITY_FEATURES
from layer.names import LAYERS
from layer.stats.bootstrap import cluster_bootstrap_gap, cluster_bootstrap_metric

DIFFERENCE_COLUMNS: tuple[str, ...] = (
    "layer", "feature", "patients", "controls", "difference", "ci_low", "ci_high", "d", "n_subjects",
)
ORACLE_COLUMNS: tuple[str, ...] = ("modality", "features", "auc", "ci_low", "ci_high", "n_subjects", "n_folds")


def subject_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: its label and the mean over its scans of every ``{layer}:{feature}``."""
    wide = table.pivot_table(index=["subject_id", "scan_id"], columns="layer", values=list(IMAGE_FEATURES))
    wide.columns = [f"{layer}:{feature}" for feature, layer in wide.columns]
    labels = table.groupby("subject_id")["label"].first()
    means = wide.groupby(level="subject_id").mean()
    return means.assign(label=labels.loc[means.index].to_numpy())


def subject_d(subjects: pd.DataFrame, column: str) -> float:
    """Cohen's d of one ``{layer}:{feature}`` column of :func:`subject_means`: patients' minus controls'
    mean over the pooled within-class SD of the subject means (NaN where the SD is 0 or undefined)."""
    per_subject = subjects[column]
    pos, neg = per_subject[subjects["label"] == 1].dropna(), per_subject[subjects["label"] == 0].dropna()
    pooled = np.sqrt(((len(pos) - 1) * pos.var() + (len(neg) - 1) * neg.var()) / max(len(pos) + len(neg) - 2, 1))
    return float((pos.mean() - neg.mean()) / pooled) if pooled > 0 else float("nan")


def modality_columns(subjects: pd.DataFrame, modality: str) -> list[str]:
    """The columns of :func:`subject_means` the image oracle of ``modality`` reads: every layer's statistics
    that modality shows (:data:`MODALITY_FEATURES`), those no scan has left out."""
    columns = [c for c in subjects.columns if c != "label" and c.split(":")[1] in MODALITY_FEATURES[modality]]
    return [c for c in columns if subjects[c].notna().any()]


def feature_differences(
    table: pd.DataFrame, n_resamples: int, confidence_level: float, seed: int
) -> pd.DataFrame:
    """Per layer x statistic: mean in patients' and controls' scans, their difference with a subject-level
    BCa interval, and ``d``, the difference in subject means over their pooled within-class SD (the scale
    of a planted effect). Columns :data:`DIFFERENCE_COLUMNS`; a statistic no scan has (``swe_mean`` of a
    B-mode-only cohort) is left out."""
    ordered = table.assign(layer=pd.Categorical(table["layer"], LAYERS)).sort_values(["layer", "scan_id"])
    rows = []
    subjects = subject_means(table)
    for feature in IMAGE_FEATURES:
        wide = ordered.pivot(index="scan_id", columns="layer", values=feature).reindex(columns=list(LAYERS))
        if wide.isna().all().all():
            continue
        meta = ordered.drop_duplicates("scan_id").set_index("scan_id").loc[wide.index]
        y = meta["label"].to_numpy(dtype=float)
        ci = cluster_bootstrap_gap(wide.to_numpy(), y, meta["subject_id"].astype(str).to_numpy(), n_resamples,
                                   confidence_level, seed)
        for j, layer in enumerate(LAYERS):
            x = wide[layer].to_numpy()
            rows.append({
                "layer": layer, "feature": feature,
                "patients": np.nanmean(x[y == 1]) if np.isfinite(x[y == 1]).any() else np.nan,
                "controls": np.nanmean(x[y == 0]) if np.isfinite(x[y == 0]).any() else np.nan,
                "difference": ci.estimate[j], "ci_low": ci.ci_low[j], "ci_high": ci.ci_high[j],
                "d": subject_d(subjects, f"{layer}:{feature}"),
                "n_subjects": int(ci.n_subjects[j]),
            })
    return pd.DataFrame(rows, columns=list(DIFFERENCE_COLUMNS))


def oracle_predictions(subjects: pd.DataFrame, columns: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of a standardised logistic regression on ``columns`` of the subject table
    (missing values imputed with the training folds' means), folds stratified by label."""
    x, y = subjects[list(columns)].to_numpy(dtype=float), subjects["label"].to_numpy(dtype=int)
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]


def image_oracle(
    table: pd.DataFrame, modalities: Sequence[str], n_folds: int, n_resamples: int, confidence_level: float,
    seed: int,
) -> pd.DataFrame:
    """Per modality: the subject-level cross-validated AUC of a logistic regression on the six layers'
    statistics that modality shows (:data:`layer.features.measure.MODALITY_FEATURES`), with a subject
    bootstrap interval. What a reader of the per-layer image statistics reaches; a network that is far
    below it has not learned what the images show. Columns :data:`ORACLE_COLUMNS`."""
    subjects = subject_means(table)
    rows = []
    for modality in modalities:
        p = oracle_predictions(subjects, modality_columns(subjects, modality), n_folds, seed)
        y = subjects["label"].to_numpy(dtype=int)
        ci = cluster_bootstrap_metric(y, p, subjects.index.to_numpy(), n_resamples, confidence_level, seed)
        auc = ci.columns.index("auc")
        rows.append({
            "modality": modality, "features": ",".join(MODALITY_FEATURES[modality]),
            "auc": roc_auc_score(y, p), "ci_low": ci.ci_low[auc], "ci_high": ci.ci_high[auc],
            "n_subjects": len(y), "n_folds": n_folds,
        })
    return pd.DataFrame(rows, columns=list(ORACLE_COLUMNS))


__all__ = ["DIFFERENCE_COLUMNS", "ORACLE_COLUMNS", "feature_differences", "image_oracle", "modality_columns",
           "oracle_predictions", "subject_d", "subject_means"]

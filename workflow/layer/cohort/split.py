"""Subject-level cross-validation folds with an inner validation split for early stopping.

Why subject level: a subject contributes many scans (sides, levels, visits) that share anatomy and
label. A subject on both sides of a split leaks its identity into the test score. sklearn's
StratifiedGroupKFold keeps each subject in one fold and balances the label across folds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

FOLD_COLUMNS: tuple[str, ...] = ("fold", "scan_id", "subject_id", "label", "role")


def _group_split(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[np.ndarray]:
    """Test indices of each of ``n_splits`` stratified, grouped, shuffled splits."""
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [test for _, test in cv.split(np.zeros(len(labels)), labels, groups)]


def make_folds(sheet: pd.DataFrame, n_folds: int, val_fraction: float, seed: int) -> pd.DataFrame:
    """Assign every scan to train, val or test for each outer fold.

    Returns a long table with columns ``fold, scan_id, subject_id, label, role``: for each fold every
    scan appears once, with role ``test`` (the held-out fold), ``val`` (the inner early-stopping split of
    the remaining subjects, about ``val_fraction`` of them) or ``train``.
    """
    if not 0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    table = sheet.loc[:, ["scan_id", "subject_id", "label"]].copy()
    table["scan_id"] = table["scan_id"].astype(str)
    table["subject_id"] = table["subject_id"].astype(str)
    table = table.sort_values("scan_id").reset_index(drop=True)
    labels = table["label"].to_numpy(dtype=int)
    groups = table["subject_id"].to_numpy()
    n_inner = max(2, int(round(1.0 / val_fraction)))
    rows = []
    for fold, test_idx in enumerate(_group_split(labels, groups, n_folds, seed)):
        role = np.full(len(table), "train", dtype=object)
        role[test_idx] = "test"
        rest = np.flatnonzero(role == "train")
        val_local = _group_split(labels[rest], groups[rest], n_inner, seed + 1 + fold)[0]
        role[rest[val_local]] = "val"
        rows.append(table.assign(fold=fold, role=role))
    folds = pd.concat(rows, ignore_index=True)
    return folds.loc[:, list(FOLD_COLUMNS)]


def check_folds(folds: pd.DataFrame) -> None:
    """Raise if a subject sits in two roles of one fold or is tested in two folds (leakage)."""
    roles = folds.groupby(["fold", "subject_id"])["role"].nunique()
    leaked = roles[roles > 1]
    if len(leaked):
        fold, subject = leaked.index[0]
        raise AssertionError(f"subject {subject} appears in more than one role of fold {fold}")
    tested = folds[folds["role"] == "test"].groupby("subject_id")["fold"].nunique()
    if (tested != 1).any():
        raise AssertionError(f"subject {tested.index[tested != 1][0]} is not tested in exactly one fold")


def permute_subject_labels(sheet: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The cohort sheet with labels permuted across subjects, for training one null model.

    Every scan of a subject keeps the subject's (new) label, so the null model cannot learn subject
    identity as a shortcut, and the number of subjects per class is unchanged (a permutation of the
    subject labels). The scan-level class balance changes only where subjects have different numbers of
    scans. Raises if a subject has scans with different labels (then no subject label exists to permute).
    """
    table = sheet.copy()
    subjects = table["subject_id"].astype(str)
    per_subject = table.groupby(subjects)["label"].nunique()
    mixed = per_subject.index[per_subject > 1].tolist()
    if mixed:
        raise ValueError(f"subjects {mixed[:5]} have scans with different labels; cannot permute by subject")
    label_of = table.groupby(subjects)["label"].first().sort_index()
    shuffled = pd.Series(np.random.default_rng(seed).permutation(label_of.to_numpy()), index=label_of.index)
    table["label"] = subjects.map(shuffled).to_numpy().astype(sheet["label"].dtype)
    return table

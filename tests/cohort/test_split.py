"""Subject-level folds: no leakage, stratification holds, deterministic."""

import numpy as np
import pandas as pd
import pytest

from layer.cohort.split import check_folds, make_folds


def _sheet(n_subjects: int = 40, scans: tuple[int, ...] = (2, 3, 4, 5), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        label = int(s < n_subjects * 0.4)  # 40 % positive subjects
        for k in range(int(rng.choice(scans))):
            rows.append({"scan_id": f"s{s:03d}-{k}", "subject_id": f"sub{s:03d}", "label": label})
    return pd.DataFrame(rows)


def test_no_subject_on_two_sides():
    folds = make_folds(_sheet(), n_folds=5, val_fraction=0.2, seed=3)
    check_folds(folds)
    for _, fold in folds.groupby("fold"):
        sides = fold.groupby("subject_id")["role"].nunique()
        assert sides.max() == 1
        assert set(fold["role"]) == {"train", "val", "test"}
    tested = folds[folds.role == "test"]
    assert tested["scan_id"].is_unique and len(tested) == len(_sheet())


def test_stratification_and_sizes():
    sheet = _sheet()
    folds = make_folds(sheet, n_folds=5, val_fraction=0.2, seed=3)
    subj = sheet.groupby("subject_id")["label"].first()
    for _, fold in folds.groupby("fold"):
        test_subjects = fold.loc[fold.role == "test", "subject_id"].unique()
        val_subjects = fold.loc[fold.role == "val", "subject_id"].unique()
        # 40 subjects / 5 folds = 8 per fold, 40 % of them positive: 3 or 4 (stratified)
        assert 7 <= len(test_subjects) <= 9
        assert 0.25 <= subj[test_subjects].mean() <= 0.55
        # inner split: about 20 % of the 32 remaining subjects
        assert 5 <= len(val_subjects) <= 8
        assert 0.15 <= subj[val_subjects].mean() <= 0.65


def test_deterministic_and_seed_sensitive():
    sheet = _sheet()
    a = make_folds(sheet, 5, 0.2, seed=1)
    b = make_folds(sheet.sample(frac=1, random_state=9), 5, 0.2, seed=1)
    c = make_folds(sheet, 5, 0.2, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_leak_is_detected():
    folds = make_folds(_sheet(), 5, 0.2, seed=0)
    train0 = folds[(folds.fold == 0) & (folds.role == "train")]
    counts = train0.groupby("subject_id").size()
    subject = counts.index[counts >= 2][0]  # every subject has 2 to 5 scans
    bad = folds.copy()
    row = bad.index[(bad.fold == 0) & (bad.subject_id == subject)][0]
    bad.loc[row, "role"] = "test"  # one scan of a training subject moved to the test side
    with pytest.raises(AssertionError, match="more than one role"):
        check_folds(bad)


def test_rejects_bad_val_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        make_folds(_sheet(), 5, 0.6, 0)

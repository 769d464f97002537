"""Training helpers with known answers."""

import numpy as np
from sklearn.metrics import roc_auc_score

from layer.nets.train import platt_scaling, safe_auc, sigmoid


def test_platt_scaling_recovers_a_known_logistic_model():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 20_000)
    labels = (rng.random(20_000) < sigmoid(0.5 * logits - 1.0)).astype(int)
    slope, intercept = platt_scaling(logits, labels)
    assert abs(slope - 0.5) < 0.03 and abs(intercept + 1.0) < 0.05


def test_platt_scaling_makes_pooled_folds_comparable():
    """Two folds that rank equally well but on different logit scales: pooling raw scores loses AUC."""
    rng = np.random.default_rng(1)
    folds = []
    for scale, shift in ((1.0, 0.0), (5.0, 8.0)):
        labels = rng.integers(0, 2, 4000)
        logits = scale * (labels + rng.normal(0, 1, 4000)) + shift
        folds.append((labels, logits))
    raw = roc_auc_score(np.concatenate([f[0] for f in folds]), np.concatenate([f[1] for f in folds]))
    calibrated = []
    for labels, logits in folds:
        slope, intercept = platt_scaling(logits[:2000], labels[:2000])  # fitted on a "validation" half
        calibrated.append(sigmoid(slope * logits[2000:] + intercept))
    pooled = roc_auc_score(np.concatenate([f[0][2000:] for f in folds]), np.concatenate(calibrated))
    per_fold = np.mean([roc_auc_score(f[0][2000:], c) for f, c in zip(folds, calibrated)])
    assert raw < per_fold - 0.05  # uncalibrated pooling is worse than the folds
    assert abs(pooled - per_fold) < 0.01


def test_platt_scaling_one_class_is_identity():
    assert platt_scaling(np.array([0.1, 0.2]), np.array([1, 1])) == (1.0, 0.0)
    assert np.isnan(safe_auc(np.array([1, 1]), np.array([0.1, 0.2])))

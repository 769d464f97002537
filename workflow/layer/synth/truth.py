"""Ground truth of the synthetic cohort: labels, subject and scan latents, the physical feature table.

Why a separate, render-free module: the planted effects must be checkable on a cohort of thousands of subjects
in a second (``draw_features``), and the renderer must use exactly the same numbers, so both go through
:func:`draw_design`.

Random streams (all from ``np.random.SeedSequence(seed, spawn_key=...)``, so that a subject's numbers do not
depend on which chunk renders it):
- ``(0,)``: cohort-level draws that couple subjects: balanced labels, label-noise flips;
- ``(1, i)``: subject ``i``'s latents, covariates and scan nuisance;
- ``(2, i, j)``: the speckle, textures and artefacts of scan ``j`` of subject ``i`` (see cohort.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import math

import numpy as np
import pandas as pd

from layer import __version__
from layer.names import FEATURES, LAYERS
from layer.synth.config import SynthConfig, confounder, load_model, planted_effects

STREAM_COHORT, STREAM_SUBJECT, STREAM_SCAN = 0, 1, 2

#: Scans of one visit, in acquisition order; more scans per subject add visits.
SCAN_SITES: tuple[tuple[str, str], ...] = (
    ("L4", "left"),
    ("L4", "right"),
    ("L5", "left"),
    ("L5", "right"),
    ("L3", "left"),
    ("L3", "right"),
)

#: Layer x feature pairs in the fixed order of every latent vector and of features.tsv.
PAIRS: tuple[tuple[str, str], ...] = tuple((layer, feature) for layer in LAYERS for feature in FEATURES)

FEATURE_COLUMNS: tuple[str, ...] = ("scan_id", "subject_id", "label", "layer", "feature", "value")
NUISANCE_COLUMNS: tuple[str, ...] = ("pressure", "gain_db", "standoff_mm", "tgc_drift_db", "probe_angle_deg")


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """A generator for one named stream of the cohort (see the module docstring)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=tuple(key))))


def subject_id(index: int, n_subjects: int) -> str:
    """``sub-0001`` style id; wider only when the cohort needs it, so ids sort like numbers."""
    width = max(4, len(str(n_subjects)))
    return f"sub-{index + 1:0{width}d}"


def scan_site(j: int) -> tuple[str, str, int]:
    """(level, side, visit) of the j-th scan of a subject."""
    level, side = SCAN_SITES[j % len(SCAN_SITES)]
    return level, side, j // len(SCAN_SITES) + 1


def cohort_labels(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, labels as written) for all subjects, drawn once for the cohort.

    ``prevalence * n`` subjects get label 1, exactly when that is a whole number, else its floor or ceiling
    at random (at 0.5 with an odd n the odd one out goes to a random class); label noise flips
    ``round(label_noise * n)`` subjects chosen at random, after the features were drawn from the true label.
    """
    rng = rng_for(cfg.seed, STREAM_COHORT)
    n = cfg.n_subjects
    expected = cfg.prevalence * n
    whole = abs(expected - round(expected)) < 1e-9
    n_pos = int(round(expected)) if whole else int(np.floor(expected)) + int(rng.integers(2))
    n_pos = min(max(n_pos, 1), n - 1)  # both classes, always
    true = np.zeros(n, dtype=np.int64)
    true[rng.permutation(n)[:n_pos]] = 1
    written = true.copy()
    n_flip = int(round(cfg.label_noise * n))
    if n_flip:
        flip = rng.permutation(n)[:n_flip]
        written[flip] = 1 - written[flip]
    return true, written


def direct_d(cfg: SynthConfig) -> np.ndarray:
    """Planted direct d per pair (PAIRS order)."""
    d = np.zeros(len(PAIRS))
    for e in planted_effects(cfg):
        d[PAIRS.index((e.layer, e.feature))] = e.d
    return d


def loadings(cfg: SynthConfig) -> np.ndarray:
    """Adiposity loading per pair (PAIRS order): fat thickness only."""
    lam = np.zeros(len(PAIRS))
    for layer, value in confounder(cfg)["loadings"].items():
        lam[PAIRS.index((layer, "thickness"))] = value
    return lam


def marginal_d(cfg: SynthConfig) -> np.ndarray:
    """Cohen's d expected across scans: direct d + loading * d_pain (within-class SD of z is 1 by design)."""
    return direct_d(cfg) + loadings(cfg) * float(confounder(cfg)["d_pain"])


def population_arrays() -> dict[str, np.ndarray]:
    """mean, sd, min, max per pair (PAIRS order) from presets.yaml."""
    pop = load_model()["population"]
    return {
        stat: np.array([float(pop[feature][layer][stat]) for layer, feature in PAIRS])
        for stat in ("mean", "sd", "min", "max")
    }


@dataclass(frozen=True)
class Design:
    """The drawn (not rendered) cohort: one row per scan, and the long feature table."""

    scans: pd.DataFrame
    features: pd.DataFrame


def draw_design(cfg: SynthConfig, subjects: Sequence[int] | None = None) -> Design:
    """Draw labels, covariates, nuisance and physical features of the given subjects (default: all).

    Row order: subjects in the given order, scans in acquisition order, then LAYERS x FEATURES order.
    """
    idx = np.arange(cfg.n_subjects) if subjects is None else np.asarray(subjects, dtype=np.int64)
    y_true, y_written = cohort_labels(cfg)
    model = load_model()
    icc = float(model["icc"])
    adip = model["adiposity"]
    d_pain = float(confounder(cfg)["d_pain"])
    d, lam = direct_d(cfg), loadings(cfg)
    if np.any(lam**2 > icc):
        raise ValueError("presets.yaml: every adiposity loading^2 must be <= icc")
    pop = population_arrays()
    n_scan = cfg.scans_per_subject
    n_pairs = len(PAIRS)

    z = np.empty((len(idx), n_scan, n_pairs))
    subj_rows: list[dict[str, Any]] = []
    nuisance = np.empty((len(idx), n_scan, len(NUISANCE_COLUMNS)))
    for row, i in enumerate(idx):
        rng = rng_for(cfg.seed, STREAM_SUBJECT, int(i))
        y = float(y_true[i])
        a = d_pain * y + rng.standard_normal()
        u = rng.standard_normal(n_pairs) * np.sqrt(icc - lam**2)
        e = rng.standard_normal((n_scan, n_pairs)) * np.sqrt(1.0 - icc)
        z[row] = d * y + lam * a + u + e
        age = float(np.clip(rng.normal(45.0, 12.0), 18.0, 80.0))
        sex = "F" if rng.random() < 0.5 else "M"
        bmi = adip["bmi_mean"] + adip["bmi_per_sd"] * a + rng.normal(0.0, adip["bmi_noise_sd"])
        subj_rows.append({"age": round(age), "sex": sex, "bmi": round(float(np.clip(bmi, 16.0, 50.0)), 1)})
        # Scan nuisance (all ASSUMPTION, see docs): relative probe pressure, overall gain, gel standoff,
        # residual TGC drift across the depth, probe rotation away from across-fibre shear-wave propagation.
        nuisance[row, :, 0] = rng.uniform(0.0, 1.0, n_scan)
        nuisance[row, :, 1] = rng.normal(0.0, 2.0, n_scan)
        nuisance[row, :, 2] = rng.uniform(0.5, 2.0, n_scan)
        nuisance[row, :, 3] = rng.normal(0.0, 1.5, n_scan)
        nuisance[row, :, 4] = np.abs(rng.normal(0.0, 10.0, n_scan))
    values = np.clip(pop["mean"] + pop["sd"] * z, pop["min"], pop["max"])

    sids = [subject_id(int(i), cfg.n_subjects) for i in idx]
    scan_rows = []
    for row, i in enumerate(idx):
        for j in range(n_scan):
            level, side, visit = scan_site(j)
            scan_rows.append(
                {
                    "scan_id": f"{sids[row]}_{level}-{side}_v{visit}",
                    "subject_id": sids[row],
                    "subject_index": int(i),
                    "scan_index": j,
                    "label": int(y_written[i]),
                    "side": side,
                    "level": level,
                    "visit": visit,
                    **subj_rows[row],
                    **{k: round(float(v), 4) for k, v in zip(NUISANCE_COLUMNS, nuisance[row, j], strict=True)},
                }
            )
    scans = pd.DataFrame(scan_rows)
    n_rows = len(scans)
    features = pd.DataFrame(
        {
            "scan_id": np.repeat(scans["scan_id"].to_numpy(), n_pairs),
            "subject_id": np.repeat(scans["subject_id"].to_numpy(), n_pairs),
            "label": np.repeat(scans["label"].to_numpy(), n_pairs),
            "layer": np.tile([p[0] for p in PAIRS], n_rows),
            "feature": np.tile([p[1] for p in PAIRS], n_rows),
            "value": values.reshape(-1),
        }
    )
    return Design(scans=scans, features=features)


def draw_features(cfg: SynthConfig, subjects: Sequence[int] | None = None) -> pd.DataFrame:
    """The long features table (features.tsv columns) of a cohort, without rendering a single voxel."""
    return draw_design(cfg, subjects).features


def wide_values(features: pd.DataFrame) -> pd.DataFrame:
    """Scans x PAIRS table of the physical values (column order PAIRS), index scan_id."""
    wide = features.pivot(index="scan_id", columns=["layer", "feature"], values="value")
    return wide.reindex(columns=pd.MultiIndex.from_tuples(PAIRS, names=["layer", "feature"]))


def cohens_d(values: np.ndarray, labels: np.ndarray) -> float:
    """Cohen's d (pooled SD) of label 1 minus label 0."""
    a, b = values[labels == 1], values[labels == 0]
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled)


def recovered_d(features: pd.DataFrame) -> pd.DataFrame:
    """Cohen's d across scans for every layer x feature of a features table (columns layer, feature, d)."""
    wide = wide_values(features)
    labels = features.drop_duplicates("scan_id").set_index("scan_id")["label"].reindex(wide.index).to_numpy()
    rows = [
        {"layer": layer, "feature": feature, "d": cohens_d(wide[(layer, feature)].to_numpy(), labels)}
        for layer, feature in PAIRS
    ]
    return pd.DataFrame(rows)


def oracle_auc(cfg: SynthConfig, features: pd.DataFrame) -> float | None:
    """AUC of the Bayes linear score sum_k d_k z_k (planted direct effects) against the labels as written.

    z_k is the feature standardised with the population mean and SD. None when only one class is present.
    """
    from sklearn.metrics import roc_auc_score  # slow import, needed only when a cohort is finalized

    wide = wide_values(features)
    pop = population_arrays()
    zs = (wide.to_numpy() - pop["mean"]) / pop["sd"]
    score = zs @ direct_d(cfg)
    labels = features.drop_duplicates("scan_id").set_index("scan_id")["label"].reindex(wide.index).to_numpy()
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, score))


def oracle_auc_analytic(cfg: SynthConfig) -> float:
    """Phi(sqrt(sum d^2) / sqrt 2): the oracle AUC of independent unit-variance Gaussian features."""
    x = math.sqrt(float(np.sum(direct_d(cfg) ** 2)) / 2.0)
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def ground_truth(cfg: SynthConfig, features: pd.DataFrame) -> dict[str, Any]:
    """The ground_truth.json document of a cohort (features: the full cohort's table)."""
    true, written = cohort_labels(cfg)
    model = load_model()
    marg = marginal_d(cfg)
    auc = oracle_auc(cfg, features)
    return {
        "generator": f"layer {__version__} layer.synth",
        "preset": cfg.preset,
        "description": " ".join(str(model["presets"][cfg.preset]["description"]).split()),
        "seed": cfg.seed,
        "config": cfg.to_mapping(),
        "icc": float(model["icc"]),
        "label_noise": cfg.label_noise,
        "n_labels_flipped": int(np.sum(true != written)),
        "n_subjects_per_label": {"0": int(np.sum(written == 0)), "1": int(np.sum(written == 1))},
        "effects": [e.as_dict() for e in planted_effects(cfg)],
        "confounder": confounder(cfg),
        "expected_marginal_d": [
            {"layer": layer, "feature": feature, "d": round(float(m), 6)}
            for (layer, feature), m in zip(PAIRS, marg, strict=True)
            if m != 0.0
        ],
        "oracle_auc": None if auc is None else round(auc, 6),
        "oracle_auc_analytic": round(oracle_auc_analytic(cfg), 6),
        "units": {
            "thickness": "mm",
            "echogenicity": "dB re fascia",
            "texture": "index (1 = typical)",
            "stiffness": "m/s (intrinsic shear-wave speed)",
        },
    }

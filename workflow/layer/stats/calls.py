"""Which layers drive the prediction: null calibration, subject-level tests, Holm correction, top-1 frequency.

Why a null: attribution favours some layers in models that learned nothing (thin bright membranes under
density, muscle under mass; design note ``attribution.md``). A layer's score is therefore compared with
the same score from null models trained on subject-level permuted labels, and a layer is called
*driving* only on its **excess** over the null, after Holm correction across the layers.

Why subjects: scans of one subject are correlated (ICC about 0.7). Every resampling here acts on
subjects: the bootstrap CI of the excess reuses ``layer.stats.tables.cluster_bootstrap_mean``; sign-flip tests
flip the sign of a subject's mean contrast (scan-level flips gave a type-I error of 0.27 at alpha 0.05 in
the design simulation); the top-1 frequency resamples subjects.

Permutation p-values use the +1 correction (Phipson & Smyth, "Permutation p-values should never be
zero", Stat. Appl. Genet. Mol. Biol. 2010): with R null models the smallest attainable p is 1 / (R + 1),
so a Holm-corrected call over six layers at alpha 0.05 needs R >= 119 null models (6 / (R + 1) <= 0.05).
With fewer null models use ``test="sign_flip"`` (subject-level sign-flip of the per-scan excess, which
treats the null mean as known).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from layer.games import conditional_shapley
from layer.io import load_arrays
from layer.names import LAYERS, MODALITIES
from layer.stats.bootstrap import _draw_counts, _subject_codes, cluster_bootstrap_mean
from layer.stats.tables import ScanCube, scan_cube

CALLS_COLUMNS: tuple[str, ...] = (
    "modality", "method", "channel", "layer", "measure", "trained", "null_mean", "excess", "ci_low", "ci_high",
    "p_value", "p_holm", "driving", "top1_frequency",
)
#: Keys identifying one family of layers (one Holm correction, one top-1 ranking).
FAMILY_KEYS: tuple[str, ...] = ("modality", "method", "channel", "measure")
#: Upper bound on floats held by one batch of permutations or resamples.
_BATCH_FLOATS = 2**22


# --------------------------------------------------------------------------------------------------
# Multiple testing
# --------------------------------------------------------------------------------------------------


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (Holm, Scand. J. Statist. 1979), same order as the input.

    adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)) for the ascending order p_(1) <= ...;
    reject H_(i) at level alpha iff adjusted p_(i) <= alpha. NaN p-values are not tested: they stay NaN
    and do not count in m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    ranked = p[ok][order] * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(ranked), 1.0)
    flat = np.empty(m)
    flat[order] = adjusted
    out[ok] = flat
    return out


# --------------------------------------------------------------------------------------------------
# Subject-level sign-flip test
# --------------------------------------------------------------------------------------------------


def subject_means(values: np.ndarray, subjects: Sequence[object] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject mean of each column over its defined scans, ``[n_subjects, k]``, and whether defined."""
    x = np.asarray(values, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    codes, n_subjects = _subject_codes(subjects)
    if codes.size != x.shape[0]:
        raise ValueError(f"{x.shape[0]} scans but {codes.size} subject labels")
    defined = np.isfinite(x)
    sums = np.zeros((n_subjects, x.shape[1]))
    counts = np.zeros((n_subjects, x.shape[1]))
    np.add.at(sums, codes, np.where(defined, x, 0.0))
    np.add.at(counts, codes, defined)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return np.where(counts > 0, means, 0.0), counts > 0


def sign_flip_test(
    values: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_permutations: int,
    seed: int,
    alternative: str = "two-sided",
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Subject-level sign-flip permutation test of a zero mean contrast, one test per column.

    The per-scan contrast (e.g. dfm - muscle of the same scan) is averaged within each subject; under H0
    each subject mean is symmetric about 0, so flipping whole subjects' signs gives the null distribution
    of the statistic T = mean of the subject means (Good, Permutation Tests, 2005; Winkler et al.,
    NeuroImage 2014). Exact over all 2^n sign vectors when 2^n <= ``n_permutations`` (p = share of sign
    vectors with T* at least as extreme), else ``n_permutations`` random vectors with the +1 correction.
    Vectorised over columns, so many contrasts (or many simulated data sets) share one set of flips.

    Args:
        values: ``[n_scans]`` or ``[n_scans, k]`` per-scan contrasts; NaN = undefined (skipped).
        subjects: subject label per scan.
        alternative: ``two-sided`` (|T*| >= |T|), ``greater`` (T* >= T) or ``less`` (T* <= T).

    Returns:
        ``(T [k], p [k], exact)``; columns defined for no subject get NaN.
    """
    means, defined = subject_means(values, subjects)
    n_subjects, k = means.shape
    n_defined = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(n_defined > 0, 1.0 / n_defined, np.nan)
    observed = means.sum(axis=0) * scale
    exact = n_subjects < 63 and 2**n_subjects <= n_permutations
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"unknown alternative '{alternative}'")

    def extreme(t: np.ndarray) -> np.ndarray:
        tol = 1e-12 * np.maximum(np.abs(observed), 1e-300)  # sums in another order: equal up to rounding
        if alternative == "two-sided":
            return np.abs(t) >= np.abs(observed) - tol
        if alternative == "greater":
            return t >= observed - tol
        return t <= observed + tol

    rng = np.random.default_rng(seed)
    total = 2**n_subjects if exact else n_permutations
    batch = max(1, _BATCH_FLOATS // max(1, n_subjects + k))
    hits = np.zeros(k)
    for b0 in range(0, total, batch):
        b1 = min(total, b0 + batch)
        if exact:
            codes = np.arange(b0, b1, dtype=np.int64)[:, None]
            signs = 1.0 - 2.0 * ((codes >> np.arange(n_subjects)) & 1)
        else:
            signs = 2.0 * rng.integers(0, 2, size=(b1 - b0, n_subjects)) - 1.0
        hits += extreme((signs @ means) * scale).sum(axis=0)
    p = hits / total if exact else (1.0 + hits) / (1.0 + total)
    p = np.where(n_defined > 0, p, np.nan)
    return observed, p, exact


def contrast_weights(
    layers: Sequence[str] = LAYERS,
    pairs: Sequence[tuple[str, str]] = (("dfm", "muscle"),),
    one_vs_rest: bool = True,
) -> tuple[list[str], np.ndarray]:
    """Contrast names and weights ``[k, n_layers]``: ``a - b`` for each pair, and each layer minus the mean
    of the others (``dfm_vs_rest``)."""
    index = {name: i for i, name in enumerate(layers)}
    names, rows = [], []
    for a, b in pairs:
        w = np.zeros(len(layers))
        w[index[a]], w[index[b]] = 1.0, -1.0
        names.append(f"{a}_minus_{b}")
        rows.append(w)
    if one_vs_rest:
        for name, i in index.items():
            w = np.full(len(layers), -1.0 / (len(layers) - 1))
            w[i] = 1.0
            names.append(f"{name}_vs_rest")
            rows.append(w)
    return names, np.asarray(rows).reshape(len(rows), len(layers))


def paired_contrasts(
    values: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_permutations: int,
    seed: int,
    pairs: Sequence[tuple[str, str]] = (("dfm", "muscle"),),
    one_vs_rest: bool = True,
    layers: Sequence[str] = LAYERS,
) -> pd.DataFrame:
    """Within-scan layer contrasts with subject-level sign-flip p-values, Holm-corrected over the contrasts.

    ``values [n_scans, n_layers]`` (one score per layer of each scan). Columns: ``contrast, estimate,
    p_value, p_holm, exact``; the estimate is the mean of the subject means of the per-scan contrast.
    """
    names, w = contrast_weights(layers, pairs, one_vs_rest)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(layers):
        raise ValueError(f"values must be [n_scans, {len(layers)}]")
    contrasts = x @ w.T
    estimate, p, exact = sign_flip_test(contrasts, subjects, n_permutations, seed)
    return pd.DataFrame({"contrast": names, "estimate": estimate, "p_value": p, "p_holm": holm(p), "exact": exact})


# --------------------------------------------------------------------------------------------------
# Which layer ranks first
# --------------------------------------------------------------------------------------------------


def top1_frequency(
    values: np.ndarray, subjects: Sequence[object] | np.ndarray, n_resamples: int, seed: int
) -> np.ndarray:
    """Share of subject-level bootstrap resamples in which each layer has the highest pooled mean.

    That is what a claim "layer X is highest" rests on (design note). Pooled mean = mean over the scans
    of the drawn subjects (a subject drawn m times counts m times), NaN values skipped; a layer undefined
    in a resample cannot win it. Ties go to the first layer. Sums to 1 over layers.
    """
    x = np.asarray(values, dtype=np.float64)
    codes, n_subjects = _subject_codes(subjects)
    if x.ndim != 2 or x.shape[0] != codes.size:
        raise ValueError("values must be [n_scans, n_layers] with one subject label per scan")
    defined = np.isfinite(x)
    sums = np.zeros((n_subjects, x.shape[1]))
    counts = np.zeros((n_subjects, x.shape[1]))
    np.add.at(sums, codes, np.where(defined, x, 0.0))
    np.add.at(counts, codes, defined)
    rng = np.random.default_rng(seed)
    wins = np.zeros(x.shape[1])
    batch = max(1, _BATCH_FLOATS // max(1, 2 * n_subjects + x.shape[1]))
    for b0 in range(0, n_resamples, batch):
        idx = rng.integers(0, n_subjects, size=(min(batch, n_resamples - b0), n_subjects))
        drawn = _draw_counts(idx, n_subjects)
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled = (drawn @ sums) / (drawn @ counts)
        pooled = np.where(np.isfinite(pooled), pooled, -np.inf)
        wins += np.bincount(pooled.argmax(axis=1), minlength=x.shape[1])
    return wins / max(n_resamples, 1)


# --------------------------------------------------------------------------------------------------
# Null calibration
# --------------------------------------------------------------------------------------------------


def null_calibration(
    trained: np.ndarray,
    null: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_resamples: int,
    confidence_level: float,
    seed: int,
    test: str = "null_models",
    n_permutations: int = 9999,
) -> pd.DataFrame:
    """Trained score, null mean, excess with a subject-level CI and a p-value, per layer (column).

    Args:
        trained: ``[n_scans, L]`` per-scan scores of the trained models (averaged over models first if a
            scan was scored by several, e.g. seeds).
        null: ``[R, n_scans, L]`` the same scores from R null models (NaN where a null model did not score
            a scan).
        subjects: subject label per scan.
        test: ``null_models``: p = (1 + #{r: pooled null_r >= pooled trained}) / (1 + R), each null model
            compared with the trained models on the scans it scored (one-sided: is the trained score
            higher than chance?). ``sign_flip``: one-sided subject-level sign-flip test of the per-scan
            excess (ignores the spread between null models; for small R).

    Returns:
        One row per column: ``trained, null_mean, excess, ci_low, ci_high, p_value``. ``trained`` and
        ``null_mean`` are pooled over the scans where both are defined, so ``excess`` = ``trained -
        null_mean`` = the pooled mean of the per-scan excess ``score_trained(scan) - mean_r
        score_null_r(scan)``, whose subject-level bootstrap gives the CI.
    """
    t = np.asarray(trained, dtype=np.float64)
    z = np.asarray(null, dtype=np.float64)
    if t.ndim != 2 or z.ndim != 3 or z.shape[1:] != t.shape:
        raise ValueError(f"trained must be [n_scans, L] and null [R, n_scans, L]; got {t.shape} and {z.shape}")
    null_scan = _nanmean0(z)  # [n_scans, L]
    both = np.isfinite(t) & np.isfinite(null_scan)
    excess_scan = np.where(both, t - null_scan, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_both = both.sum(axis=0)
        trained_pooled = np.where(both, t, 0.0).sum(axis=0) / n_both
        null_pooled = np.where(both, null_scan, 0.0).sum(axis=0) / n_both
    ci = cluster_bootstrap_mean(excess_scan, subjects, n_resamples, confidence_level, seed)
    if test == "null_models":
        p = _null_model_p(t, z, both)
    elif test == "sign_flip":
        _, p, _ = sign_flip_test(excess_scan, subjects, n_permutations, seed, alternative="greater")
    else:
        raise ValueError(f"unknown test '{test}'; choose 'null_models' or 'sign_flip'")
    return pd.DataFrame(
        {
            "trained": trained_pooled,
            "null_mean": null_pooled,
            "excess": trained_pooled - null_pooled,
            "ci_low": ci.ci_low,
            "ci_high": ci.ci_high,
            "p_value": p,
        }
    )


def _nanmean0(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (silently) where nothing is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0)


def _null_model_p(trained: np.ndarray, null: np.ndarray, both: np.ndarray) -> np.ndarray:
    """(1 + #{r: mean null_r >= mean trained on the scans r scored}) / (1 + R), per column."""
    scored = np.isfinite(null) & both[None]  # [R, n_scans, L]
    n = scored.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        null_mean = np.where(scored, null, 0.0).sum(axis=1) / n
        trained_mean = np.where(scored, trained[None], 0.0).sum(axis=1) / n
    valid = n > 0
    tol = 1e-12 * np.maximum(np.abs(trained_mean), 1e-300)
    hits = (valid & (null_mean >= trained_mean - tol)).sum(axis=0)
    n_valid = valid.sum(axis=0)
    return np.where(n_valid > 0, (1.0 + hits) / (1.0 + n_valid), np.nan)


# --------------------------------------------------------------------------------------------------
# The table of layer calls
# --------------------------------------------------------------------------------------------------


#: Label-aligned measure: how much more a layer adds to the logit in patients than in controls.
LABEL_GAP = "label_gap"


def signed_mass(cube: np.ndarray, measures: Sequence[str]) -> np.ndarray:
    """Signed layer contribution ``sum(a) = 2 * mass_pos - mass_abs`` from the two stored parts.

    For Integrated Gradients and layer Shapley this is the layer's share of the logit (completeness /
    efficiency), in logit units.
    """
    m = list(measures)
    return 2.0 * cube[..., m.index("mass_pos")] - cube[..., m.index("mass_abs")]


def label_gap(contribution: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-scan values whose mean is mean(contribution | pain) - mean(contribution | control).

    ``(c - mean c) * (y - mean y) / (mean y * (1 - mean y))``, per column of ``contribution [n_scans, L]``:
    the regression slope of a layer's contribution on the label, written per scan so that subject
    bootstraps and top-1 frequencies apply. It is 0 in expectation for every model whose held-out
    contributions do not depend on the held-out labels (a null model, or any model of a null cohort),
    whatever the layer's volume or brightness: that is why it is the calibrated measure.
    """
    c = np.asarray(contribution, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    prevalence = y.mean()
    if not 0.0 < prevalence < 1.0:
        raise ValueError("label_gap needs scans of both classes")
    return (c - c.mean(axis=0)) * ((y - prevalence) / (prevalence * (1.0 - prevalence)))[:, None]


def label_permutation_test(
    contribution: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_permutations: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided test that a layer's contribution is higher in patients: (observed gap, p) per column.

    Labels are permuted across subjects (a subject's scans keep one label), which is exact under the
    null hypothesis that the held-out contributions do not depend on the held-out labels: the test
    conditions on the trained models, so model-to-model variation (which a comparison with a few null
    models cannot estimate) does not enter. p = (1 + #{gap_perm >= gap}) / (1 + n_permutations).
    """
    c = np.asarray(contribution, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    codes, n_subjects = _subject_codes(subjects)
    if c.ndim != 2 or c.shape[0] != codes.size or y.shape != (codes.size,):
        raise ValueError("contribution must be [n_scans, L] with one label and one subject per scan")
    if not np.isfinite(c).all():
        raise ValueError("contributions must be finite")
    subject_label = np.zeros(n_subjects)
    subject_label[codes] = y
    if not np.array_equal(subject_label[codes], y):
        raise ValueError("a subject has scans with different labels")
    sums = np.zeros((n_subjects, c.shape[1]))
    np.add.at(sums, codes, c)
    counts = np.bincount(codes, minlength=n_subjects).astype(np.float64)
    total, n = sums.sum(axis=0), counts.sum()

    def gap(y_subjects: np.ndarray) -> np.ndarray:  # [B, n_subjects] -> [B, L]
        n1 = (y_subjects @ counts)[:, None]
        s1 = y_subjects @ sums
        with np.errstate(invalid="ignore", divide="ignore"):
            return s1 / n1 - (total - s1) / (n - n1)

    observed = gap(subject_label[None])[0]
    rng = np.random.default_rng(seed)
    hits = np.zeros(c.shape[1])
    batch = max(1, _BATCH_FLOATS // max(1, n_subjects + c.shape[1]))
    for b0 in range(0, n_permutations, batch):
        k = min(batch, n_permutations - b0)
        permuted = rng.permuted(np.broadcast_to(subject_label, (k, n_subjects)), axis=1)
        hits += (gap(permuted) >= observed - 1e-12 * np.maximum(np.abs(observed), 1e-300)).sum(axis=0)
    return observed, (1.0 + hits) / (1.0 + n_permutations)


@dataclass(frozen=True)
class ConditionalValues:
    """Per-scan conditional layer Shapley values of one modality x exact six-layer Shapley method:
    ``trained [n_scans, j, i]`` (layer i's value with layer j held absent, ``layer.games``) and ``null [R,
    n_scans, j, i]`` of the null replicates, on the scans ``scans`` (the null models score the same scans)."""

    scans: list[str]
    trained: np.ndarray
    null: np.ndarray


def load_conditional(paths: Sequence[str]) -> dict[tuple[str, str], ConditionalValues]:
    """Conditional values of every (modality, method) from its attribution files (trained and null runs),
    read from the stored coalition values of exact Shapley. Each file names its own modality, method and,
    for a null model, null replicate (``layer.explain.attribute.save_attribution``)."""
    parts: dict[tuple[str, str], dict[int, list[tuple[list[str], np.ndarray]]]] = {}
    for path in paths:
        arrays = load_arrays(path)
        if "modality" not in arrays or "method" not in arrays:
            raise ValueError(f"{path}: not an attribution file of this workflow (no modality and method inside)")
        if "coalitions" not in arrays or arrays["coalitions"].shape[-1] != 2 ** len(LAYERS):
            raise ValueError(f"{path}: no values of the 64 layer coalitions (not an exact six-layer Shapley job)")
        run = int(arrays["null_model"]) if "null_model" in arrays else -1
        key = (str(arrays["modality"]), str(arrays["method"]))
        parts.setdefault(key, {}).setdefault(run, []).append(
            ([str(x) for x in arrays["scan_ids"]], conditional_shapley(arrays["coalitions"], len(LAYERS)))
        )
    out = {}
    for (modality, method), runs in parts.items():
        if -1 not in runs:
            raise ValueError(f"no trained-model coalition values for {modality} / {method}")
        scans = [sid for ids, _ in runs[-1] for sid in ids]
        ordered = {
            run: np.concatenate([v for _, v in pieces])[
                _rows([sid for ids, _ in pieces for sid in ids], scans, f"{modality} / {method} " + ("trained models" if run < 0 else f"null run {run}"))
            ]
            for run, pieces in runs.items()
        }
        nulls = sorted(r for r in runs if r >= 0)
        n = len(LAYERS)
        null = np.stack([ordered[r] for r in nulls]) if nulls else np.zeros((0, len(scans), n, n))
        out[(modality, method)] = ConditionalValues(scans, ordered[-1], null)
    return out


CONDITIONAL_COLUMNS = ("layer", "without", "estimate", "p_value", "p_holm")


def conditional_calls(
    cv: ConditionalValues,
    scans: list[str],
    y: np.ndarray,
    subjects: np.ndarray,
    candidates: np.ndarray,
    n_permutations: int,
    seed: int,
) -> pd.DataFrame:
    """Does each candidate layer drive on its own, or only through an interaction with another candidate?

    For every ordered pair of candidate layers (i, j): the null-calibrated label gap of i's Shapley value
    with j held absent, tested like the layer's own gap (:func:`label_permutation_test`). A layer's
    conditional p is its largest over j (an intersection-union test: it must survive the removal of every
    other candidate), Holm-corrected over the candidates. Columns :data:`CONDITIONAL_COLUMNS` (``p_holm``
    repeats the layer's adjusted conditional p on each of its rows).
    """
    rows = _rows(cv.scans, scans, "the exact-Shapley coalition values")
    pairs = [(i, j) for i in candidates for j in candidates if i != j]
    if not pairs:
        return pd.DataFrame(columns=list(CONDITIONAL_COLUMNS))
    t = np.stack([cv.trained[rows, j, i] for i, j in pairs], axis=1)
    z = np.stack([cv.null[:, rows, j, i] for i, j in pairs], axis=2) if len(cv.null) else np.zeros((1,) + t.shape)
    estimate = label_gap(t, y).mean(axis=0) - np.mean([label_gap(zr, y).mean(axis=0) for zr in z], axis=0)
    _, p = label_permutation_test(t - z.mean(axis=0), y, subjects, n_permutations, seed)
    table = pd.DataFrame({
        "layer": [LAYERS[i] for i, _ in pairs], "without": [LAYERS[j] for _, j in pairs],
        "estimate": estimate, "p_value": p,
    })
    worst = table.groupby("layer", sort=False)["p_value"].max()
    table["p_holm"] = table["layer"].map(dict(zip(worst.index, holm(worst.to_numpy()))))
    return table[list(CONDITIONAL_COLUMNS)]


def _rows(ids: Sequence[str], scans: Sequence[str], name: str) -> list[int]:
    """Positions of ``scans`` in ``ids``; raises if one is missing (null models score the same scans)."""
    position = {sid: i for i, sid in enumerate(ids)}
    missing = [sid for sid in scans if sid not in position]
    if missing:
        raise ValueError(f"{name} did not score scans {missing[:5]} that the trained models scored")
    return [position[sid] for sid in scans]


def _aligned(cube: ScanCube, scans: list[str], name: str) -> np.ndarray:
    """``cube.values`` reordered to ``scans``."""
    return cube.values[_rows(cube.scans, scans, name)]


def _families(
    trained: pd.DataFrame,
    null: pd.DataFrame,
    labels: pd.Series | dict[str, int],
    measures: Sequence[str],
    n_resamples: int,
    confidence_level: float,
    seed: int,
    alpha: float,
    n_permutations: int,
    test: str,
    conditional: Mapping[tuple[str, str], ConditionalValues] | None = None,
):
    """Yield (calls of one family, its per-scan excess ``[n_scans, 6]``, subjects, conditional tests or None);
    see :func:`layer_calls_table`."""
    need = {"scan_id", "subject_id", "layer", "measure", "value", *FAMILY_KEYS}
    for name, table, required in (("trained", trained, need), ("null", null, need | {"null_model"})):
        missing = required - set(table.columns)
        if missing:
            raise ValueError(f"{name} table lacks columns {sorted(missing)}")
    label_of = pd.Series(labels)
    label_of.index = label_of.index.astype(str)
    n_layers = len(LAYERS)
    for (modality, method), group in trained.groupby(["modality", "method"], sort=True):
        cube = scan_cube(group, modality)
        of_null = null[(null["modality"] == modality) & (null["method"] == method)]
        if of_null.empty:
            raise ValueError(f"no null-model scores for {modality} / {method}")
        null_values = np.stack(
            [_aligned(scan_cube(g, modality), cube.scans, f"null model {r}")
             for r, g in of_null.groupby("null_model", sort=True)]
        )
        y = label_of.reindex(cube.scans).to_numpy(dtype=np.float64)
        if np.isnan(y).any():
            raise ValueError(f"no label for scans {[s for s, v in zip(cube.scans, y) if np.isnan(v)][:5]}")
        for c, channel in enumerate(cube.channels):
            for measure in measures:
                if measure == LABEL_GAP:
                    t_c = signed_mass(cube.values[:, c, :n_layers], cube.measures)
                    z_c = signed_mass(null_values[:, :, c, :n_layers], cube.measures)
                    t = label_gap(t_c, y)
                    z = np.stack([label_gap(zr, y) for zr in z_c])
                    excess_scan = t - z.mean(axis=0)
                    ci = cluster_bootstrap_mean(excess_scan, cube.subjects, n_resamples, confidence_level, seed)
                    _, p = label_permutation_test(t_c - z_c.mean(axis=0), y, cube.subjects, n_permutations, seed)
                    calib = pd.DataFrame({
                        "trained": t.mean(axis=0), "null_mean": z.mean(axis=(0, 1)),
                        "excess": excess_scan.mean(axis=0), "ci_low": ci.ci_low, "ci_high": ci.ci_high,
                        "p_value": p,
                    })
                else:
                    if measure not in cube.measures:
                        raise ValueError(f"measure {measure!r} is not in the aggregated table of {method}")
                    m = cube.measures.index(measure)
                    t, z = cube.values[:, c, :n_layers, m], null_values[:, :, c, :n_layers, m]
                    calib = null_calibration(
                        t, z, cube.subjects, n_resamples, confidence_level, seed, test, n_permutations
                    )
                    excess_scan = t - _nanmean0(z)
                calib["p_holm"] = holm(calib["p_value"].to_numpy())
                calib["driving"] = (calib["excess"] > 0) & (calib["p_holm"] <= alpha)
                cond = None
                cv = (conditional or {}).get((modality, method))
                if measure == LABEL_GAP and cv is not None and len(cube.channels) == 1:
                    candidates = np.flatnonzero(calib["driving"].to_numpy())
                    cond = conditional_calls(cv, cube.scans, y, cube.subjects, candidates, n_permutations, seed)
                    if len(cond):
                        adjusted = cond.groupby("layer")["p_holm"].first().reindex(list(LAYERS), fill_value=0.0)
                        calib["p_holm"] = np.maximum(calib["p_holm"].to_numpy(), adjusted.to_numpy())
                        calib["driving"] = (calib["excess"] > 0) & (calib["p_holm"] <= alpha)
                calib["top1_frequency"] = top1_frequency(excess_scan, cube.subjects, n_resamples, seed)
                calib.insert(0, "measure", measure)
                calib.insert(0, "layer", list(LAYERS))
                calib.insert(0, "channel", channel)
                calib.insert(0, "method", method)
                calib.insert(0, "modality", modality)
                yield calib, excess_scan, cube.subjects, cond


def layer_calls_table(
    trained: pd.DataFrame,
    null: pd.DataFrame,
    labels: pd.Series | dict[str, int],
    measures: Sequence[str],
    n_resamples: int,
    confidence_level: float,
    seed: int,
    alpha: float = 0.05,
    n_permutations: int = 9999,
    test: str = "null_models",
) -> pd.DataFrame:
    """Per layer: trained, null mean, excess with subject-level CI, p-value, Holm, driving call, top-1 share.

    Args:
        trained: long per-scan scores (``layer.aggregate`` layout) with columns ``scan_id, subject_id,
            modality, method, channel, layer, measure, value``; one trained model per scan.
        null: the same plus ``null_model`` (one id per null replicate: one full set of fold models trained
            on one subject-level permutation of the labels), scoring the same scans.
        labels: true label per scan id.
        measures: measures to call: :data:`LABEL_GAP` and/or stored measures (e.g. ``mass_share_abs``).
        test: p-value of a stored (label-free) measure: ``null_models`` (rank of the trained score among
            the R null models' scores, p >= 1 / (R + 1)) or ``sign_flip`` (subject-level sign flip of
            the per-scan excess; treats the null mean as known). :data:`LABEL_GAP` always uses
            :func:`label_permutation_test` on the per-scan excess contribution.

    One family per modality x method x channel x measure (channels include ``all`` for a multi-channel
    modality): Holm over its six layers; ``driving`` = excess > 0 and ``p_holm <= alpha``;
    ``top1_frequency`` = share of subject bootstrap resamples in which the layer has the largest pooled
    per-scan excess. Columns exactly ``CALLS_COLUMNS``.
    """
    return calls_and_contrasts(
        trained, null, labels, measures, n_resamples, confidence_level, seed, alpha, n_permutations, test
    )[0]


def _calls_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=list(CALLS_COLUMNS))
    table = pd.concat(parts, ignore_index=True)
    rank = {m: i for i, m in enumerate(MODALITIES)}
    table["_rank"] = table["modality"].map(rank)
    table = table.sort_values(["_rank", "method"], kind="stable")
    return table[list(CALLS_COLUMNS)].reset_index(drop=True)


CONTRAST_COLUMNS: tuple[str, ...] = (
    "modality", "method", "channel", "measure", "contrast", "estimate", "p_value", "p_holm", "exact",
)


def calls_and_contrasts(
    trained: pd.DataFrame,
    null: pd.DataFrame,
    labels: pd.Series | dict[str, int],
    measures: Sequence[str],
    n_resamples: int,
    confidence_level: float,
    seed: int,
    alpha: float = 0.05,
    n_permutations: int = 9999,
    test: str = "null_models",
    contrast_method: str = "",
    contrast_measure: str = LABEL_GAP,
    conditional: Mapping[tuple[str, str], ConditionalValues] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`layer_calls_table` and, for ``contrast_method`` x ``contrast_measure``, within-subject
    contrasts of the per-scan excess: ``dfm_minus_muscle``, ``non_muscle_minus_muscle`` (the five upper
    layers together against the muscle, the paper's fused comparison) and each layer against the mean of
    the other five, with two-sided subject-level sign-flip p-values, Holm-corrected per family.

    ``conditional`` (exact six-layer Shapley methods, :func:`load_conditional`): where two or more layers
    pass the label-gap test, each must also pass it with every other such layer held absent
    (:func:`conditional_calls`); its ``p_holm`` becomes the larger of the two adjusted p-values, and the
    pair tests are added to the contrasts as ``<layer>_without_<other>`` (one-sided, ``exact`` False).
    A layer whose gap is only its share of an interaction with a driving neighbour is then not called."""
    parts, rows = [], []
    names, weights = contrast_weights(LAYERS, pairs=(("dfm", "muscle"),), one_vs_rest=True)
    non_muscle = np.where(np.asarray(LAYERS) == "muscle", -1.0, 1.0)
    names = names[:1] + ["non_muscle_minus_muscle"] + names[1:]
    weights = np.vstack([weights[:1], non_muscle, weights[1:]])
    for calib, excess_scan, subjects, cond in _families(
        trained, null, labels, measures, n_resamples, confidence_level, seed, alpha, n_permutations, test,
        conditional,
    ):
        parts.append(calib)
        first = calib.iloc[0]
        if cond is not None and len(cond):
            rows.append(pd.DataFrame({
                "modality": first["modality"], "method": first["method"], "channel": first["channel"],
                "measure": first["measure"], "contrast": cond["layer"] + "_without_" + cond["without"],
                "estimate": cond["estimate"], "p_value": cond["p_value"], "p_holm": cond["p_holm"], "exact": False,
            }))
        if first["method"] != contrast_method or first["measure"] != contrast_measure:
            continue
        estimate, p, exact = sign_flip_test(excess_scan @ weights.T, subjects, n_permutations, seed)
        rows.append(pd.DataFrame({
            "modality": first["modality"], "method": first["method"], "channel": first["channel"],
            "measure": first["measure"], "contrast": names, "estimate": estimate, "p_value": p,
            "p_holm": holm(p), "exact": exact,
        }))
    contrasts = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(CONTRAST_COLUMNS))
    return _calls_frame(parts), contrasts[list(CONTRAST_COLUMNS)]


__all__ = [
    "CALLS_COLUMNS",
    "ConditionalValues",
    "conditional_calls",
    "load_conditional",
    "contrast_weights",
    "LABEL_GAP",
    "holm",
    "label_gap",
    "label_permutation_test",
    "calls_and_contrasts",
    "layer_calls_table",
    "null_calibration",
    "paired_contrasts",
    "sign_flip_test",
    "subject_means",
    "top1_frequency",
]

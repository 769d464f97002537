"""Which layers drive the prediction: subject-level label permutation tests, Holm, conditional calls, top-1.

The call. A layer *drives* the prediction when its contribution to the logit (exact layer Shapley or IG,
in logit units) is higher in patients than in controls: the **label gap**, the patients-minus-controls
difference in mean contribution over held-out scans. It is tested by permuting the labels across subjects
(a subject's scans keep one label; exact under "the held-out contributions do not depend on the held-out
labels", conditional on the trained models) and Holm-corrected over the six layers. Its interval is a
subject-level BCa of the difference in means itself (``layer.stats.bootstrap.cluster_bootstrap_gap``):
both class means are recomputed in every resample, so it holds at any prevalence.

Why no null-model subtraction. A model trained on permuted labels has a held-out gap of expectation 0, so
subtracting the mean gap of R null models removes no bias; it adds their noise (power 0.53 -> 0.42 at
R = 2 in simulation, and a call flipped by one null model's chance gap). The null models stay as a
reported diagnostic: their mean gap is the ``null_mean`` column, next to the trained one.

Stored measures (``mass_share_abs`` and the other saliency measures) are **descriptions**, not tests: no
test of "trained above null" is valid at the few null models a study can afford (the rank p-value has a
floor of 1 / (R + 1), and a subject bootstrap with the null mean treated as known covered 0.41 with a
model offset of SD 0.02), so their rows carry the trained value, a subject-level interval conditional on
these models, the null models' value, and no p-value and no call (``kind = description``).

Why subjects: scans of one subject are correlated (ICC about 0.7). Every resampling here acts on
subjects. Permutation p-values use the +1 correction (Phipson & Smyth, Stat. Appl. Genet. Mol. Biol.
2010).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from layer.games import conditional_shapley
from layer.explain.registry import method as registered
from layer.attribution_files import load_methods, stored_methods
from layer.names import LAYERS, MODALITIES
from layer.stats.bootstrap import (
    _draw_counts,
    _subject_codes,
    cluster_bootstrap_gap,
    cluster_bootstrap_mean,
    gap_parts,
    subject_sums,
)
from layer.stats.tables import ScanCube, scan_cube

CALLS_COLUMNS: tuple[str, ...] = (
    "modality", "method", "channel", "layer", "measure", "kind", "estimate", "ci_low", "ci_high", "p_value",
    "p_holm", "driving", "top1_frequency", "null_mean", "n_null_models",
)
#: ``kind`` of a row: a tested call, or a description with no p-value and no call.
TEST, DESCRIPTION = "test", "description"
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


# --------------------------------------------------------------------------------------------------
# Which layer ranks first
# --------------------------------------------------------------------------------------------------


def top1_frequency(
    values: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_resamples: int,
    seed: int,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Share of subject-level bootstrap resamples in which each layer has the highest statistic.

    That is what a claim "layer X is highest" rests on (design note). The statistic of a resample is the
    pooled mean over the scans of the drawn subjects (a subject drawn m times counts m times) or, with
    ``labels``, the patients-minus-controls gap of those pooled means (both classes recomputed, as in
    :func:`layer.stats.bootstrap.cluster_bootstrap_gap`). NaN values are skipped; a layer undefined in a
    resample cannot win it. Ties go to the first layer. Sums to 1 over layers.

    Args:
        values: ``[n_scans, n_layers]``. subjects: ``[n_scans]``. labels: ``[n_scans]`` 0/1 or None.
    """
    x = np.asarray(values, dtype=np.float64)
    codes, n_subjects = _subject_codes(subjects)
    if x.ndim != 2 or x.shape[0] != codes.size:
        raise ValueError("values must be [n_scans, n_layers] with one subject label per scan")
    if labels is None:
        sums, counts = subject_sums(x, codes, n_subjects)

        def statistic(drawn: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return (drawn @ sums) / (drawn @ counts)
    else:
        statistic = gap_parts(x, labels, subjects).gap
    rng = np.random.default_rng(seed)
    wins = np.zeros(x.shape[1])
    batch = max(1, _BATCH_FLOATS // max(1, 2 * n_subjects + x.shape[1]))
    for b0 in range(0, n_resamples, batch):
        idx = rng.integers(0, n_subjects, size=(min(batch, n_resamples - b0), n_subjects))
        pooled = statistic(_draw_counts(idx, n_subjects))
        pooled = np.where(np.isfinite(pooled), pooled, -np.inf)
        wins += np.bincount(pooled.argmax(axis=1), minlength=x.shape[1])
    return wins / max(n_resamples, 1)


# --------------------------------------------------------------------------------------------------
# The label gap and its test
# --------------------------------------------------------------------------------------------------


#: Label-aligned measure: how much more a layer adds to the logit in patients than in controls.
LABEL_GAP = "label_gap"
#: Measures that are tested (the rest are descriptions).
TESTED_MEASURES: tuple[str, ...] = (LABEL_GAP,)


def signed_mass(cube: np.ndarray, measures: Sequence[str]) -> np.ndarray:
    """Signed layer contribution ``sum(a) = 2 * mass_pos - mass_abs`` from the two stored parts.

    For Integrated Gradients and layer Shapley this is the layer's share of the logit (completeness /
    efficiency), in logit units.
    """
    m = list(measures)
    return 2.0 * cube[..., m.index("mass_pos")] - cube[..., m.index("mass_abs")]


def label_permutation_test(
    contribution: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_permutations: int,
    seed: int,
    alternative: str = "greater",
) -> tuple[np.ndarray, np.ndarray]:
    """Test that a layer's contribution differs between patients and controls: (observed gap, p) per column.

    gap = pooled mean over the patients' scans minus the controls'. Labels are permuted across subjects
    (a subject's scans keep one label, the number of patients is kept), which is exact under the null
    hypothesis that the held-out contributions do not depend on the held-out labels, at any prevalence and
    any within-subject correlation: the test conditions on the trained models, so model-to-model variation
    (which a comparison with a few null models cannot estimate) does not enter.

    Args:
        contribution: ``[n_scans, L]`` finite per-scan values. labels: ``[n_scans]`` 0/1, constant within a
            subject. alternative: ``greater`` (is the gap positive?: gap* >= gap) or ``two-sided``
            (|gap*| >= |gap|, for contrasts between layers).

    Returns:
        ``(gap [L], p [L])`` with p = (1 + #{extreme permutations}) / (1 + n_permutations).
    """
    c = np.asarray(contribution, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    codes, n_subjects = _subject_codes(subjects)
    if c.ndim != 2 or c.shape[0] != codes.size or y.shape != (codes.size,):
        raise ValueError("contribution must be [n_scans, L] with one label and one subject per scan")
    if not np.isfinite(c).all():
        raise ValueError("contributions must be finite")
    if alternative not in ("greater", "two-sided"):
        raise ValueError(f"unknown alternative {alternative!r}; choose 'greater' or 'two-sided'")
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
    tol = 1e-12 * np.maximum(np.abs(observed), 1e-300)  # sums in another order: equal up to rounding
    rng = np.random.default_rng(seed)
    hits = np.zeros(c.shape[1])
    batch = max(1, _BATCH_FLOATS // max(1, n_subjects + c.shape[1]))
    for b0 in range(0, n_permutations, batch):
        k = min(batch, n_permutations - b0)
        permuted = gap(rng.permuted(np.broadcast_to(subject_label, (k, n_subjects)), axis=1))
        if alternative == "greater":
            hits += (permuted >= observed - tol).sum(axis=0)
        else:
            hits += (np.abs(permuted) >= np.abs(observed) - tol).sum(axis=0)
    return observed, (1.0 + hits) / (1.0 + n_permutations)


# --------------------------------------------------------------------------------------------------
# Conditional calls (exact layer Shapley)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionalValues:
    """Per-scan conditional layer Shapley values of the trained models of one modality x exact six-layer
    Shapley method: ``trained [n_scans, j, i]`` = layer i's value with layer j held absent
    (``layer.games``), on the scans ``scans``."""

    scans: list[str]
    trained: np.ndarray


def load_conditional(paths: Sequence[str]) -> dict[tuple[str, str], ConditionalValues]:
    """Conditional values of every (modality, exact Shapley method) from its trained models' attribution
    files (:mod:`layer.attribution_files`, one per model), read from the stored coalition values. Each file
    names its own modality and, for a null model, null replicate; null-model files are not used (the
    calls do not subtract null models)."""
    parts: dict[tuple[str, str], list[tuple[list[str], np.ndarray]]] = {}
    for path in paths:
        methods = [m for m in stored_methods(path) if registered(m).exact_layer_shapley]
        for arrays in load_methods([path], methods):
            if "modality" not in arrays:
                raise ValueError(f"{path}: not an attribution file of this workflow (no modality inside)")
            if "null_model" in arrays:
                break
            if "coalitions" not in arrays or arrays["coalitions"].shape[-1] != 2 ** len(LAYERS):
                raise ValueError(f"{path}: no values of the 64 layer coalitions for {arrays['method']}")
            key = (str(arrays["modality"]), str(arrays["method"]))
            parts.setdefault(key, []).append(
                ([str(x) for x in arrays["scan_ids"]], conditional_shapley(arrays["coalitions"], len(LAYERS)))
            )
    return {
        key: ConditionalValues([sid for ids, _ in pieces for sid in ids], np.concatenate([v for _, v in pieces]))
        for key, pieces in parts.items()
    }


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

    For every ordered pair of candidate layers (i, j): the label gap of i's Shapley value with j held
    absent, tested like the layer's own gap (:func:`label_permutation_test`). A layer's conditional p is
    its largest over j (an intersection-union test: it must survive the removal of every other
    candidate), Holm-corrected over the candidates. Columns :data:`CONDITIONAL_COLUMNS` (``p_holm``
    repeats the layer's adjusted conditional p on each of its rows).
    """
    rows = _rows(cv.scans, scans, "the exact-Shapley coalition values")
    pairs = [(i, j) for i in candidates for j in candidates if i != j]
    if not pairs:
        return pd.DataFrame(columns=list(CONDITIONAL_COLUMNS))
    t = np.stack([cv.trained[rows, j, i] for i, j in pairs], axis=1)
    estimate, p = label_permutation_test(t, y, subjects, n_permutations, seed)
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


def _null_rows(cube: ScanCube, scans: list[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """A null model's scans as positions in the trained models' ``scans``, and its values: a null model
    scores the held-out scans of its folds (``null.folds``), a subset of the trained models' scans."""
    position = {sid: i for i, sid in enumerate(scans)}
    extra = [sid for sid in cube.scans if sid not in position]
    if extra:
        raise ValueError(f"{name} scored scans {extra[:5]} that the trained models did not")
    return np.asarray([position[sid] for sid in cube.scans], dtype=np.int64), cube.values


# --------------------------------------------------------------------------------------------------
# The table of layer calls
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallSettings:
    """What the calls rule reads from the config (``calls`` and ``bootstrap`` blocks)."""

    measures: tuple[str, ...]
    describe: tuple[str, ...]
    alpha: float
    n_permutations: int
    n_resamples: int
    confidence_level: float
    seed: int


def check_measures(measures: Sequence[str], describe: Sequence[str]) -> None:
    """Refuse a stored measure in ``calls.measures``: it has no valid test here (module docstring)."""
    wrong = [m for m in measures if m not in TESTED_MEASURES]
    if wrong:
        raise ValueError(
            f"config calls.measures: {', '.join(wrong)} cannot be tested (no valid test of a stored measure "
            f"against a few null models; docs/methods.md); tested: {', '.join(TESTED_MEASURES)}; "
            f"list it under calls.describe"
        )
    tested = [m for m in describe if m in TESTED_MEASURES]
    if tested:
        raise ValueError(f"config calls.describe: {', '.join(tested)} is a test; list it under calls.measures")


def _family(
    modality: str, method: str, channel: str, measure: str, kind: str, estimate: np.ndarray, ci_low: np.ndarray,
    ci_high: np.ndarray, p: np.ndarray, top1: np.ndarray, null_mean: np.ndarray, n_null: int, alpha: float,
) -> pd.DataFrame:
    """One family's rows (six layers), columns :data:`CALLS_COLUMNS`; Holm and the call for a test."""
    p_holm = holm(p) if kind == TEST else np.full(len(LAYERS), np.nan)
    driving = pd.array((estimate > 0) & (p_holm <= alpha), dtype="boolean")
    if kind != TEST:
        driving[:] = pd.NA
    return pd.DataFrame({
        "modality": modality, "method": method, "channel": channel, "layer": list(LAYERS), "measure": measure,
        "kind": kind, "estimate": estimate, "ci_low": ci_low, "ci_high": ci_high, "p_value": p,
        "p_holm": p_holm, "driving": driving, "top1_frequency": top1, "null_mean": null_mean,
        "n_null_models": n_null,
    })


def _gap(values: np.ndarray, y: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """Patients-minus-controls difference of pooled means per column, NaN skipped (``[n_scans, L]`` -> ``[L]``)."""
    parts = gap_parts(values, y, subjects)
    return parts.gap(np.ones((1, parts.n_subjects)))[0]


def _pooled(values: np.ndarray) -> np.ndarray:
    """Mean over scans of each column, NaN skipped (``[n_scans, L]`` -> ``[L]``)."""
    defined = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, values, 0.0).sum(axis=0) / defined.sum(axis=0)


def _families(
    trained: pd.DataFrame,
    null: pd.DataFrame | None,
    labels: pd.Series | Mapping[str, int],
    settings: CallSettings,
    conditional: Mapping[tuple[str, str], ConditionalValues] | None = None,
):
    """Yield (rows of one family, its per-scan contributions ``[n_scans, 6]`` or None, labels, subjects,
    conditional tests or None); see :func:`calls_and_contrasts`."""
    check_measures(settings.measures, settings.describe)
    need = {"scan_id", "subject_id", "layer", "measure", "value", *FAMILY_KEYS}
    tables = [("trained", trained, need)] + ([("null", null, need | {"null_model"})] if null is not None else [])
    for name, table, required in tables:
        missing = required - set(table.columns)
        if missing:
            raise ValueError(f"{name} table lacks columns {sorted(missing)}")
    label_of = pd.Series(labels)
    label_of.index = label_of.index.astype(str)
    n_layers = len(LAYERS)
    s = settings
    for (modality, method), group in trained.groupby(["modality", "method"], sort=True):
        cube = scan_cube(group, modality)
        of_null = (
            null[(null["modality"] == modality) & (null["method"] == method)] if null is not None else pd.DataFrame()
        )
        # Each null model on the scans it scored (its folds: null.folds), as rows of the trained cube.
        null_runs = [
            _null_rows(scan_cube(g, modality), cube.scans, f"null model {r}")
            for r, g in of_null.groupby("null_model", sort=True)
        ] if len(of_null) else []
        y = label_of.reindex(cube.scans).to_numpy(dtype=np.float64)
        if np.isnan(y).any():
            raise ValueError(f"no label for scans {[s for s, v in zip(cube.scans, y) if np.isnan(v)][:5]}")
        for c, channel in enumerate(cube.channels):
            ids = (modality, method, channel)
            for measure in s.measures:  # LABEL_GAP: the only tested measure
                t_c = signed_mass(cube.values[:, c, :n_layers], cube.measures)
                estimate, p = label_permutation_test(t_c, y, cube.subjects, s.n_permutations, s.seed)
                ci = cluster_bootstrap_gap(t_c, y, cube.subjects, s.n_resamples, s.confidence_level, s.seed)
                null_gap = (
                    np.mean([_gap(signed_mass(z[:, c, :n_layers], cube.measures), y[at], cube.subjects[at])
                             for at, z in null_runs], axis=0)
                    if null_runs else np.full(n_layers, np.nan)
                )
                top1 = top1_frequency(t_c, cube.subjects, s.n_resamples, s.seed, labels=y)
                rows = _family(*ids, measure, TEST, estimate, ci.ci_low, ci.ci_high, p, top1, null_gap,
                               len(null_runs), s.alpha)
                cond = None
                cv = (conditional or {}).get((modality, method))
                if cv is not None and len(cube.channels) == 1:
                    candidates = np.flatnonzero(rows["driving"].to_numpy(dtype=bool))
                    cond = conditional_calls(cv, cube.scans, y, cube.subjects, candidates, s.n_permutations, s.seed)
                    if len(cond):
                        adjusted = cond.groupby("layer")["p_holm"].first().reindex(list(LAYERS), fill_value=0.0)
                        rows["p_holm"] = np.maximum(rows["p_holm"].to_numpy(), adjusted.to_numpy())
                        rows["driving"] = pd.array(
                            (rows["estimate"] > 0) & (rows["p_holm"] <= s.alpha), dtype="boolean"
                        )
                yield rows, t_c, y, cube.subjects, cond
            for measure in s.describe:
                if measure not in cube.measures:
                    raise ValueError(f"measure {measure!r} is not in the aggregated table of {method}")
                m = cube.measures.index(measure)
                t = cube.values[:, c, :n_layers, m]
                ci = cluster_bootstrap_mean(t, cube.subjects, s.n_resamples, s.confidence_level, s.seed)
                null_mean = (
                    np.mean([_pooled(z[:, c, :n_layers, m]) for _, z in null_runs], axis=0)
                    if null_runs else np.full(n_layers, np.nan)
                )
                top1 = top1_frequency(t, cube.subjects, s.n_resamples, s.seed)
                rows = _family(*ids, measure, DESCRIPTION, ci.estimate, ci.ci_low, ci.ci_high,
                               np.full(n_layers, np.nan), top1, null_mean, len(null_runs), s.alpha)
                yield rows, None, y, cube.subjects, None


def _calls_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=list(CALLS_COLUMNS))
    table = pd.concat(parts, ignore_index=True)
    rank = {m: i for i, m in enumerate(MODALITIES)}
    table["_rank"] = table["modality"].map(rank)
    table = table.sort_values(["_rank", "method"], kind="stable")
    return table[list(CALLS_COLUMNS)].reset_index(drop=True)


CONTRAST_COLUMNS: tuple[str, ...] = (
    "modality", "method", "channel", "measure", "contrast", "estimate", "p_value", "p_holm", "test",
)
#: ``test`` of a contrast row.
TWO_SIDED = "label permutation, two-sided"
CONDITIONAL = "label permutation, one-sided, other layer held absent"


def calls_and_contrasts(
    trained: pd.DataFrame,
    null: pd.DataFrame | None,
    labels: pd.Series | Mapping[str, int],
    settings: CallSettings,
    contrast_method: str = "",
    conditional: Mapping[tuple[str, str], ConditionalValues] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table of layer calls and, for ``contrast_method``, the label gap of layer contrasts.

    Args:
        trained: long per-scan scores (``layer.aggregate`` layout) with columns ``scan_id, subject_id,
            modality, method, channel, layer, measure, value``; one trained model per scan.
        null: the same plus ``null_model`` (one id per null replicate), scoring the same scans, or None:
            a diagnostic only (``null_mean``), never a term of a test.
        labels: true label per scan id.
        settings: :class:`CallSettings`; ``measures`` are tested (:data:`TESTED_MEASURES`), ``describe``
            are stored measures reported as descriptions.
        conditional: exact six-layer Shapley methods (:func:`load_conditional`): where two or more layers
            pass the label-gap test, each must also pass it with every other such layer held absent
            (:func:`conditional_calls`); its ``p_holm`` becomes the larger of the two adjusted p-values,
            and the pair tests are added to the contrasts as ``<layer>_without_<other>``. A layer whose gap
            is only its share of an interaction with a driving neighbour is then not called.

    Returns:
        ``(calls, contrasts)``. ``calls``: columns :data:`CALLS_COLUMNS`, one family per modality x method x
        channel x measure (channels include ``all`` for a multi-channel modality); for a test, Holm over its
        six layers and ``driving`` = estimate > 0 and ``p_holm <= alpha``; ``top1_frequency`` = share of
        subject bootstrap resamples in which the layer has the largest statistic. ``contrasts``: columns
        :data:`CONTRAST_COLUMNS`: ``dfm_minus_muscle``, ``non_muscle_minus_muscle`` (the five upper layers
        together against the muscle, the paper's fused comparison) and each layer against the mean of the
        other five, label gap of the contrast with a two-sided label permutation p, Holm per family.
    """
    parts, rows = [], []
    names, weights = contrast_weights(LAYERS, pairs=(("dfm", "muscle"),), one_vs_rest=True)
    non_muscle = np.where(np.asarray(LAYERS) == "muscle", -1.0, 1.0)
    names = names[:1] + ["non_muscle_minus_muscle"] + names[1:]
    weights = np.vstack([weights[:1], non_muscle, weights[1:]])
    s = settings
    for calib, contribution, y, subjects, cond in _families(trained, null, labels, s, conditional):
        parts.append(calib)
        first = calib.iloc[0]
        ids = {key: first[key] for key in ("modality", "method", "channel", "measure")}
        if cond is not None and len(cond):
            rows.append(pd.DataFrame({
                **ids, "contrast": cond["layer"] + "_without_" + cond["without"], "estimate": cond["estimate"],
                "p_value": cond["p_value"], "p_holm": cond["p_holm"], "test": CONDITIONAL,
            }))
        if contribution is None or first["method"] != contrast_method:
            continue
        estimate, p = label_permutation_test(
            contribution @ weights.T, y, subjects, s.n_permutations, s.seed, alternative="two-sided"
        )
        rows.append(pd.DataFrame({
            **ids, "contrast": names, "estimate": estimate, "p_value": p, "p_holm": holm(p), "test": TWO_SIDED,
        }))
    contrasts = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(CONTRAST_COLUMNS))
    return _calls_frame(parts), contrasts[list(CONTRAST_COLUMNS)]


__all__ = [
    "CALLS_COLUMNS",
    "CONTRAST_COLUMNS",
    "CallSettings",
    "ConditionalValues",
    "LABEL_GAP",
    "TESTED_MEASURES",
    "calls_and_contrasts",
    "check_measures",
    "conditional_calls",
    "contrast_weights",
    "holm",
    "label_permutation_test",
    "load_conditional",
    "signed_mass",
    "top1_frequency",
]

"""The LAYER paper's kind of layer numbers, in stated variants, held against null models.

Why: the paper's two fused numbers (non-muscle 0.316, muscle 0.317) sum to 0.633, so its "saliency" is not
a share of one total (our ``mass_share_abs``). Which map and which normalisation it used is not stated, so
each variant here is a stated definition on a stated map, and each is read in models trained on permuted
labels too: density-type numbers give thin bright membranes 8-13 times their volume share in such models
(../shared/design/attribution.md), and "the DFM has the highest saliency" means nothing until the same
number in a model that learned nothing is beside it.

Variants (per scan, on the channel-summed magnitude ``s = sum_c |a_c|`` of a voxel map):

* ``mean_normalised``: ``s`` min-max scaled to [0, 1] over the whole volume (MONAI's CAM post-processing),
  averaged over the region's voxels; a composite is the mean over the union of its layers' voxels, which
  is not the sum of its parts, and layers need not sum to 1 (the only variant that can give the paper's
  pattern of a composite and a layer both near 0.32).
* ``whole_map_share``: the region's part of ``s`` over the whole volume, background included, so the six
  layers need not sum to 1; a composite is the sum of its parts.
* ``mass_share_abs``: the region's part of ``s`` inside the six layers (as ``layer.aggregate``); the six
  layers sum to 1 and a composite is the sum of its parts, so non-muscle + muscle = 1 always.

Regions are those of the rest of the study: membranes grown by ``attribution.membrane_margin``
(:func:`layer.regions.membranes.membrane_regions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from layer.aggregate import _as_labels, _sums  # the one per-label summing kernel of the study
from layer.attribution_files import load_method
from layer.io import load_nifti
from layer.names import LAYERS, PAPER_MODALITIES
from layer.regions.membranes import membrane_regions
from layer.stats.bootstrap import cluster_bootstrap_mean
from layer.stats.tables import NON_MUSCLE, NON_MUSCLE_LAYERS

#: Numbers reported in the paper: (modality, layer) -> value (0.420 B-mode DFM; 0.316 / 0.317 fused
#: non-muscle / muscle; they sum to 0.633, so they are not shares of one total).
PAPER_VALUES: dict[tuple[str, str], float] = {
    ("bmode", "dfm"): 0.420,
    ("fused", NON_MUSCLE): 0.316,
    ("fused", "muscle"): 0.317,
}

#: Variant name -> what it is (the ``definition`` column starts with it).
VARIANTS: dict[str, str] = {
    "mean_normalised": (
        "mean over the region's voxels of the scan's channel-summed |map| min-max scaled to [0, 1] over the "
        "whole volume (MONAI CAM post-processing); composite = mean over the union of its layers' voxels"
    ),
    "whole_map_share": (
        "region's part of the channel-summed |map| over the whole volume, background included (layers need "
        "not sum to 1); composite = sum of its parts"
    ),
    "mass_share_abs": (
        "region's part of the channel-summed |map| inside the six layers (layers sum to 1); composite = sum "
        "of its parts"
    ),
}
#: The six layers and the paper's composite.
REGIONS: tuple[str, ...] = (*LAYERS, NON_MUSCLE)
#: Label values (1..6) of the composite's layers.
_NON_MUSCLE_LABELS = [LAYERS.index(layer) + 1 for layer in NON_MUSCLE_LAYERS]

PAPER_COLUMNS: tuple[str, ...] = (
    "modality", "map", "variant", "layer", "trained", "ci_low", "ci_high", "null_mean", "n_null_models",
    "excess", "p_value", "p_floor", "paper_value", "primary_estimate", "primary_p_holm", "primary_driving",
    "n_subjects", "n_scans", "definition",
)


def region_variants(maps: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Every variant of every region of each scan.

    Args:
        maps: ``[N, C, D, H, W]`` voxel attributions (any float dtype; C = 1 for Grad-CAM).
        labels: ``[N, D, H, W]`` integer regions, 0 = background, 1..6 = ``LAYERS``.

    Returns:
        ``[N, len(REGIONS), len(VARIANTS)]`` float64, in ``REGIONS`` x ``VARIANTS`` order. NaN where a
        region has no voxel (mean), the map is constant (mean_normalised) or has no mass (shares).
    """
    maps = np.asarray(maps)
    labels = _as_labels(labels)
    if maps.ndim != 5 or labels.shape != maps.shape[:1] + maps.shape[2:]:
        raise ValueError(f"shapes {maps.shape} and {labels.shape} are not [N,C,D,H,W] and [N,D,H,W]")
    n, c = maps.shape[:2]
    att = maps.reshape(n, c, -1)
    mass, counts = _sums(att, labels.reshape(n, -1))
    per_label = mass[..., 0].sum(axis=1)  # [N, 7]: channel-summed |a| per label, 0 = background
    magnitude = np.abs(att.astype(np.float64)).sum(axis=1)  # [N, V]
    lo, hi = magnitude.min(axis=1), magnitude.max(axis=1)
    region_mass = np.concatenate([per_label[:, 1:], per_label[:, _NON_MUSCLE_LABELS].sum(1, keepdims=True)], axis=1)
    region_n = np.concatenate([counts[:, 1:], counts[:, _NON_MUSCLE_LABELS].sum(1, keepdims=True)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(region_n > 0, region_mass / region_n, np.nan)
        spread = hi - lo
        normalised = np.where(spread[:, None] > 0, (mean - lo[:, None]) / spread[:, None], np.nan)
        whole = region_mass / per_label.sum(axis=1, keepdims=True)
        inside = region_mass / per_label[:, 1:].sum(axis=1, keepdims=True)
    out = np.stack([normalised, whole, inside], axis=-1)
    return np.where(np.isfinite(out), out, np.nan)


def paper_scores(path: str, method: str, sheet: pd.DataFrame, membrane_margin: int) -> pd.DataFrame:
    """The variants of one voxel-map method of a model's attribution file, long: ``modality, fold,
    [null_model,] map, scan_id, subject_id, layer, variant, value`` (one row per scan x region x variant;
    the model's identity read from the file, never from its path), the regions read from the sheet's
    ``layers`` paths with membranes grown by ``membrane_margin``."""
    arrays = load_method(path, method)
    if "maps" not in arrays:
        raise ValueError(f"{path}: method {method} holds layer scores, not voxel maps; the paper table reads maps")
    ids = [str(s) for s in arrays["scan_ids"]]
    rows = sheet.set_index(sheet["scan_id"].astype(str))
    missing = sorted(set(ids) - set(rows.index))
    if missing:
        raise ValueError(f"scans {missing[:5]} of {path} are not in the cohort sheet")
    labels = membrane_regions(np.stack([_as_labels(load_nifti(rows.at[s, "layers"])[0]) for s in ids]), membrane_margin)
    values = region_variants(arrays["maps"], labels)  # [N, R, V]
    n, r, v = values.shape
    identity = {"modality": str(arrays["modality"]), "fold": int(arrays["fold"])}
    if "null_model" in arrays:
        identity["null_model"] = int(arrays["null_model"])
    return pd.DataFrame({
        **identity,
        "map": method,
        "scan_id": np.repeat(ids, r * v),
        "subject_id": np.repeat(rows.loc[ids, "subject_id"].astype(str).to_numpy(), r * v),
        "layer": np.tile(np.repeat(REGIONS, v), n),
        "variant": np.tile(list(VARIANTS), n * r),
        "value": values.reshape(-1),
    })


def rank_p_value(trained: float, null: Sequence[float]) -> float:
    """Monte Carlo rank p of the trained models' value among R null replicates, one-sided (excess > 0):
    ``(1 + #{null >= trained}) / (R + 1)``. Exact when labels carry no signal, because the trained models
    are then one more draw of the null models' training; its floor is ``1 / (R + 1)``. NaN with no null."""
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if not null.size or not np.isfinite(trained):
        return float("nan")
    return float((1 + np.sum(null >= trained)) / (null.size + 1))


def _wide(scores: pd.DataFrame) -> pd.DataFrame:
    """Scans x (layer, variant) values, with the scan's subject as index level."""
    return scores.pivot_table(index=["subject_id", "scan_id"], columns=["layer", "variant"], values="value",
                              aggfunc="first", dropna=False)


def _primary(calls: pd.DataFrame | None, contrasts: pd.DataFrame | None, modality: str, layer: str,
             method: str) -> tuple[float, float, str]:
    """(label-gap estimate, Holm p, driving) of the primary method's call for one modality x layer; the
    ``non_muscle_minus_muscle`` contrast for the composite; NaN / '' where the study has none."""
    if layer == NON_MUSCLE:
        if contrasts is None:
            return np.nan, np.nan, ""
        hit = contrasts[(contrasts["modality"] == modality) & (contrasts["method"] == method)
                        & (contrasts["contrast"] == "non_muscle_minus_muscle")]
        if hit.empty:
            return np.nan, np.nan, ""
        row = hit.iloc[0]
        return float(row["estimate"]), float(row["p_holm"]), "contrast with muscle"
    if calls is None:
        return np.nan, np.nan, ""
    hit = calls[(calls["modality"] == modality) & (calls["method"] == method) & (calls["layer"] == layer)
                & (calls["kind"] == "test")]
    if hit.empty:
        return np.nan, np.nan, ""
    if hit["channel"].nunique() > 1:
        hit = hit[hit["channel"] == "all"] if (hit["channel"] == "all").any() else hit.iloc[:0]
    if hit.empty:
        return np.nan, np.nan, ""
    row = hit.iloc[0]
    return float(row["estimate"]), float(row["p_holm"]), "yes" if bool(row["driving"]) else "no"


def paper_table(
    trained: pd.DataFrame,
    null: pd.DataFrame,
    n_resamples: int,
    confidence_level: float,
    seed: int,
    membrane_margin: int,
    calls: pd.DataFrame | None = None,
    contrasts: pd.DataFrame | None = None,
    primary_method: str = "shapley_background",
) -> pd.DataFrame:
    """Every variant of every map, modality and region: the trained models' pooled value with a subject-level
    BCa interval (conditional on the models), the null models' mean, the excess and its rank p over the null
    replicates, the paper's value where it has one and the primary method's call beside it.

    Args:
        trained: rows of :func:`paper_scores` with ``modality, map, fold`` (every trained model).
        null: the same for the null models, with ``null_model`` (the replicate); may be empty.
        calls, contrasts: the study's ``layer_calls.tsv`` / ``layer_contrasts.tsv`` (primary columns).

    The excess is ``trained - null_mean``; its p is :func:`rank_p_value` of the trained models' value on the
    null folds' scans among the R replicates' values on the same scans (a subject bootstrap of the excess is
    not valid: it treats the null mean as known and leaves out each model's own offset; docs/methods.md).
    """
    columns = list(PAPER_COLUMNS)
    if trained.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (modality, map_name), part in trained.groupby(["modality", "map"], sort=False):
        wide = _wide(part)
        keys = list(wide.columns)
        ci = cluster_bootstrap_mean(wide.to_numpy(), wide.index.get_level_values("subject_id"), n_resamples,
                                    confidence_level, seed)
        nulls = null[(null["modality"] == modality) & (null["map"] == map_name)] if len(null) else null
        replicates = sorted(nulls["null_model"].unique()) if len(nulls) else []
        null_mean = nulls.groupby(["layer", "variant"])["value"].mean() if len(nulls) else pd.Series(dtype=float)
        matched = part[part["fold"].isin(nulls["fold"].unique())] if len(nulls) else part.iloc[:0]
        matched_mean = matched.groupby(["layer", "variant"])["value"].mean()
        per_replicate = (nulls.groupby(["null_model", "layer", "variant"])["value"].mean() if len(nulls)
                         else pd.Series(dtype=float))
        n_models = nulls.groupby(["null_model", "fold"]).ngroups if len(nulls) else 0
        for j, (layer, variant) in enumerate(keys):
            est = float(ci.estimate[j])
            nm = float(null_mean.get((layer, variant), np.nan))
            reps = [per_replicate.get((r, layer, variant), np.nan) for r in replicates]
            p = rank_p_value(float(matched_mean.get((layer, variant), np.nan)), reps)
            primary = _primary(calls, contrasts, modality, layer, primary_method)
            composite = (" over the union of the five non-muscle layers" if layer == NON_MUSCLE else "")
            definition = (
                f"{variant}: {VARIANTS[variant]}; map {map_name} of the {modality} model; region {layer}{composite}, "
                f"membranes (sfm, dfm) grown by {membrane_margin} voxel(s) each side; pooled mean over held-out "
                f"scans, subject-level BCa CI of the trained value (conditional on the models); p = rank of the "
                f"trained value among {len(replicates)} null replicate(s) on the same scans"
            )
            rows.append((
                modality, map_name, variant, layer, est, float(ci.ci_low[j]), float(ci.ci_high[j]), nm, n_models,
                est - nm, p, 1.0 / (len(replicates) + 1) if replicates else np.nan,
                PAPER_VALUES.get((modality, layer), np.nan), *primary,
                int(ci.n_subjects[j]), int(ci.n_scans[j]), definition,
            ))
    table = pd.DataFrame(rows, columns=columns)
    order = {name: i for i, name in enumerate(REGIONS)}
    vorder = {name: i for i, name in enumerate(VARIANTS)}
    return (table.assign(_l=table["layer"].map(order), _v=table["variant"].map(vorder))
            .sort_values(["modality", "map", "_v", "_l"], kind="stable").drop(columns=["_l", "_v"])
            .reset_index(drop=True))


CHECK_COLUMNS: tuple[str, ...] = (
    "cohort", "map", "variant", "question", "models", "answer", "value", "primary", "auc_bmode", "auc_fused",
    "sentence",
)


def _primary_sentence(table: pd.DataFrame, modality: str) -> str:
    """The primary method's driving layers of one modality, from a paper table's ``primary_*`` columns."""
    rows = table[(table["modality"] == modality) & (table["layer"] != NON_MUSCLE)].drop_duplicates("layer")
    if rows.empty or rows["primary_driving"].eq("").all():
        return "no primary call"
    driving = rows.loc[rows["primary_driving"] == "yes", "layer"].tolist()
    return f"label-gap calls ({modality}): {', '.join(driving) if driving else 'no layer driving'}"


def _dfm_first(values: pd.Series) -> tuple[str, str, str]:
    """(answer, numbers, finding) of "the DFM ranks first" over the six B-mode layers' ``values``."""
    if values.reindex(list(LAYERS)).notna().sum() < len(LAYERS):
        return "undefined", "", "no B-mode numbers (no model, or a map that is zero everywhere)"
    top = str(values.idxmax())
    rank = int(values.rank(ascending=False)["dfm"])
    numbers = f"top {top} {values[top]:.3f}; dfm {values['dfm']:.3f} (rank {rank})"
    if top == "dfm":
        return "yes", numbers, "the DFM ranks first in B-mode"
    return "no", numbers, f"the DFM does not rank first in B-mode ({top} does; the DFM is {rank})"


def _about_equal(values: pd.Series, equal_ratio: float) -> tuple[str, str, str]:
    """(answer, numbers, finding) of "non-muscle about equals muscle" from the fused model's ``values``."""
    nm, mu = float(values.get(NON_MUSCLE, np.nan)), float(values.get("muscle", np.nan))
    if not (np.isfinite(nm) and np.isfinite(mu) and mu > 0):
        return "undefined", "", "no fused numbers (no model, or a map that is zero everywhere)"
    ratio = nm / mu
    answer = "yes" if 1.0 / equal_ratio <= ratio <= equal_ratio else "no"
    verdict = "about equal to" if answer == "yes" else ("above" if ratio > 1 else "below")
    numbers = f"non_muscle {nm:.3f}, muscle {mu:.3f}, ratio {ratio:.2f}, sum {nm + mu:.3f}"
    finding = f"non-muscle is {verdict} muscle in the fused model ({nm:.3f} vs {mu:.3f}; the paper: 0.316 vs 0.317)"
    return answer, numbers, finding


def paper_check(
    tables: Mapping[str, pd.DataFrame], performance: Mapping[str, pd.DataFrame], equal_ratio: float
) -> pd.DataFrame:
    """The paper's two claims, answered per cohort x map x variant, in the trained and in the null models.

    ``dfm_first_bmode``: the DFM has the largest value of the six layers of the B-mode model.
    ``non_muscle_equals_muscle_fused``: non-muscle / muscle of the fused model lies in
    ``[1 / equal_ratio, equal_ratio]``. ``answer`` is ``yes``, ``no`` or ``undefined`` (the numbers are missing:
    no null model, or a map that is zero on every scan, as a null model's last-block Grad-CAM can be).
    ``models`` is ``trained`` or ``null_models`` (words a TSV reader does not take for missing values).
    One plain sentence per row.

    Args:
        tables: cohort -> its :func:`paper_table`; performance: cohort -> its ``performance.tsv``.
    """
    rows = []
    for cohort, table in tables.items():
        perf = performance[cohort]
        auc = {m: perf.loc[(perf["modality"] == m) & (perf["metric"] == "auc"), "estimate"] for m in PAPER_MODALITIES}
        auc = {m: float(v.iloc[0]) if len(v) else np.nan for m, v in auc.items()}
        primary = {m: _primary_sentence(table, m) for m in PAPER_MODALITIES}
        for (map_name, variant), part in table.groupby(["map", "variant"], sort=False):
            bmode = part[(part["modality"] == "bmode") & part["layer"].isin(LAYERS)].set_index("layer")
            fused = part[part["modality"] == "fused"].set_index("layer")
            for models, column in (("trained", "trained"), ("null_models", "null_mean")):
                answers = {
                    "dfm_first_bmode": (_dfm_first(bmode[column].astype(float)), "bmode"),
                    "non_muscle_equals_muscle_fused": (_about_equal(fused[column].astype(float), equal_ratio), "fused"),
                }
                for question, ((answer, value, finding), modality) in answers.items():
                    sentence = f"{cohort}, {map_name} {variant}, {models} models: {finding}."
                    rows.append((cohort, map_name, variant, question, models, answer, value, primary[modality],
                                 auc["bmode"], auc["fused"], sentence))
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS))

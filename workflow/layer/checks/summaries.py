"""Sanity and faithfulness checks of layer attributions: parameter randomisation and layer deletion curves.

* Sanity (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018): re-initialise the model's
  parameters block by block from the output down (cascading randomisation) and compare the layer profile
  with the trained model's by Spearman rank correlation. A profile that survives randomisation reflects
  the input or the aggregation (e.g. layer volume), not what the model learned.
* Faithfulness: delete layers most-relevant-first with a removal operator and follow the logit (deletion
  curve; Petsiuk et al., RISE, BMVC 2018; Samek et al., IEEE TNNLS 2017). Summarised by the area over the
  perturbation curve, AOPC = mean over steps k = 0..n of f(x) - f(x without the first k layers) (Samek et
  al.): larger = the attributed order removes evidence faster. The reference is a random order: with six
  layers all 2^6 coalition values are known after one Shapley run, so every deletion curve is a lookup
  and the random-order baseline is exact (the mean over all n! orders), as is the share of orders that
  the attributed one beats.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from layer.explain.registry import METHODS
from layer.games import shapley_from_values
from layer.names import LAYERS, N_LAYERS


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (``[..., n]`` -> ``[...]``).

    Average ranks for ties (as ``scipy.stats.spearmanr``); NaN for a constant row.
    """
    ra = sps.rankdata(np.asarray(a, dtype=np.float64), axis=-1)
    rb = sps.rankdata(np.asarray(b, dtype=np.float64), axis=-1)
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=-1) / np.sqrt((ra**2).sum(axis=-1) * (rb**2).sum(axis=-1))


def deletion_curve(values: np.ndarray, order: Sequence[int], n_players: int) -> np.ndarray:
    """Logit after deleting 0, 1, ..., n players in ``order``, read from all 2^n coalition values."""
    mask = 2**n_players - 1
    curve = [float(values[mask])]
    for p in order:
        mask &= ~(1 << int(p))
        curve.append(float(values[mask]))
    return np.asarray(curve)


def area_over_curve(curve: np.ndarray) -> float:
    """AOPC: mean over the curve's points of (first point - point); 0 for a flat curve."""
    c = np.asarray(curve, dtype=np.float64)
    return float(np.mean(c[0] - c))


def attributed_order(scores: np.ndarray) -> np.ndarray:
    """Players most-relevant-first (descending signed score; ties by index)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def random_order_baseline(values: np.ndarray, n_players: int) -> float:
    """Exact mean AOPC over all n! deletion orders, from the 2^n coalition values.

    After k deletions in a uniformly random order the remaining coalition is a uniform subset of size
    n - k, so the expected curve is the mean value per coalition size.
    """
    v = np.asarray(values, dtype=np.float64)
    size = np.array([bin(m).count("1") for m in range(2**n_players)])
    expected = np.array([v[size == n_players - k].mean() for k in range(n_players + 1)])
    return area_over_curve(expected)


def order_percentile(values: np.ndarray, order: Sequence[int], n_players: int) -> float:
    """Share of all n! deletion orders whose AOPC is <= that of ``order`` (1 = no order is better).

    Enumerates orders, so meant for the six layers (720 orders).
    """
    if math.factorial(n_players) > 50_000:
        raise ValueError("too many players to enumerate all deletion orders")
    mine = area_over_curve(deletion_curve(values, order, n_players))
    all_aopc = np.array(
        [area_over_curve(deletion_curve(values, o, n_players)) for o in itertools.permutations(range(n_players))]
    )
    return float(np.mean(all_aopc <= mine + 1e-12))


# --------------------------------------------------------------------------------------------------
# Tables of the checks rule (no torch: inputs are aggregated tables and saved coalition values)
# --------------------------------------------------------------------------------------------------

#: Label-free share used for layer profiles (sanity, robustness): the paper's kind of number.
PROFILE_MEASURE = "mass_share_abs"


def scan_contributions(table: pd.DataFrame) -> pd.DataFrame:
    """Signed contribution ``2 * mass_pos - mass_abs`` per scan and layer, summed over channels
    (wide: index ``scan_id``, columns ``LAYERS``)."""
    wide = table[table["measure"].isin(["mass_abs", "mass_pos"])].pivot_table(
        index=["scan_id", "layer"], columns="measure", values="value", aggfunc="sum"
    )
    signed = (2.0 * wide["mass_pos"] - wide["mass_abs"]).unstack("layer")
    return signed.reindex(columns=list(LAYERS))


def _all_orders(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.int64)


def _order_masks(orders: np.ndarray, n: int) -> np.ndarray:
    """``[n_orders, n + 1]`` coalition bitmasks after deleting 0..n players in each order."""
    masks = np.empty((orders.shape[0], n + 1), dtype=np.int64)
    masks[:, 0] = 2**n - 1
    for k in range(n):
        masks[:, k + 1] = masks[:, k] & ~(np.int64(1) << orders[:, k])
    return masks


def faithfulness_tables(
    coalitions: np.ndarray, scan_ids: list[str], labels: np.ndarray, contributions: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deletion curves of every method's layer order, read from the exact coalition values of one model
    set (``[n_scans, 64]``, six layers removed with the checks' removal operator).

    Per scan the target is the predicted class (sign of the unchanged logit ``t``); layers are deleted
    most-relevant-first by ``t * contribution``, and the curve is ``t * logit``. Returns (curves, summary):
    curves ``method, step, mean_drop, auc`` for each method plus ``random`` (exact mean over all 720
    orders) and ``shapley_exact`` (the order of the exact Shapley values of the same game); summary
    ``method, n_scans, aopc, aopc_random, aopc_shapley, order_percentile, auc_full, auc_after_1,
    auc_after_2``. ``order_percentile``: mean share of the 720 orders a method's order beats or ties.
    """
    v = np.asarray(coalitions, dtype=np.float64)
    n = N_LAYERS
    y = np.asarray(labels, dtype=int)
    target = np.where(v[:, -1] >= 0, 1.0, -1.0)
    orders = _all_orders(n)
    masks = _order_masks(orders, n)
    curves_all = v[:, masks] * target[:, None, None]  # [S, 720, 7]
    aopc_all = (curves_all[:, :, :1] - curves_all).mean(axis=2)  # [S, 720]
    size = np.array([bin(m).count("1") for m in range(2**n)])
    expected = np.stack([v[:, size == n - k].mean(axis=1) for k in range(n + 1)], axis=1)  # [S, 7] raw logits
    both_classes = 0 < y.sum() < len(y)

    def auc(x: np.ndarray) -> float:
        return float(roc_auc_score(y, x)) if both_classes else float("nan")

    phi = shapley_from_values(v, n)
    methods = dict(contributions)
    methods["shapley_exact"] = pd.DataFrame(phi, index=scan_ids, columns=list(LAYERS))
    curve_rows, summary_rows = [], []
    random_drop = ((expected[:, :1] - expected) * target[:, None]).mean(axis=0)
    for k in range(n + 1):
        curve_rows.append(("random", k, random_drop[k], auc(expected[:, k])))
    index_of = {tuple(o): i for i, o in enumerate(orders)}
    per_method_aopc: dict[str, np.ndarray] = {}
    for method, table in methods.items():
        c = table.reindex(index=scan_ids, columns=list(LAYERS)).to_numpy(dtype=np.float64)
        if np.isnan(c).any():
            raise ValueError(f"method {method} did not score every scan of the Shapley run")
        order = np.argsort(-(c * target[:, None]), axis=1, kind="stable")
        which = np.array([index_of[tuple(o)] for o in order])
        curve = curves_all[np.arange(len(v)), which]  # [S, 7], target-signed
        raw = v[np.arange(len(v))[:, None], masks[which]]
        per_method_aopc[method] = aopc_all[np.arange(len(v)), which]
        drops = (curve[:, :1] - curve).mean(axis=0)
        for k in range(n + 1):
            curve_rows.append((method, k, drops[k], auc(raw[:, k])))
        beaten = (aopc_all <= per_method_aopc[method][:, None] + 1e-12).mean(axis=1)
        summary_rows.append([method, len(v), per_method_aopc[method].mean(), float(beaten.mean()),
                             auc(raw[:, 0]), auc(raw[:, 1]), auc(raw[:, 2])])
    aopc_random = float(((expected[:, :1] - expected) * target[:, None]).mean())
    aopc_shapley = float(per_method_aopc["shapley_exact"].mean())
    summary = pd.DataFrame(
        [[m, k, a, aopc_random, aopc_shapley, pct, a0, a1, a2] for m, k, a, pct, a0, a1, a2 in summary_rows],
        columns=["method", "n_scans", "aopc", "aopc_random", "aopc_shapley", "order_percentile", "auc_full",
                 "auc_after_1", "auc_after_2"],
    )
    curves = pd.DataFrame(curve_rows, columns=["method", "step", "mean_drop", "auc"])
    return curves, summary


def faithfulness_by_operator(
    aggregated: pd.DataFrame, shapley_runs: Sequence[Mapping[str, np.ndarray]], labels: pd.Series
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`faithfulness_tables` per modality and deletion operator, stacked, with columns ``modality``,
    ``operator`` and (summary) ``own_operator``.

    Why several operators: deleting with the operator a removal method was computed with hands that method
    the win (its values are differences of the very coalition values the curve reads). Each exact
    Shapley run (one attribution file per fold: its ``modality``, ``method`` and ``coalitions``) gives one
    deletion operator (``layer.explain.registry``); ``own_operator`` marks the rows where it is the scored
    method's own, to be read on the other operator's rows.
    """
    curves, summaries = [], []
    for modality, of_modality in aggregated.groupby("modality", sort=False):
        contributions = {method: scan_contributions(t) for method, t in of_modality.groupby("method", sort=True)}
        runs = [run for run in shapley_runs if str(run["modality"]) == modality]
        for method in dict.fromkeys(str(run["method"]) for run in runs):  # in the config's operator order
            operator = METHODS[method].operator
            coalitions = pd.concat(
                [pd.DataFrame(run["coalitions"], index=[str(s) for s in run["scan_ids"]])
                 for run in runs if str(run["method"]) == method]
            ).sort_index()
            ids = coalitions.index.tolist()
            curve, summary = faithfulness_tables(coalitions.to_numpy(), ids, labels.loc[ids].to_numpy(), contributions)
            own = [getattr(METHODS.get(m), "operator", None) == operator for m in summary["method"]]
            curves.append(curve.assign(modality=modality, operator=operator))
            summaries.append(summary.assign(modality=modality, operator=operator, own_operator=own))
    return pd.concat(curves, ignore_index=True), pd.concat(summaries, ignore_index=True)


def layer_profile(table: pd.DataFrame, measure: str = PROFILE_MEASURE) -> pd.Series:
    """Mean over scans of ``measure`` per layer, on the channel that stands for the whole model (``all``
    if there are several channels: the measure of the channel-summed attribution is not stored, so the
    mean over channels is used)."""
    rows = table[table["measure"] == measure]
    return rows.groupby("layer")["value"].mean().reindex(list(LAYERS))


def sanity_table(profiles: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Spearman correlation of each cascade level's layer profile with the trained model's, per
    modality x method; ``flagged`` = the fully randomised model's profile still correlates >= threshold
    (the profile reflects the input or the layer masks, not what the model learned)."""
    rows = []
    for (modality, method), group in profiles.groupby(["modality", "method"], sort=False):
        trained = layer_profile(group[group["blocks_randomised"] == 0]).to_numpy()
        levels = sorted(group["blocks_randomised"].unique())
        for level in levels:
            part = group[group["blocks_randomised"] == level]
            rho = float(rank_correlation(trained, layer_profile(part).to_numpy()))
            rows.append([modality, method, int(level), str(part["block"].iloc[0]), rho])
    table = pd.DataFrame(rows, columns=["modality", "method", "blocks_randomised", "block", "spearman"])
    full = table.groupby(["modality", "method"])["blocks_randomised"].transform("max") == table["blocks_randomised"]
    flagged = table[full].set_index(["modality", "method"])["spearman"] >= threshold
    table["flagged"] = [bool(flagged.get((m, k), False)) for m, k in zip(table["modality"], table["method"])]
    return table


def robustness_table(profiles: pd.DataFrame) -> pd.DataFrame:
    """Per modality x method x perturbation x layer: the layer's share (``mass_share_abs``) and mean signed
    contribution under perturbed masks, their change from the unperturbed masks, and the masks' mean
    Dice. ``spread`` (per modality x method x layer x measure) = largest |change| over perturbations."""
    rows = []
    for (modality, method, perturbation), group in profiles.groupby(
        ["modality", "method", "perturbation"], sort=False
    ):
        share = layer_profile(group)
        contribution = scan_contributions(group).mean(axis=0)
        for layer in LAYERS:
            rows.append([modality, method, perturbation, layer, PROFILE_MEASURE, share[layer],
                         float(group["mean_dice"].iloc[0])])
            rows.append([modality, method, perturbation, layer, "contribution", contribution[layer],
                         float(group["mean_dice"].iloc[0])])
    table = pd.DataFrame(rows, columns=["modality", "method", "perturbation", "layer", "measure", "value", "mean_dice"])
    keys = ["modality", "method", "layer", "measure"]
    base = table[table["perturbation"] == "none"].set_index(keys)["value"]
    table["change"] = table["value"].to_numpy() - base.reindex(pd.MultiIndex.from_frame(table[keys])).to_numpy()
    table["spread"] = table.groupby(keys)["change"].transform(lambda x: float(np.abs(x).max()))
    return table


__all__ = [
    "faithfulness_tables",
    "layer_profile",
    "robustness_table",
    "sanity_table",
    "scan_contributions",
    "area_over_curve",
    "attributed_order",
    "deletion_curve",
    "order_percentile",
    "random_order_baseline",
    "rank_correlation",
]

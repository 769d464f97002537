"""Segmentation quality: per-layer Dice and mean surface distance of predicted against reference maps.

The reference is the drawn map of a held-out annotated subject (``reference = drawn``) or, on the synthetic
cohort, the true map of a scan whose drawn map was withheld (``reference = true``). Metrics are MONAI's
(``compute_dice``, ``compute_average_surface_distance``, symmetric, in mm through the voxel spacing), per
scan and layer; the layer summary is the mean over scans with a subject-level bootstrap interval
(``layer.stats.bootstrap``), since a subject's scans share anatomy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_average_surface_distance, compute_dice
from monai.networks.utils import one_hot

from layer.io import load_nifti
from layer.names import LAYERS
from layer.segment.sheet import map_path
from layer.stats.bootstrap import cluster_bootstrap_mean

METRICS: tuple[str, ...] = ("dice", "mean_surface_distance_mm")


def _one_hot(labels: np.ndarray) -> torch.Tensor:
    """``[D, H, W]`` labels 0..6 -> ``[1, 7, D, H, W]`` one-hot."""
    t = torch.as_tensor(labels.astype(np.int64))[None, None]
    return one_hot(t, num_classes=len(LAYERS) + 1, dim=1)


def scan_metrics(predicted: np.ndarray, reference: np.ndarray, spacing: tuple[float, float, float]) -> pd.DataFrame:
    """Per layer of one scan: ``layer, dice, mean_surface_distance_mm`` (background left out).

    Args:
        predicted, reference: ``[D, H, W]`` label maps (0 background, 1..6 ``names.LAYERS``).
        spacing: voxel size in mm along (D, H, W).
    """
    if predicted.shape != reference.shape:
        raise ValueError(f"predicted map {predicted.shape} and reference {reference.shape} differ in shape")
    p, r = _one_hot(predicted), _one_hot(reference)
    dice = compute_dice(p, r, include_background=False, ignore_empty=False)[0].numpy()
    msd = compute_average_surface_distance(p, r, include_background=False, symmetric=True, spacing=list(spacing))
    return pd.DataFrame({"layer": list(LAYERS), "dice": dice.astype(float), METRICS[1]: msd[0].numpy().astype(float)})


def summarize(per_scan: pd.DataFrame, n_resamples: int, confidence_level: float, seed: int) -> pd.DataFrame:
    """Per reference and layer (and ``mean`` over layers): the mean of each metric over scans with a
    subject-level interval.

    Args:
        per_scan: rows ``scan_id, subject_id, reference, layer, dice, mean_surface_distance_mm``.

    Returns:
        Columns ``reference, layer, metric, estimate, ci_low, ci_high, ci_method, n_subjects, n_scans``.
    """
    rows = []
    for reference, part in per_scan.groupby("reference", sort=True):
        wide = {m: part.pivot(index=["scan_id", "subject_id"], columns="layer", values=m)[list(LAYERS)] for m in METRICS}
        for metric, table in wide.items():
            values = np.column_stack([table.to_numpy(), table.to_numpy().mean(axis=1)])
            subjects = table.index.get_level_values("subject_id").to_numpy()
            ci = cluster_bootstrap_mean(values, subjects, n_resamples, confidence_level, seed, columns=[*LAYERS, "mean"])
            for j, layer in enumerate(ci.columns):
                rows.append(
                    {
                        "reference": reference,
                        "layer": layer,
                        "metric": metric,
                        "estimate": ci.estimate[j],
                        "ci_low": ci.ci_low[j],
                        "ci_high": ci.ci_high[j],
                        "ci_method": ci.ci_method[j],
                        "n_subjects": int(ci.n_subjects[j]),
                        "n_scans": int(ci.n_scans[j]),
                    }
                )
    return pd.DataFrame(rows)


def quality_tables(
    sheet: pd.DataFrame,
    split: pd.DataFrame,
    maps_dir: str,
    n_resamples: int,
    confidence_level: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-scan metrics and their summary (:func:`summarize`).

    Args:
        sheet: the validated sheet (drawn maps in ``layers``; true maps in ``true_layers`` on a synthetic
            cohort whose maps were partly withheld).
        split: :func:`layer.segment.sheet.segmentation_split`'s table.
        maps_dir: the predicted maps (:func:`layer.segment.sheet.map_path`).
    """
    rows = split.assign(scan_id=split["scan_id"].astype(str)).set_index("scan_id")
    by_id = sheet.assign(scan_id=sheet["scan_id"].astype(str)).set_index("scan_id")
    parts = []
    for scan_id in rows.index:
        role = rows.at[scan_id, "role"]
        column = {"held_out": "layers", "predict": "true_layers"}.get(role)
        if column is None or column not in by_id.columns or pd.isna(by_id.at[scan_id, column]):
            continue
        predicted, affine = load_nifti(map_path(maps_dir, scan_id))
        reference, _ = load_nifti(by_id.at[scan_id, column])
        spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
        parts.append(
            scan_metrics(predicted, reference, spacing).assign(
                scan_id=scan_id,
                subject_id=str(rows.at[scan_id, "subject_id"]),
                reference="drawn" if role == "held_out" else "true",
            )
        )
    columns = ["scan_id", "subject_id", "reference", "layer", *METRICS]
    per_scan = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    return per_scan, summarize(per_scan, n_resamples, confidence_level, seed)


def held_out_dice(summary: pd.DataFrame) -> dict[str, float]:
    """Per-layer mean Dice against the drawn maps of the held-out subjects, from :func:`summarize`'s table
    (the level the robustness check degrades masks to); empty when there is none."""
    rows = summary[(summary["reference"] == "drawn") & (summary["metric"] == "dice") & summary["layer"].isin(LAYERS)]
    return {str(r.layer): float(r.estimate) for r in rows.itertuples() if np.isfinite(r.estimate)}

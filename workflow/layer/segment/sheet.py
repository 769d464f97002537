"""Which scans the segmentation trains on, which it is tested on, which it maps, and the sheet it leaves.

Why by subject: a subject's scans share anatomy, so a network tested on another scan of a subject it trained
on looks better than it is on a new subject. The annotated subjects are split into training and held-out
subjects (stratified by label where each class has two or more); a subject's scans without a drawn map are
predicted, whatever its part.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from layer.cohort.validate import has_map
from layer.io import load_nifti

#: Parts of :func:`segmentation_split`: drawn maps trained on, drawn maps held out, scans without a map.
ROLES: tuple[str, ...] = ("train", "held_out", "predict")
#: ``map_source`` values: where the map a scan's layer regions come from.
MAP_SOURCES: tuple[str, ...] = ("drawn", "predicted")


def segmentation_split(sheet: pd.DataFrame, held_out_fraction: float, seed: int) -> pd.DataFrame:
    """Columns ``scan_id, subject_id, label, role``: one row per scan, sorted by scan_id.

    Raises ValueError when fewer than two subjects are annotated (no subject to train on and one to test).
    """
    drawn = has_map(sheet)
    table = sheet.loc[:, ["scan_id", "subject_id", "label"]].astype({"scan_id": str, "subject_id": str})
    subjects = table.loc[drawn.to_numpy()].groupby("subject_id")["label"].first().sort_index()
    if len(subjects) < 2:
        raise ValueError(f"{len(subjects)} subject(s) with a drawn layer map; the segmentation needs at least 2")
    counts = subjects.value_counts()
    stratify = subjects.to_numpy() if len(counts) == 2 and counts.min() >= 2 else None
    n_held = min(max(1, int(round(held_out_fraction * len(subjects)))), len(subjects) - 1)
    if stratify is not None and n_held < 2:
        stratify = None  # one held-out subject cannot hold both classes
    _, held = train_test_split(subjects.index.to_numpy(), test_size=n_held, random_state=seed, stratify=stratify)
    role = np.where(~drawn.to_numpy(), "predict", np.where(table["subject_id"].isin(set(held)), "held_out", "train"))
    return table.assign(role=role).sort_values("scan_id").reset_index(drop=True)


def with_predicted_maps(sheet: pd.DataFrame, predicted: dict[str, str]) -> pd.DataFrame:
    """The sheet with every scan's ``layers`` filled: its drawn map, or its predicted one from ``predicted``
    (scan_id -> path); column ``map_source`` (``drawn`` / ``predicted``) after ``layers``.

    Raises ValueError naming a scan that has neither.
    """
    out = sheet.copy()
    drawn = has_map(out).to_numpy()
    ids = out["scan_id"].astype(str)
    lacking = sorted(set(ids[~drawn]) - set(predicted))
    if lacking:
        raise ValueError(f"scan {lacking[0]} has no drawn and no predicted layer map ({len(lacking)} such scans)")
    out["layers"] = np.where(drawn, out["layers"].astype(object), ids.map(predicted).astype(object))
    out.insert(list(out.columns).index("layers") + 1, "map_source", np.where(drawn, "drawn", "predicted"))
    return out


def scans_by_map_source(table: pd.DataFrame, sheet: pd.DataFrame, source: str) -> pd.DataFrame:
    """The rows of a per-scan ``table`` (column ``scan_id``) whose scan's map is of ``source`` in ``sheet``
    (column ``map_source``; a sheet without it has drawn maps only)."""
    if source not in MAP_SOURCES:
        raise ValueError(f"map source {source!r} is not one of {MAP_SOURCES}")
    sources = sheet["map_source"] if "map_source" in sheet.columns else pd.Series("drawn", index=sheet.index)
    keep = set(sheet.loc[sources == source, "scan_id"].astype(str))
    return table[table["scan_id"].astype(str).isin(keep)].reset_index(drop=True)


def map_path(out_dir: str | os.PathLike[str], scan_id: str) -> Path:
    """Where the segment stage writes a scan's predicted map."""
    return Path(out_dir) / f"{scan_id}_layers.nii.gz"


def held_out_examples(
    sheet: pd.DataFrame, split: pd.DataFrame, maps_dir: str | os.PathLike[str], n: int
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """The first ``n`` held-out annotated scans (scan_id order) as (scan_id, B-mode, drawn map, predicted
    map), each ``[D, H, W]``: what the segmentation figure shows."""
    by_id = sheet.assign(scan_id=sheet["scan_id"].astype(str)).set_index("scan_id")
    ids = split.loc[split["role"] == "held_out", "scan_id"].astype(str).sort_values().tolist()[:n]
    return [
        (sid, load_nifti(by_id.at[sid, "bmode"])[0], load_nifti(by_id.at[sid, "layers"])[0],
         load_nifti(map_path(maps_dir, sid))[0])
        for sid in ids
    ]

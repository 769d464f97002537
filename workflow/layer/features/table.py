"""The per-scan x layer table of image statistics of a validated cohort sheet (``layer_features.tsv``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from layer.features.measure import IMAGE_FEATURES, scan_features
from layer.io import load_nifti
from layer.names import LAYERS
from layer.progress import progress

FEATURE_TABLE_COLUMNS: tuple[str, ...] = ("scan_id", "subject_id", "label", "layer", *IMAGE_FEATURES)


def _present(value: object) -> bool:
    return isinstance(value, str) and value != ""


def scan_rows(scan_id: str, subject_id: str, label: int, values: np.ndarray) -> pd.DataFrame:
    """One scan's six rows of :data:`FEATURE_TABLE_COLUMNS` from its ``[6, 4]`` statistics
    (:func:`layer.features.measure.scan_features`)."""
    part = pd.DataFrame(values, columns=list(IMAGE_FEATURES))
    part.insert(0, "layer", list(LAYERS))
    part.insert(0, "label", int(label))
    part.insert(0, "subject_id", subject_id)
    part.insert(0, "scan_id", scan_id)
    return part


def feature_table(sheet: pd.DataFrame) -> pd.DataFrame:
    """Read every scan's B-mode, SWE (where the sheet has one) and layer map, and measure each layer
    (:func:`layer.features.measure.scan_features`). Depth is the first array axis, as the validator
    requires; its voxel size comes from the layer map's affine. Columns :data:`FEATURE_TABLE_COLUMNS`,
    one row per scan x layer, scans in sheet order; plus ``map_source`` (``drawn`` / ``predicted``) after
    ``label`` where the sheet has it (a study whose segment stage predicted some maps)."""
    parts = []
    has_swe = "swe" in sheet.columns
    for row in progress(sheet.itertuples(index=False), total=len(sheet), desc="layer features"):
        labels, affine = load_nifti(row.layers)
        bmode, _ = load_nifti(row.bmode)
        swe_path = getattr(row, "swe") if has_swe else None
        swe = load_nifti(swe_path)[0] if _present(swe_path) else None
        depth_mm = float(np.sqrt((np.asarray(affine)[:3, 0] ** 2).sum()))
        values = scan_features(np.asarray(bmode), None if swe is None else np.asarray(swe),
                               np.asarray(labels).astype(np.int16), depth_mm)
        parts.append(scan_rows(str(row.scan_id), str(row.subject_id), int(row.label), values))
    columns = list(FEATURE_TABLE_COLUMNS)
    if "map_source" in sheet.columns:
        columns.insert(columns.index("label") + 1, "map_source")
        parts = [p.assign(map_source=src) for p, src in zip(parts, sheet["map_source"].astype(str))]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


__all__ = ["FEATURE_TABLE_COLUMNS", "feature_table", "scan_rows"]

"""MONAI datasets and transforms: volumes from a validated cohort sheet into model inputs.

Scaling is fixed, never per scan: echogenicity and stiffness are the very signals a layer can carry, so
per-scan normalisation would erase them.

- B-mode: linearly mapped from [0, ``bmode_max``] to [0, 1] and clipped (the synthetic cohort is already
  in [0, 1]; 8-bit exports use ``bmode_max: 255``).
- SWE: shear-wave speed divided by ``swe_scale`` (m/s). NaN (outside the SWE box, or dropout) becomes 0:
  "no estimate", below any valid speed (devices report >= 0.5 m/s, i.e. >= 0.1 after the default scale of
  5 m/s). The model can therefore tell a missing estimate from a soft tissue, and no NaN reaches it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from monai.data import CacheDataset
from monai.transforms import (
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    Lambdad,
    LoadImaged,
    RandFlipd,
    ScaleIntensityRanged,
)

from layer.names import CHANNELS


def make_items(sheet: pd.DataFrame, scan_ids: Sequence[str] | None = None) -> list[dict[str, object]]:
    """One dict per scan (``scan_id, subject_id, label, bmode, swe, layers``) in scan_id order."""
    table = sheet.copy()
    table["scan_id"] = table["scan_id"].astype(str)
    if scan_ids is not None:
        table = table[table["scan_id"].isin(set(scan_ids))]
    table = table.sort_values("scan_id")
    return [
        {
            "scan_id": r.scan_id,
            "subject_id": str(r.subject_id),
            "label": float(r.label),
            "bmode": str(r.bmode),
            "swe": str(r.swe),
            "layers": str(r.layers),
        }
        for r in table.itertuples(index=False)
    ]


def with_channels(sheet: pd.DataFrame, modality: str) -> pd.DataFrame:
    """The scans of ``sheet`` that have every volume ``modality`` reads (a non-empty path per channel).

    In a mixed cohort (SWE for some scans) the swe and fused models train, predict and are attributed on
    the scans with SWE only; B-mode reads every scan. The folds stay those of the whole cohort.
    """
    keep = pd.Series(True, index=sheet.index)
    for channel in CHANNELS[modality]:
        if channel not in sheet.columns:
            return sheet.iloc[0:0]
        keep &= sheet[channel].notna() & (sheet[channel].astype(str).str.strip() != "")
    return sheet.loc[keep].reset_index(drop=True)


def modality_scans(sheet: pd.DataFrame, folds: pd.DataFrame, modality: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sheet and fold table restricted to the scans ``modality`` can read (:func:`with_channels`)."""
    kept = with_channels(sheet, modality)
    ids = set(kept["scan_id"].astype(str))
    return kept, folds.loc[folds["scan_id"].astype(str).isin(ids)].reset_index(drop=True)


def _swe_to_input(scale: float):
    def convert(x: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(x / scale, nan=0.0, posinf=0.0, neginf=0.0)

    return convert


def preprocessing(modality: str, bmode_max: float, swe_scale: float, with_layers: bool = False) -> Compose:
    """Deterministic transforms: load, add channel, scale, stack channels into ``image``."""
    channels = list(CHANNELS[modality])
    keys = channels + (["layers"] if with_layers else [])
    steps = [
        LoadImaged(keys=keys, reader="NibabelReader", image_only=True),
        EnsureChannelFirstd(keys=keys, channel_dim="no_channel"),
    ]
    if "bmode" in channels:
        steps.append(ScaleIntensityRanged(keys="bmode", a_min=0.0, a_max=bmode_max, b_min=0.0, b_max=1.0, clip=True))
    if "swe" in channels:
        steps.append(Lambdad(keys="swe", func=_swe_to_input(swe_scale)))
    steps += [
        ConcatItemsd(keys=channels, name="image", dim=0),
        DeleteItemsd(keys=channels),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
    ]
    if with_layers:
        steps.append(EnsureTyped(keys="layers", dtype=torch.uint8, track_meta=False))
    return Compose(steps)


def augmentation() -> Compose:
    """Random flips along the lateral and elevational axes only (never depth: skin is always on top)."""
    return Compose(
        [
            RandFlipd(keys="image", prob=0.5, spatial_axis=1),
            RandFlipd(keys="image", prob=0.5, spatial_axis=2),
        ]
    )


def cached_dataset(
    items: list[dict[str, object]], transform: Compose, augment: Compose | None = None
) -> CacheDataset:
    """Every item loaded and preprocessed once and kept in memory; only ``augment`` runs per epoch.

    The transforms are passed as one flat list: CacheDataset caches up to the first randomizable
    transform, and a nested ``Compose`` counts as randomizable, so nesting would silently cache nothing
    and reload every volume from disk at every epoch.
    """
    steps = list(transform.transforms) + (list(augment.transforms) if augment is not None else [])
    return CacheDataset(items, transform=Compose(steps), num_workers=0, progress=False, copy_cache=False)


def stack(dataset: CacheDataset, key: str = "image") -> torch.Tensor:
    """All cached items of ``key`` as one tensor [N, ...] (inputs for batched inference)."""
    return torch.stack([torch.as_tensor(dataset[i][key]) for i in range(len(dataset))])


def labels_of(items: list[dict[str, object]]) -> np.ndarray:
    """Labels of the items as an int array."""
    return np.array([int(it["label"]) for it in items], dtype=int)

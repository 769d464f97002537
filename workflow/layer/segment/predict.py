"""Predicted layer maps: the trained UNet's probabilities, ordered by :func:`layer.segment.anatomy.ordered_labels`,
written as NIfTI on each scan's own B-mode grid (same affine, so the validator's geometry rules hold)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from layer.io import save_nifti
from layer.nets import data
from layer.nets.device import configure_torch, pick_device
from layer.progress import progress
from layer.segment.anatomy import ordered_labels
from layer.segment.net import load_unet, log_probabilities
from layer.segment.sheet import map_path


def predict_maps(
    sheet: pd.DataFrame,
    scan_ids: list[str],
    saved: dict,
    bmode_max: float,
    out_dir: str | os.PathLike[str],
    threads: int = 1,
) -> dict[str, str]:
    """Predict, order and write the map of every scan in ``scan_ids``; return scan_id -> absolute path.

    Args:
        sheet: validated sheet (``scan_id`` and ``bmode`` paths at least).
        saved: what the segment_train step saved (``state_dict``, ``width``).
    """
    device = pick_device()
    configure_torch(threads, device)
    model = load_unet(saved).to(device)
    pre = data.preprocessing("bmode", bmode_max, 1.0)
    items = data.make_items(sheet, scan_ids)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for it in progress(items, "segment", total=len(items)):
        image = torch.as_tensor(pre(dict(it))["image"])
        labels = ordered_labels(log_probabilities(model, image, device))
        affine = nib.load(str(it["bmode"])).affine
        path = map_path(out_dir, str(it["scan_id"]))
        save_nifti(labels.astype(np.uint8), affine, path)
        written[str(it["scan_id"])] = str(path.resolve())
    return written

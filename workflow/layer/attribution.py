"""Voxel attribution maps of a trained model on its held-out scans.

Pitfalls avoided (measured in ../shared/design/attribution.md):
- MONAI's Grad-CAM post-processing min-max normalises and inverts the map: we pass the identity, so maps
  keep their raw scale and stay comparable across scans.
- MONAI CAM mixes gradients across a batch with ``class_idx=None``: one scan at a time, explicit index 0
  (the single logit).
- Every ``GradCAM(model)`` adds hooks that are never removed: one instance per model.
- The target is the model's logit, not the probability: the sigmoid saturates and would squash the
  gradients of confidently classified scans.

Integrated Gradients (captum) starts from an all-zero input: an anechoic B-mode and "no SWE estimate".
Completeness (the attributions of a scan sum to f(x) - f(baseline)) is checked per scan and reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from monai.visualize import GradCAM

from layer import data
from layer.io import atomic_path, load_nifti, save_nifti
from layer.model import GRADCAM_LAYERS
from layer.names import CHANNELS
from layer.train import load_model

METHODS: tuple[str, ...] = ("gradcam", "integrated_gradients")


def _logit(model: torch.nn.Module):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x)[:, 0]

    return forward


def gradcam(model: torch.nn.Module, images: torch.Tensor, target_layer: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """Raw Grad-CAM maps upsampled to the input grid, [N, 1, D, H, W], and the CAM cell size in voxels."""
    model.eval()
    cam = GradCAM(nn_module=model, target_layers=target_layer, postprocessing=lambda x: x)
    spatial = tuple(images.shape[2:])
    fmap = cam.feature_map_size((1, *images.shape[1:]), device=images.device)
    cell = tuple(float(s) / float(f) for s, f in zip(spatial, fmap[2:]))
    maps = [cam(images[i : i + 1].clone(), class_idx=0).detach().cpu().numpy() for i in range(len(images))]
    return np.concatenate(maps).astype(np.float32), cell


def integrated_gradients(
    model: torch.nn.Module, images: torch.Tensor, n_steps: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """IG maps [N, C, D, H, W] from a zero baseline, and the completeness error of each scan.

    The error is |sum of attributions - (f(x) - f(0))| relative to |f(x) - f(0)| (floored at 1e-6).
    """
    model.eval()
    ig = IntegratedGradients(_logit(model))
    out, errors = [], []
    for i in range(len(images)):
        x = images[i : i + 1].clone().requires_grad_(True)
        baseline = torch.zeros_like(x)
        attr, delta = ig.attribute(
            x, baselines=baseline, n_steps=n_steps, internal_batch_size=batch_size, return_convergence_delta=True
        )
        with torch.no_grad():
            gap = float(_logit(model)(x) - _logit(model)(baseline))
        out.append(attr.detach().cpu().numpy())
        errors.append(abs(float(delta)) / max(abs(gap), 1.0))
    return np.concatenate(out).astype(np.float32), np.asarray(errors)


def attribute(
    model: torch.nn.Module,
    images: torch.Tensor,
    method: str,
    channels: tuple[str, ...],
    target_layer: str,
    ig_steps: int,
    batch_size: int,
) -> tuple[np.ndarray, tuple[str, ...], pd.DataFrame]:
    """Maps of one method for a stack of scans: (maps [N, C', ...], channel names, per-scan QC table).

    Grad-CAM has one map per scan whatever the number of input channels (channel ``all``); IG has one
    per input channel. The QC table has columns ``index, check, value``: the CAM cell size or the IG
    completeness error.
    """
    if method == "gradcam":
        maps, cell = gradcam(model, images, target_layer)
        qc = pd.DataFrame(
            {"index": np.arange(len(images)), "check": "cam_cell_voxels", "value": float(np.prod(cell))}
        )
        return maps, ("all",), qc
    if method == "integrated_gradients":
        maps, errors = integrated_gradients(model, images, ig_steps, batch_size)
        qc = pd.DataFrame({"index": np.arange(len(images)), "check": "ig_completeness_error", "value": errors})
        return maps, channels, qc
    raise ValueError(f"unknown attribution method '{method}'; choose one of {', '.join(METHODS)}")


def save_maps(path: str, maps: np.ndarray, scan_ids: list[str], channels: tuple[str, ...]) -> None:
    """One compressed array file per job: maps, their scan ids and channel names."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, maps=maps, scan_ids=np.asarray(scan_ids), channels=np.asarray(channels))


def load_maps(path: str) -> tuple[np.ndarray, list[str], tuple[str, ...]]:
    """Read a file written by :func:`save_maps` (no pickle: plain arrays only)."""
    with np.load(path, allow_pickle=False) as z:
        return z["maps"], [str(s) for s in z["scan_ids"]], tuple(str(c) for c in z["channels"])


def attribute_fold(
    sheet: pd.DataFrame,
    folds: pd.DataFrame,
    model_path: str,
    method: str,
    gradcam_layer: str,
    ig_steps: int,
    batch_size: int,
) -> tuple[np.ndarray, list[str], tuple[str, ...], pd.DataFrame]:
    """Attribution maps of a fold's held-out scans under that fold's model.

    Returns (maps, scan ids, channel names, QC table with a ``scan_id`` column).
    """
    model, spec, modality, fold = load_model(model_path)
    test_ids = folds.loc[(folds["fold"] == fold) & (folds["role"] == "test"), "scan_id"].astype(str).tolist()
    items = data.make_items(sheet, test_ids)
    images = data.stack(data.cached_dataset(items, data.preprocessing(modality, spec.bmode_max, spec.swe_scale)))
    target = gradcam_layer or GRADCAM_LAYERS[spec.name]
    maps, channels, qc = attribute(model, images, method, CHANNELS[modality], target, ig_steps, batch_size)
    scan_ids = [str(it["scan_id"]) for it in items]
    qc.insert(0, "scan_id", [scan_ids[i] for i in qc.pop("index")])
    return maps, scan_ids, channels, qc


def write_examples(
    maps: np.ndarray, scan_ids: list[str], channels: tuple[str, ...], sheet: pd.DataFrame, out_dir: str, n: int
) -> list[str]:
    """Write the first ``n`` scans' maps as NIfTI (one file per channel) on the grid of their layer map."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = sheet.set_index(sheet["scan_id"].astype(str))["layers"]
    written = []
    for i, sid in enumerate(scan_ids[:n]):
        _, affine = load_nifti(paths[sid])
        for c, name in enumerate(channels):
            path = out / f"{sid}_{name}.nii.gz"
            save_nifti(maps[i, c].astype(np.float32), affine, path)
            written.append(str(path))
    return written

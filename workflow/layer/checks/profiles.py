"""Attributions re-computed under a perturbed model or perturbed layer masks (needs torch).

* Sanity (Adebayo et al., NeurIPS 2018): cascading re-initialisation of the model's parameter blocks
  from the output down; the layer profile of each randomised model is compared with the trained one
  (``layer.checks.summaries.sanity_table``).
* Robustness: the same scans scored with layer masks whose interfaces moved by one voxel, or degraded
  to the per-layer Dice of automatic segmentation (``layer.checks.robustness``).

Both score a few held-out scans of fold 0 (``checks.n_scans``): the question is whether a profile
moves, which the same scans answer paired, not the population value.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from layer.aggregate import _label_counts, _long_table, _scan_measures, aggregate_scans, score_masses
from layer.explain.attribute import AttributionSettings, FoldScans, attribute, is_score_method, load_fold_scans
from layer.names import CHANNELS
from layer.checks.robustness import (
    PUBLISHED_DICE,
    degrade,
    degrade_to_dice,
    displacement_fields,
    layer_dice,
)
from layer.explain.shapley import Player, RemovalSettings, coalition_values
from layer.regions.interfaces import perturb_layers


def model_blocks(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Top-level children that hold parameters, in forward (registration) order: the randomisation units.

    For the MONAI ResNet: ``conv1, bn1, layer1 .. layer4, fc``; for DenseNet121: ``features, class_layers``
    (coarse; pass a finer list to :func:`randomise_cascade` if needed).
    """
    return [(name, child) for name, child in model.named_children() if any(True for _ in child.parameters())]


def randomise_cascade(model: torch.nn.Module, n_blocks: int, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with its top ``n_blocks`` parameter blocks re-initialised (output side first).

    Re-initialisation uses each submodule's own ``reset_parameters`` (PyTorch's default init; batch norm
    back to weight 1, bias 0 and fresh running statistics), under a fixed seed, without touching the
    caller's global RNG. The original model is not modified.
    """
    out = copy.deepcopy(model)
    blocks = model_blocks(out)
    if not 0 <= n_blocks <= len(blocks):
        raise ValueError(f"n_blocks must lie in 0..{len(blocks)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _, block in reversed(blocks[len(blocks) - n_blocks :]):
            for module in block.modules():
                if hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return out.eval()


def deletion_curve_model(
    model: torch.nn.Module,
    image: torch.Tensor,
    layers: torch.Tensor | np.ndarray,
    players: Sequence[Player],
    order: Sequence[int],
    operator: str,
    batch_size: int,
    seed: int = 0,
    background: torch.Tensor | None = None,
    settings: RemovalSettings | None = None,
) -> np.ndarray:
    """Deletion curve of one scan evaluated directly (n + 1 forwards), for when the 2^n values are not at hand."""
    n = len(players)
    masks = [2**n - 1]
    for p in order:
        masks.append(masks[-1] & ~(1 << int(p)))
    return coalition_values(
        model, image, layers, players, operator, batch_size, seed=seed, background=background, settings=settings,
        coalitions=np.asarray(masks, dtype=np.int64),
    )


def layer_table(
    values: np.ndarray, layers: np.ndarray, scan_ids: list[str], channels: Sequence[str], kind: str
) -> pd.DataFrame:
    """Aggregated long table (``layer.aggregate`` layout) of maps or layer scores of some scans."""
    if kind == "scores":
        counts = _label_counts(np.asarray(layers).reshape(len(scan_ids), -1))
        return _long_table(_scan_measures(score_masses(values), counts), scan_ids, channels)
    return aggregate_scans(values, layers, scan_ids, channels)


def _fold0(
    sheet: pd.DataFrame, folds: pd.DataFrame, model_path: str, n_scans: int, settings: AttributionSettings
) -> FoldScans:
    """The first ``n_scans`` held-out scans of a model's fold, one per subject, with the background set."""
    return load_fold_scans(sheet, folds, model_path, settings, max(settings.scans_per_subject, 1), n_scans)


def sanity_profiles(fs: FoldScans, method: str, settings: AttributionSettings) -> pd.DataFrame:
    """Aggregated layer scores of the trained model and of each cascade level (``blocks_randomised``
    0 .. all), long table with a ``blocks_randomised`` and a ``block`` column (the block reset last)."""
    blocks = [name for name, _ in model_blocks(fs.model)]
    kind = "scores" if is_score_method(method) else "maps"
    parts = []
    for level in range(len(blocks) + 1):
        randomised = randomise_cascade(fs.model, level, seed=settings.seed)
        values, channels, _, _ = attribute(randomised, fs.images, fs.layers, method, CHANNELS[fs.modality],
                                           settings, fs.background, fs.cam_target(method))
        table = layer_table(values, fs.layers, fs.scan_ids, channels, kind)
        table.insert(0, "block", blocks[len(blocks) - level] if level else "none")
        table.insert(0, "blocks_randomised", level)
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def robustness_profiles(
    fs: FoldScans, method: str, settings: AttributionSettings, measured_dice: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Aggregated layer scores of the same scans under each mask perturbation: ``none``; every interface
    one voxel ``deeper`` / ``shallower``; each layer dilated / eroded by one voxel (``dilate_<layer>``);
    masks degraded to the published automatic-segmentation Dice (``dice``) and, where the study's own
    segment stage ran, to its measured held-out Dice (``measured_dice``). Columns add ``perturbation`` and
    ``mean_dice`` (mean per-layer Dice of the perturbed masks against the originals).

    Voxel maps are re-aggregated inside the perturbed masks (the map does not change); removal methods
    are re-run, because the perturbed masks define what is removed.
    """
    layers = fs.layers
    rng = np.random.default_rng(settings.seed)
    targets = {"dice": PUBLISHED_DICE, **({"measured_dice": measured_dice} if measured_dice else {})}
    fitted = {name: degrade_to_dice(layers[0], t, np.random.default_rng(settings.seed)) for name, t in targets.items()}
    variants: dict[str, np.ndarray] = {"none": layers}
    for mode in ("deeper", "shallower"):
        variants[mode] = np.stack([perturb_layers(lab, mode, rng) for lab in layers])
    for layer in ("sfm", "dfm"):
        for mode in ("dilate", "erode"):
            variants[f"{mode}_{layer}"] = np.stack([perturb_layers(lab, mode, rng, layer) for lab in layers])
    for name, fit in fitted.items():
        variants[name] = np.stack(
            [degrade(lab, fit.amplitudes, displacement_fields(rng, lab.shape[1:], 4.0)) for lab in layers]
        )
    kind = "scores" if is_score_method(method) else "maps"
    maps = None
    parts = []
    for name, masks in variants.items():
        if kind == "maps" and maps is not None:
            values = maps
        else:
            values, channels, _, _ = attribute(fs.model, fs.images, masks, method, CHANNELS[fs.modality],
                                               settings, fs.background, fs.cam_target(method))
            maps = values if kind == "maps" else None
        table = layer_table(values, masks, fs.scan_ids, channels, kind)
        dice = np.mean([np.mean(list(layer_dice(a, b).values())) for a, b in zip(layers, masks)])
        table.insert(0, "mean_dice", dice)
        table.insert(0, "perturbation", name)
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


PROFILES = {"sanity": sanity_profiles, "robustness": robustness_profiles}


def check_profiles(
    check: str, sheet: pd.DataFrame, folds: pd.DataFrame, model_path: str, methods: Sequence[str], n_scans: int,
    settings: AttributionSettings, measured_dice: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """``sanity`` or ``robustness`` profiles of every method for one model, with a ``method`` column. The
    model and its scans load once for all methods. ``measured_dice``: the segment stage's per-layer
    held-out Dice, one more robustness level (ignored by the sanity check)."""
    fs = _fold0(sheet, folds, model_path, n_scans, settings)
    parts = []
    for method in methods:
        extra = {"measured_dice": measured_dice} if check == "robustness" else {}
        part = PROFILES[check](fs, method, settings, **extra)
        part.insert(0, "method", method)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


__all__ = [
    "check_profiles",
    "deletion_curve_model",
    "layer_table",
    "model_blocks",
    "randomise_cascade",
    "robustness_profiles",
    "sanity_profiles",
]

"""Attributions of a trained (or null) model on its held-out scans: voxel maps or layer scores.

Methods (the ``method`` wildcard): ``gradcam`` and ``integrated_gradients`` here; ``expected_gradients``
(shap) and the layer-removal methods ``ablation_{op}``, ``shapley_{op}``, ``shapley_channel_{op}`` in
:mod:`layer.explain.shapley`. Removal methods score each layer directly (exact Shapley over the six layers, or
channel x layer), so no voxel map is summed inside a mask for them.

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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from monai.visualize import GradCAM

from layer import config
from layer.nets import data
from layer.explain.examples import EXAMPLE_IDENTITY
from layer.io import load_nifti, save_nifti, write_json
from layer.nets.model import gradcam_layers
from layer.names import CHANNELS, LABEL_VALUES
from layer.regions.membranes import membrane_regions
from layer.explain.registry import METHOD_NAMES
from layer.explain.registry import method as registered
from layer.explain.shapley import EXTRA_METHODS, attribute_extra
from layer.attribution_files import Attribution
from layer.nets.model import load_model

#: Voxel-map methods of this module (expected gradients and the removal methods: layer.explain.shapley).
METHODS: tuple[str, ...] = tuple(name for name in METHOD_NAMES if name not in EXTRA_METHODS)


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


@dataclass(frozen=True)
class AttributionSettings:
    """The one settings object of the ``attribution:`` config section: exactly the settings some method
    reads (:data:`layer.explain.registry.SETTINGS`), without defaults of their own (the schema holds them).

    Built by :func:`layer.config.from_params` from a rule's params, which carry only what the job's method
    reads: the others are ``None``, so a read the registry does not declare fails instead of silently using
    a value whose change would not rerun the job. Tests: :func:`layer.config.from_defaults`.
    """

    n_examples: int | None
    gradcam_layer: str | None
    ig_steps: int | None
    batch_size: int | None
    eg_samples: int | None
    scans_per_subject: int | None
    seed: int | None
    n_background: int | None
    membrane_margin: int | None
    road_iterations: int | None
    road_noise: float | None
    blur_sigma: float | None

    @classmethod
    def from_params(cls, params: object) -> AttributionSettings:
        """From a rule's ``snakemake.params``: every field the rule passes, by the same name."""
        return config.from_params(cls, params)

    @classmethod
    def defaults(cls, **overrides: object) -> AttributionSettings:
        """The schema defaults of ``attribution:``, with ``overrides`` (tests, bench)."""
        return config.from_defaults(cls, "attribution", **overrides)


def is_score_method(method: str) -> bool:
    """Whether a method yields one score per layer (removal methods) rather than a voxel map."""
    return registered(method).output == "scores"


def attribute(
    model: torch.nn.Module,
    images: torch.Tensor,
    layers: np.ndarray,
    method: str,
    channels: tuple[str, ...],
    settings: AttributionSettings,
    background: torch.Tensor | None = None,
    target_layer: str = "",
    scan_ids: Sequence[str] | None = None,
) -> tuple[np.ndarray, tuple[str, ...], pd.DataFrame, np.ndarray | None]:
    """One method on a stack of scans: (maps or scores, channel names, QC table, coalition values or None).

    Grad-CAM has one map per scan whatever the number of input channels (channel ``all``); IG and
    expected gradients one per input channel; removal methods (``ablation_*``, ``shapley_*``) score the
    layers directly (:mod:`layer.explain.shapley`). QC columns ``index, check, value``: the CAM cell size, the
    IG / expected-gradients completeness error, the Shapley efficiency error. ``scan_ids`` seed each
    scan's randomness (ROAD noise, permutations) by its id.
    """
    if registered(method).family == "gradcam":
        maps, cell = gradcam(model, images, target_layer)
        qc = pd.DataFrame(
            {"index": np.arange(len(images)), "check": "cam_cell_voxels", "value": float(np.prod(cell))}
        )
        return maps, ("all",), qc, None
    if method == "integrated_gradients":
        maps, errors = integrated_gradients(model, images, settings.ig_steps, settings.batch_size)
        qc = pd.DataFrame({"index": np.arange(len(images)), "check": "ig_completeness_error", "value": errors})
        return maps, channels, qc, None
    if method in EXTRA_METHODS:
        return attribute_extra(model, images, layers, method, channels, settings, background, scan_keys=scan_ids)
    raise ValueError(f"unknown attribution method '{method}'; choose one of {', '.join(METHOD_NAMES)}")


def attributed_scans(test_ids: list[str], sheet: pd.DataFrame, scans_per_subject: int) -> list[str]:
    """The held-out scans a job attributes: all, or the first ``scans_per_subject`` of each subject (by
    scan id), so that the costly removal methods score every subject at a fraction of the cost; the same
    scans under every method and model, so methods and null models compare scan by scan."""
    if scans_per_subject <= 0:
        return list(test_ids)
    subject = sheet.set_index(sheet["scan_id"].astype(str))["subject_id"].astype(str)
    table = pd.DataFrame({"scan_id": sorted(test_ids)})
    table["subject_id"] = subject.loc[table["scan_id"]].to_numpy()
    return table.groupby("subject_id", sort=True).head(scans_per_subject)["scan_id"].tolist()


def background_ids(scan_ids: Sequence[str], subjects: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` background scans spread over as many subjects as possible: one scan from each of ``n``
    subjects drawn at random (``seed``), a second scan of each only when there are fewer subjects than
    ``n``, and so on. Why: the first scans by id came from a handful of subjects (16 scans = 4 subjects
    of 4 scans), so the reference image was those subjects' anatomy, not the population's."""
    table = pd.DataFrame({"scan_id": list(scan_ids), "subject_id": list(subjects)}).sort_values("scan_id")
    order = np.random.default_rng(seed).permutation(sorted(table["subject_id"].unique()))
    rank = {sid: r for r, sid in enumerate(order)}
    table["visit"] = table.groupby("subject_id").cumcount()
    table["rank"] = table["subject_id"].map(rank)
    return table.sort_values(["visit", "rank"])["scan_id"].head(n).tolist()


@dataclass(frozen=True)
class FoldScans:
    """A fold's model and the held-out scans it is explained on, with what attribution needs besides."""

    model: torch.nn.Module
    modality: str
    images: torch.Tensor
    layers: np.ndarray
    scan_ids: list[str]
    background: torch.Tensor | None
    target_layer: str
    last_layer: str

    def cam_target(self, method: str) -> str:
        """The Grad-CAM target layer of ``method``: the last block for ``gradcam_last``, else the fine one."""
        return self.last_layer if method == "gradcam_last" else self.target_layer


def load_fold_scans(
    sheet: pd.DataFrame,
    folds: pd.DataFrame,
    model_path: str,
    settings: AttributionSettings,
    scans_per_subject: int,
    n_scans: int | None = None,
    with_background: bool = True,
) -> FoldScans:
    """The model of a fold and its held-out scans (``scans_per_subject`` per subject, 0 = all; the first
    ``n_scans`` by scan id if given), their layer maps, and the background set: ``settings.n_background``
    training scans of the fold across as many subjects (:func:`background_ids`; expected gradients,
    ``background`` removal)."""
    model, spec, modality, fold = load_model(model_path)
    this = folds[folds["fold"] == fold]
    test_ids = this.loc[this["role"] == "test", "scan_id"].astype(str).tolist()
    ids = attributed_scans(test_ids, sheet, scans_per_subject)[:n_scans]
    items = data.make_items(sheet, ids)
    dataset = data.cached_dataset(items, data.preprocessing(modality, spec.bmode_max, spec.swe_scale, True))
    images = data.stack(dataset)
    layers = np.stack([np.asarray(d["layers"][0]) for d in dataset]).astype(np.int16)
    if settings.membrane_margin is not None:  # None: the method reads no layer masks (voxel maps)
        layers = membrane_regions(layers, settings.membrane_margin)
    background = None
    if with_background:
        train = this[this["role"] == "train"]
        train_ids = background_ids(train["scan_id"].astype(str), train["subject_id"].astype(str), settings.n_background,
                                   settings.seed)
        pre = data.preprocessing(modality, spec.bmode_max, spec.swe_scale)
        background = data.stack(data.cached_dataset(data.make_items(sheet, train_ids), pre))
    scan_ids = [str(it["scan_id"]) for it in items]
    fine, last = gradcam_layers(spec)
    return FoldScans(model, modality, images, layers, scan_ids, background, settings.gradcam_layer or fine, last)


def attribute_model(
    sheet: pd.DataFrame, folds: pd.DataFrame, model_path: str, methods: Sequence[str], settings: AttributionSettings
) -> dict[str, Attribution]:
    """Every method's attributions of a fold's held-out scans under that fold's model, by method.

    The model, the scans (``settings.scans_per_subject`` per subject, 0 = all: the same scans under every
    method, so that methods compare scan by scan) and, where a method needs it, the fold's background set
    are loaded once for all methods.
    """
    if not methods:
        raise ValueError(f"{model_path}: no attribution method to run")
    fs = load_fold_scans(
        sheet, folds, model_path, settings, settings.scans_per_subject,
        with_background=any(registered(m).needs_background for m in methods),
    )
    results = {}
    for method in methods:
        values, channels, qc, coalitions = attribute(
            fs.model, fs.images, fs.layers, method, CHANNELS[fs.modality], settings, fs.background,
            fs.cam_target(method), scan_ids=fs.scan_ids,
        )
        qc.insert(0, "scan_id", [fs.scan_ids[i] for i in qc.pop("index")])
        kind = "scores" if is_score_method(method) else "maps"
        results[method] = Attribution(kind, values, fs.scan_ids, channels, qc, coalitions)
    return results


def write_examples(
    result: Attribution, sheet: pd.DataFrame, out_dir: str, n: int, modality: str, method: str
) -> list[str]:
    """Write the first ``n`` scans as NIfTI (one file per channel) on the grid of their layer map, and the
    job's identity (``identity.json``: modality, method), which the overlay figure reads.

    Voxel maps are written as they are; layer scores are painted into their layer's voxels (0 outside
    the six layers), so a viewer shows both kinds over the scan the same way.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json({"modality": modality, "method": method}, out / EXAMPLE_IDENTITY)
    paths = sheet.set_index(sheet["scan_id"].astype(str))["layers"]
    written = []
    for i, sid in enumerate(result.scan_ids[:n]):
        labels, affine = load_nifti(paths[sid])
        for c, name in enumerate(result.channels):
            if result.kind == "scores":
                lookup = np.concatenate([[0.0], result.values[i, c]])
                volume = lookup[np.clip(labels.astype(np.int64), 0, len(LABEL_VALUES))]
            else:
                volume = result.values[i, c]
            path = out / f"{sid}_{name}.nii.gz"
            save_nifti(np.asarray(volume, dtype=np.float32), affine, path)
            written.append(str(path))
    return written

"""The layer tables: per-layer saliency with subject-level intervals and model performance (subject
bootstrap: :mod:`layer.stats.bootstrap`). The paper's kind of numbers: :mod:`layer.stats.paper`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from layer.aggregate import derive_measures, measure_names
from layer.names import CHANNELS, LAYERS, MODALITIES
from layer.stats.bootstrap import cluster_bootstrap_mean, cluster_bootstrap_metric

#: Composite layer: the five layers above the muscle, pooled.
NON_MUSCLE = "non_muscle"
NON_MUSCLE_LAYERS: tuple[str, ...] = tuple(layer for layer in LAYERS if layer != "muscle")
#: Channel name of the channel-pooled composite of a multi-channel modality.
ALL_CHANNELS = "all"

SALIENCY_COLUMNS: tuple[str, ...] = (
    "modality", "method", "channel", "layer", "measure", "estimate", "ci_low", "ci_high", "n_subjects", "n_scans",
)
PERFORMANCE_COLUMNS: tuple[str, ...] = ("modality", "metric", "estimate", "ci_low", "ci_high")


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _ordered(present: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``present`` values in the order of ``preferred``, unknown ones after, sorted."""
    present_set = set(present)
    known = [x for x in preferred if x in present_set]
    return known + sorted(present_set - set(known))


def _scan_cube(
    group: pd.DataFrame, channels: list[str], measures: list[str]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``values [scan, channel, layer, measure]`` (NaN where missing), scan ids and their subjects."""
    scans, scan_code = np.unique(group["scan_id"].astype(str).to_numpy(), return_inverse=True)
    pairs = pd.DataFrame({"scan": scan_code, "subject": group["subject_id"].astype(str).to_numpy()}).drop_duplicates()
    if pairs["scan"].duplicated().any():
        raise ValueError("a scan belongs to more than one subject")
    subjects = pairs.sort_values("scan")["subject"].to_numpy()
    channel_code = pd.Categorical(group["channel"], categories=channels).codes
    layer_code = pd.Categorical(group["layer"], categories=list(LAYERS)).codes
    measure_code = pd.Categorical(group["measure"], categories=measures).codes
    if (layer_code < 0).any():
        raise ValueError(f"unknown layers {sorted(set(group['layer'][layer_code < 0]))}")
    cube = np.full((scans.size, len(channels), len(LAYERS), len(measures)), np.nan)
    flat = np.ravel_multi_index((scan_code, channel_code, layer_code, measure_code), cube.shape)
    if np.unique(flat).size != flat.size:
        raise ValueError("duplicate rows: one value per scan, channel, layer and measure expected")
    cube.reshape(-1)[flat] = group["value"].to_numpy(dtype=np.float64)
    return cube, list(scans), subjects


def _with_composites(cube: np.ndarray, channels: list[str], measures: list[str]) -> tuple[np.ndarray, list[str]]:
    """Add the ``non_muscle`` layer and, for several channels, the ``all`` channel to the cube.

    Composites are computed per scan from that scan's per-layer mass (both parts) and voxel counts with
    the same formulas as single layers (``aggregate.derive_measures``): a composite is a region, the
    union of its parts. Hence additive measures (mass, mass share, volume share) are the sums of the
    parts' values, density is total mass over total voxels and gain is the composite mass share over
    the composite volume share (both mass-weighted, not averages of the parts' densities or gains).
    Channel ``all`` pools the mass of all channels over the same voxels: its mass share is the layer's
    part of the attribution summed over channels.
    """
    m = {name: i for i, name in enumerate(measures)}
    required = ("mass_abs", "mass_pos", "n_voxels")
    if not all(r in m for r in required):
        raise ValueError(f"composites need the measures {required} in the aggregated table")
    mass = cube[..., [m["mass_abs"], m["mass_pos"]]]  # [S, C, 6, 2]
    n_vox = cube[:, 0, :, m["n_voxels"]]  # [S, 6], the same for every channel
    if len(channels) > 1:
        mass = np.concatenate([mass, mass.sum(axis=1, keepdims=True)], axis=1)
        channels = channels + [ALL_CHANNELS]
    non_muscle = [LAYERS.index(layer) for layer in NON_MUSCLE_LAYERS]
    mass = np.concatenate([mass, mass[:, :, non_muscle].sum(axis=2, keepdims=True)], axis=2)  # [S, C', 7, 2]
    n_vox = np.concatenate([n_vox, n_vox[:, non_muscle].sum(axis=1, keepdims=True)], axis=1)  # [S, 7]
    total_mass = mass[:, :, : len(LAYERS)].sum(axis=2, keepdims=True)
    total_vox = n_vox[:, : len(LAYERS)].sum(axis=1, keepdims=True)
    derived = derive_measures(mass, n_vox[:, None, :], total_mass, total_vox[:, None, :])
    unknown = np.full(mass.shape[:-1], np.nan)  # a measure this module cannot derive has no composite
    full = np.stack([np.broadcast_to(derived.get(name, unknown), mass.shape[:-1]) for name in measures], axis=-1)
    full[:, : cube.shape[1], : len(LAYERS)] = cube  # original per-layer rows exactly as given
    return full, channels


def layer_saliency_table(agg: pd.DataFrame, n_resamples: int, confidence_level: float, seed: int) -> pd.DataFrame:
    """Per-layer saliency with subject-level CIs, one row per modality x method x channel x layer x measure.

    Each row's estimate is the pooled mean over scans of the per-scan value (NaN values, e.g. density of
    an absent layer, excluded); ``n_scans`` / ``n_subjects`` count the scans and subjects with a value.
    Besides the six layers there is the composite layer ``non_muscle`` (the five layers above the muscle
    as one region: mass, mass_share, volume_share and n_voxels are per-scan sums over the five layers;
    density = their total mass / total voxels; gain = their mass share / volume share), and for
    multi-channel modalities the channel ``all`` (mass pooled over channels, measures recomputed on the
    pooled mass). ``non_muscle`` vs ``muscle`` is the paper's "non-muscle layers together vs muscle".

    One ``bootstrap`` call per modality x method, all channels x layers x measures as columns, so all rows
    of a model share the same subject resamples.

    Args:
        agg: long table with columns ``scan_id, subject_id, modality, method, channel, layer, measure,
            value`` (others, e.g. ``fold``, are ignored); measures as ``aggregate.measure_names()``.
    """
    missing = {"scan_id", "subject_id", "modality", "method", "channel", "layer", "measure", "value"} - set(agg.columns)
    if missing:
        raise ValueError(f"aggregated table lacks columns {sorted(missing)}")
    parts = []
    for modality in _ordered(agg["modality"].unique(), MODALITIES):
        of_modality = agg[agg["modality"] == modality]
        for method in sorted(of_modality["method"].unique()):
            group = of_modality[of_modality["method"] == method]
            parts.append(_saliency_rows(group, modality, method, n_resamples, confidence_level, seed))
    if not parts:
        return pd.DataFrame(columns=list(SALIENCY_COLUMNS))
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class ScanCube:
    """Per-scan scores of one modality x method with composites: ``values [scan, channel, layer, measure]``
    (layers = ``LAYERS`` + ``non_muscle``; channels include ``all`` for a multi-channel modality)."""

    values: np.ndarray
    scans: list[str]
    subjects: np.ndarray
    channels: list[str]
    layers: list[str]
    measures: list[str]


def scan_cube(group: pd.DataFrame, modality: str) -> ScanCube:
    """The :class:`ScanCube` of one modality x method from its long aggregated rows."""
    channels = _ordered(group["channel"].astype(str).unique(), CHANNELS.get(modality, ()))
    if len(channels) > 1 and ALL_CHANNELS in channels:
        raise ValueError(f"channel name {ALL_CHANNELS!r} is reserved for the pooled channel")
    measures = _ordered(group["measure"].unique(), measure_names())
    cube, scans, subjects = _scan_cube(group, channels, measures)
    full, channels = _with_composites(cube, channels, measures)
    return ScanCube(full, scans, subjects, channels, list(LAYERS) + [NON_MUSCLE], measures)


def _saliency_rows(
    group: pd.DataFrame, modality: str, method: str, n_resamples: int, confidence_level: float, seed: int
) -> pd.DataFrame:
    cube = scan_cube(group, modality)
    full = cube.values
    ci = cluster_bootstrap_mean(full.reshape(full.shape[0], -1), cube.subjects, n_resamples, confidence_level, seed)
    grid = pd.MultiIndex.from_product(
        [cube.channels, cube.layers, cube.measures], names=["channel", "layer", "measure"]
    )
    table = grid.to_frame(index=False)
    table.insert(0, "method", method)
    table.insert(0, "modality", modality)
    table["estimate"], table["ci_low"], table["ci_high"] = ci.estimate, ci.ci_low, ci.ci_high
    table["n_subjects"], table["n_scans"] = ci.n_subjects.astype(int), ci.n_scans.astype(int)
    return table[list(SALIENCY_COLUMNS)]


def performance_table(oof: pd.DataFrame, n_resamples: int, confidence_level: float, seed: int) -> pd.DataFrame:
    """AUC, balanced accuracy, sensitivity, specificity (threshold 0.5) of the pooled out-of-fold
    predictions of each modality, with subject-level bootstrap CIs.

    Args:
        oof: columns ``scan_id, subject_id, modality, fold, label, prob``; every row is one prediction
            (a scan predicted by several models, e.g. seeds, appears several times, clustered by subject).
    """
    missing = {"subject_id", "modality", "label", "prob"} - set(oof.columns)
    if missing:
        raise ValueError(f"out-of-fold table lacks columns {sorted(missing)}")
    rows = []
    for modality in _ordered(oof["modality"].unique(), MODALITIES):
        part = oof[oof["modality"] == modality]
        ci = cluster_bootstrap_metric(
            part["label"].to_numpy(dtype=int), part["prob"].to_numpy(dtype=np.float64), part["subject_id"].to_numpy(),
            n_resamples, confidence_level, seed,
        )
        for j, metric in enumerate(ci.columns):
            rows.append((modality, metric, ci.estimate[j], ci.ci_low[j], ci.ci_high[j]))
    return pd.DataFrame(rows, columns=list(PERFORMANCE_COLUMNS))

"""Reduce voxel attribution maps to per-layer scores inside a layer label map.

Every scan's attribution ``[C, D, H, W]`` becomes, for each channel and each of the six layers, a
handful of numbers that answer different questions (see ``docs``/design ``attribution.md``):

* ``mass``: summed attribution in the layer. Follows layer volume (muscle takes half the mass even in a
  null model), so it is never reported alone.
* ``mass_share``: the layer's part of the total mass over the six layers of that channel.
* ``density``: mass per voxel of the layer. Inflates thin membranes; only meaningful next to a null.
* ``volume_share``: the layer's part of the six layers' voxels: the share a layer gets "for free".
* ``gain``: ``mass_share / volume_share``, 1 = the layer gets exactly what its volume predicts.
* ``n_voxels``: the layer's voxel count. Not a saliency quantity; it is kept so that composites of
  several layers (e.g. "non-muscle layers together") can be computed exactly from the per-layer rows.

Each quantity except ``volume_share`` and ``n_voxels`` comes in two parts: ``abs`` (|a|, the evidence
either way) and ``pos`` (max(a, 0), evidence for the predicted class); the sign matters (design note).
Background voxels (label 0) are excluded from every number, including the totals of the shares.

Speed: summing per (scan, channel, label) with ``np.bincount`` over all voxels costs about 8x a memory
copy on this project's machines (the scatter-add and its float64 cast dominate). Layer label maps are
spatially coherent, so voxels come in runs of one label along the fastest axis; the runs are summed
first with one ``np.add.reduceat`` per part and only the run sums are ``np.bincount``-ed, keyed by
(scan, channel, label). That is the same bincount reduction on ~20x fewer elements. Fragmented label
maps (many short runs) fall back to the per-voxel bincount, which gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from layer.names import BACKGROUND, LAYERS, N_LAYERS

#: Quantities that exist once per part, in output order.
PART_QUANTITIES: tuple[str, ...] = ("mass", "mass_share", "density", "gain")
#: ``abs`` = |a|, ``pos`` = max(a, 0).
PARTS: tuple[str, ...] = ("abs", "pos")
#: Quantities of the label map only (no attribution part).
VOXEL_QUANTITIES: tuple[str, ...] = ("volume_share", "n_voxels")

#: Number of label values including background (0..6).
_N_LABELS = N_LAYERS + 1
#: Bytes of float64 working buffer per chunk of scans: small enough to stay in cache between the
#: two reductions that read it, large enough to amortise Python overhead.
_CHUNK_BYTES = 4 * 2**20
#: Use the run-length path only when runs are on average at least this many voxels long.
_MIN_MEAN_RUN = 4


def measure_names() -> list[str]:
    """Measure names in the fixed output order: ``{quantity}_{part}`` then the voxel-only ones."""
    return [f"{q}_{p}" for q in PART_QUANTITIES for p in PARTS] + list(VOXEL_QUANTITIES)


def derive_measures(
    mass: np.ndarray,
    n_voxels: np.ndarray,
    total_mass: np.ndarray,
    total_voxels: np.ndarray,
) -> dict[str, np.ndarray]:
    """All measures of a region from its mass, its voxel count and the six layers' totals.

    The one definition of the measures, shared by per-layer scores and by composites (several layers
    pooled, several channels pooled), so that a composite is exactly what the same formula gives for
    the union of its voxels.

    Args:
        mass: ``[..., 2]`` summed |a| and max(a, 0) (last axis = ``PARTS``).
        n_voxels: voxel count of the region, broadcastable to ``mass[..., 0]``.
        total_mass: ``[..., 2]`` mass over the six layers, broadcastable to ``mass``.
        total_voxels: voxels of the six layers, broadcastable to ``n_voxels``.

    Returns:
        ``measure name -> array`` with the shape of ``mass[..., 0]`` broadcast with the voxel arrays.
        Absent region: mass 0, volume share 0, density and gain NaN. Zero total mass: shares NaN.
    """
    mass = np.asarray(mass, dtype=np.float64)
    n = np.asarray(n_voxels, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = mass / np.asarray(total_mass, dtype=np.float64)
        density = mass / n[..., None]
        volume_share = n / np.asarray(total_voxels, dtype=np.float64)
        gain = share / volume_share[..., None]
    # 0/0 gives NaN already; x/0 with x > 0 cannot happen (mass needs voxels) except through rounding.
    gain = np.where(volume_share[..., None] > 0, gain, np.nan)
    density = np.where(n[..., None] > 0, density, np.nan)
    per_part = {"mass": mass, "mass_share": share, "density": density, "gain": gain}
    out: dict[str, np.ndarray] = {}
    shape = np.broadcast_shapes(mass.shape[:-1], n.shape, np.shape(volume_share))
    for quantity in PART_QUANTITIES:
        for i, part in enumerate(PARTS):
            out[f"{quantity}_{part}"] = np.broadcast_to(per_part[quantity][..., i], shape)
    out["volume_share"] = np.broadcast_to(volume_share, shape)
    out["n_voxels"] = np.broadcast_to(n, shape)
    return out


def _as_labels(layers: np.ndarray) -> np.ndarray:
    """Integer label array; float label maps (as NIfTI loaders return) are accepted if integral."""
    layers = np.asarray(layers)
    if not np.issubdtype(layers.dtype, np.integer):
        if not np.all(np.isfinite(layers)) or not np.array_equal(layers, np.round(layers)):
            raise ValueError("layer label map must hold integers 0..6")
        layers = layers.astype(np.int16)
    return layers


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat start index and label of every run of equal labels in ``labels`` [n, V] (runs never cross
    scans). Sorted by scan, then voxel."""
    n, v = labels.shape
    change = np.empty((n, v), dtype=bool)
    change[:, 0] = True
    np.not_equal(labels[:, 1:], labels[:, :-1], out=change[:, 1:])
    flat = np.flatnonzero(change)
    return flat, labels.reshape(-1)[flat]


def _chunk_sums(att: np.ndarray, labels: np.ndarray, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (scan, channel, label) sums of |a| and max(a, 0), and per (scan, label) voxel counts.

    Args:
        att: ``[n, C, V]`` attributions of a chunk of scans.
        labels: ``[n, V]`` integer labels 0..6.
        buf: float64 work buffer with at least ``n * C * V`` elements.

    Returns:
        ``mass [n, C, 7, 2]`` (label 0 = background included) and ``counts [n, 7]``.
    """
    n, c, v = att.shape
    flat, run_label = _runs(labels)
    if run_label.size and (run_label.min() < 0 or run_label.max() > N_LAYERS):
        raise ValueError(f"layer labels must lie in 0..{N_LAYERS}")
    run_scan = flat // v
    run_len = np.diff(np.append(flat, n * v))
    counts = np.bincount(run_scan * _N_LABELS + run_label, weights=run_len, minlength=n * _N_LABELS)

    x = buf[: n * c * v]
    np.copyto(x, att.reshape(-1))  # float64: sums of many float32 values need the precision
    size = n * c * _N_LABELS
    if flat.size * _MIN_MEAN_RUN <= n * v:
        starts, keys = _run_layout(flat, run_scan, run_label, n, c, v)
        signed_sum = np.bincount(keys, weights=np.add.reduceat(x, starts), minlength=size)
        np.maximum(x, 0.0, out=x)
        pos_sum = np.bincount(keys, weights=np.add.reduceat(x, starts), minlength=size)
    else:  # fragmented label map: every voxel is its own run
        scan_channel = np.arange(n * c).reshape(n, c, 1)
        keys = (scan_channel * _N_LABELS + labels[:, None, :]).reshape(-1)
        signed_sum = np.bincount(keys, weights=x, minlength=size)
        np.maximum(x, 0.0, out=x)
        pos_sum = np.bincount(keys, weights=x, minlength=size)
    # sum|a| = 2 sum max(a,0) - sum a = P + N with P, N >= 0: rounding stays relative to sum|a| itself.
    abs_sum = 2.0 * pos_sum - signed_sum
    mass = np.stack([abs_sum, pos_sum], axis=-1).reshape(n, c, _N_LABELS, 2)
    return mass, counts.reshape(n, _N_LABELS).astype(np.int64)


def _run_layout(
    flat: np.ndarray, run_scan: np.ndarray, run_label: np.ndarray, n: int, c: int, v: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run starts in the flattened ``[n, C, V]`` attribution, in ascending order, and their bincount
    keys ``(scan * C + channel) * 7 + label``.

    Each scan's runs are repeated for each channel; ``reduceat`` needs the starts sorted, i.e. ordered
    by scan, then channel, then voxel. Run ``j`` of scan ``s`` (``R_s`` runs, the first at ``ptr_s``)
    for channel ``k`` goes to position ``C * ptr_s + k * R_s + j``.
    """
    per_scan = np.bincount(run_scan, minlength=n)
    ptr = np.concatenate(([0], np.cumsum(per_scan)[:-1]))
    j = np.arange(flat.size) - ptr[run_scan]
    voxel = flat - run_scan * v
    channel = np.arange(c)[:, None]
    pos = c * ptr[run_scan][None, :] + channel * per_scan[run_scan][None, :] + j[None, :]
    scan_channel = run_scan[None, :] * c + channel
    starts = np.empty(c * flat.size, dtype=np.intp)
    keys = np.empty(c * flat.size, dtype=np.intp)
    starts[pos] = scan_channel * v + voxel[None, :]
    keys[pos] = scan_channel * _N_LABELS + run_label[None, :]
    return starts, keys


def _scan_measures(mass: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[N, C, 6, M]`` measure values (order ``measure_names()``) from label sums incl. background."""
    # Label value = index; LAYERS are labels 1..6 in order, so dropping BACKGROUND leaves LAYERS order.
    layer_mass = np.delete(mass, BACKGROUND, axis=2)
    layer_counts = np.delete(counts, BACKGROUND, axis=1)[:, None, :]  # [N, 1, 6]
    total_mass = layer_mass.sum(axis=2, keepdims=True)
    total_voxels = layer_counts.sum(axis=2, keepdims=True)
    measures = derive_measures(layer_mass, layer_counts, total_mass, total_voxels)
    shape = layer_mass.shape[:-1]
    return np.stack([np.broadcast_to(measures[m], shape) for m in measure_names()], axis=-1)


def aggregate_scans(
    attributions: np.ndarray,
    layers: np.ndarray,
    scan_ids: Sequence[str],
    channels: Sequence[str],
) -> pd.DataFrame:
    """Per-layer scores of many scans as one long table.

    Args:
        attributions: ``[N, C, D, H, W]`` float attribution maps (any float dtype).
        layers: ``[N, D, H, W]`` integer label maps, 0 = background, 1..6 = ``LAYERS``.
        scan_ids: ``N`` scan identifiers.
        channels: ``C`` channel names, in the channel order of ``attributions``.

    Returns:
        Columns ``scan_id, channel, layer, measure, value``; rows ordered by scan, channel, layer
        (``LAYERS`` order), measure (``measure_names()`` order).

    Raises:
        ValueError: on mismatched shapes, labels outside 0..6, or non-finite attribution inside the
        six layers (background voxels are never read into a result, so they may hold anything).
    """
    att = np.asarray(attributions)
    labels = _as_labels(layers)
    if att.ndim != 5 or labels.shape != att.shape[:1] + att.shape[2:]:
        raise ValueError(f"shapes {att.shape} and {labels.shape} are not [N,C,D,H,W] and [N,D,H,W]")
    n, c = att.shape[:2]
    if len(scan_ids) != n or len(channels) != c:
        raise ValueError("need one scan id per scan and one channel name per channel")
    v = int(np.prod(att.shape[2:]))
    att = att.reshape(n, c, v)
    labels = labels.reshape(n, v)

    per_chunk = max(1, _CHUNK_BYTES // max(1, 8 * c * v))
    buf = np.empty(min(n, per_chunk) * c * v, dtype=np.float64)
    mass = np.empty((n, c, _N_LABELS, 2))
    counts = np.empty((n, _N_LABELS), dtype=np.int64)
    for s0 in range(0, n, per_chunk):  # chunks bound memory and keep the buffer in cache
        sl = slice(s0, s0 + per_chunk)
        mass[sl], counts[sl] = _chunk_sums(att[sl], labels[sl], buf)

    bad = ~np.isfinite(np.delete(mass, BACKGROUND, axis=2)).all(axis=(1, 2, 3))
    if bad.any():
        raise ValueError(f"non-finite attribution inside the layers of scans {list(np.asarray(scan_ids)[bad])}")
    values = _scan_measures(mass, counts)
    return _long_table(values, scan_ids, channels)


def _long_table(values: np.ndarray, scan_ids: Sequence[str], channels: Sequence[str]) -> pd.DataFrame:
    """Tidy table from ``[N, C, 6, M]`` values, built column-wise (no per-row Python)."""
    n, c, n_layers, m = values.shape
    per_scan = c * n_layers * m
    return pd.DataFrame(
        {
            "scan_id": np.repeat(np.asarray(scan_ids, dtype=object), per_scan),
            "channel": np.tile(np.repeat(np.asarray(channels, dtype=object), n_layers * m), n),
            "layer": np.tile(np.repeat(np.asarray(LAYERS, dtype=object), m), n * c),
            "measure": np.tile(np.asarray(measure_names(), dtype=object), n * c * n_layers),
            "value": values.reshape(-1),
        }
    )


def layer_scores(attribution: np.ndarray, layers: np.ndarray, channels: Sequence[str]) -> pd.DataFrame:
    """Per-layer scores of one scan: columns ``channel, layer, measure, value``.

    ``attribution`` is ``[C, D, H, W]``, ``layers`` ``[D, H, W]``; see ``aggregate_scans`` for the
    measures and the row order.
    """
    att = np.asarray(attribution)
    if att.ndim != 4:
        raise ValueError(f"attribution must be [C, D, H, W], got shape {att.shape}")
    table = aggregate_scans(att[None], np.asarray(layers)[None], ["_"], channels)
    return table.drop(columns="scan_id")


__all__ = [
    "PARTS",
    "PART_QUANTITIES",
    "VOXEL_QUANTITIES",
    "aggregate_scans",
    "derive_measures",
    "layer_scores",
    "measure_names",
]

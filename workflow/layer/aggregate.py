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

Speed: the sums come from one compiled pass (numba) over the voxels of each scan, ``_scan_sums_kernel``:
float64 accumulators per (channel, label) for both parts, and voxel counts per label. No Python loop over
scans, layers or voxels. The numpy path (``_bincount_sums``: one ``np.bincount`` keyed by scan, channel,
label and sign, see ``_chunk_sums``) is kept as the reference the tests check the kernel against; it
costs about 3x a memory copy, the kernel a fraction of one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from layer.attribution_files import load_method
from layer.io import load_arrays, load_nifti
from layer.names import BACKGROUND, LAYERS, N_LAYERS
from layer.regions.membranes import membrane_regions

#: Quantities that exist once per part, in output order.
PART_QUANTITIES: tuple[str, ...] = ("mass", "mass_share", "density", "gain")
#: ``abs`` = |a|, ``pos`` = max(a, 0).
PARTS: tuple[str, ...] = ("abs", "pos")
#: Quantities of the label map only (no attribution part).
VOXEL_QUANTITIES: tuple[str, ...] = ("volume_share", "n_voxels")

#: Number of label values including background (0..6).
_N_LABELS = N_LAYERS + 1
#: Bytes of work buffers per chunk of scans: small enough to stay in cache between the passes that
#: read them, large enough to amortise Python overhead.
_CHUNK_BYTES = 4 * 2**20
#: Independent accumulators per bin (see ``_chunk_sums`` and ``_scan_sums_kernel``).
_LANES = 8
#: Voxels per block of the kernel (see ``_scan_sums_kernel``); 128 measured fastest of 32..256.
_BLOCK = 128
#: Block kinds of the kernel besides a label value (uniform block).
_MIXED, _FRAGMENTED = -1, -2


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


@functools.lru_cache(maxsize=4)
def _lane_pattern(v: int) -> np.ndarray:
    """``(voxel % LANES) * 2 + 1`` as int32: the lane part of every key (see ``_chunk_sums``)."""
    pattern = (np.arange(v, dtype=np.int32) % _LANES) * 2 + 1
    pattern.flags.writeable = False  # cached and shared
    return pattern


def _negative_flags(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """-1 where ``x`` is negative (sign bit set), else 0, as int32 in ``out``.

    For float32 this is an arithmetic shift of the bit pattern, about twice as fast as a comparison
    followed by a bool-to-int cast. A set sign bit on -0.0 or NaN only changes which bin gets the
    value: -0.0 adds nothing and NaN is caught afterwards.
    """
    if x.dtype == np.float32:
        return np.right_shift(x.view(np.int32), 31, out=out)
    np.copyto(out, np.less(x, 0), casting="unsafe")
    return np.negative(out, out=out)


def _chunk_sums(
    att: np.ndarray, labels: np.ndarray, keys: np.ndarray, signs: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per (scan, channel, label) sums of |a| and max(a, 0), and per (scan, label) voxel counts.

    One ``np.bincount`` gives both parts: the key of a voxel value is
    ``((((scan * C + channel) * 7 + label) * LANES + lane) * 2 + [a >= 0])``. The sign bit splits the
    sums into the negative part N <= 0 and the non-negative part P, so ``pos = P`` and ``abs = P - N``
    (no cancellation: both terms add magnitudes). The lane (voxel index mod ``LANES``) only spreads
    neighbouring voxels, which mostly share a label, over different bins: consecutive adds into one
    bin form a dependency chain that made a plain bincount 3x slower.

    Args:
        att: ``[n, C, V]`` attributions of a chunk of scans.
        labels: ``[n, V]`` integer labels, already checked to lie in 0..6.
        keys, signs: int32 work buffers, weights: float64 work buffer, each >= ``n * C * V`` long.

    Returns:
        ``mass [n, C, 7, 2]`` (label 0 = background included; parts ``abs, pos``), ``counts [n, 7]``.
        Label 0 (background) is summed like any label and dropped by the caller.
    """
    n, c, v = att.shape
    size = n * c * _N_LABELS * _LANES * 2
    base = np.multiply(labels, 2 * _LANES, dtype=np.int32)  # [n, V]
    base += _lane_pattern(v)
    base += (np.arange(n, dtype=np.int32) * (c * _N_LABELS * _LANES * 2))[:, None]

    k = keys[: n * c * v].reshape(n, c, v)
    channel_offset = (np.arange(c, dtype=np.int32) * (_N_LABELS * _LANES * 2))[None, :, None]
    np.add(base[:, None, :], channel_offset, out=k)
    k += _negative_flags(att, signs[: n * c * v].reshape(n, c, v))
    w = weights[: n * c * v]
    np.copyto(w, att.reshape(-1))  # float64: sums of many float32 values need the precision
    sums = np.bincount(k.reshape(-1), weights=w, minlength=size)
    sums = sums.reshape(n, c, _N_LABELS, _LANES, 2).sum(axis=3)
    negative, nonnegative = sums[..., 0], sums[..., 1]
    mass = np.stack([nonnegative - negative, nonnegative], axis=-1)
    return mass, _label_counts(labels)


def _label_counts(labels: np.ndarray) -> np.ndarray:
    """Voxels per (scan, label) of ``labels [n, V]`` as ``[n, 7]`` int64.

    Counted over runs of equal labels (a label map is spatially coherent: ~20 voxels per run), which is
    ~4x cheaper than a bincount over voxels.
    """
    n, v = labels.shape
    change = np.empty((n, v), dtype=bool)
    change[:, 0] = True  # runs never cross scans
    np.not_equal(labels[:, 1:], labels[:, :-1], out=change[:, 1:])
    starts = np.flatnonzero(change)
    lengths = np.diff(starts, append=n * v)
    keys = (starts // v) * _N_LABELS + labels.reshape(-1)[starts]
    counts = np.bincount(keys, weights=lengths, minlength=n * _N_LABELS)
    return counts.reshape(n, _N_LABELS).astype(np.int64)


def _bincount_sums(att: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference path: ``_chunk_sums`` over chunks of scans. Same arguments and results as ``_sums``."""
    n, c, v = att.shape
    per_chunk = max(1, _CHUNK_BYTES // max(1, 16 * c * v))  # 16 bytes of work buffer per value
    buf_len = min(n, per_chunk) * c * v
    keys, signs = np.empty(buf_len, dtype=np.int32), np.empty(buf_len, dtype=np.int32)
    weights = np.empty(buf_len, dtype=np.float64)
    mass = np.zeros((n, c, _N_LABELS, 2))
    counts = np.zeros((n, _N_LABELS), dtype=np.int64)
    for s0 in range(0, n, per_chunk):  # chunks bound memory and keep the work buffers in cache
        sl = slice(s0, s0 + per_chunk)
        mass[sl], counts[sl] = _chunk_sums(att[sl], labels[sl], keys, signs, weights)
    return mass, counts


def _scan_sums_kernel(att, labels, block, mass, counts):  # pragma: no cover - runs compiled (_kernel)
    """Compiled body of ``_sums``: writes ``mass [n, C, 7, 2]`` and ``counts [n, 7]`` in place.

    Per scan, one pass over the labels sorts blocks of ``block`` consecutive voxels into three kinds:
    uniform (one label: most blocks of a layer map), mixed (a few runs of equal labels: a layer
    boundary) and fragmented. Then, per channel, one pass over the attribution values:

    * uniform and mixed blocks add |a| and max(a, 0) of each run into per-label rows indexed by the
      position in the block (``run_abs``, ``run_pos``): element-wise adds with no dependency between
      neighbouring voxels, which LLVM vectorises without reassociation (so ``fastmath`` stays off);
    * fragmented blocks add each value into a bin keyed by (label, voxel % LANES, sign), the bincount
      scheme of ``_chunk_sums``: ``pos`` = non-negative part, ``abs`` = non-negative - negative part.

    Everything accumulates in float64. ``block`` is an argument rather than a constant so that LLVM
    does not unroll the inner loops away from vectorisation, and so that tests can reach every kind of
    block on small arrays. Labels must lie in 0..6 (checked by the caller: there is no bounds check).
    """
    n, c, v = att.shape
    n_blocks = (v + block - 1) // block
    kind = np.empty(n_blocks, np.int8)
    run_abs = np.empty((_N_LABELS, block))
    run_pos = np.empty((_N_LABELS, block))
    scattered = np.empty((_N_LABELS, _LANES, 2))  # last axis: non-negative, negative
    for s in range(n):
        lab = labels[s]
        cnt = np.zeros((_N_LABELS, _LANES), np.int64)
        for b in range(n_blocks):
            start = b * block
            m = min(block, v - start)
            ls = lab[start : start + m]
            changes = 0
            for t in range(1, m):
                changes += ls[t] != ls[t - 1]
            if changes == 0:
                kind[b] = ls[0]
                cnt[ls[0], 0] += m
            else:
                kind[b] = _MIXED if changes < max(1, m // _LANES) else _FRAGMENTED
                for t in range(m):
                    cnt[ls[t], t % _LANES] += 1
        for lbl in range(_N_LABELS):
            counts[s, lbl] = cnt[lbl].sum()
        for ch in range(c):
            x = att[s, ch]
            run_abs[:] = 0.0
            run_pos[:] = 0.0
            scattered[:] = 0.0
            for b in range(n_blocks):
                start = b * block
                m = min(block, v - start)
                xs = x[start : start + m]
                ls = lab[start : start + m]
                k = kind[b]
                if k == _FRAGMENTED:
                    for t in range(m):
                        xv = np.float64(xs[t])
                        scattered[ls[t], t % _LANES, np.intp(xv < 0.0)] += xv
                    continue
                t0 = 0
                while t0 < m:
                    if k >= 0:
                        run_label, t1 = k, m
                    else:
                        run_label, t1 = ls[t0], t0 + 1
                        while t1 < m and ls[t1] == run_label:
                            t1 += 1
                    # Slices, so the loop counter starts at 0: no negative-index wraparound in the loop.
                    xr = xs[t0:t1]
                    ra = run_abs[run_label, t0:t1]
                    rp = run_pos[run_label, t0:t1]
                    for t in range(t1 - t0):
                        xv = np.float64(xr[t])
                        ra[t] += abs(xv)
                        rp[t] += 0.0 if xv <= 0.0 else xv  # NaN propagates, as in the reference
                    t0 = t1
            for lbl in range(_N_LABELS):
                nonneg = 0.0
                neg = 0.0
                for t in range(_LANES):
                    nonneg += scattered[lbl, t, 0]
                    neg += scattered[lbl, t, 1]
                mass[s, ch, lbl, 0] = run_abs[lbl].sum() + (nonneg - neg)
                mass[s, ch, lbl, 1] = run_pos[lbl].sum() + nonneg


@functools.cache
def _kernel():
    """``_scan_sums_kernel`` compiled; numba is imported on first use, not with this module.

    ``cache=True`` keeps the machine code on disk (``__pycache__``, or numba's user cache where that is
    read-only), so only the first process on a machine pays the compile (a few seconds) for each
    attribution dtype (float32, float64). Single-threaded on purpose: aggregation jobs run one per core.
    """
    import numba

    return numba.njit(cache=True, nogil=True, fastmath=False)(_scan_sums_kernel)


def _sums(att: np.ndarray, labels: np.ndarray, block: int = _BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Per (scan, channel, label) sums of |a| and max(a, 0), and per (scan, label) voxel counts.

    Args:
        att: ``[n, C, V]`` attributions.
        labels: ``[n, V]`` integer labels, already checked to lie in 0..6.
        block: voxels per block of the kernel (tests use small blocks to reach every code path).

    Returns:
        ``mass [n, C, 7, 2]`` float64 (label 0 = background included; parts ``abs, pos``) and
        ``counts [n, 7]`` int64, as ``_bincount_sums``.
    """
    n, c, v = att.shape
    mass = np.zeros((n, c, _N_LABELS, 2))
    counts = np.zeros((n, _N_LABELS), dtype=np.int64)
    if n == 0 or v == 0:  # nothing to sum (and no compile for an empty call, as aggregate_job makes)
        return mass, counts
    if att.dtype != np.float32 and att.dtype != np.float64:  # one compiled version per float width
        att = att.astype(np.float32 if att.dtype == np.float16 else np.float64)
    att = np.ascontiguousarray(att)
    labels = np.ascontiguousarray(labels.astype(np.uint8, copy=False))
    _kernel()(att, labels, block, mass, counts)
    return mass, counts


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

    if labels.size and (labels.min() < 0 or labels.max() > N_LAYERS):
        raise ValueError(f"layer labels must lie in 0..{N_LAYERS}")

    mass, counts = _sums(att, labels)

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


def score_masses(scores: np.ndarray) -> np.ndarray:
    """Per-label ``[N, C, 7, 2]`` masses (|s|, max(s, 0); background 0) from layer scores ``[N, C, 6]``.

    A removal method (ablation, layer Shapley) gives one signed number per layer instead of a voxel
    map; it enters the same measures as a map whose attribution sums to that number inside the layer
    (``mass`` = the score), so shares, gains and composites are computed by one definition.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 3 or s.shape[2] != N_LAYERS:
        raise ValueError(f"layer scores must be [N, C, {N_LAYERS}], got {s.shape}")
    layer_mass = np.stack([np.abs(s), np.maximum(s, 0.0)], axis=-1)
    return np.insert(layer_mass, BACKGROUND, 0.0, axis=2)


def aggregate_job(
    path: str, sheet: pd.DataFrame, membrane_margin: int = 0, scans_per_chunk: int = 64, method: str | None = None
) -> pd.DataFrame:
    """Per-layer scores of one method of a model (modality x fold): voxel ``maps`` or layer ``scores``,
    read in the attribution regions (``layer.regions.membranes.membrane_regions`` with
    ``membrane_margin``). ``method``: that method's arrays of a per-model file (:mod:`layer.attribution_files`);
    ``None``: a file of one method's arrays (``maps`` or ``scores``, ``scan_ids``, ``channels``).

    Label maps are read from the sheet's ``layers`` paths, a chunk of scans at a time, so that memory
    stays bounded at paper scale (4,000 scans).

    Returns:
        Columns ``scan_id, subject_id, channel, layer, measure, value`` (see ``aggregate_scans``), and
        ``map_source`` after ``subject_id`` where the sheet has it.
    """
    arrays = load_arrays(path) if method is None else load_method(path, method)
    scan_ids = [str(s) for s in arrays["scan_ids"]]
    channels = tuple(str(c) for c in arrays["channels"])
    rows = sheet.set_index(sheet["scan_id"].astype(str))
    missing = sorted(set(scan_ids) - set(rows.index))
    if missing:
        raise ValueError(f"scans {missing[:5]} of {path} are not in the cohort sheet")
    parts = [_long_table(np.zeros((0, len(channels), N_LAYERS, len(measure_names()))), [], channels)]
    for s0 in range(0, len(scan_ids), scans_per_chunk):
        ids = scan_ids[s0 : s0 + scans_per_chunk]
        layers = membrane_regions(
            np.stack([_as_labels(load_nifti(rows.at[sid, "layers"])[0]) for sid in ids]), membrane_margin
        )
        if "scores" in arrays:
            counts = _label_counts(layers.reshape(len(ids), -1))
            values = _scan_measures(score_masses(arrays["scores"][s0 : s0 + scans_per_chunk]), counts)
            parts.append(_long_table(values, ids, channels))
            continue
        maps = arrays["maps"]
        if layers.shape[1:] != maps.shape[2:]:
            raise ValueError(f"attribution grid {maps.shape[2:]} differs from layer map grid {layers.shape[1:]}")
        parts.append(aggregate_scans(maps[s0 : s0 + scans_per_chunk], layers, ids, channels))
    table = pd.concat(parts, ignore_index=True)
    table.insert(1, "subject_id", rows.loc[table["scan_id"], "subject_id"].astype(str).to_numpy())
    if "map_source" in rows.columns:  # where each scan's layer map came from (layer.segment)
        table.insert(2, "map_source", rows.loc[table["scan_id"], "map_source"].astype(str).to_numpy())
    return table


__all__ = [
    "aggregate_job",
    "score_masses",
    "PARTS",
    "PART_QUANTITIES",
    "VOXEL_QUANTITIES",
    "aggregate_scans",
    "derive_measures",
    "layer_scores",
    "measure_names",
]

"""Robustness of layer scores to segmentation error: perturbed and degraded layer label maps.

Why: every layer score is read inside a label map, and in practice that map comes from an automatic
segmentation whose per-layer Dice against manual labels is far from 1 (InterSliceBoost, Med. Phys. 2025:
dermis 73.5, superficial fat 61.1, SFM 81.9, deep fat 95.7, DFM 83.5, muscle 88.7 %). A layer call that
flips when the interfaces move by one voxel, or under errors of that size, is not a finding.

A label map is handled as what it is anatomically: per column (depth axis first), gel (0), then the six
layers in order as contiguous runs, then background (0, bone shadow) below. That is 7 interface depths
per column (skin, 5 inner interfaces, bottom of the muscle). Perturbations move interfaces and render the
map again, so labels stay in 0..6, the layer order is kept and a layer present in a column keeps at least
one voxel there (so every layer stays present).

Two error models:

* :func:`perturb_layers`: every interface (or the two of one layer) moved by one voxel: a systematic
  one-voxel error, the smallest a voxel segmentation can make.
* :func:`degrade_to_dice`: random depth displacement of each interface, smooth in-plane (a Gaussian
  random field per interface), with one amplitude per interface tuned so that the per-layer Dice matches
  targets. Interfaces are shared by neighbouring layers, so the amplitudes are fitted jointly (least
  squares over the six Dice values by coordinate descent, a grid plus golden-section line search per
  interface), not
  one bisection per layer. Not every Dice profile is reachable by boundary errors: on the synthetic
  anatomy (superficial fat about 2.4x as thick as the dermis, a 1-voxel SFM below it) the published
  profile is not (superficial fat at 61 % needs interface errors that would take the thin dermis or SFM
  far below their targets); the fit then returns the least-squares compromise and its achieved Dice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from layer.names import LAYERS, N_LAYERS

#: Per-layer Dice of automatic segmentation (InterSliceBoost, Med. Phys. 2025), as fractions.
PUBLISHED_DICE: dict[str, float] = {
    "dermis": 0.735, "superficial_fat": 0.611, "sfm": 0.819, "deep_fat": 0.957, "dfm": 0.835, "muscle": 0.887,
}
PERTURB_MODES: tuple[str, ...] = ("deeper", "shallower", "random", "dilate", "erode")
#: Number of interfaces per column: skin, five inner interfaces, bottom of the muscle.
N_INTERFACES = N_LAYERS + 1


def _labels(layers: np.ndarray) -> np.ndarray:
    arr = np.asarray(layers)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError("layer label map must hold integers 0..6")
        arr = arr.astype(np.int16)
    if arr.ndim != 3 or arr.min(initial=0) < 0 or arr.max(initial=0) > N_LAYERS:
        raise ValueError("layer label map must be [D, H, W] with labels 0..6")
    return arr


def interfaces(layers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interface depths ``[7, H, W]`` (layer k occupies rows ``b[k-1] .. b[k]-1``) and thicknesses ``[6, H, W]``.

    Raises if a column is not layered (labels out of order, or a gap of 0 inside the stack), because
    then interfaces are undefined and moving them would silently reorder tissue.
    """
    labels = _labels(layers)
    counts = np.stack([(labels == k).sum(axis=0) for k in range(1, N_LAYERS + 1)])
    top = np.argmax(labels > 0, axis=0)
    bounds = np.concatenate([top[None], top[None] + np.cumsum(counts, axis=0)])
    if not np.array_equal(render_interfaces(bounds, labels.shape[0]), labels):
        raise ValueError("label map is not layered along depth (layers out of order or interrupted)")
    return bounds, counts


def render_interfaces(bounds: np.ndarray, depth: int) -> np.ndarray:
    """uint8 label map from interface depths ``[7, H, W]``: label k between ``b[k-1]`` and ``b[k]``."""
    z = np.arange(depth)[:, None, None]
    labels = np.zeros((depth,) + bounds.shape[1:], dtype=np.uint8)
    for k in range(N_LAYERS):
        labels += (z >= bounds[k]).astype(np.uint8)
    inside = (z >= bounds[0]) & (z < bounds[N_LAYERS])
    return np.where(inside, labels, 0).astype(np.uint8)


def enforce_order(bounds: np.ndarray, min_thickness: np.ndarray, depth: int) -> np.ndarray:
    """Interfaces clipped to the image and pushed apart so layer k keeps ``min_thickness[k]`` voxels.

    Downward pass then upward pass: valid whenever the minimum thicknesses fit in the column, which
    they do because the original map had them.
    """
    b = np.clip(np.asarray(bounds, dtype=np.int64), 0, depth)
    for k in range(1, N_INTERFACES):
        b[k] = np.maximum(b[k], b[k - 1] + min_thickness[k - 1])
    b[-1] = np.minimum(b[-1], depth)
    for k in range(N_INTERFACES - 2, -1, -1):
        b[k] = np.minimum(b[k], b[k + 1] - min_thickness[k])
    return b


def perturb_layers(
    layers: np.ndarray, mode: str, rng: np.random.Generator | None = None, layer: str | None = None
) -> np.ndarray:
    """Label map with interfaces moved by one voxel along depth.

    Modes: ``deeper`` / ``shallower`` (all seven interfaces, a systematic offset); ``random`` (each
    interface independently one voxel up or down, the same in every column, drawn from ``rng``);
    ``dilate`` / ``erode`` (the two interfaces of ``layer`` moved outward / inward: that layer one voxel
    thicker or thinner on each side, its neighbours the opposite). A layer keeps at least one voxel
    where it had one, so every label stays present: where a move would thin a layer below one voxel,
    that interface stays (a one-voxel membrane is not eroded, and a layer does not grow into a one-voxel
    neighbour); the all-interface modes push a squeezed interface along instead.
    """
    labels = _labels(layers)
    depth = labels.shape[0]
    bounds, counts = interfaces(labels)
    if mode in ("dilate", "erode"):
        if layer not in LAYERS:
            raise ValueError(f"mode '{mode}' needs layer= one of {', '.join(LAYERS)}")
        return render_interfaces(_resize_layer(bounds, counts, LAYERS.index(layer), mode == "dilate", depth), depth)
    if mode == "deeper":
        shift = np.ones(N_INTERFACES, dtype=np.int64)
    elif mode == "shallower":
        shift = -np.ones(N_INTERFACES, dtype=np.int64)
    elif mode == "random":
        if rng is None:
            raise ValueError("mode 'random' needs rng=")
        shift = rng.choice(np.array([-1, 1]), size=N_INTERFACES)
    else:
        raise ValueError(f"unknown perturbation mode '{mode}'; choose one of {', '.join(PERTURB_MODES)}")
    moved = enforce_order(bounds + shift[:, None, None], np.minimum(counts, 1), depth)
    return render_interfaces(moved, depth)


def _resize_layer(bounds: np.ndarray, counts: np.ndarray, k: int, grow: bool, depth: int) -> np.ndarray:
    """Interfaces with layer ``k`` (0-based) one voxel thicker / thinner on each side, per column where the
    layer giving or keeping the voxel stays >= 1 voxel thick."""
    b = bounds.astype(np.int64).copy()
    t = counts.astype(np.int64)
    if grow:
        room_above = b[k] >= 1 if k == 0 else t[k - 1] >= 2  # above the dermis is gel
        room_below = b[k + 1] + 1 <= depth if k == N_LAYERS - 1 else t[k + 1] >= 2  # below the muscle: background
        b[k] -= room_above & (t[k] > 0)
        b[k + 1] += room_below & (t[k] > 0)
    else:
        top = t[k] >= 2
        b[k] += top
        b[k + 1] -= (t[k] - top) >= 2
    return b


def layer_dice(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Dice of each layer of ``other`` against ``reference`` (NaN for a layer absent from both)."""
    a, b = np.asarray(reference), np.asarray(other)
    out = {}
    for k, name in enumerate(LAYERS, start=1):
        in_a, in_b = a == k, b == k
        total = int(in_a.sum()) + int(in_b.sum())
        out[name] = 2.0 * int((in_a & in_b).sum()) / total if total else float("nan")
    return out


def displacement_fields(rng: np.random.Generator, shape: tuple[int, int], smooth_voxels: float) -> np.ndarray:
    """``[7, H, W]`` unit-SD Gaussian random fields, smoothed in-plane with SD ``smooth_voxels``.

    Smooth because segmentation errors are: a network misplaces an interface over a patch, not in
    isolated columns.
    """
    noise = rng.standard_normal((N_INTERFACES, *shape))
    fields = np.stack([ndimage.gaussian_filter(n, smooth_voxels, mode="reflect") for n in noise])
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    sd = fields.std(axis=(1, 2), keepdims=True)
    return fields / np.where(sd > 0, sd, 1.0)


def degrade(layers: np.ndarray, amplitudes: Sequence[float] | np.ndarray, fields: np.ndarray) -> np.ndarray:
    """Label map with interface i displaced by ``amplitudes[i] * fields[i]`` voxels (rounded), re-rendered."""
    labels = _labels(layers)
    bounds, counts = interfaces(labels)
    a = np.asarray(amplitudes, dtype=np.float64).reshape(N_INTERFACES, 1, 1)
    moved = np.rint(bounds + a * fields).astype(np.int64)
    return render_interfaces(enforce_order(moved, np.minimum(counts, 1), labels.shape[0]), labels.shape[0])


class Degraded(NamedTuple):
    """A degraded label map, its per-layer Dice against the original, and the interface amplitudes used."""

    layers: np.ndarray
    dice: dict[str, float]
    amplitudes: np.ndarray


def _line_search(f, lo: float, hi: float, grid: int, iterations: int) -> float:
    """Minimiser of ``f`` on [lo, hi]: best of a coarse grid, refined by golden-section search in the
    grid cell on each side of it.

    The grid makes the search global along the line (Dice is a step function of the amplitude and the
    loss has several local minima); golden section then refines within the winning bracket.
    """
    xs = np.linspace(lo, hi, grid)
    values = [f(x) for x in xs]
    j = int(np.argmin(values))
    a, b = xs[max(j - 1, 0)], xs[min(j + 1, grid - 1)]
    best_x, best_f = xs[j], values[j]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    for x, fx in ((c, fc), (d, fd)):
        if fx < best_f:
            best_x, best_f = x, fx
    return float(best_x)


def degrade_to_dice(
    layers: np.ndarray,
    target_dice: Mapping[str, float],
    rng: np.random.Generator,
    smooth_voxels: float = 4.0,
    max_amplitude: float = 6.0,
    sweeps: int = 4,
    grid: int = 13,
    iterations: int = 8,
) -> Degraded:
    """Label map whose per-layer Dice against ``layers`` approximates ``target_dice`` (fractions, e.g.
    ``PUBLISHED_DICE``); layers missing from ``target_dice`` are not fitted.

    Fields are drawn once from ``rng``; the seven amplitudes minimise the squared Dice error by coordinate
    descent (``sweeps`` passes over the interfaces; per interface a grid of ``grid`` amplitudes on
    [0, ``max_amplitude``] voxels refined by ``iterations`` golden-section steps). Returns the achieved
    Dice: compare it with the targets, they may be unreachable (module docstring). To degrade many scans
    alike, fit once and apply :func:`degrade` with the amplitudes and fresh fields per scan.
    """
    labels = _labels(layers)
    unknown = set(target_dice) - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layers in target Dice: {sorted(unknown)}")
    if any(not 0.0 < float(v) <= 1.0 for v in target_dice.values()):
        raise ValueError("target Dice values are fractions in (0, 1] (73.5 % -> 0.735)")
    fields = displacement_fields(rng, labels.shape[1:], smooth_voxels)
    names = [name for name in LAYERS if name in target_dice]
    target = np.array([float(target_dice[name]) for name in names])

    def loss(a: np.ndarray) -> float:
        dice = layer_dice(labels, degrade(labels, a, fields))
        return float(np.sum((np.array([dice[n] for n in names]) - target) ** 2))

    amplitudes = np.zeros(N_INTERFACES)
    # Inner interfaces first: each is shared by two fitted layers, so fitting them before the skin and
    # the bottom of the muscle (one layer each) keeps those from absorbing a shared error alone.
    order = list(range(1, N_INTERFACES - 1)) + [0, N_INTERFACES - 1]
    for _ in range(sweeps):
        for i in order:
            def along(value: float, i: int = i) -> float:
                trial = amplitudes.copy()
                trial[i] = value
                return loss(trial)

            amplitudes[i] = _line_search(along, 0.0, max_amplitude, grid, iterations)
    degraded = degrade(labels, amplitudes, fields)
    return Degraded(degraded, layer_dice(labels, degraded), amplitudes)


__all__ = [
    "Degraded",
    "PERTURB_MODES",
    "PUBLISHED_DICE",
    "degrade",
    "degrade_to_dice",
    "displacement_fields",
    "enforce_order",
    "interfaces",
    "layer_dice",
    "perturb_layers",
    "render_interfaces",
]

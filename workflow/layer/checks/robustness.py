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

from layer.names import LAYERS
from layer.regions.interfaces import N_INTERFACES, _labels, enforce_order, interfaces, render_interfaces

#: Per-layer Dice of automatic segmentation (InterSliceBoost, Med. Phys. 2025), as fractions.
PUBLISHED_DICE: dict[str, float] = {
    "dermis": 0.735, "superficial_fat": 0.611, "sfm": 0.819, "deep_fat": 0.957, "dfm": 0.835, "muscle": 0.887,
}














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
    "PUBLISHED_DICE",
    "degrade",
    "degrade_to_dice",
    "displacement_fields",
    "layer_dice",
]

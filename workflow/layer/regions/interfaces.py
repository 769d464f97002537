"""Interface geometry of a layer label map: interface depths and thicknesses per column, and label maps with
interfaces moved (``perturb_layers``), which both the attribution regions (membranes grown by a margin) and
the robustness check (masks moved by one voxel) are built from. Core: imports no check.
"""

from __future__ import annotations

import numpy as np

from layer.names import LAYERS, N_LAYERS


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



"""Post-processing that keeps the anatomy: every depth column runs skin -> muscle, each layer one band.

Why not the per-voxel argmax: a network's argmax can put a fat voxel inside the muscle or drop a one-voxel
membrane from a column, and a membrane's attribution region is then wrong in exactly the layer the study
asks about. The lumbar layers lie in a fixed order under the probe (dermis, superficial fat, SFM, deep fat,
DFM, muscle; the validator refuses maps where they do not run down array axis 0), so the best labelling of a
column is the most probable *ordered* one, found exactly by dynamic programming (a left-to-right Viterbi
path through the states ``above skin, dermis, ..., muscle, below muscle``).

Assumption (as in the validator, ``validate.absent_layer: error``): every layer is present, at least one
voxel thick, in every column; background (label 0) only above the skin (gel, stand-off) and below the
muscle (bone). The synthetic maps obey it by construction (``layer.synth.anatomy.label_map``).
"""

from __future__ import annotations

import numpy as np

from layer.names import BACKGROUND, LAYERS

#: Label of each state of a column, top to bottom: above the skin, the six layers, below the muscle.
STATE_LABELS: np.ndarray = np.array([BACKGROUND, *range(1, len(LAYERS) + 1), BACKGROUND], dtype=np.int64)


def ordered_labels(log_probs: np.ndarray) -> np.ndarray:
    """The most probable label map whose every depth column runs through the layers in order.

    Args:
        log_probs: ``[7, D, H, W]`` per-class log-probabilities (class 0 background, 1..6 the layers in
            ``names.LAYERS`` order), depth along axis 1; ``D`` must be at least 6.

    Returns:
        ``[D, H, W]`` uint8 labels: per column, optional background, then each layer 1..6 as one contiguous
        run of at least one voxel, then optional background; the sum of the chosen log-probabilities is
        maximal among all such columns.
    """
    if log_probs.ndim != 4 or log_probs.shape[0] != len(LAYERS) + 1:
        raise ValueError(f"log_probs must be [{len(LAYERS) + 1}, D, H, W], got {log_probs.shape}")
    n_classes, depth = log_probs.shape[:2]
    if depth < len(LAYERS):
        raise ValueError(f"a column of {depth} voxels cannot hold the {len(LAYERS)} layers")
    columns = log_probs.reshape(n_classes, depth, -1).astype(np.float64)
    emit = columns[STATE_LABELS]  # [S, D, N]
    n_states = len(STATE_LABELS)
    score = np.full((n_states, columns.shape[2]), -np.inf)
    score[:2] = emit[:2, 0]  # a column starts above the skin or in the dermis
    stepped = np.zeros((depth, n_states, columns.shape[2]), dtype=bool)
    for d in range(1, depth):
        from_above = np.vstack([np.full((1, score.shape[1]), -np.inf), score[:-1]])
        stepped[d] = from_above > score  # ties stay in the state: the boundary lies as deep as it can
        score = np.where(stepped[d], from_above, score) + emit[:, d]
    # A column ends in the muscle or below it.
    state = np.where(score[-1] > score[-2], n_states - 1, n_states - 2)
    path = np.empty((depth, columns.shape[2]), dtype=np.int64)
    cols = np.arange(columns.shape[2])
    for d in range(depth - 1, -1, -1):
        path[d] = state
        state = state - stepped[d, state, cols]
    return STATE_LABELS[path].astype(np.uint8).reshape(log_probs.shape[1:])


def is_ordered(labels: np.ndarray) -> bool:
    """Whether every depth column of a ``[D, H, W]`` map is what :func:`ordered_labels` returns: one
    contiguous run of tissue (background only above and below it), labels non-decreasing down the run,
    and each of the six layers present."""
    lab = labels.reshape(labels.shape[0], -1).astype(np.int64)
    inside = (lab > BACKGROUND).astype(np.int8)
    one_run = (np.diff(inside, axis=0, prepend=0) == 1).sum(axis=0) == 1
    both = (inside[1:] == 1) & (inside[:-1] == 1)
    non_decreasing = ~(both & (np.diff(lab, axis=0) < 0)).any(axis=0)
    present = np.all([(lab == k).any(axis=0) for k in range(1, len(LAYERS) + 1)], axis=0)
    return bool((one_run & non_decreasing & present).all())

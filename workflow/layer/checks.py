"""Sanity and faithfulness checks of layer attributions: parameter randomisation and layer deletion curves.

* Sanity (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018): re-initialise the model's
  parameters block by block from the output down (cascading randomisation) and compare the layer profile
  with the trained model's by Spearman rank correlation. A profile that survives randomisation reflects
  the input or the aggregation (e.g. layer volume), not what the model learned.
* Faithfulness: delete layers most-relevant-first with a removal operator and follow the logit (deletion
  curve; Petsiuk et al., RISE, BMVC 2018; Samek et al., IEEE TNNLS 2017). Summarised by the area over the
  perturbation curve, AOPC = mean over steps k = 0..n of f(x) - f(x without the first k layers) (Samek et
  al.): larger = the attributed order removes evidence faster. The reference is a random order: with six
  layers all 2^6 coalition values are known after one Shapley run, so every deletion curve is a lookup
  and the random-order baseline is exact (the mean over all n! orders), as is the share of orders that
  the attributed one beats.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats as sps

from layer.shapley import Player, RemovalSettings, coalition_values


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (``[..., n]`` -> ``[...]``).

    Average ranks for ties (as ``scipy.stats.spearmanr``); NaN for a constant row.
    """
    ra = sps.rankdata(np.asarray(a, dtype=np.float64), axis=-1)
    rb = sps.rankdata(np.asarray(b, dtype=np.float64), axis=-1)
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=-1) / np.sqrt((ra**2).sum(axis=-1) * (rb**2).sum(axis=-1))


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


def deletion_curve(values: np.ndarray, order: Sequence[int], n_players: int) -> np.ndarray:
    """Logit after deleting 0, 1, ..., n players in ``order``, read from all 2^n coalition values."""
    mask = 2**n_players - 1
    curve = [float(values[mask])]
    for p in order:
        mask &= ~(1 << int(p))
        curve.append(float(values[mask]))
    return np.asarray(curve)


def area_over_curve(curve: np.ndarray) -> float:
    """AOPC: mean over the curve's points of (first point - point); 0 for a flat curve."""
    c = np.asarray(curve, dtype=np.float64)
    return float(np.mean(c[0] - c))


def attributed_order(scores: np.ndarray) -> np.ndarray:
    """Players most-relevant-first (descending signed score; ties by index)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def random_order_baseline(values: np.ndarray, n_players: int) -> float:
    """Exact mean AOPC over all n! deletion orders, from the 2^n coalition values.

    After k deletions in a uniformly random order the remaining coalition is a uniform subset of size
    n - k, so the expected curve is the mean value per coalition size.
    """
    v = np.asarray(values, dtype=np.float64)
    size = np.array([bin(m).count("1") for m in range(2**n_players)])
    expected = np.array([v[size == n_players - k].mean() for k in range(n_players + 1)])
    return area_over_curve(expected)


def order_percentile(values: np.ndarray, order: Sequence[int], n_players: int) -> float:
    """Share of all n! deletion orders whose AOPC is <= that of ``order`` (1 = no order is better).

    Enumerates orders, so meant for the six layers (720 orders).
    """
    if math.factorial(n_players) > 50_000:
        raise ValueError("too many players to enumerate all deletion orders")
    mine = area_over_curve(deletion_curve(values, order, n_players))
    all_aopc = np.array(
        [area_over_curve(deletion_curve(values, o, n_players)) for o in itertools.permutations(range(n_players))]
    )
    return float(np.mean(all_aopc <= mine + 1e-12))


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
    settings: RemovalSettings = RemovalSettings(),
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


__all__ = [
    "area_over_curve",
    "attributed_order",
    "deletion_curve",
    "deletion_curve_model",
    "model_blocks",
    "order_percentile",
    "randomise_cascade",
    "random_order_baseline",
    "rank_correlation",
]

"""Layer-level attributions by removal: exact layer Shapley values, leave-one-layer-out ablation, and
expected gradients (shap ``GradientExplainer``) as a voxel-level method next to them.

Why layers as players: the study's claims are about layers, so the attribution is computed on layers
directly instead of summing voxel maps inside masks (which follows layer volume or inflates thin
membranes; design note ``attribution.md``). With six players the game is small enough for the exact
Shapley value by subset enumeration: 2^6 = 64 forwards, not captum's permutation enumeration
(n * n! = 4,320 forwards; design note pitfall #9). The fused model also has 12 players (channel x layer):
4,096 coalitions, still exact and batched, or an antithetic permutation estimate that stops when its
standard error is small enough.

Value of a coalition S: the model's logit on the scan with every player outside S *removed* by a removal
operator, voxel by voxel inside the player's layer (and channel). Background voxels (label 0) are never
players and never removed. Removal operators (the design note: report at least two, because zero, blur
and mean fills all favoured the thin SFM in null models):

* ``mean``: the removed layer filled with its own mean per channel of this scan. Keeps the layer's mean
  intensity, removes its texture and shape inside the layer: a model that only reads a layer's mean
  echogenicity gets zero for that layer under this operator (by design, not a bug).
* ``road``: noisy linear imputation (Rong et al., "A consistent and efficient evaluation strategy for
  attribution methods", ICML 2022, ``NoisyLinearImputer``): removed voxels take the value that makes each
  of them the average of its neighbours given the present voxels, plus small Gaussian noise. ROAD solves
  that sparse linear system; here a vectorised approximation: linear interpolation along depth between
  the nearest present voxels above and below (exact for a removed slab with in-plane-constant borders,
  and layers are slabs in depth), then ``road_iterations`` Jacobi sweeps of the 6-neighbour average
  (replicate border) with present voxels held fixed, which couple neighbouring columns, then noise of SD
  ``road_noise`` (ROAD's default 0.01, in model input units). A column with no present voxel at all
  takes the mean of the present voxels of its channel. Never reads a removed voxel. The noise field is
  drawn once per scan (seeded) and shared by all coalitions, so the value function is deterministic and
  the Shapley axioms hold exactly for it. Because the fill of a removed
  layer depends on which neighbours are present, a layer that the model ignores can still get a non-zero
  value under ``road`` (its presence shapes the imputation of its neighbours); the other operators give
  such a layer exactly zero.
* ``blur``: the scan Gaussian-blurred (``blur_sigma`` voxels, per channel) inside the removed layer. Leaks
  the layer's mean and coarse shape.
* ``background``: the voxel-wise mean over a background set of scans (a few training volumes). Needs
  ``background``; leaks nothing of this scan.

Efficiency (sum of the values = f(x) - f(all players removed)) holds exactly for the exact enumeration
(float64 weights) and for every permutation of the estimator (the marginal contributions telescope).

Expected gradients (Erion et al., Nat. Mach. Intell. 2021) through ``shap.GradientExplainer``; its PyTorch
path works on 5-D input unchanged. What it does and does not check (shap 0.51, read from its source):
there is no additivity check (only ``DeepExplainer`` has one): completeness holds only in expectation,
sum(phi) ~ f(x) - E_background f, so :func:`expected_gradients_qc` measures the gap per scan. Its
``return_variances`` output is var / sqrt(n), not the variance of the mean var / n; we convert it to a
standard error. It builds its sample buffers in float32 (use a float32 model), evaluates the whole
background in one forward at construction (keep the background small), and calls ``np.random.seed`` on
the global NumPy generator: the global state is saved and restored around the call here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage

from layer import config
from layer.explain.registry import METHODS as REGISTRY
from layer.explain.registry import REMOVAL_OPERATORS
from layer.games import shapley_from_values
from layer.names import LAYERS, N_LAYERS

#: Methods this module runs (``attribute_extra``): expected gradients and every removal method, read from
#: the one registry of method names.
EXTRA_METHODS: tuple[str, ...] = tuple(
    name for name, m in REGISTRY.items() if m.family not in ("gradcam", "integrated_gradients")
)
#: Channel name of players that span all input channels (same word as ``layer.stats.tables.ALL_CHANNELS``).
ALL_CHANNELS = "all"
#: Exact enumeration up to this many players (2^12 = 4,096 coalitions); more needs the estimator.
MAX_EXACT_PLAYERS = 16


@dataclass(frozen=True)
class RemovalSettings:
    """Knobs of the removal operators (voxels and model input units): a view of the ``attribution:``
    settings, with no defaults of its own (``None`` for a knob the job's operator does not read)."""

    blur_sigma: float | None
    road_iterations: int | None
    road_noise: float | None

    @classmethod
    def of(cls, settings: object) -> RemovalSettings:
        """The removal knobs of an :class:`layer.explain.attribute.AttributionSettings`."""
        return cls(settings.blur_sigma, settings.road_iterations, settings.road_noise)

    @classmethod
    def defaults(cls, **overrides: object) -> RemovalSettings:
        """The schema defaults (tests, bench)."""
        return config.from_defaults(cls, "attribution", **overrides)


@dataclass(frozen=True)
class Player:
    """One player: a layer (label value 1..6) in one input channel, or in all channels (``channel=None``)."""

    name: str
    channel: int | None
    label: int


def make_players(channels: Sequence[str], per_channel: bool) -> tuple[Player, ...]:
    """The six layers, or channel x layer (channel-major: all layers of channel 0 first).

    Channel-major order makes ``values.reshape(N, C, 6)`` the channel x layer table.
    """
    if not per_channel:
        return tuple(Player(layer, None, i + 1) for i, layer in enumerate(LAYERS))
    return tuple(
        Player(f"{ch}:{layer}", c, i + 1) for c, ch in enumerate(channels) for i, layer in enumerate(LAYERS)
    )


# --------------------------------------------------------------------------------------------------
# Removal operators
# --------------------------------------------------------------------------------------------------


def player_index(layers: torch.Tensor, players: Sequence[Player], n_channels: int) -> torch.Tensor:
    """``[C, D, H, W]`` index of the player owning each voxel, -1 for voxels no player owns.

    Players are disjoint regions, so one index map lets every coalition's removal mask be one gather.
    """
    labels = torch.as_tensor(layers).long()
    index = torch.full((n_channels, *labels.shape), -1, dtype=torch.long)
    for p, player in enumerate(players):
        channels = range(n_channels) if player.channel is None else (player.channel,)
        for c in channels:
            region = labels == player.label
            if (index[c][region] >= 0).any():
                raise ValueError(f"player {player.name} overlaps another player")
            index[c][region] = p
    return index


def removed_masks(absent: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[K, C, D, H, W]`` bool: voxels removed in each of K coalitions given ``absent [K, n_players]``."""
    absent = torch.as_tensor(absent, dtype=torch.bool)
    padded = torch.cat([absent, torch.zeros(absent.shape[0], 1, dtype=torch.bool)], dim=1)  # -1 -> False
    flat = index.reshape(-1).clone()
    flat[flat < 0] = absent.shape[1]
    return padded[:, flat].reshape(absent.shape[0], *index.shape)


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def _model_dtype(model: torch.nn.Module, fallback: torch.dtype) -> torch.dtype:
    """Floating dtype of the model's first parameter (or buffer); ``fallback`` for a stateless model."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return fallback


def layer_mean_image(image: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
    """Each layer voxel replaced by its layer's mean in that channel; background voxels unchanged."""
    labels = _as_tensor(layers).long()
    out = image.clone()
    for label in range(1, N_LAYERS + 1):
        region = labels == label
        if region.any():
            means = image[:, region].mean(dim=1)  # [C]
            out[:, region] = means[:, None].to(image.dtype)
    return out


def blurred_image(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-channel Gaussian blur (scipy, ``nearest`` border), same dtype as ``image``."""
    arr = image.detach().cpu().numpy()
    out = np.stack([ndimage.gaussian_filter(ch, sigma=sigma, mode="nearest") for ch in arr])
    return torch.from_numpy(out).to(image.dtype)


def removal_reference(
    image: torch.Tensor,
    layers: torch.Tensor,
    operator: str,
    rng: np.random.Generator,
    background: torch.Tensor | None = None,
    settings: RemovalSettings | None = None,
) -> torch.Tensor:
    """What a removal operator needs from one scan, computed once for all coalitions: ``[C, D, H, W]``.

    ``mean``, ``blur``, ``background``: the fill image; ``road``: the noise field (drawn from ``rng``).
    """
    image = _as_tensor(image)
    if operator == "mean":
        return layer_mean_image(image, layers)
    if operator == "blur":
        return blurred_image(image, (settings or RemovalSettings.defaults()).blur_sigma)
    if operator == "background":
        if background is None or len(background) == 0:
            raise ValueError("removal operator 'background' needs background scans")
        bg = _as_tensor(background).to(image.dtype)
        if tuple(bg.shape[1:]) != tuple(image.shape):
            raise ValueError(f"background scans {tuple(bg.shape[1:])} differ from the scan {tuple(image.shape)}")
        return bg.mean(dim=0)
    if operator == "road":
        noise = rng.standard_normal(tuple(image.shape)) * (settings or RemovalSettings.defaults()).road_noise
        return torch.from_numpy(noise).to(image.dtype)
    raise ValueError(f"unknown removal operator '{operator}'; choose one of {', '.join(REMOVAL_OPERATORS)}")


def _neighbour_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of the 6 face neighbours of every voxel of ``x [K, C, D, H, W]`` (replicated border)."""
    p = F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate")
    out = p[:, :, :-2, 1:-1, 1:-1].clone()
    out += p[:, :, 2:, 1:-1, 1:-1]
    out += p[:, :, 1:-1, :-2, 1:-1]
    out += p[:, :, 1:-1, 2:, 1:-1]
    out += p[:, :, 1:-1, 1:-1, :-2]
    out += p[:, :, 1:-1, 1:-1, 2:]
    return out.mul_(1.0 / 6.0)


def depth_interpolation(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Removed voxels linearly interpolated along depth between the nearest present voxels above and below.

    The exact solution of the Laplace equation for a removed slab whose borders are constant in-plane,
    hence the start of the ROAD fill: a layer is a slab in depth. A removed run touching the top or the
    bottom of a column takes its one present neighbour; a column with no present voxel keeps ``x``.

    Speed: one pass down and one up the depth axis, each step a masked copy of a ``[K, C, H, W]`` slice
    (NumPy); ``torch.cummax`` along depth was 10x slower on the 2-core machine.
    """
    xa = x.detach().cpu().numpy()
    present = ~removed.cpu().numpy()
    k, c, depth, h, w = xa.shape
    value_above, value_below = np.empty_like(xa), np.empty_like(xa)
    index_above = np.empty(xa.shape, dtype=np.int32)
    index_below = np.empty(xa.shape, dtype=np.int32)
    for values, indices, order, none in (
        (value_above, index_above, range(depth), -1),
        (value_below, index_below, range(depth - 1, -1, -1), depth),
    ):
        last_value = np.zeros((k, c, h, w), dtype=xa.dtype)
        last_index = np.full((k, c, h, w), none, dtype=np.int32)
        for z in order:
            here = present[:, :, z]
            np.copyto(last_value, xa[:, :, z], where=here)
            np.copyto(last_index, z, where=here)
            values[:, :, z] = last_value
            indices[:, :, z] = last_index
    z = np.arange(depth, dtype=np.int32).reshape(1, 1, depth, 1, 1)
    has_above, has_below = index_above >= 0, index_below < depth
    span = np.maximum(index_below - index_above, 1).astype(xa.dtype)
    weight = (z - index_above).astype(xa.dtype) / span
    both = value_above + weight * (value_below - value_above)
    fill = np.where(has_above, np.where(has_below, both, value_above), np.where(has_below, value_below, xa))
    out = np.where(present, xa, fill)
    return torch.from_numpy(out).to(x.dtype)


def noisy_linear_imputation(
    image: torch.Tensor, removed: torch.Tensor, noise: torch.Tensor, iterations: int
) -> torch.Tensor:
    """ROAD-style fill of ``removed [K, C, D, H, W]`` voxels of ``image [C, D, H, W]`` (see module doc)."""
    x = image.unsqueeze(0).expand(removed.shape).clone()
    present = ~removed
    n_present = present.sum(dim=(2, 3, 4), keepdim=True).clamp(min=1)
    start = (x * present).sum(dim=(2, 3, 4), keepdim=True) / n_present
    x = torch.where(removed, start.expand_as(x), x).contiguous()  # columns with nothing present keep this
    x = depth_interpolation(x, removed)
    for _ in range(iterations):
        x = torch.where(removed, _neighbour_mean(x), x)
    return x + removed.to(x.dtype) * noise.unsqueeze(0)


def apply_removal(
    image: torch.Tensor, removed: torch.Tensor, reference: torch.Tensor, operator: str,
    settings: RemovalSettings | None = None,
) -> torch.Tensor:
    """``[K, C, D, H, W]`` images with the ``removed`` voxels replaced, given :func:`removal_reference`."""
    if operator == "road":
        return noisy_linear_imputation(image, removed, reference, (settings or RemovalSettings.defaults()).road_iterations)
    return torch.where(removed, reference.unsqueeze(0), image.unsqueeze(0))


def removal_fill(
    image: torch.Tensor | np.ndarray,
    layers: torch.Tensor | np.ndarray,
    absent_mask_per_player: torch.Tensor | np.ndarray,
    operator: str,
    rng: np.random.Generator | int,
    background: torch.Tensor | np.ndarray | None = None,
    *,
    players: Sequence[Player] | None = None,
    settings: RemovalSettings | None = None,
) -> torch.Tensor:
    """Filled images of K coalitions of one scan, ``[K, C, D, H, W]``.

    Args:
        image: ``[C, D, H, W]`` model input. layers: ``[D, H, W]`` labels 0..6.
        absent_mask_per_player: ``[K, n_players]`` bool, True = that player is removed in that coalition.
        operator: one of ``REMOVAL_OPERATORS``.
        rng: generator or seed for the ROAD noise; the same seed gives the same noise, so chunks of
            coalitions filled in separate calls share it.
        background: ``[B, C, D, H, W]`` scans for the ``background`` operator.
        players: default the six layers across all channels (:func:`make_players`).
    """
    image = _as_tensor(image)
    labels = _as_tensor(layers)
    players = tuple(players) if players is not None else make_players((), per_channel=False)
    absent = _as_tensor(absent_mask_per_player).to(torch.bool)
    if absent.ndim != 2 or absent.shape[1] != len(players):
        raise ValueError(f"absent mask must be [K, {len(players)}], got {tuple(absent.shape)}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    reference = removal_reference(image, labels, operator, gen, background, settings)
    removed = removed_masks(absent, player_index(labels, players, image.shape[0]))
    return apply_removal(image, removed, reference, operator, settings)


# --------------------------------------------------------------------------------------------------
# Coalition values and Shapley values
# --------------------------------------------------------------------------------------------------


def coalition_bits(coalitions: np.ndarray, n_players: int) -> np.ndarray:
    """``[K, n]`` bool presence of each player in each coalition bitmask (bit i = player i present)."""
    c = np.asarray(coalitions, dtype=np.int64)
    return ((c[:, None] >> np.arange(n_players)) & 1).astype(bool)


def coalition_values(
    model: torch.nn.Module,
    image: torch.Tensor | np.ndarray,
    layers: torch.Tensor | np.ndarray,
    players: Sequence[Player],
    operator: str,
    batch_size: int,
    *,
    seed: int = 0,
    background: torch.Tensor | np.ndarray | None = None,
    settings: RemovalSettings | None = None,
    coalitions: np.ndarray | None = None,
) -> np.ndarray:
    """Model logit of each coalition of one scan, float64 ``[K]`` (default all 2^n, in bitmask order).

    Coalition ``s`` keeps player ``i`` iff bit ``i`` of ``s`` is set; ``0`` removes all players,
    ``2^n - 1`` is the unchanged scan. Coalitions go through the model in stacked chunks of
    ``batch_size``; the model is put in eval mode (batch norm then treats scans independently, so
    chunking does not change a value).
    """
    image = _as_tensor(image).detach().cpu()  # removal runs on the CPU; each filled chunk moves to the model
    labels = _as_tensor(layers).cpu()
    n = len(players)
    masks = np.arange(2**n, dtype=np.int64) if coalitions is None else np.asarray(coalitions, dtype=np.int64)
    if background is not None:
        background = _as_tensor(background).detach().cpu()
    reference = removal_reference(image, labels, operator, np.random.default_rng(seed), background, settings)
    index = player_index(labels, players, image.shape[0])
    model.eval()
    dtype = _model_dtype(model, image.dtype)
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    out = np.empty(masks.size, dtype=np.float64)
    with torch.no_grad():
        for s0 in range(0, masks.size, batch_size):
            absent = torch.from_numpy(~coalition_bits(masks[s0 : s0 + batch_size], n))
            filled = apply_removal(image, removed_masks(absent, index), reference, operator, settings)
            out[s0 : s0 + batch_size] = model(filled.to(device=device, dtype=dtype))[:, 0].double().cpu().numpy()
    return out


@dataclass(frozen=True)
class PermutationEstimate:
    """Antithetic permutation estimate: values, their standard errors, effort, and whether ``tol`` was met."""

    values: np.ndarray
    standard_error: np.ndarray
    n_permutations: int
    n_evaluations: int
    converged: bool


def permutation_shapley(
    value_fn: Callable[[np.ndarray], np.ndarray],
    n_players: int,
    tol: float,
    max_permutations: int,
    seed: int,
    pairs_per_round: int = 8,
    min_pairs: int = 8,
) -> PermutationEstimate:
    """Shapley values by antithetic permutation sampling, stopping when every standard error < ``tol``.

    Why antithetic: a permutation and its reverse give negatively correlated marginal contributions
    (Mitchell et al., JMLR 2022, "Sampling permutations for Shapley value estimation"), so their mean
    has a smaller variance. The standard error is that of the pair means (pairs are independent).
    Coalition values are cached: ``value_fn(bitmasks) -> values`` is called once per round with the
    new coalitions only, so batching stays with the caller. Efficiency holds exactly for every
    permutation, hence for the estimate.
    """
    rng = np.random.default_rng(seed)
    cache: dict[int, float] = {}
    pair_means: list[np.ndarray] = []
    n_eval = 0
    converged = False
    se = np.full(n_players, np.inf)
    while 2 * len(pair_means) < max_permutations:
        perms = [rng.permutation(n_players) for _ in range(pairs_per_round)]
        perms = [p for q in perms for p in (q, q[::-1])]
        prefixes = [np.concatenate([[0], np.cumsum(1 << p.astype(np.int64))]) for p in perms]
        needed = np.unique(np.concatenate(prefixes))
        new = np.array([m for m in needed if int(m) not in cache], dtype=np.int64)
        if new.size:
            for m, val in zip(new, value_fn(new)):
                cache[int(m)] = float(val)
            n_eval += new.size
        for a in range(0, len(perms), 2):
            pair = np.zeros(n_players)
            for perm, pre in ((perms[a], prefixes[a]), (perms[a + 1], prefixes[a + 1])):
                vals = np.array([cache[int(m)] for m in pre])
                pair[perm] += np.diff(vals) / 2.0
            pair_means.append(pair)
        if len(pair_means) >= min_pairs:
            arr = np.asarray(pair_means)
            se = arr.std(axis=0, ddof=1) / math.sqrt(len(arr))
            if np.all(se < tol):
                converged = True
                break
    arr = np.asarray(pair_means)
    return PermutationEstimate(arr.mean(axis=0), se, 2 * len(arr), n_eval, converged)


def scan_seed(seed: int, key: object) -> int:
    """A scan's own seed from the job's ``seed`` and the scan's id (or position): the same scan gets the
    same ROAD noise and permutations whatever else is in the batch and in whatever order (sha256 of the
    id, not Python's salted ``hash``)."""
    digest = int.from_bytes(hashlib.sha256(str(key).encode()).digest()[:8], "little")
    return int(np.random.SeedSequence([int(seed), digest]).generate_state(1)[0])


def end_values(
    model: torch.nn.Module,
    images: torch.Tensor | np.ndarray,
    layers: torch.Tensor | np.ndarray,
    players: Sequence[Player],
    operator: str,
    seeds: Sequence[int],
    background: torch.Tensor | np.ndarray | None = None,
    settings: RemovalSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(f(x) [N], f(x with every player removed) [N])`` by forwards of their own: the model on the scans
    as given, and on :func:`removal_fill` of all players (scan ``i``'s reference from ``seeds[i]``), one
    scan at a time. The reference for the Shapley efficiency QC (:func:`shapley_scans`)."""
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    x = _as_tensor(images)
    dtype = _model_dtype(model, x.dtype)
    model.eval()
    full, empty = [], []
    with torch.no_grad():
        for i in range(len(x)):
            removed = removal_fill(
                x[i].detach().cpu(), _as_tensor(layers[i]).cpu(), torch.ones((1, len(players)), dtype=torch.bool),
                operator, int(seeds[i]), None if background is None else _as_tensor(background).detach().cpu(),
                players=players, settings=settings,
            )
            both = torch.cat([x[i : i + 1].detach().cpu(), removed]).to(device=device, dtype=dtype)
            f = model(both)[:, 0].double().cpu().numpy()
            full.append(f[0])
            empty.append(f[1])
    return np.asarray(full, dtype=np.float64), np.asarray(empty, dtype=np.float64)


@dataclass(frozen=True)
class ShapleyResult:
    """Layer Shapley values of N scans and what checks them.

    ``full`` = f(x), ``empty`` = f(all players removed), ``efficiency_error`` = |sum(values) - (full -
    empty)|; ``standard_error`` is 0 for exact enumeration; ``n_evaluations`` = model forwards per scan.
    """

    values: np.ndarray  # [N, n_players]
    players: tuple[Player, ...]
    full: np.ndarray
    empty: np.ndarray
    efficiency_error: np.ndarray
    standard_error: np.ndarray
    n_evaluations: np.ndarray
    coalitions: np.ndarray | None = None  # [N, 2^n] all coalition values (exact enumeration only)


def shapley_scans(
    model: torch.nn.Module,
    images: torch.Tensor,
    layers: torch.Tensor | np.ndarray,
    channels: Sequence[str],
    operator: str,
    batch_size: int,
    seed: int,
    *,
    per_channel: bool = False,
    background: torch.Tensor | None = None,
    settings: RemovalSettings | None = None,
    estimator: str = "exact",
    tol: float = 1e-3,
    max_permutations: int = 2000,
    scan_keys: Sequence[object] | None = None,
) -> ShapleyResult:
    """Layer Shapley values of every scan (see :func:`layer_shapley`) with their checks.

    Scan ``i`` draws its ROAD noise and permutations from :func:`scan_seed` of ``seed`` and its id
    (``scan_keys[i]``; its position when no ids are given), so a scan's values depend neither on which
    other scans share the call nor on their order.

    Efficiency QC: ``full`` and ``empty`` are independent forwards of the unchanged scans and of the scans
    with every player removed (:func:`removal_fill`), not the end values of the coalition vector; so
    ``efficiency_error = |sum(values) - (full - empty)|`` catches a value function that is wrong (a
    coalition filled with the wrong voxels, a wrong bit order), which exact enumeration would otherwise
    satisfy by construction.
    """
    players = make_players(channels, per_channel)
    n = len(players)
    if estimator == "exact" and n > MAX_EXACT_PLAYERS:
        raise ValueError(f"{n} players are too many for exact enumeration; use estimator='permutation'")
    keys = list(scan_keys) if scan_keys is not None else list(range(len(images)))
    if len(keys) != len(images):
        raise ValueError(f"{len(keys)} scan keys for {len(images)} scans")
    rows, se, n_eval, all_values, seeds = [], [], [], [], []
    for i in range(len(images)):
        scan_seed_i = scan_seed(seed, keys[i])
        seeds.append(scan_seed_i)

        def value_fn(masks: np.ndarray, i: int = i, scan_seed_i: int = scan_seed_i) -> np.ndarray:
            return coalition_values(
                model, images[i], layers[i], players, operator, batch_size,
                seed=scan_seed_i, background=background, settings=settings, coalitions=masks,
            )

        if estimator == "exact":
            v = value_fn(np.arange(2**n, dtype=np.int64))
            phi, scan_se, evaluations = shapley_from_values(v, n), np.zeros(n), 2**n
            all_values.append(v)
        elif estimator == "permutation":
            est = permutation_shapley(value_fn, n, tol, max_permutations, scan_seed_i)
            phi, scan_se, evaluations = est.values, est.standard_error, est.n_evaluations
        else:
            raise ValueError(f"unknown estimator '{estimator}'; choose 'exact' or 'permutation'")
        rows.append(phi)
        se.append(scan_se)
        n_eval.append(evaluations)
    values = np.asarray(rows).reshape(len(images), n)
    full_a, empty_a = end_values(model, images, layers, players, operator, seeds, background, settings)
    error = np.abs(values.sum(axis=1) - (full_a - empty_a))
    coalitions = np.asarray(all_values).reshape(len(images), 2**n) if estimator == "exact" else None
    return ShapleyResult(
        values, players, full_a, empty_a, error, np.asarray(se).reshape(len(images), n), np.asarray(n_eval),
        coalitions,
    )


def layer_shapley(
    model: torch.nn.Module,
    images: torch.Tensor,
    layers: torch.Tensor | np.ndarray,
    channels: Sequence[str],
    operator: str,
    batch_size: int,
    seed: int,
    **options: Any,
) -> np.ndarray:
    """Shapley values ``[N, n_players]`` of the layers (or channel x layer with ``per_channel=True``).

    ``images [N, C, D, H, W]``, ``layers [N, D, H, W]``; options as :func:`shapley_scans`.
    """
    return shapley_scans(model, images, layers, channels, operator, batch_size, seed, **options).values


def layer_ablation(
    model: torch.nn.Module,
    images: torch.Tensor,
    layers: torch.Tensor | np.ndarray,
    removal: str,
    *,
    channels: Sequence[str] = (ALL_CHANNELS,),
    per_channel: bool = False,
    batch_size: int = 8,
    seed: int = 0,
    background: torch.Tensor | None = None,
    settings: RemovalSettings | None = None,
    scan_keys: Sequence[object] | None = None,
) -> np.ndarray:
    """Leave-one-layer-out: f(x) - f(x with one layer removed), ``[N, C_players, 6]``.

    ``C_players`` is 1 (a layer removed in all channels) or, with ``per_channel``, the number of input
    channels (a layer removed in one channel). Cheap (7 or 13 forwards per scan) but blind to
    redundancy: two layers carrying the same information both get about 0. Seeds per scan as in
    :func:`shapley_scans`.
    """
    keys = list(scan_keys) if scan_keys is not None else list(range(len(images)))
    players = make_players(channels, per_channel)
    n = len(players)
    full = 2**n - 1
    masks = np.array([full] + [full & ~(1 << p) for p in range(n)], dtype=np.int64)
    out = np.empty((len(images), n))
    for i in range(len(images)):
        scan_seed_i = scan_seed(seed, keys[i])
        v = coalition_values(
            model, images[i], layers[i], players, removal, batch_size,
            seed=scan_seed_i, background=background, settings=settings, coalitions=masks,
        )
        out[i] = v[0] - v[1:]
    return out.reshape(len(images), -1, N_LAYERS)


# --------------------------------------------------------------------------------------------------
# Expected gradients (shap GradientExplainer)
# --------------------------------------------------------------------------------------------------


def _expected_gradients(
    model: torch.nn.Module, images: torch.Tensor, background: torch.Tensor, n_samples: int, batch_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Maps ``[N, C, D, H, W]`` and the per-voxel standard error of each map, same shape."""
    import shap  # slow import, only here

    model.eval()
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    bg = _as_tensor(background).float().to(device)  # shap builds its buffers on the input's device
    x = _as_tensor(images).float().to(device)
    state = np.random.get_state()  # shap reseeds the global generator
    try:
        explainer = shap.GradientExplainer(model, bg, batch_size=batch_size)
        phi, var = explainer.shap_values(x, nsamples=n_samples, rseed=seed, return_variances=True)
    finally:
        np.random.set_state(state)
    phi = np.asarray(phi)
    var = np.asarray(var[0] if isinstance(var, list) else var)
    if phi.shape[-1] == 1 and phi.ndim == x.ndim + 1:
        phi = phi[..., 0]  # one model output: shap stacks outputs on a last axis
    # shap returns var / sqrt(n); the variance of the mean is var / n.
    se = np.sqrt(np.maximum(var.reshape(phi.shape), 0.0) / math.sqrt(n_samples))
    return phi.astype(np.float32), se.astype(np.float32)


def expected_gradients(
    model: torch.nn.Module, images: torch.Tensor, background: torch.Tensor, n_samples: int, batch_size: int,
    seed: int = 0,
) -> np.ndarray:
    """Expected-gradients maps ``[N, C, D, H, W]`` of the logit against a background set of scans."""
    return _expected_gradients(model, images, background, n_samples, batch_size, seed)[0]


def expected_gradients_qc(
    model: torch.nn.Module, images: torch.Tensor, background: torch.Tensor, maps: np.ndarray
) -> np.ndarray:
    """Relative completeness gap per scan: |sum(phi) - (f(x) - mean_b f(b))| / max(|f(x) - mean_b f(b)|, 1).

    Expected gradients are complete only in expectation over background draws and path points, so this
    shrinks like 1/sqrt(n_samples); it is reported, not enforced.
    """
    model.eval()
    dtype = _model_dtype(model, torch.float32)
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        fx = model(_as_tensor(images).to(device=device, dtype=dtype))[:, 0].double().cpu().numpy()
        fb = model(_as_tensor(background).to(device=device, dtype=dtype))[:, 0].double().cpu().numpy().mean()
    gap = fx - fb
    total = np.asarray(maps, dtype=np.float64).reshape(len(fx), -1).sum(axis=1)
    return np.abs(total - gap) / np.maximum(np.abs(gap), 1.0)


# --------------------------------------------------------------------------------------------------
# Dispatch for the workflow
# --------------------------------------------------------------------------------------------------


def parse_method(method: str) -> tuple[str, str | None, bool]:
    """``(kind, removal operator, per_channel)`` of an extra method name, e.g. ``shapley_channel_road`` ->
    ``("shapley", "road", True)``, from the registry."""
    entry = REGISTRY.get(method)
    if entry is None or method not in EXTRA_METHODS:
        raise ValueError(f"unknown attribution method '{method}'; choose one of {', '.join(EXTRA_METHODS)}")
    return entry.family.removesuffix("_channel"), entry.operator, entry.per_channel


def attribute_extra(
    model: torch.nn.Module,
    images: torch.Tensor,
    layers: torch.Tensor | np.ndarray,
    method: str,
    channels: tuple[str, ...],
    settings: Any,
    background: torch.Tensor | None = None,
    estimator: str = "exact",
    tol: float = 1e-3,
    max_permutations: int = 2000,
    scan_keys: Sequence[object] | None = None,
) -> tuple[np.ndarray, tuple[str, ...], pd.DataFrame, np.ndarray | None]:
    """Output of one extra method for a stack of scans: (maps or scores, channel names, QC table,
    coalition values ``[N, 2^n]`` of an exact Shapley run or None).

    * ``expected_gradients``: voxel maps ``[N, C, D, H, W]`` (aggregate them like IG), one per input
      channel; QC ``eg_completeness_error`` and ``eg_max_standard_error``. Needs ``background``.
    * ``ablation_{op}``: layer scores ``[N, 1, 6]``, channel ``all``; QC ``f_full``.
    * ``shapley_{op}``: layer scores ``[N, 1, 6]``, channel ``all`` (six players).
    * ``shapley_channel_{op}``: ``[N, C, 6]``, one row per input channel (channel x layer players).
      Shapley QC: ``efficiency_error``, ``f_full``, ``f_empty``, ``max_standard_error`` (0 when exact),
      ``n_evaluations``.

    Layer scores are signed values in logit units, already per layer: turn them into rows with
    :func:`scores_table`, not with ``layer.aggregate``. QC columns: ``index, check, value``. ``scan_keys``
    (the scans' ids) seed each scan's randomness (:func:`scan_seed`).
    """
    cfg = settings  # layer.explain.attribute.AttributionSettings: what the method reads (registry), None elsewhere
    removal = RemovalSettings.of(settings)
    kind, op, per_channel = parse_method(method)
    idx = np.arange(len(images))

    def qc(checks: dict[str, np.ndarray]) -> pd.DataFrame:
        return pd.concat(
            [pd.DataFrame({"index": idx, "check": name, "value": np.asarray(v, dtype=np.float64)})
             for name, v in checks.items()],
            ignore_index=True,
        )

    if kind == "expected_gradients":
        if background is None:
            raise ValueError("expected_gradients needs a background (a few training scans)")
        maps, se = _expected_gradients(model, images, background, cfg.eg_samples, cfg.batch_size, cfg.seed)
        errors = expected_gradients_qc(model, images, background, maps)
        return maps, tuple(channels), qc(
            {"eg_completeness_error": errors, "eg_max_standard_error": se.reshape(len(images), -1).max(axis=1)}
        ), None
    if kind == "ablation":
        scores = layer_ablation(
            model, images, layers, op, channels=channels, per_channel=False, batch_size=cfg.batch_size,
            seed=cfg.seed, background=background, settings=removal, scan_keys=scan_keys,
        )
        device = next((t.device for t in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            x = _as_tensor(images).to(device=device, dtype=_model_dtype(model, torch.float32))
            f_full = model.eval()(x)[:, 0].double().cpu().numpy()
        return scores, (ALL_CHANNELS,), qc({"f_full": f_full}), None
    result = shapley_scans(
        model, images, layers, channels, op, cfg.batch_size, cfg.seed, per_channel=per_channel,
        background=background, settings=removal, estimator=estimator, tol=tol,
        max_permutations=max_permutations, scan_keys=scan_keys,
    )
    names = tuple(channels) if per_channel else (ALL_CHANNELS,)
    scores = result.values.reshape(len(images), len(names), N_LAYERS)
    return scores, names, qc(
        {
            "efficiency_error": result.efficiency_error,
            "f_full": result.full,
            "f_empty": result.empty,
            "max_standard_error": result.standard_error.max(axis=1),
            "n_evaluations": result.n_evaluations,
        }
    ), result.coalitions


def scores_table(scores: np.ndarray, scan_ids: Sequence[str], channels: Sequence[str], measure: str) -> pd.DataFrame:
    """Long table ``scan_id, channel, layer, measure, value`` from layer scores ``[N, C, 6]``.

    Same row layout as ``layer.aggregate.aggregate_scans`` (one measure), so the same downstream code
    reads it; ``measure`` names the quantity (e.g. ``shapley_road``).
    """
    s = np.asarray(scores, dtype=np.float64)
    n, c, k = s.shape
    if k != N_LAYERS or len(scan_ids) != n or len(channels) != c:
        raise ValueError(f"scores {s.shape} do not match {len(scan_ids)} scans x {len(channels)} channels x 6")
    return pd.DataFrame(
        {
            "scan_id": np.repeat(np.asarray(scan_ids, dtype=object), c * k),
            "channel": np.tile(np.repeat(np.asarray(channels, dtype=object), k), n),
            "layer": np.tile(np.asarray(LAYERS, dtype=object), n * c),
            "measure": measure,
            "value": s.reshape(-1),
        }
    )

"""Layer Shapley values, ablation and expected gradients: the axioms on games with known answers, the
efficiency identity on a real MONAI model for every removal operator, the ROAD fill's guarantees.

Toy model (``LayerMeans``): f(x) = sum_k w_k * mean of channel 0 over layer k. For a removal operator
whose fill does not depend on the coalition (mean, blur, background) the game is additive, so the
Shapley value of layer k is exactly w_k * (mean_k(x) - mean_k(fill)): the analytic reference.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from layer import games as G
from layer.explain import shapley as S
from layer.explain.attribute import AttributionSettings
from layer.nets.model import build_model
from layer.names import LAYERS

STATIC_OPERATORS = ("mean", "blur", "background")
#: shap's import touches matplotlib colour maps that warn about a future deprecation: not ours.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def slab_layers(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """A layered label map: gel, the six layers as undulating slabs, background below (like layer.synth)."""
    d, h, w = shape
    rng = np.random.default_rng(seed)
    thickness = np.array([0.12, 0.08, 0.14, 0.05, 0.14, 0.05, 0.3]) * d  # gel + six layers
    tops = np.cumsum(np.r_[0.0, thickness])  # 8 interfaces incl. the bottom of the muscle
    wobble = rng.uniform(-0.4, 0.4, size=(8, h, w))
    bounds = np.rint(tops[:, None, None] + wobble).astype(int)
    for k in range(1, 8):  # every layer at least one voxel
        bounds[k] = np.maximum(bounds[k], bounds[k - 1] + 1)
    z = np.arange(d)[:, None, None]
    labels = np.zeros(shape, dtype=np.int64)
    for k in range(1, 7):
        labels[(z >= bounds[k]) & (z < bounds[k + 1])] = k
    return torch.from_numpy(labels)


class LayerMeans(torch.nn.Module):
    """f(x) = sum_k w_k * mean of channel 0 inside layer k (fixed label map); output [N, 1]."""

    def __init__(self, labels: torch.Tensor, weights: list[float]) -> None:
        super().__init__()
        masks = torch.stack([(labels == k + 1).double() for k in range(6)])
        self.register_buffer("avg", masks / masks.sum(dim=(1, 2, 3), keepdim=True))
        self.register_buffer("w", torch.tensor(weights, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = torch.einsum("ndhw,kdhw->nk", x[:, 0].double(), self.avg)
        return (means @ self.w)[:, None]


def layer_means(x: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return np.array([float(x[0][labels == k + 1].double().mean()) for k in range(6)])


def brute_force_shapley(v: np.ndarray, n: int) -> np.ndarray:
    """Shapley values from the definition over all n! orders (independent of the subset formula)."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        mask = 0
        for p in order:
            phi[p] += v[mask | (1 << p)] - v[mask]
            mask |= 1 << p
    return phi / math.factorial(n)


# --------------------------------------------------------------------------------------------------
# Pure Shapley arithmetic
# --------------------------------------------------------------------------------------------------


def test_subset_formula_equals_permutation_definition_and_axioms():
    rng = np.random.default_rng(0)
    n = 5
    v = rng.normal(size=2**n)
    phi = G.shapley_from_values(v, n)
    np.testing.assert_allclose(phi, brute_force_shapley(v, n), atol=1e-12)
    assert phi.sum() == pytest.approx(v[-1] - v[0], abs=1e-12)  # efficiency
    # Symmetry (players 0 and 1 interchangeable) and null player (player 4 never matters).
    bits = S.coalition_bits(np.arange(2**n), n).astype(int)
    v_sym = 2.0 * (bits[:, 0] + bits[:, 1]) ** 2 + 3.0 * bits[:, 2] * bits[:, 3] - bits[:, 3]
    phi = G.shapley_from_values(v_sym, n)
    assert phi[0] == pytest.approx(phi[1], abs=1e-12)
    assert phi[4] == pytest.approx(0.0, abs=1e-12)
    # By hand: players 0,1 share 2*(2^2) = 8 -> 4 each; players 2,3 share the 3 -> 1.5 each, player 3 -1 more.
    np.testing.assert_allclose(phi, [4.0, 4.0, 1.5, 0.5, 0.0], atol=1e-12)


def test_conditional_shapley_removes_the_interaction_share_by_hand():
    """Game of 3 players: v = 2*[a] + 4*[a and b] (a = player 0, b = player 1, player 2 a null player).
    Shapley: a = 2 + 2, b = 2 (half the interaction). With a held absent, b gets 0; with b held absent,
    a keeps only its own 2; with the null player held absent nothing changes."""
    bits = S.coalition_bits(np.arange(8), 3).astype(float)
    v = 2.0 * bits[:, 0] + 4.0 * bits[:, 0] * bits[:, 1]
    np.testing.assert_allclose(G.shapley_from_values(v, 3), [4.0, 2.0, 0.0], atol=1e-12)
    cond = G.conditional_shapley(np.stack([v, 2 * v]), 3)  # two scans; the second is the first doubled
    assert cond.shape == (2, 3, 3)
    np.testing.assert_allclose(cond[0], [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.0, 2.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(cond[1], 2 * cond[0], atol=1e-12)
    # held_absent keeps the other players' bit order: with player 1 absent, coalitions {}, {0}, {2}, {0,2}.
    np.testing.assert_allclose(G.held_absent(v + bits[:, 2], 3, 1), [0.0, 2.0, 1.0, 3.0])
    with pytest.raises(ValueError, match="player in 0..2"):
        G.held_absent(v, 3, 3)


def test_conditional_shapley_matches_brute_force_on_a_random_game():
    rng = np.random.default_rng(3)
    v = rng.normal(size=64)
    cond = G.conditional_shapley(v, 6)
    bits = S.coalition_bits(np.arange(64), 6)
    for j in range(6):
        reduced = v[~bits[:, j]]  # coalitions without j, in increasing mask order = the 5-player bitmask order
        np.testing.assert_allclose(np.delete(cond[j], j), brute_force_shapley(reduced, 5), atol=1e-12)
        assert cond[j, j] == 0.0


def test_weights_sum_to_one_per_player():
    for n in (1, 6, 12):
        w = G.shapley_weights(n)
        sizes = np.array([math.comb(n - 1, s) for s in range(n)])
        assert float(w @ sizes) == pytest.approx(1.0, abs=1e-14)


def test_permutation_estimate_is_efficient_and_close_to_exact():
    n = 12
    rng = np.random.default_rng(3)
    bits = S.coalition_bits(np.arange(2**n), n).astype(float)
    weights, pair = rng.normal(size=n), rng.normal(size=(n, n)) / n
    v = bits @ weights + np.einsum("ki,ij,kj->k", bits, np.triu(pair, 1), bits)  # additive + interactions
    exact = G.shapley_from_values(v, n)
    calls = []

    def value_fn(masks: np.ndarray) -> np.ndarray:
        calls.append(masks.size)
        return v[masks]

    est = S.permutation_shapley(value_fn, n, tol=0.01, max_permutations=4000, seed=1)
    assert est.converged and est.standard_error.max() < 0.01
    assert est.values.sum() == pytest.approx(v[-1] - v[0], abs=1e-9)
    assert np.all(np.abs(est.values - exact) <= 4 * est.standard_error + 1e-9)
    assert est.n_evaluations == sum(calls) <= 2**n  # every coalition evaluated at most once


# --------------------------------------------------------------------------------------------------
# Removal operators
# --------------------------------------------------------------------------------------------------


def test_road_fill_keeps_present_voxels_reads_no_removed_voxel_and_interpolates_a_ramp():
    labels = slab_layers((24, 6, 6), seed=1)
    ramp = torch.arange(24, dtype=torch.float64).view(1, 24, 1, 1).expand(1, 24, 6, 6).clone()
    absent = torch.from_numpy(~S.coalition_bits(np.array([0, 0b101010, 0b010101]), 6))
    quiet = S.RemovalSettings.defaults(road_noise=0.0)
    filled = S.removal_fill(ramp, labels, absent, "road", 0, settings=quiet)
    np.testing.assert_allclose(filled.numpy(), np.broadcast_to(ramp.numpy(), filled.shape), atol=1e-9)

    x = torch.rand(2, 24, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    removed = S.removed_masks(absent, S.player_index(labels, S.make_players((), False), 2))
    noisy = S.removal_fill(x, labels, absent, "road", 7)
    assert torch.equal(noisy[~removed], x.expand_as(noisy)[~removed])  # present voxels untouched
    scrambled = x.clone()
    scrambled[:, labels > 0] = 100.0  # change every layer voxel; coalition 0 removes them all
    a = S.removal_fill(x, labels, absent[:1], "road", 7)
    b = S.removal_fill(scrambled, labels, absent[:1], "road", 7)
    assert torch.equal(a, b)
    assert torch.equal(noisy, S.removal_fill(x, labels, absent, "road", 7))  # same seed, same noise


def test_static_fills():
    labels = slab_layers((16, 5, 5), seed=2)
    x = torch.rand(2, 16, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    background = torch.rand(3, 2, 16, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    absent = torch.ones(1, 6, dtype=torch.bool)
    mean = S.removal_fill(x, labels, absent, "mean", 0)[0]
    for k in range(1, 7):
        region = labels == k
        assert torch.allclose(mean[:, region], x[:, region].mean(dim=1, keepdim=True))
    bg = S.removal_fill(x, labels, absent, "background", 0, background)[0]
    assert torch.allclose(bg[:, labels > 0], background.mean(0)[:, labels > 0])
    assert torch.equal(bg[:, labels == 0], x[:, labels == 0])  # background voxels are never players
    with pytest.raises(ValueError, match="background"):
        S.removal_fill(x, labels, absent, "background", 0)
    with pytest.raises(ValueError, match="unknown removal operator"):
        S.removal_fill(x, labels, absent, "zero", 0)


# --------------------------------------------------------------------------------------------------
# Toy model with known values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("operator", STATIC_OPERATORS)
def test_toy_model_values_are_analytic_with_null_player_and_symmetry(operator):
    shape = (20, 6, 6)
    labels = slab_layers(shape, seed=4)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 1, *shape, generator=g, dtype=torch.float64)
    x[0, 0][labels == 3] += 0.7  # a bright SFM
    x[0, 0][labels == 5] = x[0, 0][labels == 5] * 0.0 + 0.9  # the DFM constant
    background = torch.rand(2, 1, *shape, generator=g, dtype=torch.float64)
    weights = [0.5, 0.0, 2.0, -1.0, 3.0, 1.0]  # superficial fat is ignored by the model
    model = LayerMeans(labels, weights)
    phi = S.layer_shapley(model, x, labels[None], ("bmode",), operator, 16, seed=0, background=background)[0]
    fill = S.removal_reference(x[0], labels, operator, np.random.default_rng(0), background)
    expected = np.array(weights) * (layer_means(x[0], labels) - layer_means(fill, labels))
    np.testing.assert_allclose(phi, expected, atol=1e-12)
    assert phi[1] == 0.0  # null player: exactly
    if operator == "mean":
        np.testing.assert_allclose(phi, 0.0, atol=1e-12)  # own-layer mean keeps every layer mean
    ablation = S.layer_ablation(model, x, labels[None], operator, background=background)
    np.testing.assert_allclose(ablation[0, 0], phi, atol=1e-12)  # additive game: ablation = Shapley



def test_symmetric_layers_get_equal_values():
    """Layers 2 and 4 with the same weight and the same mean gap to the fill are interchangeable."""
    shape = (20, 6, 6)
    labels = slab_layers(shape, seed=4)
    x = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x[0, 0][labels == 2] = 0.3
    x[0, 0][labels == 4] = 0.3
    model = LayerMeans(labels, [0.5, 2.0, 0.0, 2.0, 0.0, 1.0])
    background = torch.zeros(1, 1, *shape, dtype=torch.float64)
    phi = S.layer_shapley(model, x, labels[None], ("bmode",), "background", 64, seed=0, background=background)[0]
    assert phi[1] == pytest.approx(phi[3], abs=1e-12)
    assert phi[1] == pytest.approx(2.0 * 0.3, abs=1e-12)


def test_road_null_player_can_leak_through_the_imputation():
    """Documented, not a bug: under ROAD an ignored layer shapes the fill of its removed neighbours."""
    shape = (20, 6, 6)
    labels = slab_layers(shape, seed=4)
    x = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x[0, 0][labels == 2] = 5.0  # bright superficial fat, ignored by the model
    model = LayerMeans(labels, [1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    phi = S.layer_shapley(model, x, labels[None], ("bmode",), "road", 64, seed=0)[0]
    assert abs(phi[1]) > 0.1  # the SFM fill reads the fat above it


# --------------------------------------------------------------------------------------------------
# Real MONAI model: efficiency
# --------------------------------------------------------------------------------------------------


def f_plain(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model(x[None])[0, 0])


@pytest.mark.parametrize("operator", S.REMOVAL_OPERATORS)
def test_efficiency_on_resnet_every_operator(operator):
    torch.manual_seed(0)
    model = build_model("resnet", 1).eval()
    shape = (24, 16, 16)
    labels = slab_layers(shape, seed=6)
    g = torch.Generator().manual_seed(7)
    images = torch.rand(2, 1, *shape, generator=g)
    background = torch.rand(3, 1, *shape, generator=g)
    res = S.shapley_scans(model, images, labels.expand(2, *shape), ("bmode",), operator, 32, seed=3,
                          background=background)
    for i in range(2):
        base = S.removal_fill(images[i], labels, torch.ones(1, 6, dtype=torch.bool), operator, S.scan_seed(3, i),
                              background)
        gap = f_plain(model, images[i]) - f_plain(model, base[0])
        assert abs(res.values[i].sum() - gap) < 1e-5, (operator, res.values[i].sum(), gap)
        assert abs(gap) > 1e-4  # the identity is not trivially 0 = 0
    # The QC compares with forwards of its own: equal up to float32 batching (measured 7e-9), not to 0.
    assert res.efficiency_error.max() < 1e-5


def test_efficiency_qc_fails_a_broken_value_function(monkeypatch):
    """A value function that reads the coalition bits backwards (player i present <-> absent) still gives
    Shapley values that sum to its own v(all) - v(none); only the independent forwards catch it."""
    torch.manual_seed(0)
    model = build_model("resnet", 1).eval()
    shape = (24, 16, 16)
    labels = slab_layers(shape, seed=6)
    images = torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(7))
    args = (model, images, labels.expand(2, *shape), ("bmode",), "mean", 32)
    good = S.shapley_scans(*args, seed=3)
    original = S.coalition_values

    def backwards(*a, coalitions=None, **k):
        return original(*a, coalitions=(2**6 - 1) - np.asarray(coalitions), **k)

    monkeypatch.setattr(S, "coalition_values", backwards)
    broken = S.shapley_scans(*args, seed=3)
    np.testing.assert_allclose(broken.values, -good.values, atol=1e-6)  # a plausible-looking answer
    assert good.efficiency_error.max() < 1e-5
    gap = np.abs(good.full - good.empty)
    np.testing.assert_allclose(broken.efficiency_error, 2 * gap, rtol=1e-4)
    assert broken.efficiency_error.min() > 1e3 * good.efficiency_error.max()


def test_scan_seed_follows_the_scan_id_not_its_position():
    ids = ["S001_L4-L_v1", "S002_L4-R_v1"]
    assert S.scan_seed(0, ids[0]) == S.scan_seed(0, ids[0])
    assert S.scan_seed(0, ids[0]) != S.scan_seed(0, ids[1]) != S.scan_seed(1, ids[1])
    torch.manual_seed(0)
    model = build_model("resnet", 1).eval()
    shape = (24, 16, 16)
    labels = slab_layers(shape, seed=6).expand(2, *shape)
    images = torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(7))
    forward = S.shapley_scans(model, images, labels, ("bmode",), "road", 64, seed=3, scan_keys=ids)
    swapped = S.shapley_scans(model, images.flip(0), labels, ("bmode",), "road", 64, seed=3, scan_keys=ids[::-1])
    np.testing.assert_array_equal(forward.values, swapped.values[::-1])  # ROAD noise: same scan, same draw


def test_efficiency_with_twelve_channel_layer_players_exact():
    torch.manual_seed(1)
    model = build_model("resnet", 2).eval()
    shape = (16, 8, 8)
    labels = slab_layers(shape, seed=8)
    images = torch.rand(1, 2, *shape, generator=torch.Generator().manual_seed(9))
    res = S.shapley_scans(model, images, labels[None], ("bmode", "swe"), "mean", 256, seed=0, per_channel=True)
    assert res.values.shape == (1, 12) and int(res.n_evaluations[0]) == 4096
    assert [p.name for p in res.players[:2]] == ["bmode:dermis", "bmode:superficial_fat"]
    base = S.removal_fill(images[0], labels, torch.ones(1, 12, dtype=torch.bool), "mean", 0,
                          players=res.players)
    gap = f_plain(model, images[0]) - f_plain(model, base[0])
    assert abs(res.values.sum() - gap) < 1e-5


# --------------------------------------------------------------------------------------------------
# Expected gradients and the workflow entry point
# --------------------------------------------------------------------------------------------------


def test_expected_gradients_complete_for_a_linear_model_and_restore_global_rng():
    shape = (8, 4, 4)
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(1, 2 * int(np.prod(shape)), generator=g)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(weight.shape[1], 1))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    images = torch.rand(2, 2, *shape, generator=g)
    background = torch.rand(1, 2, *shape, generator=g)  # one background scan: completeness is exact
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    maps = S.expected_gradients(model, images, background, n_samples=8, batch_size=4, seed=0)
    assert np.random.random() == before  # shap reseeds the global generator; we restore it
    assert maps.shape == (2, 2, *shape)
    np.testing.assert_allclose(S.expected_gradients_qc(model, images, background, maps), 0.0, atol=1e-5)
    expected = ((images - background) * weight.view(1, 2, *shape)).numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-5)


def test_attribute_extra_shapes_channels_and_checks():
    torch.manual_seed(2)
    model = build_model("resnet", 2).eval()
    shape = (16, 8, 8)
    labels = slab_layers(shape, seed=10).expand(2, *shape)
    g = torch.Generator().manual_seed(11)
    images, background = torch.rand(2, 2, *shape, generator=g), torch.rand(2, 2, *shape, generator=g)
    settings = AttributionSettings.defaults(batch_size=64, seed=1, eg_samples=4)
    channels = ("bmode", "swe")

    scores, names, qc, coalitions = S.attribute_extra(
        model, images, labels, "shapley_road", channels, settings, background
    )
    assert scores.shape == (2, 1, 6) and names == ("all",)
    assert coalitions.shape == (2, 64)  # all coalition values, for the deletion curves
    np.testing.assert_allclose(G.shapley_from_values(coalitions, 6), scores[:, 0], atol=1e-12)
    assert set(qc["check"]) == {"efficiency_error", "f_full", "f_empty", "max_standard_error", "n_evaluations"}
    assert qc.loc[qc["check"] == "efficiency_error", "value"].max() < 1e-6  # independent forwards: float32 batching
    f_full = qc.loc[qc["check"] == "f_full", "value"].to_numpy()
    with torch.no_grad():
        np.testing.assert_allclose(f_full, model(images)[:, 0].numpy(), atol=1e-5)

    ablation, names, _, _ = S.attribute_extra(
        model, images, labels, "ablation_background", channels, settings, background
    )
    assert ablation.shape == (2, 1, 6) and names == ("all",)

    maps, names, qc, _ = S.attribute_extra(
        model, images, labels, "expected_gradients", channels, settings, background
    )
    assert maps.shape == (2, 2, *shape) and names == channels
    assert np.isfinite(qc["value"]).all()

    assert S.parse_method("shapley_channel_blur") == ("shapley", "blur", True)
    with pytest.raises(ValueError, match="unknown attribution method"):
        S.attribute_extra(model, images, labels, "shapley_zero", channels, settings)
    with pytest.raises(TypeError, match="has no settings"):
        AttributionSettings.defaults(batchsize=4)
    unread = AttributionSettings.from_params({"batch_size": 4, "seed": 0})  # a mean-removal job's params
    assert unread.blur_sigma is None and unread.road_noise is None  # not read by this operator: not passed


def test_scores_table_layout():
    scores = np.arange(24, dtype=float).reshape(2, 2, 6)
    table = S.scores_table(scores, ["s1", "s2"], ["bmode", "swe"], "shapley_road")
    assert list(table.columns) == ["scan_id", "channel", "layer", "measure", "value"]
    assert len(table) == 24 and table["layer"].iloc[:6].tolist() == list(LAYERS)
    row = table[(table["scan_id"] == "s2") & (table["channel"] == "bmode") & (table["layer"] == "dfm")]
    assert float(row["value"].iloc[0]) == scores[1, 0, 4]
    assert isinstance(table, pd.DataFrame)


def test_background_ids_spread_over_subjects():
    from layer.explain.attribute import background_ids

    ids = [f"S{s:02d}_v{v}" for s in range(10) for v in range(4)]
    subjects = [i.split("_")[0] for i in ids]
    picked = background_ids(ids, subjects, 6, seed=0)
    assert len(picked) == 6 and len({p.split("_")[0] for p in picked}) == 6  # six subjects, one scan each
    assert all(p.endswith("_v0") for p in picked)
    assert picked == background_ids(ids[::-1], subjects[::-1], 6, seed=0)  # input order does not matter
    assert picked != background_ids(ids, subjects, 6, seed=1)
    more = background_ids(ids, subjects, 16, seed=0)  # more scans than subjects: all 10, then 6 second scans
    assert len({p.split("_")[0] for p in more}) == 10 and sum(p.endswith("_v1") for p in more) == 6

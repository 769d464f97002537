"""Segmentation perturbation and degradation on a synthetic label map, and the sanity / faithfulness helpers
(rank correlation, cascading randomisation, deletion curves) on games with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from layer.checks import summaries as checks
from layer.checks import profiles as perturb
from layer.checks import robustness as R
from layer.regions import interfaces as I
from layer.nets.model import build_model
from layer.names import LAYERS
from layer.explain.shapley import coalition_values, make_players
from layer.synth import render_scan
from layer.synth.anatomy import ScanParams
from layer.synth.config import auto_spacing

SHAPE = (48, 32, 32)


@pytest.fixture(scope="module")
def label_map() -> np.ndarray:
    return render_scan(ScanParams.typical(), SHAPE, auto_spacing(SHAPE), np.random.default_rng(0)).layers


def counts(labels: np.ndarray) -> np.ndarray:
    return np.stack([(labels == k).sum(axis=0) for k in range(1, 7)])


def assert_valid(labels: np.ndarray) -> None:
    assert labels.shape == SHAPE and labels.min() >= 0 and labels.max() <= 6
    assert set(np.unique(labels)) == set(range(7))  # background and all six layers present
    I.interfaces(labels)  # still layered along depth


# --------------------------------------------------------------------------------------------------
# Interfaces and one-voxel perturbations
# --------------------------------------------------------------------------------------------------


def test_interfaces_round_trip_and_reject_unlayered_maps(label_map):
    bounds, thickness = I.interfaces(label_map)
    assert bounds.shape == (7, 32, 32) and np.array_equal(I.render_interfaces(bounds, 48), label_map)
    assert np.array_equal(thickness, counts(label_map))
    broken = label_map.copy()
    broken[20, 5, 5] = 1  # a dermis voxel inside deeper tissue
    with pytest.raises(ValueError, match="not layered"):
        I.interfaces(broken)


@pytest.mark.parametrize("mode", ["deeper", "shallower", "random"])
def test_moving_every_interface_keeps_labels_valid(label_map, mode):
    moved = I.perturb_layers(label_map, mode, np.random.default_rng(1))
    assert_valid(moved)
    before, after = I.interfaces(label_map)[0], I.interfaces(moved)[0]
    step = np.abs(after - before)
    assert step.max() <= 2 and np.mean(step == 1) > 0.9  # interfaces moved by one voxel (pushed where needed)
    if mode == "deeper":
        assert np.array_equal(after[0], before[0] + 1)  # the skin one voxel deeper everywhere
        # interior layers keep their thickness when every interface moves alike
        assert np.array_equal(counts(moved)[1:5], counts(label_map)[1:5])
    dice = R.layer_dice(label_map, moved)
    assert dice["sfm"] < 0.5 < dice["muscle"]  # a one-voxel shift destroys a one-voxel membrane


def test_dilate_and_erode_one_layer(label_map):
    before = counts(label_map)
    grown = I.perturb_layers(label_map, "dilate", np.random.default_rng(0), layer="sfm")
    assert_valid(grown)
    assert np.array_equal(counts(grown)[2], before[2] + 2)  # one voxel on each side
    assert np.array_equal(counts(grown)[1], before[1] - 1) and np.array_equal(counts(grown)[3], before[3] - 1)
    # the SFM is one voxel thick in every column: it cannot be eroded, and nothing changes
    assert (before[2] == 1).all()
    assert np.array_equal(I.perturb_layers(label_map, "erode", np.random.default_rng(0), layer="sfm"), label_map)
    thinner = I.perturb_layers(label_map, "erode", np.random.default_rng(0), layer="deep_fat")
    assert_valid(thinner)
    assert np.array_equal(counts(thinner)[3], np.maximum(before[3] - 2, 1))
    with pytest.raises(ValueError, match="needs layer"):
        I.perturb_layers(label_map, "dilate", np.random.default_rng(0))
    # Only the random mode draws: dilate needs no generator, random refuses to run without one.
    assert np.array_equal(I.perturb_layers(label_map, "dilate", layer="sfm"), grown)
    with pytest.raises(ValueError, match="needs rng"):
        I.perturb_layers(label_map, "random")


# --------------------------------------------------------------------------------------------------
# Degradation to target Dice
# --------------------------------------------------------------------------------------------------


def test_degrade_to_reachable_dice_targets(label_map):
    """Targets made by a known degradation (other random fields): the fit must find Dice within 5 points."""
    truth = [0.3, 0.6, 0.3, 0.4, 0.5, 0.3, 1.5]
    fields = R.displacement_fields(np.random.default_rng(5), SHAPE[1:], 4.0)
    target = R.layer_dice(label_map, R.degrade(label_map, truth, fields))
    assert min(target.values()) < 0.9  # not a trivial target
    result = R.degrade_to_dice(label_map, target, np.random.default_rng(2))
    assert_valid(result.layers)
    assert result.dice == R.layer_dice(label_map, result.layers)
    for layer in LAYERS:
        assert abs(result.dice[layer] - target[layer]) <= 0.05, (layer, result.dice[layer], target[layer])


def test_degrade_to_published_dice(label_map):
    """The published profile is not reachable by boundary errors on this anatomy (module docstring): the four
    deeper layers are matched within 5 points; the dermis / superficial fat pair is a compromise."""
    result = R.degrade_to_dice(label_map, R.PUBLISHED_DICE, np.random.default_rng(1))
    assert_valid(result.layers)
    for layer in ("sfm", "deep_fat", "dfm", "muscle"):
        assert abs(result.dice[layer] - R.PUBLISHED_DICE[layer]) <= 0.05, (layer, result.dice[layer])
    assert result.dice["dermis"] < 0.8 and result.dice["superficial_fat"] < 0.9  # degraded towards the targets
    error = sum((result.dice[k] - v) ** 2 for k, v in R.PUBLISHED_DICE.items())
    assert error < 0.05, result.dice
    with pytest.raises(ValueError, match="fractions"):
        R.degrade_to_dice(label_map, {"dermis": 73.5}, np.random.default_rng(0))


# --------------------------------------------------------------------------------------------------
# Sanity and faithfulness helpers
# --------------------------------------------------------------------------------------------------


def test_rank_correlation_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    b[0] = a[0] * 2 + 1  # same order
    b[1, :3] = b[1, 3:]  # ties
    ours = checks.rank_correlation(a, b)
    ref = [sps.spearmanr(x, y).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert ours[0] == pytest.approx(1.0)
    assert np.isnan(checks.rank_correlation(np.ones(6), np.arange(6.0)))


def test_randomise_cascade_from_the_top():
    torch.manual_seed(0)
    model = build_model("resnet", 1).eval()
    names = [name for name, _ in perturb.model_blocks(model)]
    assert names == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    original = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    top = perturb.randomise_cascade(model, 1, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())  # original untouched
    changed = {k for k, v in top.state_dict().items() if not torch.equal(v, original[k])}
    assert changed == {"fc.weight", "fc.bias"}
    three = perturb.randomise_cascade(model, 3, seed=3).state_dict()
    assert not torch.equal(three["layer4.0.conv1.weight"], original["layer4.0.conv1.weight"])
    assert not torch.equal(three["layer3.0.conv1.weight"], original["layer3.0.conv1.weight"])
    assert torch.equal(three["layer2.0.conv1.weight"], original["layer2.0.conv1.weight"])
    again = perturb.randomise_cascade(model, 3, seed=3).state_dict()
    assert all(torch.equal(v, again[k]) for k, v in three.items())  # seeded
    x = torch.rand(1, 1, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(perturb.randomise_cascade(model, 0)(x), model(x))


def test_deletion_curves_on_an_additive_game():
    """v(S) = sum of w_i over S with w = (3, 1, 2): curves and AOPC by hand."""
    n, w = 3, np.array([3.0, 1.0, 2.0])
    bits = ((np.arange(8)[:, None] >> np.arange(n)) & 1).astype(float)
    values = bits @ w
    order = checks.attributed_order(w)
    assert order.tolist() == [0, 2, 1]
    curve = checks.deletion_curve(values, order, n)
    np.testing.assert_allclose(curve, [6, 3, 1, 0])
    assert checks.area_over_curve(curve) == pytest.approx((0 + 3 + 5 + 6) / 4)
    # random order: expected value after k deletions 6 - 2k -> AOPC (0 + 2 + 4 + 6) / 4
    assert checks.random_order_baseline(values, n) == pytest.approx(3.0)
    assert checks.order_percentile(values, order, n) == 1.0
    assert checks.order_percentile(values, [1, 2, 0], n) == pytest.approx(1 / 6)  # the worst order


def test_deletion_curve_model_matches_the_coalition_lookup():
    torch.manual_seed(1)
    model = build_model("resnet", 1).eval()
    labels = np.zeros((16, 8, 8), dtype=np.int64)
    for k, (a, b) in enumerate([(2, 4), (4, 7), (7, 8), (8, 10), (10, 11), (11, 15)], start=1):
        labels[a:b] = k
    image = torch.rand(1, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    players = make_players((), per_channel=False)
    values = coalition_values(model, image, labels, players, "blur", 64)
    order = [4, 0, 5, 1, 3, 2]
    direct = perturb.deletion_curve_model(model, image, labels, players, order, "blur", 8)
    np.testing.assert_allclose(direct, checks.deletion_curve(values, order, 6), atol=1e-6)

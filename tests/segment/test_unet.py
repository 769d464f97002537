"""The segmentation network learns a toy cohort whose layers differ in echo, and its ordered prediction on a
scan it never saw reaches a Dice a user would accept; the same seed gives the same weights."""

from __future__ import annotations

import numpy as np
import torch

from layer.io import affine_from_spacing, save_nifti
from layer.nets.data import preprocessing
from layer.nets.device import pick_device
from layer.nets.train import load_checkpoint
from layer.segment.anatomy import is_ordered, ordered_labels
from layer.segment.net import SegmentSettings, build_unet, log_probabilities, train_unet
from layer.segment.quality import scan_metrics

SHAPE = (24, 8, 8)
#: Echo level per label: gel, dermis, superficial fat, SFM, deep fat, DFM, muscle.
ECHO = np.array([0.05, 0.7, 0.3, 0.95, 0.25, 0.9, 0.5])


def _scan(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    thickness = rng.integers([1, 2, 3, 1, 3, 1], [3, 4, 6, 2, 6, 2])
    top = int(rng.integers(1, 3))
    labels = np.zeros(SHAPE, np.uint8)
    edges = top + np.concatenate([[0], np.cumsum(thickness)])
    for k in range(6):
        labels[edges[k] : edges[k + 1]] = k + 1
    labels[edges[-1] :] = 6
    bmode = np.clip(ECHO[labels] + rng.normal(0, 0.08, SHAPE), 0, 1).astype(np.float32)
    return bmode, labels


def _items(root, n: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        bmode, labels = _scan(rng)
        paths = {kind: root / f"t{seed}-{i}_{kind}.nii.gz" for kind in ("bmode", "layers")}
        save_nifti(bmode, affine_from_spacing((1.0, 1.0, 1.0)), paths["bmode"])
        save_nifti(labels, affine_from_spacing((1.0, 1.0, 1.0)), paths["layers"])
        items.append({"scan_id": f"t{seed}-{i}", "bmode": str(paths["bmode"]), "layers": str(paths["layers"]),
                      "labels": labels})  # fmt: skip
    return items


def test_unet_learns_the_toy_layers_and_is_reproducible(tmp_path):
    train, test = _items(tmp_path, 6, 0), _items(tmp_path, 2, 1)
    settings = SegmentSettings(width=4, max_epochs=25, batch_size=2, learning_rate=0.01, seed=0, amp=False)
    weights, curve = train_unet(train, settings, bmode_max=1.0)
    assert curve["train_loss"].iloc[-1] < 0.5 * curve["train_loss"].iloc[0]
    model = build_unet(4)
    model.load_state_dict(weights)
    pre = preprocessing("bmode", 1.0, 1.0)
    dice = []
    for it in test:
        image = torch.as_tensor(pre({"bmode": it["bmode"]})["image"])
        labels = ordered_labels(log_probabilities(model, image, pick_device()))
        assert is_ordered(labels)
        dice.append(scan_metrics(labels, it["labels"], (1.0, 1.0, 1.0))["dice"].to_numpy())
    assert np.mean(dice) > 0.9, np.mean(dice, axis=0)
    again, _ = train_unet(train, settings, bmode_max=1.0)
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import layer.segment.net as net

    train = _items(tmp_path, 4, 2)
    settings = SegmentSettings(width=4, max_epochs=4, batch_size=2, learning_rate=0.01, seed=1, amp=False)
    whole, whole_curve = train_unet(train, settings, bmode_max=1.0)
    checkpoint = tmp_path / "seg.ckpt"
    saves = []
    real_save = net.save_checkpoint

    def save_then_die(state, path):
        real_save(state, path)
        saves.append(state["epoch"])
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed after epoch 1's checkpoint
    monkeypatch.setattr(net, "save_checkpoint", save_then_die)
    try:
        train_unet(train, settings, bmode_max=1.0, checkpoint=checkpoint)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(net, "save_checkpoint", real_save)
    resumed, curve = train_unet(train, settings, bmode_max=1.0, checkpoint=checkpoint)
    assert saves == [0, 1] and curve.equals(whole_curve)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    stale = SegmentSettings(width=4, max_epochs=4, batch_size=2, learning_rate=0.02, seed=1, amp=False)
    assert load_checkpoint(checkpoint)["identity"] != net.data_identity(train, stale, 1.0)  # not continued

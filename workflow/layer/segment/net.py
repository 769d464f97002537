"""The segmentation network: a MONAI 3-D UNet trained with Dice + cross-entropy on the drawn maps.

Input is the B-mode alone, the one volume every scan has (SWE covers a box only, and a B-mode-only cohort
has none), scaled as the classifiers scale it (``layer.nets.data``). Volumes are zero-padded to a multiple of
the UNet's total stride and the prediction cropped back, so any scan shape works.

Training follows the classifiers' rules (``layer.nets.train``): deterministic on CPU, AMP on GPU, a
checkpoint per epoch that a preempted job resumes from when it was made for the same settings and data, and
every epoch reseeded from ``(seed, epoch)`` alone. There is no early stopping: the held-out annotated
subjects are kept for the quality report, never for choosing the weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import Compose, RandFlipd
from monai.utils import set_determinism

from layer import config
from layer.names import LAYERS
from layer.nets import data
from layer.nets.device import configure_torch, pick_device
from layer.nets.train import epoch_loader, resume, save_checkpoint, train_epoch

log = logging.getLogger(__name__)

N_CLASSES = len(LAYERS) + 1  # background and the six layers
#: Down-sampling steps of the UNet; volumes are padded to a multiple of 2 ** DEPTH.
DEPTH = 3


@dataclass(frozen=True)
class SegmentSettings:
    """Scalar settings of the segmentation (config ``segmentation:``), from a rule's params or the schema."""

    width: int
    max_epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    amp: bool

    @classmethod
    def defaults(cls, **overrides: object) -> SegmentSettings:
        """The schema defaults of ``segmentation:``, with ``overrides`` (tests, bench)."""
        return config.from_defaults(cls, "segmentation", **overrides)


def build_unet(width: int) -> torch.nn.Module:
    """A 3-D UNet from B-mode (1 channel) to 7 class logits; channels ``width .. 8 * width``."""
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=N_CLASSES,
        channels=tuple(width * 2**k for k in range(DEPTH + 1)),
        strides=(2,) * DEPTH,
        num_res_units=1,
    )


def pad_to_stride(x: torch.Tensor, value: float = 0.0) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the last three axes of ``[..., D, H, W]`` up to multiples of ``2 ** DEPTH``; return the
    padded tensor and the slices that crop it back."""
    k = 2**DEPTH
    shape = x.shape[-3:]
    extra = [(-n) % k for n in shape]
    pad: list[int] = []
    for e in reversed(extra):
        pad += [0, e]
    crop = tuple(slice(0, n) for n in shape)
    return (F.pad(x, pad, value=value) if any(extra) else x), crop


def _flips() -> Compose:
    """Lateral and elevational flips of image and map together (never depth: skin is on top)."""
    keys = ["image", "layers"]
    return Compose([RandFlipd(keys=keys, prob=0.5, spatial_axis=1), RandFlipd(keys=keys, prob=0.5, spatial_axis=2)])


def _batch(batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """B-mode ``[B, 1, D, H, W]`` and label map (int64, same shape) of a batch, padded for the UNet."""
    x, _ = pad_to_stride(batch["image"].to(device))
    y, _ = pad_to_stride(batch["layers"].to(device).long())
    return x, y


def data_identity(items: list[dict[str, object]], settings: SegmentSettings, bmode_max: float) -> str:
    """Hash of what a checkpoint must have been trained on: settings, scaling, and every training file's bytes."""
    digest = hashlib.sha256(json.dumps([asdict(settings), bmode_max]).encode())
    for it in items:
        digest.update(str(it["scan_id"]).encode())
        for key in ("bmode", "layers"):
            digest.update(Path(str(it[key])).read_bytes())
    return digest.hexdigest()


def train_unet(
    items: list[dict[str, object]],
    settings: SegmentSettings,
    bmode_max: float,
    threads: int = 1,
    checkpoint: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Train on ``items`` (dicts with ``bmode`` and ``layers`` paths); return the final weights and the curve
    (columns ``epoch, train_loss``)."""
    device = pick_device()
    configure_torch(threads, device)
    set_determinism(seed=settings.seed)
    pre = data.preprocessing("bmode", bmode_max, 1.0, with_layers=True)
    aug = _flips()
    train_set = data.cached_dataset(items, pre, aug)
    model = build_unet(settings.width).to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    use_amp = settings.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    identity = data_identity(items, settings, bmode_max) if checkpoint else ""
    start, curve = 0, []
    state = resume(checkpoint, lambda s: s.get("identity") == identity, model, optimizer, scaler, use_amp)
    if state is not None:
        start, curve = int(state["epoch"]) + 1, [list(map(float, row)) for row in state["curve"]]

    def reseed(seed: int) -> None:
        aug.set_random_state(seed=seed % (2**32))

    for epoch in range(start, settings.max_epochs):
        loader = epoch_loader(train_set, settings.batch_size, settings.seed, epoch, reseed)
        losses = train_epoch(model, loader, optimizer, loss_fn, scaler, device, use_amp, prepare=_batch)
        curve.append([float(epoch), float(np.mean(losses))])
        log.info("segmentation epoch %d loss %.4f", epoch, curve[-1][1])
        if checkpoint:
            save_checkpoint(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "curve": curve,
                    "identity": identity,
                },
                checkpoint,
            )
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    table = pd.DataFrame(curve, columns=["epoch", "train_loss"]).astype({"epoch": int})
    return weights, table


def log_probabilities(model: torch.nn.Module, image: torch.Tensor, device: torch.device) -> np.ndarray:
    """Per-class log-probabilities ``[7, D, H, W]`` of one preprocessed B-mode ``[1, D, H, W]``."""
    model.eval()
    x, crop = pad_to_stride(image[None].to(device))
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        logits = model(x).float()
    return torch.log_softmax(logits, dim=1)[0][(slice(None), *crop)].cpu().numpy()


def load_unet(saved: dict) -> torch.nn.Module:
    """The trained network from what :func:`train_unet`'s caller saved (``state_dict``, ``width``)."""
    model = build_unet(int(saved["width"]))
    model.load_state_dict(saved["state_dict"])
    return model

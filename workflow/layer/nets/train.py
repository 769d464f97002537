"""Training one model (one modality x fold): class-balanced loss, early stopping on validation AUC,
deterministic on CPU, AMP on GPU, and a per-epoch checkpoint that a preempted job resumes from.

Why reseed every epoch: the shuffling and augmentation streams of epoch ``e`` are derived from
``(seed, e)`` alone, so a job resumed at epoch ``e`` draws exactly what an uninterrupted job would, with no
random-generator state in the checkpoint. The checkpoint holds only tensors and plain numbers, so it loads
with ``torch.load(weights_only=True)``.

A checkpoint is continued only when it was made for the same run: the same settings and the same
``identity`` (model spec, modality, fold, and the bytes of every training and validation volume). A stale
checkpoint left by a killed job whose inputs or config changed since is ignored, never mixed in.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.data import DataLoader
from monai.utils import set_determinism
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from layer import config
from layer.nets import data
from layer.io import atomic_path
from layer.nets.device import configure_torch, pick_device
from layer.nets.model import ModelSpec, build_model
from layer.names import CHANNELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Scalar training settings (config ``train:``), without defaults of their own: from a rule's params
    (:func:`layer.config.from_params`) or the schema (:meth:`defaults`)."""

    max_epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    amp: bool

    @classmethod
    def defaults(cls, **overrides: object) -> TrainSettings:
        """The schema defaults of ``train:``, with ``overrides`` (tests, bench)."""
        return config.from_defaults(cls, "train", **overrides)






def predict(model: torch.nn.Module, images: torch.Tensor, device: torch.device, batch_size: int) -> np.ndarray:
    """Logits for a stack of inputs [N, C, D, H, W], in batches, without gradients."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out.append(model(batch).float().reshape(-1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def safe_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when only one class is present."""
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def _state(model, optimizer, scaler, epoch, best_auc, best_state, bad_epochs, curve, settings, identity) -> dict:
    return {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),  # empty unless AMP runs (GPU)
        "best_auc": best_auc,
        "best_state": best_state,
        "bad_epochs": bad_epochs,
        "curve": curve,
        "settings": asdict(settings),
        "identity": identity,
    }


def save_checkpoint(state: dict, path: str | os.PathLike[str]) -> None:
    """Write a checkpoint atomically: a kill mid-write leaves the previous one intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict | None:
    """Load a checkpoint safely (weights only); None if absent or unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except (RuntimeError, EOFError, OSError) as exc:  # truncated by a kill: start over
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None


def _classifier_batch(batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[B, C, D, H, W]`` and labels ``[B, 1]`` of a classifier batch, on ``device``."""
    x = batch["image"].to(device, non_blocking=True)
    return x, batch["label"].float().reshape(-1, 1).to(device, non_blocking=True)


def train_epoch(
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    use_amp: bool,
    prepare: Callable[[dict[str, torch.Tensor], torch.device], tuple[torch.Tensor, torch.Tensor]] = _classifier_batch,
) -> list[float]:
    """One pass over ``batches``; the loss of each batch. ``prepare`` turns a batch into (inputs, targets) on
    the device: by default a classifier's (``image``, ``label``); the segmentation passes its own.

    The benchmark runs this same function on a DataLoader and on tensors already in memory.
    """
    model.train()
    losses = []
    for batch in batches:
        x, y = prepare(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=use_amp):
            loss = loss_fn(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
    return losses


def resume(
    checkpoint: str | os.PathLike[str] | None,
    matches: Callable[[dict], bool],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    use_amp: bool,
) -> dict | None:
    """Continue from ``checkpoint`` when it exists and ``matches`` this run (same settings and data): load
    its weights, optimiser and (AMP) scaler state and return it; None means start over."""
    state = load_checkpoint(checkpoint) if checkpoint else None
    if state is not None and not matches(state):
        log.warning("ignoring checkpoint %s: made for other settings or data; starting over", checkpoint)
        return None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        log.info("resumed from %s at epoch %d", checkpoint, int(state["epoch"]) + 1)
    return state


def epoch_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, seed: int, epoch: int, reseed: Callable[[int], None]
) -> DataLoader:
    """The shuffled batches of one epoch, with torch's and the augmentation's random state derived from
    ``(seed, epoch)`` alone (so that a resumed run draws what an uninterrupted one would)."""
    epoch_seed = seed * 100_003 + epoch
    torch.manual_seed(epoch_seed)
    reseed(epoch_seed)
    generator = torch.Generator().manual_seed(epoch_seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0, generator=generator)


def fit(
    model: torch.nn.Module,
    train_set: torch.utils.data.Dataset,
    val_images: torch.Tensor,
    val_labels: np.ndarray,
    train_labels: np.ndarray,
    settings: TrainSettings,
    device: torch.device,
    reseed_augmentation: Callable[[int], None],
    checkpoint: str | os.PathLike[str] | None = None,
    identity: str = "",
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Train with early stopping on validation AUC; return the best weights and the training curve.

    ``reseed_augmentation(s)`` sets the random state of the dataset's augmentation transforms. A checkpoint
    is resumed only if its settings and ``identity`` (see :func:`run_identity`) equal this run's.
    """
    set_determinism(seed=settings.seed)
    model.to(device)
    n_pos = max(1, int(train_labels.sum()))
    n_neg = max(1, int(len(train_labels) - train_labels.sum()))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([n_neg / n_pos], device=device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    use_amp = settings.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, best_auc, bad_epochs = 0, -1.0, 0
    best_state = copy.deepcopy(model.state_dict())
    curve: list[list[float]] = []
    state = resume(
        checkpoint,
        lambda s: s.get("settings") == asdict(settings) and s.get("identity", "") == identity,
        model, optimizer, scaler, use_amp,
    )
    if state is not None:
        start, best_auc, bad_epochs = int(state["epoch"]) + 1, float(state["best_auc"]), int(state["bad_epochs"])
        best_state, curve = state["best_state"], [list(map(float, row)) for row in state["curve"]]
    for epoch in range(start, settings.max_epochs):
        if bad_epochs >= settings.patience:
            break
        loader = epoch_loader(train_set, settings.batch_size, settings.seed, epoch, reseed_augmentation)
        losses = train_epoch(model, loader, optimizer, loss_fn, scaler, device, use_amp)
        logits = predict(model, val_images, device, settings.batch_size)
        val_auc = safe_auc(val_labels, logits)
        val_loss = float(loss_fn(torch.as_tensor(logits).reshape(-1, 1).to(device), torch.as_tensor(val_labels, dtype=torch.float32).reshape(-1, 1).to(device)))
        curve.append([float(epoch), float(np.mean(losses)), val_loss, val_auc])
        log.info("epoch %d train_loss %.4f val_loss %.4f val_auc %.4f", epoch, np.mean(losses), val_loss, val_auc)
        if val_auc > best_auc:
            best_auc, bad_epochs = val_auc, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if checkpoint:
            save_checkpoint(
                _state(model, optimizer, scaler, epoch, best_auc, best_state, bad_epochs, curve, settings, identity),
                checkpoint,
            )
    table = pd.DataFrame(curve, columns=["epoch", "train_loss", "val_loss", "val_auc"])
    table["epoch"] = table["epoch"].astype(int)
    return best_state, table


def platt_scaling(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Slope and intercept mapping a fold's logits to calibrated log-odds, fitted on its validation scans.

    Why: each fold's model ends on its own logit scale (early stopping at different epochs, class
    weighting), so pooling raw out-of-fold probabilities across folds mixes scales and lowers the pooled
    AUC even when every fold ranks well. A monotone map per fold changes no fold's ranking. Fitted on the
    inner validation split, never on the held-out fold. One class only: the identity.
    """
    if len(np.unique(labels)) < 2:
        return 1.0, 0.0
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(logits.reshape(-1, 1).astype(np.float64), labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Probability from a logit."""
    return 1.0 / (1.0 + np.exp(-x))


def remove_checkpoint(path: str | os.PathLike[str]) -> None:
    """Drop a checkpoint once the rule's outputs exist: it is only for resuming an interrupted job."""
    Path(path).unlink(missing_ok=True)




def run_identity(spec: ModelSpec, modality: str, fold: int, items: dict[str, list[dict[str, object]]]) -> str:
    """Hash of what a checkpoint must have been trained on to be continued: the model spec, modality, fold,
    and the ids, labels and file bytes of the training and validation scans (the test scans do not matter).
    """
    digest = hashlib.sha256(json.dumps([asdict(spec), modality, int(fold)], sort_keys=True).encode())
    for role in ("train", "val"):
        for it in items[role]:
            digest.update(json.dumps([role, it["scan_id"], it["label"]]).encode())
            for channel in CHANNELS[modality]:
                digest.update(Path(str(it[channel])).read_bytes())
    return digest.hexdigest()


def train_fold(
    sheet: pd.DataFrame,
    folds: pd.DataFrame,
    modality: str,
    fold: int,
    spec: ModelSpec,
    settings: TrainSettings,
    threads: int = 1,
    checkpoint: str | os.PathLike[str] | None = None,
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Train the ``modality`` model of one outer fold; predict its held-out scans.

    Returns (checkpoint dict with weights and the spec, training curve, out-of-fold predictions with
    columns ``scan_id, subject_id, modality, fold, label, prob``).
    """
    device = pick_device()
    configure_torch(threads, device)
    this = folds[folds["fold"] == fold]
    ids = {role: this.loc[this["role"] == role, "scan_id"].astype(str).tolist() for role in ("train", "val", "test")}
    items = {role: data.make_items(sheet, ids[role]) for role in ids}
    pre = data.preprocessing(modality, spec.bmode_max, spec.swe_scale)
    aug = data.augmentation()
    train_set = data.cached_dataset(items["train"], pre, aug)
    val_images = data.stack(data.cached_dataset(items["val"], pre))
    test_images = data.stack(data.cached_dataset(items["test"], pre))

    def reseed(seed: int) -> None:
        aug.set_random_state(seed=seed % (2**32))

    set_determinism(seed=settings.seed)
    model = build_model(spec.name, in_channels=len(CHANNELS[modality]), width=spec.width,
                        lateral_pool=spec.lateral_pool)
    best, curve = fit(
        model,
        train_set,
        val_images,
        data.labels_of(items["val"]),
        data.labels_of(items["train"]),
        settings,
        device,
        reseed,
        checkpoint,
        run_identity(spec, modality, fold, items) if checkpoint else "",
    )
    model.load_state_dict(best)
    val_labels = data.labels_of(items["val"])
    slope, intercept = platt_scaling(predict(model, val_images, device, settings.batch_size), val_labels)
    probs = sigmoid(slope * predict(model, test_images, device, settings.batch_size) + intercept)
    oof = pd.DataFrame(
        {
            "scan_id": [it["scan_id"] for it in items["test"]],
            "subject_id": [it["subject_id"] for it in items["test"]],
            "modality": modality,
            "fold": fold,
            "label": data.labels_of(items["test"]),
            "prob": probs,
        }
    )
    saved = {
        "state_dict": best,
        "model": asdict(spec),
        "modality": modality,
        "fold": fold,
        "calibration": [slope, intercept],
    }
    return saved, curve, oof



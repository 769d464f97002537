"""The compute device and torch's threading and determinism settings, for every step that runs a network."""

from __future__ import annotations

import torch


def configure_torch(threads: int, device: torch.device) -> None:
    """Deterministic kernels on CPU; on GPU the fast path (cudnn benchmark) that AMP training wants."""
    torch.set_num_threads(max(1, threads))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.use_deterministic_algorithms(True)


def pick_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")



"""The 3-D classification networks (MONAI), built from scalar config values.

Default: a MONAI ResNet with one basic block per stage and narrow widths. Its stem has stride 2 and no
max-pool, so its first stage ``layer1`` sees the volume at half resolution: a Grad-CAM cell of 2 voxels,
fine enough for 1-3-voxel membranes (attribution.md: a last-block CAM bled a membrane's signal into the fat
on both sides). It trains on a 2-core CPU in the time the default study allows. ``densenet121`` (MONAI's
11 M-parameter DenseNet) is the choice for GPU-scale studies.

ReLUs are built not in place: captum and shap hooks break on in-place activations (attribution.md #7).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from monai.networks.nets import DenseNet121, ResNet

from layer.names import CHANNELS

MODEL_NAMES: tuple[str, ...] = ("resnet", "densenet121")

#: Grad-CAM target layer per network: the finest stage whose features are already class-specific.
GRADCAM_LAYERS: dict[str, str] = {"resnet": "layer1", "densenet121": "features.transition1.relu"}
#: The last block of each network (method ``gradcam_last``): the coarse CAM most published studies show,
#: and the paper's likely resolution (a 3x2x2-cell map of the default resnet on a 48x32x32 volume).
GRADCAM_LAST_LAYERS: dict[str, str] = {"resnet": "layer4", "densenet121": "class_layers.relu"}


def build_model(name: str, in_channels: int, width: int = 8, dropout: float = 0.0) -> torch.nn.Module:
    """A one-logit 3-D classifier; ``width`` is the channel count of the first stage (resnet only)."""
    act = ("relu", {"inplace": False})
    if name == "resnet":
        return ResNet(
            block="basic",
            layers=[1, 1, 1, 1],
            block_inplanes=[width, 2 * width, 4 * width, 8 * width],
            spatial_dims=3,
            n_input_channels=in_channels,
            conv1_t_size=3,
            conv1_t_stride=2,
            no_max_pool=True,
            num_classes=1,
            act=act,
        )
    if name == "densenet121":
        return DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=1, dropout_prob=dropout, act=act)
    raise ValueError(f"unknown model '{name}'; choose one of {', '.join(MODEL_NAMES)}")


def n_parameters(model: torch.nn.Module) -> int:
    """Trainable parameter count, for logs and the report."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class ModelSpec:
    """Which network, and how the inputs are scaled (config ``model:`` and ``input:``)."""

    name: str = "resnet"
    width: int = 8
    bmode_max: float = 1.0
    swe_scale: float = 5.0


def load_model(
    path: str | os.PathLike[str], device: torch.device | None = None
) -> tuple[torch.nn.Module, ModelSpec, str, int]:
    """Rebuild a trained model from its file (weights only): (model in eval mode, spec, modality, fold)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    spec = ModelSpec(**saved["model"])
    modality = str(saved["modality"])
    model = build_model(spec.name, in_channels=len(CHANNELS[modality]), width=spec.width)
    model.load_state_dict(saved["state_dict"])
    model.to(device or torch.device("cpu")).eval()
    return model, spec, modality, int(saved["fold"])



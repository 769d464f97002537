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


class LateralPooled(torch.nn.Module):
    """``net`` behind a mean over ``k x k`` voxels across the lateral and elevation axes; depth is kept.

    Why: every planted or clinical layer effect is a property of a horizontal band (its thickness, mean
    echo, texture, stiffness), and speckle is independent between lateral neighbours; averaging them keeps
    a one-voxel membrane's depth and its mean grey level and removes most of the speckle variance the
    network would otherwise have to learn to ignore, at ``1 / k^2`` of the compute. Input ``[B, C, D, H,
    W]``; the network sees ``[B, C, D, ceil(H / k), ceil(W / k)]`` (a last partial window is averaged over
    the voxels it has, so no voxel is dropped and every voxel keeps a gradient for attribution).
    """

    def __init__(self, net: torch.nn.Module, k: int) -> None:
        super().__init__()
        self.pool = torch.nn.AvgPool3d((1, k, k), stride=(1, k, k), ceil_mode=True)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.pool(x))


def build_model(
    name: str, in_channels: int, width: int = 8, dropout: float = 0.0, lateral_pool: int = 1
) -> torch.nn.Module:
    """A one-logit 3-D classifier; ``width`` is the channel count of the first stage (resnet only);
    ``lateral_pool`` > 1 puts the network behind :class:`LateralPooled`."""
    if lateral_pool > 1:
        return LateralPooled(build_model(name, in_channels, width, dropout), lateral_pool)
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


def gradcam_layers(spec: ModelSpec) -> tuple[str, str]:
    """(fine, last) Grad-CAM target layers of the network ``spec`` builds (:data:`GRADCAM_LAYERS`,
    :data:`GRADCAM_LAST_LAYERS`), inside the :class:`LateralPooled` wrapper where there is one."""
    prefix = "net." if spec.lateral_pool > 1 else ""
    return prefix + GRADCAM_LAYERS[spec.name], prefix + GRADCAM_LAST_LAYERS[spec.name]


def n_parameters(model: torch.nn.Module) -> int:
    """Trainable parameter count, for logs and the report."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class ModelSpec:
    """Which network, and how the inputs are scaled (config ``model:`` and ``input:``)."""

    name: str = "resnet"
    width: int = 8
    lateral_pool: int = 1
    bmode_max: float = 1.0
    swe_scale: float = 5.0


def load_model(
    path: str | os.PathLike[str], device: torch.device | None = None
) -> tuple[torch.nn.Module, ModelSpec, str, int]:
    """Rebuild a trained model from its file (weights only): (model in eval mode, spec, modality, fold)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    spec = ModelSpec(**saved["model"])
    modality = str(saved["modality"])
    model = build_model(spec.name, in_channels=len(CHANNELS[modality]), width=spec.width,
                        lateral_pool=spec.lateral_pool)
    model.load_state_dict(saved["state_dict"])
    model.to(device or torch.device("cpu")).eval()
    return model, spec, modality, int(saved["fold"])



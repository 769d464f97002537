"""The 3-D classification networks (MONAI), built from scalar config values.

Default: a MONAI ResNet with one basic block per stage and narrow widths. Its stem has stride 2 and no
max-pool, so its first stage ``layer1`` sees the volume at half resolution: a Grad-CAM cell of 2 voxels,
fine enough for 1-3-voxel membranes (attribution.md: a last-block CAM bled a membrane's signal into the fat
on both sides). It trains on a 2-core CPU in the time the default study allows. ``densenet121`` (MONAI's
11 M-parameter DenseNet) is the choice for GPU-scale studies.

ReLUs are built not in place: captum and shap hooks break on in-place activations (attribution.md #7).
"""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet121, ResNet

MODEL_NAMES: tuple[str, ...] = ("resnet", "densenet121")

#: Grad-CAM target layer per network: the finest stage whose features are already class-specific.
GRADCAM_LAYERS: dict[str, str] = {"resnet": "layer1", "densenet121": "features.transition1.relu"}


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

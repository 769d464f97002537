"""Per-layer image statistics of one scan: what a clinician measures in each tissue layer.

Why: the network is judged against what the images show, not against the planted features. Speckle,
partial volume and the acquisition model attenuate a planted effect before any network sees it (a DFM
echogenicity d of 3 read 1.35 in the grey levels inside the DFM), so the per-layer statistics measured in
the true (or drawn) layer maps are the ceiling a layer-wise reader can reach, and the classical baseline
beside the network's answer.

Each planted feature shows in one statistic (:data:`SHOWS`): thickness in the layer map, echogenicity in
the mean echo, texture in the echo SD (speckle and tissue heterogeneity), stiffness in the mean
shear-wave speed.
"""

from __future__ import annotations

import numpy as np

from layer.names import LABEL_VALUES, LAYERS

#: The per-layer statistics, in table order.
IMAGE_FEATURES: tuple[str, ...] = ("thickness_mm", "echo_mean", "echo_sd", "swe_mean")
#: The statistic in which each planted feature (layer.names.FEATURES) shows.
SHOWS: dict[str, str] = {
    "thickness": "thickness_mm",
    "echogenicity": "echo_mean",
    "texture": "echo_sd",
    "stiffness": "swe_mean",
}
#: The statistics a model of each modality sees (thickness: the layer map, whatever the input).
MODALITY_FEATURES: dict[str, tuple[str, ...]] = {
    "bmode": ("thickness_mm", "echo_mean", "echo_sd"),
    "swe": ("thickness_mm", "swe_mean"),
    "fused": IMAGE_FEATURES,
}


def scan_features(
    bmode: np.ndarray, swe: np.ndarray | None, labels: np.ndarray, depth_mm: float
) -> np.ndarray:
    """The :data:`IMAGE_FEATURES` of each of the six layers of one scan, ``[6, 4]`` (layers in
    :data:`layer.names.LAYERS` order).

    Args:
        bmode: ``[D, H, W]`` B-mode grey levels, depth first.
        swe: ``[D, H, W]`` shear-wave speed (m/s), NaN outside the SWE box; None for a B-mode-only scan.
        labels: ``[D, H, W]`` layer map (0 background, 1..6 the layers).
        depth_mm: voxel size along depth.

    Thickness is the mean over the depth columns (``H x W``) of the layer's voxel count times
    ``depth_mm`` (0 in a column where the layer is absent). Echo mean and SD (population SD) are over the
    layer's voxels; the SWE mean over its voxels with a defined speed. A layer without a voxel, or
    without a defined speed, gets NaN for that statistic.
    """
    if bmode.shape != labels.shape or (swe is not None and swe.shape != labels.shape):
        raise ValueError(f"volumes {bmode.shape} / {None if swe is None else swe.shape} differ from the map {labels.shape}")
    out = np.full((len(LAYERS), len(IMAGE_FEATURES)), np.nan)
    columns = labels.shape[1] * labels.shape[2]
    for i, name in enumerate(LAYERS):
        mask = labels == LABEL_VALUES[name]
        n = int(mask.sum())
        out[i, 0] = n * depth_mm / columns
        if n:
            echo = bmode[mask].astype(np.float64)
            out[i, 1], out[i, 2] = echo.mean(), echo.std()
        if swe is not None and n:
            speed = swe[mask].astype(np.float64)
            speed = speed[np.isfinite(speed)]
            if speed.size:
                out[i, 3] = speed.mean()
    return out


__all__ = ["IMAGE_FEATURES", "MODALITY_FEATURES", "SHOWS", "scan_features"]

"""The segmentation figure: predicted against reference layer maps over B-mode, for held-out scans.

One row per scan: the B-mode slice at mid-elevation (depth down, lateral across) with the reference
boundaries (solid) and the predicted ones (dashed), and the predicted map itself, so a reader sees where
the network moves a membrane, not just a Dice number.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from layer.figures.study import _save, _style
from layer.names import LAYERS


def plot_segmentation(
    scans: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    png: str | os.PathLike[str],
    reference_name: str = "drawn",
) -> None:
    """``scans``: (scan_id, B-mode, reference map, predicted map), each ``[D, H, W]``; writes the PNG.

    Boundaries are the contours of the label map between consecutive labels (levels 0.5 .. 5.5): labels
    rise monotonically down a column, so each level is one layer's top edge.
    """
    colours = ListedColormap(["#ffffff", *sns.color_palette("colorblind", len(LAYERS))])
    levels = np.arange(len(LAYERS)) + 0.5
    with _style():
        n = max(1, len(scans))
        fig = Figure(figsize=(7.5, 2.4 * n + 0.5), layout="constrained")
        axes = fig.subplots(n, 2, squeeze=False)
        for row, (scan_id, bmode, ref, pred) in zip(axes, scans):
            mid = bmode.shape[2] // 2
            image, r, p = bmode[:, :, mid], ref[:, :, mid], pred[:, :, mid]
            row[0].imshow(image, cmap="gray", aspect="auto", interpolation="nearest")
            row[0].contour(r, levels=levels, colors="tab:green", linestyles="-", linewidths=1.0)
            row[0].contour(p, levels=levels, colors="tab:red", linestyles="--", linewidths=1.0)
            row[0].set_title(f"{scan_id}: {reference_name} (green) vs predicted (red)", fontsize=8)
            row[1].imshow(p, cmap=colours, vmin=-0.5, vmax=len(LAYERS) + 0.5, aspect="auto", interpolation="nearest")
            row[1].set_title("predicted map", fontsize=8)
            for ax in row:
                ax.grid(False)
                ax.set_xlabel("lateral (voxels)")
                ax.set_ylabel("depth (voxels)")
        if not scans:
            axes[0, 0].text(0.5, 0.5, "no held-out scan", ha="center", va="center")
        handles = [Patch(color=colours(k), label=name) for k, name in enumerate(LAYERS, start=1)]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(LAYERS), fontsize=7, frameon=False)
        _save(fig, png)

"""Preview figure of one scan: B-mode, SWE and layer map, mid-slices in two planes, in millimetres.

Why this exists: the only check that the phantom looks like lumbar ultrasound is a person looking at it, so
the figure keeps the physical aspect ratio and shows depth increasing downward, as a scanner does.
"""

from __future__ import annotations

import os

import numpy as np

from layer.io import atomic_path
from layer.names import LAYERS

#: Background, then one colour per layer (names.LAYERS order).
LAYER_COLOURS = ("#000000", "#f4a6a6", "#ffe08a", "#e8590c", "#c9a227", "#d6336c", "#4dabf7")
SWE_RANGE = (0.0, 5.0)


def render_preview(
    bmode: np.ndarray,
    swe: np.ndarray,
    layers: np.ndarray,
    spacing: tuple[float, float, float] | float,
    png_path: str | os.PathLike[str],
    title: str | None = None,
) -> None:
    """Write a PNG: rows = depth x lateral (mid elevation) and depth x elevation (mid lateral) planes."""
    import matplotlib  # imported here: the command line should not pay for it unless it draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    if isinstance(spacing, int | float):
        spacing = (float(spacing),) * 3
    dz, dx, dy = (float(s) for s in spacing)
    d, h, w = bmode.shape
    planes = (
        ("depth x lateral (mid elevation)", np.s_[:, :, w // 2], h, dx, "lateral (mm)"),
        ("depth x elevation (mid lateral)", np.s_[:, h // 2, :], w, dy, "elevation (mm)"),
    )
    layer_cmap = ListedColormap(LAYER_COLOURS)
    layer_norm = BoundaryNorm(np.arange(-0.5, len(LAYER_COLOURS) + 0.5), layer_cmap.N)
    swe_cmap = plt.get_cmap("turbo").with_extremes(bad="#d9d9d9")
    # Panel height follows the physical depth-to-width ratio of the wider plane (3 panels of ~4 inches).
    ratio = d * dz / max(h * dx, w * dy)
    fig, axes = plt.subplots(2, 3, figsize=(13, 2 * 3.6 * min(max(ratio, 0.5), 2.5) + 1.6), squeeze=False)
    for row, (name, sl, n, step, xlabel) in enumerate(planes):
        # Voxel i is centred at i * step (layer.io.affine_from_spacing); depth grows downward.
        extent = (-0.5 * step, (n - 0.5) * step, (d - 0.5) * dz, -0.5 * dz)
        panels = (
            (bmode[sl], dict(cmap="gray", vmin=0.0, vmax=1.0), "B-mode (grey level)"),
            (np.ma.masked_invalid(swe[sl]), dict(cmap=swe_cmap, vmin=SWE_RANGE[0], vmax=SWE_RANGE[1]), "SWE (m/s)"),
            (layers[sl], dict(cmap=layer_cmap, norm=layer_norm, interpolation="nearest"), "layers"),
        )
        for col, (img, kw, label) in enumerate(panels):
            ax = axes[row, col]
            im = ax.imshow(img, extent=extent, aspect="equal", interpolation=kw.pop("interpolation", "nearest"), **kw)
            ax.set_title(f"{label}\n{name}", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel("depth (mm)", fontsize=8)
            ax.tick_params(labelsize=7)
            if col < 2:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    handles = [Patch(color=LAYER_COLOURS[0], label="0 background")]
    handles += [Patch(color=LAYER_COLOURS[i + 1], label=f"{i + 1} {n}") for i, n in enumerate(LAYERS)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97 if title else 1))
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)

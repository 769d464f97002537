"""Shear-wave elastography: intrinsic speed per tissue, then what a device reports.

Why keep intrinsic and observed apart: features.tsv holds the planted (intrinsic) speed; the map a model sees
is smoothed (a 3.8 m/s, 1.3 mm DFM reads about 2.8 m/s, phantom.md), noisy, biased with depth, has dropout and
exists only inside the SWE box. Artefacts, with their numbers (phantom.md unless marked ASSUMPTION):
- partial volume over each voxel's fine samples, then Gaussian smoothing (FWHM ~1.6 mm; phantom: 1-2 mm);
- muscle anisotropy: along / across fibres ~1.7x in speed; the push propagates across the fibres, a scan's
  probe rotation ``probe_angle_deg`` mixes in the along-fibre speed;
- probe pressure stiffens fat and muscle by up to 10 % (ASSUMPTION);
- speed falls with depth (ex vivo 4.56 -> 1.81 m/s, PMC6148312): here a milder 15 % per 30 mm (ASSUMPTION);
- multiplicative noise, CV 10 % (phantom: 8-15 %), correlated over about a voxel;
- dropout (NaN) in patches, rising from 1 % at the top to 8 % at the bottom of the box and preferring
  low-signal voxels (ASSUMPTION; <= 8 % of every box row, so the cohort validator accepts the scan);
- NaN outside the box: full elevation, the central 60 % laterally, from the deepest skin row of the box columns
  down to 5 mm below the deepest DFM, never into the lamina (ASSUMPTION);
- clipping to the device range 0.5-10 m/s (ASSUMPTION).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from layer.synth.anatomy import DEEP_FAT, DERMIS, DFM, GEL, MUSCLE, SUP_FAT, ScanParams, smooth_field

SMOOTH_SIGMA_MM = 0.7
ANISOTROPY = 1.7
PRESSURE_STIFFENING = 0.10
DEPTH_BIAS_PER_MM = -math.log(0.85) / 30.0
NOISE_CV = 0.10
DROPOUT_TOP, DROPOUT_BOTTOM = 0.01, 0.08
BOX_LATERAL_FRACTION = 0.6
BOX_MUSCLE_MM = 5.0
DEVICE_RANGE = (0.5, 10.0)


def observed_speed_lut(params: ScanParams) -> np.ndarray:
    """Speed (m/s) per tissue code 0-7 before smoothing: intrinsic values, anisotropy and pressure applied.

    Gel and bone take their neighbour's value so smoothing at the skin and lamina does not drag in zeros.
    """
    c = np.asarray(params.stiffness, dtype=np.float64).copy()
    phi = math.radians(params.probe_angle_deg)
    c[MUSCLE - 1] *= math.sqrt(math.cos(phi) ** 2 + (ANISOTROPY * math.sin(phi)) ** 2)
    for code in (SUP_FAT, DEEP_FAT, MUSCLE):
        c[code - 1] *= 1.0 + PRESSURE_STIFFENING * params.pressure
    return np.array([c[DERMIS - 1], *c, c[MUSCLE - 1]], dtype=np.float32)


def swe_box(labels: np.ndarray, boundaries: np.ndarray, dz: float) -> tuple[slice, slice, slice]:
    """The axis-aligned SWE box of a scan (depth, lateral, elevation slices)."""
    depth, h, _ = labels.shape
    x0 = int(round(h * (1.0 - BOX_LATERAL_FRACTION) / 2.0))
    cols = slice(x0, h - x0)
    tissue = labels[:, cols] != GEL
    first_tissue = np.argmax(tissue, axis=0)
    top = int(first_tissue.max())
    dfm_bottom = boundaries[DFM][cols].max()
    lamina = boundaries[MUSCLE][cols].min()
    bottom = min(int(math.ceil((dfm_bottom + BOX_MUSCLE_MM) / dz)), int(math.floor(lamina / dz)), depth)
    bottom = max(bottom, top + 1)
    return slice(top, bottom), cols, slice(None)


def dropout_mask(score: np.ndarray) -> np.ndarray:
    """Boolean dropout inside the box: in each depth row the top-scoring fraction, rising with depth."""
    rows = score.shape[0]
    flat = score.reshape(rows, -1)
    frac = DROPOUT_TOP + (DROPOUT_BOTTOM - DROPOUT_TOP) * (np.arange(rows) / max(rows - 1, 1)) ** 2
    n_drop = np.floor(frac * flat.shape[1]).astype(np.int64)
    rank = np.argsort(np.argsort(-flat, axis=1, kind="stable"), axis=1, kind="stable")
    return (rank < n_drop[:, None]).reshape(score.shape)


def render_swe(
    params: ScanParams,
    tissue: np.ndarray,
    labels: np.ndarray,
    boundaries: np.ndarray,
    grey: np.ndarray,
    spacing: tuple[float, float, float],
    fine: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Observed SWE map (float32 m/s, NaN outside the box and at dropout) of one scan."""
    dz, dx, dy = spacing
    depth, h, w = labels.shape
    speed = observed_speed_lut(params)[tissue].reshape(depth, fine, h, w).mean(axis=1)
    speed = ndimage.gaussian_filter(speed, np.divide(SMOOTH_SIGMA_MM, spacing), mode="nearest", truncate=3.0)
    below_skin = np.maximum(np.arange(depth)[:, None, None] * dz - boundaries[GEL][None], 0.0)
    speed *= np.exp(-DEPTH_BIAS_PER_MM * below_skin).astype(np.float32)
    speed *= np.exp(NOISE_CV * smooth_field(rng, (depth, h, w), 0.7) - 0.5 * NOISE_CV**2)
    box = swe_box(labels, boundaries, dz)
    patches = smooth_field(rng, speed[box].shape, (1.5 / dz, 1.5 / dx, 1.5 / dy))
    low_signal = -(grey[box] - grey[box].mean()) / max(float(grey[box].std()), 1e-6)
    inside = np.clip(speed[box], *DEVICE_RANGE)
    inside[dropout_mask(patches + 0.5 * low_signal)] = np.nan
    out = np.full((depth, h, w), np.nan, dtype=np.float32)
    out[box] = inside
    return out

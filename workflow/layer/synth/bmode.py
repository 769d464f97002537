"""B-mode by the convolution model (Bamber & Dickinson 1980), fast enough for thousands of 3-D scans.

Chain: complex Gaussian scatterers with variance = local backscatter -> separable Gaussian PSF (axial on the
fine grid, then a coherent average over each voxel's fine samples, then lateral and elevation) -> round-trip
attenuation -> electronic noise -> time-gain compensation (population-average, so a +/- few dB residual
stays) -> envelope -> log compression to a fixed display range.

Why the coherent voxel average: averaging the complex field (not the envelope) is a linear filter, so a
homogeneous region keeps fully developed speckle with a Rayleigh envelope (mean/SD = 1.91, Wagner et al.
1983) on the output grid, while a sub-voxel membrane still contributes in proportion to its thickness.

Output: float32 display grey level in [0, 1] = (20 log10(envelope) + gain - TOP_DB + DYNAMIC_RANGE_DB) /
DYNAMIC_RANGE_DB, clipped; the mapping is fixed (not per image), so gain and attenuation stay visible.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

#: PSF sigmas (mm): axial, lateral, elevation (phantom.md).
PSF_SIGMA_MM = (0.15, 0.25, 0.6)
#: Centre frequency (MHz) for attenuation (ASSUMPTION: linear probe 5-15 MHz, phantom.md uses about 7.5).
FREQUENCY_MHZ = 7.5
#: Attenuation at 1 MHz (dB/cm) by tissue code 0-7 (phantom.md): gel ~ water, skin 0.35, fat 0.63, fascia
#: (connective tissue) 1.57, muscle 0.96 (beam across the fibres), bone: same as muscle (shadowed anyway).
ATTENUATION_DB_CM_MHZ = np.array([0.002, 0.35, 0.63, 1.57, 0.63, 1.57, 0.96, 0.96], dtype=np.float32)
#: Electronic noise (dB re fascia backscatter), added before TGC, so it rises with depth (ASSUMPTION, by eye).
NOISE_DB = -90.0
#: Display mapping (ASSUMPTION, phantom.md: 40-60 dB dynamic range).
DYNAMIC_RANGE_DB = 40.0
TOP_DB = 5.0


@functools.cache
def _kernel_power(sigma_vox: float) -> float:
    """Sum of squared weights of scipy's Gaussian kernel (truncate 3): its white-noise power gain."""
    impulse = np.zeros(64 + 2 * int(3 * sigma_vox + 1))
    impulse[len(impulse) // 2] = 1.0
    k = ndimage.gaussian_filter1d(impulse, sigma_vox, truncate=3.0, mode="constant")
    return float(np.sum(k**2))


@functools.cache
def _axial_power(sigma_fine: float, fine: int) -> float:
    """White-noise power gain of the axial Gaussian followed by the coherent mean over ``fine`` samples."""
    impulse = np.zeros(fine * 64 + 2 * int(3 * sigma_fine + 1))
    impulse[len(impulse) // 2] = 1.0
    k = ndimage.gaussian_filter1d(impulse, sigma_fine, truncate=3.0, mode="constant")
    k = np.convolve(k, np.full(fine, 1.0 / fine))
    return float(np.sum(k**2))


def speckle_field(
    amplitude: np.ndarray, spacing: tuple[float, float, float], fine: int, rng: np.random.Generator
) -> np.ndarray:
    """Complex PSF-filtered scatterer field on the voxel grid, scaled so E|c|^2 = amplitude^2 where homogeneous.

    ``amplitude`` is sqrt(backscatter) on the fine axial grid, shape (depth * fine, H, W).
    """
    dz, dx, dy = spacing
    n = amplitude.shape
    scat = rng.standard_normal((2, *n), dtype=np.float32)
    field = (scat[0] + 1j * scat[1]).astype(np.complex64)
    field *= amplitude * np.float32(np.sqrt(0.5))
    sig_a = PSF_SIGMA_MM[0] / (dz / fine)
    field = ndimage.gaussian_filter1d(field, sig_a, axis=0, truncate=3.0, mode="reflect")
    field = field.reshape(n[0] // fine, fine, n[1], n[2]).mean(axis=1)
    sig_l, sig_e = PSF_SIGMA_MM[1] / dx, PSF_SIGMA_MM[2] / dy
    field = ndimage.gaussian_filter1d(field, sig_l, axis=1, truncate=3.0, mode="wrap")
    field = ndimage.gaussian_filter1d(field, sig_e, axis=2, truncate=3.0, mode="wrap")
    gain = _axial_power(round(sig_a, 6), fine) * _kernel_power(round(sig_l, 6)) * _kernel_power(round(sig_e, 6))
    return field * np.float32(1.0 / np.sqrt(gain))


def round_trip_attenuation_db(tissue: np.ndarray, dz_fine: float, fine: int) -> np.ndarray:
    """Two-way attenuation (dB) at each voxel centre, integrated over the fine tissue codes above it."""
    alpha = ATTENUATION_DB_CM_MHZ[tissue] * np.float32(FREQUENCY_MHZ * dz_fine / 10.0)  # dB per fine step
    one_way = np.cumsum(alpha, axis=0) - 0.5 * alpha
    d = tissue.shape[0] // fine
    return 2.0 * one_way[fine // 2 :: fine][:d]


def tgc_db(depths_mm: np.ndarray, reference_boundaries: np.ndarray, drift_db: float, fov_mm: float) -> np.ndarray:
    """Time-gain compensation (dB) per depth: the attenuation of the population-average stack plus drift.

    Why population-average: a scanner's TGC is set once, not per tissue column, so a subject with more fat
    (which attenuates less than muscle) looks brighter at depth; ``drift_db`` adds the operator's imperfect
    slider setting, linear in depth, +drift at the bottom and -drift at the top (phantom.md: +/- 3 dB).
    """
    tissue = np.searchsorted(reference_boundaries, depths_mm, side="right").astype(np.int64)
    step = np.diff(depths_mm, prepend=0.0)
    alpha = ATTENUATION_DB_CM_MHZ[np.minimum(tissue, 7)] * FREQUENCY_MHZ * step / 10.0
    return 2.0 * np.cumsum(alpha) + drift_db * (2.0 * depths_mm / fov_mm - 1.0)


def envelope(
    speckle: np.ndarray, attenuation_db: np.ndarray, tgc: np.ndarray, gain_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Pre-log envelope (float32): attenuate, add complex electronic noise, compensate, take the magnitude."""
    noise = rng.standard_normal((2, *speckle.shape), dtype=np.float32)
    sigma_n = np.float32(10.0 ** (NOISE_DB / 20.0) * np.sqrt(0.5))
    att = np.power(np.float32(10.0), -attenuation_db / np.float32(20.0))
    rf = speckle * att + (noise[0] + 1j * noise[1]) * sigma_n
    comp = np.power(10.0, (tgc + gain_db) / 20.0).astype(np.float32)
    return np.abs(rf).astype(np.float32) * comp[:, None, None]


def log_compress(env: np.ndarray) -> np.ndarray:
    """Display grey level in [0, 1] from the envelope, fixed TOP_DB and DYNAMIC_RANGE_DB."""
    level = 20.0 * np.log10(np.maximum(env, np.float32(1e-12)))
    grey = (level - np.float32(TOP_DB - DYNAMIC_RANGE_DB)) / np.float32(DYNAMIC_RANGE_DB)
    return np.clip(grey, 0.0, 1.0).astype(np.float32)

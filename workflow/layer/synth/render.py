"""Render one scan (B-mode, SWE, label map) from its physical values; time it for the benchmark."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from layer.names import LAYERS
from layer.synth import anatomy, bmode, swe
from layer.synth.anatomy import ScanParams
from layer.synth.config import load_model


@dataclass(frozen=True)
class RenderedScan:
    """One scan's arrays, axes (depth, lateral, elevation); ``envelope`` only when asked for."""

    bmode: np.ndarray  # float32 grey level in [0, 1]
    swe: np.ndarray  # float32 m/s, NaN outside the SWE box and at dropout
    layers: np.ndarray  # uint8 label map, names.LABEL_VALUES
    envelope: np.ndarray | None = None  # float32 pre-log envelope (after TGC, before log compression)


@functools.cache
def reference_boundaries() -> np.ndarray:
    """Interfaces (mm) of the population-average column, the stack the scanner's TGC is set for."""
    pop = load_model()["population"]["thickness"]
    t = np.array([pop[layer]["mean"] for layer in LAYERS])
    t[[anatomy.SUP_FAT - 1, anatomy.DEEP_FAT - 1]] *= 1.0 - 0.5 * anatomy.PRESSURE_FAT_COMPRESSION
    return np.concatenate([[1.25], 1.25 + np.cumsum(t)])


def render_scan(
    params: ScanParams,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    keep_envelope: bool = False,
) -> RenderedScan:
    """Render B-mode, SWE and labels of one scan; all randomness comes from ``rng``."""
    depth = shape[0]
    dz = spacing[0]
    fine = anatomy.fine_factor(dz)
    boundaries = anatomy.draw_boundaries(params, shape, spacing, rng)
    zf = anatomy.fine_depths(depth, fine, dz)
    tissue = anatomy.tissue_at(zf, boundaries)
    labels = anatomy.label_map(boundaries, depth, dz)
    db = anatomy.backscatter_db(params, boundaries, tissue, zf, spacing, fine, rng)
    amplitude = np.power(np.float32(10.0), db / np.float32(20.0))
    speckle = bmode.speckle_field(amplitude, spacing, fine, rng)
    attenuation = bmode.round_trip_attenuation_db(tissue, dz / fine, fine)
    depths = np.arange(depth) * dz
    tgc = bmode.tgc_db(depths, reference_boundaries(), params.tgc_drift_db, depth * dz)
    env = bmode.envelope(speckle, attenuation, tgc, params.gain_db, rng)
    grey = bmode.log_compress(env)
    swe_map = swe.render_swe(params, tissue, labels, boundaries, grey, spacing, fine, rng)
    return RenderedScan(bmode=grey, swe=swe_map, layers=labels, envelope=env if keep_envelope else None)


def time_scan(shape: tuple[int, int, int], spacing: tuple[float, float, float] | float, repeats: int = 5) -> float:
    """Median wall seconds to render one typical scan (B-mode + SWE + labels, no I/O) in this process.

    Thread count is whatever the process has; for a one-core figure set OMP_NUM_THREADS=1 (and friends) or
    run under ``taskset -c 0``. One warm-up render is not counted.
    """
    if isinstance(spacing, int | float):
        spacing = (float(spacing),) * 3
    params = ScanParams.typical()
    rng = np.random.default_rng(0)
    render_scan(params, shape, spacing, rng)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        render_scan(params, shape, spacing, rng)
        times.append(time.perf_counter() - start)
    return float(np.median(times))

"""Anatomy of one synthetic scan: layer interfaces, the label map, and the backscatter map of each tissue.

Why a fine axial grid: at 0.6-0.9 mm voxels the SFM (0.6 mm) and the DFM (1.3 mm, with a sub-millimetre cleft)
are one or two voxels thick, so the tissue is described on a grid ``fine`` times finer in depth (about
0.15 mm, phantom.md) and the B-mode and SWE are formed from it; labels are sampled at voxel centres.

Axes everywhere: (depth, lateral, elevation); depth 0 is the probe face, so voxel ``i`` is centred at
``i * spacing[0]`` mm (the affine of layer.io.affine_from_spacing). Tissue codes: 0 gel, 1-6 the layers of
names.LAYERS, 7 bone (lamina surface and its acoustic shadow); the label map writes 7 as 0 (background).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from layer.names import FEATURES, LAYERS
from layer.synth.config import load_model

GEL, DERMIS, SUP_FAT, SFM, DEEP_FAT, DFM, MUSCLE, BONE = range(8)
N_TISSUES = 8

#: Target fine axial step (mm): about the axial PSF sigma (phantom.md: simulate at 2-4x finer axial sampling).
FINE_STEP_MM = 0.16
#: Relative SD of each layer's thickness across the probe face and the interface correlation lengths
#: (ASSUMPTION: interfaces undulate with sigma 0.2-1 mm over 5-20 mm, phantom.md).
THICKNESS_CV = np.array([0.08, 0.12, 0.15, 0.12, 0.15, 0.04])
SKIN_UNDULATION_MM = 0.25
CORRELATION_MM = (5.0, 20.0)
#: Lamina surface: tilt across the lateral axis (SD, mm per mm) and the bright surface thickness (ASSUMPTION).
BONE_TILT_SD = 0.08
BONE_SURFACE_MM = 0.8
#: Muscle always left between the DFM and the bottom of the image (see compress_to_fit).
MIN_MUSCLE_MM = 3.0
#: ASSUMPTION: full probe pressure compresses both fat layers by 15 % (fat is the compliant tissue).
PRESSURE_FAT_COMPRESSION = 0.15

#: Backscatter (dB re fascia) of what is not a layer parameter (ASSUMPTION, tuned by eye on previews).
GEL_DB = -100.0  # anechoic coupling gel
ENTRY_DB = 3.0  # specular gel-skin entry echo
ENTRY_MM = 0.2
BONE_DB = 8.0  # lamina surface, brighter than fascia
SHADOW_DB = -80.0  # nothing returns from below bone


@dataclass(frozen=True)
class ScanParams:
    """Physical values of one scan (arrays in names.LAYERS order) and its acquisition nuisance."""

    thickness: np.ndarray  # mm, intrinsic
    echogenicity: np.ndarray  # dB re fascia, parenchyma
    texture: np.ndarray  # heterogeneity index, 1 = typical
    stiffness: np.ndarray  # m/s, intrinsic shear-wave speed
    pressure: float = 0.5  # 0-1, relative probe pressure
    gain_db: float = 0.0
    standoff_mm: float = 1.25  # coupling gel between probe face and skin
    tgc_drift_db: float = 0.0  # residual TGC error at the bottom of the image (opposite sign at the top)
    probe_angle_deg: float = 0.0  # shear-wave propagation vs across-fibre direction

    @classmethod
    def from_values(cls, values: Mapping[tuple[str, str], float], **nuisance: float) -> ScanParams:
        """From {(layer, feature): value} (a row of truth.wide_values) plus nuisance keywords."""
        arrays = {f: np.array([float(values[(layer, f)]) for layer in LAYERS]) for f in FEATURES}
        return cls(**arrays, **{k: float(v) for k, v in nuisance.items()})

    @classmethod
    def typical(cls) -> ScanParams:
        """Population means, mid-range nuisance: the scan timed by the benchmark."""
        pop = load_model()["population"]
        return cls.from_values({(layer, f): pop[f][layer]["mean"] for layer in LAYERS for f in FEATURES})


def fine_factor(spacing_depth: float) -> int:
    """Fine samples per voxel along depth (at least 2)."""
    return max(2, math.ceil(spacing_depth / FINE_STEP_MM - 1e-9))


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: tuple[float, ...] | float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit SD (float32): the one random texture primitive."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    field = ndimage.gaussian_filter(noise, sigma_vox, mode="wrap", truncate=3.0)
    sd = float(field.std())
    return field / sd if sd > 0 else field


def upsample_depth(field: np.ndarray, fine: int) -> np.ndarray:
    """Linear interpolation of a voxel-grid field to the fine axial grid (voxel centres stay put)."""
    depth = field.shape[0]
    q = (np.arange(depth * fine, dtype=np.float32) + 0.5) / fine - 0.5
    i0 = np.clip(np.floor(q).astype(np.int64), 0, max(depth - 2, 0))
    w = np.clip(q - i0, 0.0, 1.0).reshape((-1,) + (1,) * (field.ndim - 1)).astype(np.float32)
    i1 = np.minimum(i0 + 1, depth - 1)
    return field[i0] * (1.0 - w) + field[i1] * w


def fine_depths(depth: int, fine: int, dz: float) -> np.ndarray:
    """Depth (mm) of every fine sample; voxel i covers [(i - 0.5) dz, (i + 0.5) dz)."""
    return ((np.arange(depth * fine) + 0.5) / fine - 0.5) * dz


def compress_to_fit(skin: np.ndarray, t: np.ndarray, bottom_mm: float) -> np.ndarray:
    """Scale both fat layers so that >= MIN_MUSCLE_MM of muscle stays above ``bottom_mm`` in every column.

    Why: every layer must be in every scan at every supported shape. Like a sonographer pressing harder, this
    squeezes only fat, and only in the rare scan (thick fat, shallow field of view) that needs it.
    """
    fat = t[SUP_FAT - 1] + t[DEEP_FAT - 1]
    rest = skin + t[DERMIS - 1] + t[SFM - 1] + t[DFM - 1]
    room = bottom_mm - MIN_MUSCLE_MM - rest
    scale = float(np.min(room / fat))
    if scale < 1.0:
        if scale <= 0.1:
            raise ValueError("field of view too shallow for the drawn anatomy")
        t = t.copy()
        t[SUP_FAT - 1] *= scale
        t[DEEP_FAT - 1] *= scale
    return t


def draw_boundaries(
    params: ScanParams, shape: tuple[int, int, int], spacing: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """Depth (mm) of the 7 interfaces per column, shape (7, H, W): skin, the 5 inner interfaces, lamina.

    Thickness fields are the scan's thickness times (1 + cv * smooth field), so each layer keeps its planted
    mean thickness and interfaces never cross; the undulation accumulates with depth as in real images.
    """
    _, h, w = shape
    dx, dy = spacing[1], spacing[2]
    t_mean = np.asarray(params.thickness, dtype=np.float64).copy()
    t_mean[[SUP_FAT - 1, DEEP_FAT - 1]] *= 1.0 - PRESSURE_FAT_COMPRESSION * params.pressure
    fields = []
    for _ in range(7):
        corr = rng.uniform(*CORRELATION_MM)
        fields.append(np.clip(smooth_field(rng, (h, w), (corr / dx / 2.0, corr / dy / 2.0)), -2.5, 2.5))
    skin = np.maximum(params.standoff_mm + SKIN_UNDULATION_MM * fields[0], 0.1)
    t = t_mean[:, None, None] * (1.0 + THICKNESS_CV[:, None, None] * np.stack(fields[1:]))
    lateral = (np.arange(h) - (h - 1) / 2.0) * dx
    t[MUSCLE - 1] += rng.normal(0.0, BONE_TILT_SD) * lateral[:, None]
    t = compress_to_fit(skin, t, (shape[0] - 0.5) * spacing[0])
    return np.concatenate([skin[None], skin[None] + np.cumsum(t, axis=0)]).astype(np.float32)


def tissue_at(depths: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Tissue code (0-7) at each depth of each column: number of interfaces above the point."""
    out = np.zeros((len(depths),) + boundaries.shape[1:], dtype=np.uint8)
    z = depths.astype(np.float32)[:, None, None]
    for b in boundaries:
        out += z >= b[None]
    return out


def label_map(boundaries: np.ndarray, depth: int, dz: float) -> np.ndarray:
    """uint8 label map by voxel-centre sampling, with every layer at least one voxel thick in every column.

    Why the minimum: a 0.6 mm SFM between two 0.9 mm voxel centres would vanish from the labels although it is
    visible in the image; annotators draw such a membrane as a one-pixel line. Membranes are placed last, so
    they win a voxel shared with a neighbour.
    """
    labels = tissue_at(np.arange(depth) * dz, boundaries)
    labels[labels == BONE] = GEL
    ii, jj = np.indices(boundaries.shape[1:])
    for k in (DERMIS, SUP_FAT, DEEP_FAT, MUSCLE, SFM, DFM):
        missing = ~(labels == k).any(axis=0)
        if missing.any():
            mid = 0.5 * (boundaries[k - 1] + boundaries[k])
            idx = np.clip(np.rint(mid / dz).astype(np.int64), 0, depth - 1)
            labels[idx[missing], ii[missing], jj[missing]] = k
    return labels


def texture_scales() -> np.ndarray:
    """What texture index 1 means per layer (presets.yaml ``texture``), names.LAYERS order."""
    spec = load_model()["texture"]
    return np.array([float(spec[layer]["scale"]) for layer in LAYERS])


def backscatter_db(
    params: ScanParams,
    boundaries: np.ndarray,
    tissue: np.ndarray,
    zf: np.ndarray,
    spacing: tuple[float, float, float],
    fine: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Backscatter (dB re fascia) of every fine sample: parenchyma level plus each layer's structure.

    Structures (texture scales in presets.yaml): dermis scatterer clustering and the skin entry echo; fat septa
    as thin sheets at the zero crossings of a smooth field (isotropic = oblique in superficial fat, flattened =
    horizontal in deep fat); SFM gaps; DFM sub-laminae split by dark clefts; muscle perimysium as bright tubes
    along the elevation (cranio-caudal) axis with a pennation tilt; lamina surface and acoustic shadow.
    """
    dz, dx, dy = spacing
    depth = tissue.shape[0] // fine
    h, w = tissue.shape[1:]
    tex = texture_scales() * np.asarray(params.texture)
    lut = np.array([GEL_DB, *params.echogenicity, SHADOW_DB], dtype=np.float32)
    db = lut[tissue]
    z = zf.astype(np.float32)[:, None, None]

    # Dermis: per-sample log-normal variance (clustered scatterers, mean power kept at the echogenicity) and
    # the specular entry echo.
    rows = slice(0, min(len(zf), int(np.searchsorted(zf, boundaries[DERMIS].max())) + 1))
    derm = tissue[rows] == DERMIS
    s = tex[DERMIS - 1]
    cluster = s * rng.standard_normal(derm.shape, dtype=np.float32) - np.float32(s**2 * math.log(10.0) / 20.0)
    db[rows] += derm * cluster
    entry = derm & (z[rows] - boundaries[GEL][None] < ENTRY_MM)
    db[rows][entry] = ENTRY_DB

    # Fat septa: thin sheets where a smooth unit field crosses zero (sheet half-width ~0.1 field SD).
    for code, sigma_mm in ((SUP_FAT, (1.0, 1.3, 1.3)), (DEEP_FAT, (0.7, 3.0, 3.0))):
        sel = tissue == code
        field = upsample_depth(smooth_field(rng, (depth, h, w), np.divide(sigma_mm, spacing)), fine)
        septa = np.exp(-((field / 0.12) ** 2))
        db += sel * (tex[code - 1] * septa)

    # SFM gaps: a fraction texture * 0.2 of the membrane area shows fat instead (phantom.md: 10-30 %).
    gap_field = smooth_field(rng, (h, w), (3.0 / dx, 3.0 / dy))
    gap = gap_field < np.quantile(gap_field, min(tex[SFM - 1], 0.9))
    db[(tissue == SFM) & gap[None]] = params.echogenicity[SUP_FAT - 1]

    # DFM: 2 bright sub-laminae split by a dark cleft (3 sub-laminae, 2 clefts when thicker than 1.6 mm).
    top, bottom = boundaries[DFM - 1][None], boundaries[DFM][None]
    u = (z - top) / np.maximum(bottom - top, 1e-3)
    n_cleft = 1 if params.thickness[DFM - 1] < 1.6 else 2
    wiggle = 0.06 * smooth_field(rng, (h, w), (4.0 / dx, 4.0 / dy))[None]
    half = max(0.18 / float(params.thickness[DFM - 1]), 0.06)
    cleft = np.zeros_like(db)
    for c in range(n_cleft):
        centre = (c + 1) / (n_cleft + 1) + wiggle
        cleft = np.maximum(cleft, np.exp(-(((u - centre) / half) ** 2)))
    db -= (tissue == DFM) * (tex[DFM - 1] * cleft)

    # Muscle: bright perimysium tubes, long along elevation, tilted in depth by a pennation angle.
    shear = math.tan(math.radians(rng.uniform(5.0, 20.0))) * rng.choice((-1.0, 1.0)) * dy / dz
    extra = int(math.ceil(abs(shear) * w)) + 1
    base = smooth_field(rng, (depth + extra, h, w), (0.5 / dz, 0.5 / dx, 6.0 / dy))
    offs = np.rint(shear * np.arange(w) - min(0.0, shear * (w - 1))).astype(np.int64)
    fibre = base[np.arange(depth)[:, None] + offs[None, :], :, np.arange(w)[None, :]].transpose(0, 2, 1)
    perimysium = np.clip((upsample_depth(fibre, fine) - 1.3) / 0.5, 0.0, 1.0)
    db += (tissue == MUSCLE) * (tex[MUSCLE - 1] * perimysium)

    # Lamina: a bright surface, then acoustic shadow.
    db[(tissue == BONE) & (z - boundaries[MUSCLE][None] < BONE_SURFACE_MM)] = BONE_DB
    return db

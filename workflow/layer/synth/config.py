"""Configuration of the synthetic cohort: the dataclass the workflow and the CLI build, and the pain model.

Why validate here and not in each caller: the Snakemake config block ``synthetic:``, the command line and the
tests all go through :class:`SynthConfig`, so one bad value gets one message that names the key.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar

import yaml

from layer.names import FEATURES, LAYERS

#: The presets; see presets.yaml and docs/synthetic-cohort.md.
PRESETS: tuple[str, ...] = ("realistic", "strong", "null", "confounded", "custom")

#: Keys of the workflow config block ``synthetic:`` (and nothing else).
CONFIG_KEYS: tuple[str, ...] = (
    "preset",
    "effects",
    "n_subjects",
    "scans_per_subject",
    "shape",
    "spacing",
    "label_noise",
    "prevalence",
    "seed",
)

#: Depth of the field of view when no spacing is given: isotropic voxels of AUTO_FOV_DEPTH_MM / D.
#: ASSUMPTION: a 4.5 cm depth setting (phantom.md: 4-6 cm) shows the lamina in 99.9 % of scans (fully in 93 %).
AUTO_FOV_DEPTH_MM: float = 45.0
#: Shallower fields of view could lose the muscle under a thick fat layer; deeper ones are fine.
MIN_FOV_DEPTH_MM: float = 25.0
#: Coarser axial voxels cannot place the 0.6 mm SFM and the 1.3 mm DFM between their neighbours.
MAX_AXIAL_SPACING_MM: float = 1.5
MIN_SHAPE: tuple[int, int, int] = (16, 8, 8)
MAX_ABS_D: float = 3.0


class SynthConfigError(ValueError):
    """A bad value in the synthetic-cohort configuration; the message starts with the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"synthetic.{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Effect:
    """A planted effect: Cohen's ``d`` of ``feature`` of ``layer`` between pain (label 1) and no pain."""

    layer: str
    feature: str
    d: float

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "feature": self.feature, "d": float(self.d)}


@functools.cache
def load_model() -> dict[str, Any]:
    """The pain model shipped with the package (presets.yaml), parsed once."""
    text = resources.files("layer.synth").joinpath("presets.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def auto_spacing(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """Isotropic voxels that put AUTO_FOV_DEPTH_MM of depth into ``shape[0]`` voxels."""
    step = round(AUTO_FOV_DEPTH_MM / shape[0], 6)
    return (step, step, step)


def parse_effect(value: Any) -> Effect:
    """Accept ``{layer, feature, d}`` or ``"LAYER:FEATURE:D"`` (the CLI form); raise SynthConfigError."""
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 3:
            raise SynthConfigError("effects", f"{value!r} is not LAYER:FEATURE:D")
        value = {"layer": parts[0], "feature": parts[1], "d": parts[2]}
    if isinstance(value, Effect):
        value = value.as_dict()
    if not isinstance(value, Mapping) or set(value) != {"layer", "feature", "d"}:
        raise SynthConfigError("effects", f"{value!r} must have exactly the keys layer, feature, d")
    layer, feature = value["layer"], value["feature"]
    if layer not in LAYERS:
        raise SynthConfigError("effects", f"unknown layer {layer!r}; one of {', '.join(LAYERS)}")
    if feature not in FEATURES:
        raise SynthConfigError("effects", f"unknown feature {feature!r}; one of {', '.join(FEATURES)}")
    try:
        d = float(value["d"])
    except (TypeError, ValueError):
        raise SynthConfigError("effects", f"d of {layer}:{feature} is not a number: {value['d']!r}") from None
    if not math.isfinite(d) or abs(d) > MAX_ABS_D:
        raise SynthConfigError("effects", f"d of {layer}:{feature} must be finite with |d| <= {MAX_ABS_D}")
    return Effect(str(layer), str(feature), d)


def _int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise SynthConfigError(key, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SynthConfigError(key, f"must be >= {minimum}, got {value!r}")
    return int(value)


def _float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SynthConfigError(key, f"must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic cohort; same config => byte-identical files.

    ``shape`` is (depth, lateral, elevation) in voxels and ``spacing`` the voxel size in mm along the same
    axes; a single float means isotropic voxels and ``None`` means isotropic voxels of
    ``AUTO_FOV_DEPTH_MM / depth``. After construction ``spacing`` is always three floats.
    """

    #: The keys of the workflow config block ``synthetic:`` that configure the cohort.
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = CONFIG_KEYS

    preset: str = "realistic"
    effects: tuple[Effect, ...] = ()
    n_subjects: int = 100
    scans_per_subject: int = 4
    shape: tuple[int, int, int] = (48, 32, 32)
    spacing: tuple[float, float, float] | float | None = None
    label_noise: float = 0.0
    prevalence: float = 0.5
    seed: int = 1

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        if self.preset not in PRESETS:
            raise SynthConfigError("preset", f"unknown preset {self.preset!r}; one of {', '.join(PRESETS)}")
        if isinstance(self.effects, str | Mapping) or not isinstance(self.effects, Iterable):
            raise SynthConfigError("effects", "must be a list of {layer, feature, d}")
        effects = tuple(parse_effect(e) for e in self.effects)
        if effects and self.preset != "custom":
            raise SynthConfigError("effects", f"effects are only allowed with preset custom, not {self.preset!r}")
        pairs = [(e.layer, e.feature) for e in effects]
        if len(set(pairs)) != len(pairs):
            raise SynthConfigError("effects", "each layer:feature may appear once")
        set_("effects", effects)
        set_("n_subjects", _int("n_subjects", self.n_subjects, 2))
        set_("scans_per_subject", _int("scans_per_subject", self.scans_per_subject, 1))
        shape = self.shape
        if isinstance(shape, str) or not isinstance(shape, Iterable) or len(tuple(shape)) != 3:
            raise SynthConfigError("shape", f"must be three integers (depth lateral elevation), got {shape!r}")
        shape = tuple(_int("shape", s, m) for s, m in zip(shape, MIN_SHAPE, strict=True))
        set_("shape", shape)
        spacing = self.spacing
        if spacing is None or spacing == "auto":
            spacing = auto_spacing(shape)
        elif isinstance(spacing, int | float) and not isinstance(spacing, bool):
            spacing = (spacing,) * 3
        if isinstance(spacing, str) or not isinstance(spacing, Iterable) or len(tuple(spacing)) != 3:
            raise SynthConfigError("spacing", f"must be one or three positive numbers (mm), got {self.spacing!r}")
        spacing = tuple(_float("spacing", s) for s in spacing)
        if min(spacing) <= 0:
            raise SynthConfigError("spacing", f"must be positive, got {spacing}")
        if spacing[0] > MAX_AXIAL_SPACING_MM:
            raise SynthConfigError(
                "spacing", f"axial spacing {spacing[0]} mm > {MAX_AXIAL_SPACING_MM} mm cannot resolve the fasciae"
            )
        fov = shape[0] * spacing[0]
        if fov < MIN_FOV_DEPTH_MM:
            raise SynthConfigError(
                "spacing",
                f"field of view depth {shape[0]} x {spacing[0]} = {fov:.1f} mm is below {MIN_FOV_DEPTH_MM} mm: "
                f"the muscle would not be in every scan (use spacing >= {MIN_FOV_DEPTH_MM / shape[0]:.3g})",
            )
        set_("spacing", spacing)
        label_noise = _float("label_noise", self.label_noise)
        if not 0.0 <= label_noise <= 0.5:
            raise SynthConfigError("label_noise", f"must be in [0, 0.5], got {label_noise}")
        set_("label_noise", label_noise)
        prevalence = _float("prevalence", self.prevalence)
        if not 0.0 < prevalence < 1.0:
            raise SynthConfigError("prevalence", f"must be strictly between 0 and 1, got {prevalence}")
        set_("prevalence", prevalence)
        set_("seed", _int("seed", self.seed, 0))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SynthConfig:
        """Build from the workflow config block ``synthetic:``; unknown keys are an error, missing keys default."""
        if not isinstance(mapping, Mapping):
            raise SynthConfigError("(block)", f"must be a mapping, got {type(mapping).__name__}")
        for key in mapping:
            if key not in CONFIG_KEYS:
                raise SynthConfigError(str(key), f"unknown key; allowed: {', '.join(CONFIG_KEYS)}")
        kwargs = dict(mapping)
        if kwargs.get("effects") is None:
            kwargs.pop("effects", None)
        return cls(**kwargs)

    def to_mapping(self) -> dict[str, Any]:
        """The config block that rebuilds this config (plain types, for ground_truth.json)."""
        return {
            "preset": self.preset,
            "effects": [e.as_dict() for e in self.effects],
            "n_subjects": self.n_subjects,
            "scans_per_subject": self.scans_per_subject,
            "shape": list(self.shape),
            "spacing": list(self.spacing),  # type: ignore[arg-type]
            "label_noise": self.label_noise,
            "prevalence": self.prevalence,
            "seed": self.seed,
        }

    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        """``spacing`` typed as three floats (always resolved after construction)."""
        return self.spacing  # type: ignore[return-value]


def planted_effects(cfg: SynthConfig) -> tuple[Effect, ...]:
    """The direct effects of the config: the preset's list, or the config's own for ``custom``."""
    if cfg.preset == "custom":
        return cfg.effects
    return tuple(parse_effect(e) for e in load_model()["presets"][cfg.preset]["effects"])


def confounder(cfg: SynthConfig) -> dict[str, Any]:
    """The adiposity confounder of the preset: name, d_pain (adiposity vs pain) and the fat loadings."""
    model = load_model()
    spec = dict(model["presets"][cfg.preset]["confounder"])
    spec["loadings"] = dict(model["adiposity"]["loadings"])
    return spec

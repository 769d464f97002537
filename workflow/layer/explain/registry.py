"""The one list of attribution method names, and what each method reads from the ``attribution:`` config.

Why one list: the config check, the Snakemake wildcard constraint, the rules' per-method params, the
dispatch in :mod:`layer.explain.attribute` and the config docs all read the names from here, so adding a
method is one entry. Torch-free: the Snakemake process imports it when it parses the workflow.

``reads`` is the set of ``attribution.*`` settings a method's output depends on. A method's attribution
jobs carry exactly those as params, so that changing ``ig_steps`` reruns Integrated Gradients and nothing
else (and a setting a method does not list reaches it as ``None``: a read of it fails loudly).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Removal operators of the layer removal methods: what fills a removed layer's voxels.
REMOVAL_OPERATORS: tuple[str, ...] = ("mean", "road", "blur", "background")

#: Settings each removal operator reads besides the common ones.
_OPERATOR_READS: dict[str, tuple[str, ...]] = {
    "mean": (),
    "road": ("road_iterations", "road_noise"),
    "blur": ("blur_sigma",),
    "background": ("n_background",),
}
#: Read by every method (how many example maps a job writes).
_COMMON: tuple[str, ...] = ("n_examples",)
#: Read by every removal method: scans scored per subject, batches, per-scan seeds, membrane regions.
_REMOVAL: tuple[str, ...] = ("batch_size", "scans_per_subject", "seed", "membrane_margin")


@dataclass(frozen=True)
class Method:
    """One attribution method.

    ``family``: ``gradcam`` (``gradcam`` at ``attribution.gradcam_layer``, ``gradcam_last`` at the last
    block), ``integrated_gradients``, ``expected_gradients`` (voxel maps) or ``ablation``,
    ``shapley``, ``shapley_channel`` (layer scores); ``operator``: the removal operator of a removal method;
    ``output``: ``maps`` (``[N, C, D, H, W]``) or ``scores`` (``[N, C, 6]``).
    """

    name: str
    family: str
    operator: str | None
    output: str
    reads: tuple[str, ...]

    @property
    def per_channel(self) -> bool:
        """Channel x layer players (one score row per input channel)."""
        return self.family == "shapley_channel"

    @property
    def exact_layer_shapley(self) -> bool:
        """Exact six-layer Shapley: its 64 stored coalition values give the conditional calls and the
        deletion curves."""
        return self.family == "shapley"

    @property
    def needs_background(self) -> bool:
        """Whether the job loads the fold's background reference set (training scans)."""
        return "n_background" in self.reads


def _build() -> dict[str, Method]:
    methods = [
        Method("gradcam", "gradcam", None, "maps", _COMMON + ("gradcam_layer", "scans_per_subject")),
        # The paper's likely resolution: the network's last block (layer.nets.model.GRADCAM_LAST_LAYERS).
        Method("gradcam_last", "gradcam", None, "maps", _COMMON + ("scans_per_subject",)),
        Method(
            "integrated_gradients", "integrated_gradients", None, "maps",
            _COMMON + ("ig_steps", "batch_size", "scans_per_subject"),
        ),
        Method(
            "expected_gradients", "expected_gradients", None, "maps",
            _COMMON + ("eg_samples", "batch_size", "scans_per_subject", "seed", "n_background"),
        ),
    ]
    for family in ("ablation", "shapley", "shapley_channel"):
        for op in REMOVAL_OPERATORS:
            methods.append(Method(f"{family}_{op}", family, op, "scores", _COMMON + _REMOVAL + _OPERATOR_READS[op]))
    return {m.name: m for m in methods}


#: Every method by name, voxel-map methods first.
METHODS: dict[str, Method] = _build()
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
#: Every setting any method reads (the ``attribution:`` keys that reach attribution jobs).
SETTINGS: tuple[str, ...] = tuple(dict.fromkeys(key for m in METHODS.values() for key in m.reads))


class UnknownMethodError(ValueError):
    """A method name that is not in the registry."""


def method(name: str) -> Method:
    """The registry entry of ``name``; a one-line error listing the known names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethodError(f"unknown attribution method '{name}'; choose one of {', '.join(METHOD_NAMES)}")


def wildcard_pattern() -> str:
    """Regular expression matching exactly the method names (the ``{method}`` wildcard constraint)."""
    return "|".join(re.escape(name) for name in METHOD_NAMES)


def reads(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The settings read by any of ``names``, in registry order (a rule that runs several methods)."""
    wanted = {key for name in names for key in method(name).reads}
    return tuple(key for key in SETTINGS if key in wanted)

"""The recovery grid's shape, read when the workflow is parsed (stdlib only): which studies run and which
models each trains.

Why here and not in the rules: the grid's cost is its number of trainings and attribution jobs, and two
levers cut it without losing a scored number. A single-driver scenario trains only the modalities in which
its planted features can show (:data:`layer.names.VISIBLE_FEATURES`): a B-mode-only effect has no driver
in the SWE model, so that model would score nothing the null seeds do not score better. And seeds are set
per scenario, so the null scenario (whose false-positive rate is a rate over seeds) runs at many seeds and
every other scenario at one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from layer.names import VISIBLE_FEATURES


def scenario_modalities(block: Mapping[str, Any], modalities: Sequence[str]) -> list[str]:
    """The modalities of ``modalities`` a scenario trains: for a ``custom`` block, those in which at least one
    of its effects can show; for the null and every preset block, all of them (the null cohort's models are
    what the false-positive rate is measured on, a preset plants effects in every modality).

    >>> scenario_modalities({"preset": "custom", "effects": [{"layer": "dfm", "feature": "texture", "d": 1}]},
    ...                     ["bmode", "swe", "fused"])
    ['bmode', 'fused']
    """
    if block.get("preset") != "custom" or not block.get("effects"):
        return list(modalities)
    features = {str(e["feature"]) for e in block["effects"]}
    return [m for m in modalities if features & set(VISIBLE_FEATURES[m])]


def scenario_seeds(name: str, seeds: Mapping[str, int], replicates: int) -> list[int]:
    """The seed indices of a scenario: ``seeds[name]`` where given, else ``replicates``."""
    return list(range(int(seeds.get(name, replicates))))


def grid(scenarios: Sequence[str], seeds: Mapping[str, int], replicates: int) -> list[tuple[str, int]]:
    """Every (scenario, seed index) study of the grid, scenarios in the given order."""
    return [(name, r) for name in scenarios for r in scenario_seeds(name, seeds, replicates)]


__all__ = ["grid", "scenario_modalities", "scenario_seeds"]

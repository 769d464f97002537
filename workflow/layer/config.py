"""The config schema as the one source of defaults, and settings objects built from a rule's params.

Why: a default written twice drifts (``membrane_margin`` was 1 in the config and 0 in a dataclass). The
settings dataclasses of the library therefore have no defaults of their own. A Snakemake script builds one
from its rule's params with :func:`from_params` (every field the rule passes, ``None`` for the rest: the
rule passes exactly what its step reads); tests and the command line build one from the schema's defaults
with :func:`from_defaults`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"

T = TypeVar("T")


@functools.cache
def schema() -> dict[str, Any]:
    """The config JSON schema (YAML), read once."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def defaults(section: str) -> dict[str, Any]:
    """Schema defaults of the keys of one config section, e.g. ``defaults("attribution")["ig_steps"]``."""
    properties = schema()["properties"][section]["properties"]
    return {key: sub["default"] for key, sub in properties.items() if "default" in sub}


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_params(cls: type[T], params: object) -> T:
    """A settings dataclass from a rule's ``snakemake.params`` (attribute access) or a mapping: every field
    by the same name, ``None`` where the rule does not pass it."""
    get = params.get if isinstance(params, Mapping) else lambda key: getattr(params, key, None)
    return cls(**{name: get(name) for name in _field_names(cls)})


def from_defaults(cls: type[T], section: str, **overrides: Any) -> T:
    """A settings dataclass from the schema defaults of ``section``, with ``overrides``."""
    values = {**defaults(section), **overrides}
    unknown = set(overrides) - set(_field_names(cls))
    if unknown:
        raise TypeError(f"{cls.__name__} has no settings {sorted(unknown)}")
    return cls(**{name: values.get(name) for name in _field_names(cls)})


def check_methods(config: Mapping[str, Any]) -> None:
    """Every method name in the config is in :mod:`layer.explain.registry` (the schema leaves that list to
    the registry, so that it is written once). Raises with the config key and the known names."""
    from layer.explain.registry import METHOD_NAMES, METHODS

    places = {
        "attribution.methods": list(config["attribution"]["methods"]),
        "validation.methods": list(config["validation"]["methods"]),
        "report.primary_method": [config["report"]["primary_method"]],
        "report.paper_method": [config["report"]["paper_method"]],
        "report.paper_maps": list(config["report"]["paper_maps"]),
    }
    for key, names in places.items():
        unknown = [name for name in names if name not in METHOD_NAMES]
        if unknown:
            raise ValueError(f"config {key}: unknown method {', '.join(unknown)}; known: {', '.join(METHOD_NAMES)}")
    scores = [name for name in config["report"]["paper_maps"] if METHODS[name].output != "maps"]
    if scores:
        raise ValueError(f"config report.paper_maps: {', '.join(scores)} give layer scores, not voxel maps; "
                         f"choose voxel-map methods ({', '.join(n for n, m in METHODS.items() if m.output == 'maps')})")


def check_calls(config: Mapping[str, Any]) -> None:
    """``calls.measures`` lists only tested measures and ``calls.describe`` only stored ones
    (:func:`layer.stats.calls.check_measures`), checked when the DAG is built, before any compute."""
    from layer.stats.calls import check_measures

    check_measures(list(config["calls"]["measures"]), list(config["calls"]["describe"]))
    n_folds = int(config["split"]["n_folds"])
    beyond = sorted(f for f in config["null"]["folds"] if f >= n_folds)
    if beyond:
        raise ValueError(f"null.folds {beyond} are not folds of split.n_folds {n_folds} (folds 0..{n_folds - 1})")

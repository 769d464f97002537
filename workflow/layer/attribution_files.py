"""One attribution file per model: every method's values in one ``.npz``, read back one method at a time.

Why one file per model: one attribution job scores every method of a model (modality x fold x run), so
that torch, MONAI, captum and the fold's scans load once per model rather than once per method (measured:
6-9 s of start-up per process on the 2-core machine, most of a Grad-CAM job). Torch-free: the stats
environment reads these files.

Keys: ``{method}/{name}`` for each method's arrays (``maps [N, C, D, H, W]`` or ``scores [N, C, 6]``,
``scan_ids [N]``, ``channels [C]``, ``coalitions [N, 64]`` for exact Shapley), ``methods`` (the methods in
the file) and the model's identity (``modality``, ``fold`` and, for a null model, ``null_model``). Maps are
stored uncompressed: float attributions compress by 12 % and zlib took 3.3 s per 63 MB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from layer.io import atomic_path


@dataclass(frozen=True)
class Attribution:
    """One method's output on a model's held-out scans: voxel ``maps [N, C, D, H, W]`` or layer
    ``scores [N, C, 6]`` (``kind``), with the scans, channel names, a QC table (``scan_id, check, value``)
    and, for exact six-layer Shapley, the values of all 64 coalitions of every scan (the deletion curves
    and the conditional calls are read from them)."""

    kind: str
    values: np.ndarray
    scan_ids: list[str]
    channels: tuple[str, ...]
    qc: pd.DataFrame
    coalitions: np.ndarray | None = None


def _method_arrays(result: Attribution) -> dict[str, np.ndarray]:
    arrays = {
        result.kind: np.asarray(result.values),
        "scan_ids": np.asarray(result.scan_ids, dtype=str),
        "channels": np.asarray(result.channels, dtype=str),
    }
    if result.coalitions is not None:
        arrays["coalitions"] = np.asarray(result.coalitions)
    return arrays


def save_model_attributions(path: str, results: Mapping[str, Attribution], **identity: object) -> None:
    """Write every method's ``results`` of one model, and its ``identity`` (``None`` values left out), to
    ``path`` atomically. Readers take the identity from the file, never from its path."""
    if not results:
        raise ValueError(f"{path}: no attribution method to store")
    arrays: dict[str, np.ndarray] = {"methods": np.asarray(list(results), dtype=str)}
    for key, value in identity.items():
        if value is not None:
            arrays[key] = np.asarray(value)
    for method, result in results.items():
        arrays.update({f"{method}/{name}": value for name, value in _method_arrays(result).items()})
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _held(z: np.lib.npyio.NpzFile, path: str) -> list[str]:
    """The ``methods`` of an open per-model file; raises, naming the file, for any other ``.npz``."""
    if "methods" not in z.files:
        raise ValueError(f"{path}: not a per-model attribution file of this workflow (no 'methods' inside)")
    return [str(m) for m in z["methods"]]


def stored_methods(path: str) -> list[str]:
    """The methods of a per-model attribution file, in the order they were stored."""
    with np.load(path, allow_pickle=False) as z:
        return _held(z, path)


def load_method(path: str, method: str) -> dict[str, np.ndarray]:
    """One method's arrays of a per-model file, with the model's identity and ``method``: the keys
    ``maps`` or ``scores``, ``scan_ids``, ``channels``, ``coalitions`` (exact Shapley), ``modality``,
    ``fold``, ``null_model`` (a null model), ``method``. Only that method's arrays are read."""
    with np.load(path, allow_pickle=False) as z:
        held = _held(z, path)
        if method not in held:
            raise ValueError(f"{path}: no method '{method}' (it holds {', '.join(held)})")
        prefix = f"{method}/"
        out = {key[len(prefix):]: z[key] for key in z.files if key.startswith(prefix)}
        out.update({key: z[key] for key in z.files if "/" not in key and key != "methods"})
    out["method"] = np.asarray(method)
    return out


def load_methods(paths: Sequence[str], methods: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """:func:`load_method` for each file and each of ``methods`` it holds (files in order, then methods)."""
    out = []
    for path in paths:
        held = set(stored_methods(path))
        out.extend(load_method(path, m) for m in methods if m in held)
    return out


__all__ = ["Attribution", "load_method", "load_methods", "save_model_attributions", "stored_methods"]

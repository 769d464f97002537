"""File I/O shared by every step: NIfTI volumes, tables and JSON, always written atomically.

Why atomic: a crash, Ctrl-C or SLURM preemption must never leave a half-written file under its final
name, because Snakemake (and a user) would trust it on the next run. Every writer here writes to a
temporary name in the same directory and renames it into place (``os.replace`` is atomic on POSIX).

Why a clean NIfTI header: free-text header fields (``descrip``, ``aux_file``, ``intent_name``) and
extensions of a scanner export can hold patient information. Derived volumes are written from a fresh
header that carries only the affine, the data type and the units.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` defaults to the final path's full suffix (e.g. ``.nii.gz``), because some writers pick the
    format from the file name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(final.suffixes)
    # A process killed with SIGKILL cannot remove its temporary file; the next writer of the same path does.
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*.tmp{glob.escape(suffix)}"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any other file
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def affine_from_spacing(spacing: tuple[float, float, float]) -> np.ndarray:
    """Diagonal affine (mm) for array axes (depth, lateral, elevation) with the origin at voxel 0."""
    return np.diag([float(spacing[0]), float(spacing[1]), float(spacing[2]), 1.0])


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write ``array`` as a NIfTI-1 file with a fresh header: affine, dtype and mm units only.

    The file is byte-reproducible for the same array and affine (gzip mtime is fixed by nibabel).
    """
    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    header = image.header
    header.set_xyzt_units(xyz="mm")
    header.set_sform(image.affine, code=1)
    header.set_qform(image.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def load_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI volume fully into memory; return (data, affine)."""
    image = nib.load(str(path))
    return np.asarray(image.dataobj), np.asarray(image.affine)


def write_tsv(table: pd.DataFrame, path: str | os.PathLike[str], float_format: str = "%.6g") -> None:
    """Write a tab-separated table atomically, without the index, with a fixed float format.

    The fixed format keeps result tables byte-identical across runs with the same seed.
    """
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format=float_format, lineterminator="\n")


def read_tsv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a tab-separated table written by :func:`write_tsv` (or a user's cohort sheet).

    Only an empty field is missing (how :func:`write_tsv` writes NaN): words such as ``null``, ``NA`` or
    ``None`` stay text, so a scenario named ``null`` or a subject id ``NA`` survives a round trip.
    """
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON atomically with sorted keys and a trailing newline (stable bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_arrays(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Write named arrays as one compressed ``.npz`` atomically (strings as unicode arrays, no pickle)."""
    plain = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        plain[key] = arr.astype(str) if arr.dtype == object else arr  # object arrays would need pickle
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **plain)


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` written by :func:`save_arrays` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}

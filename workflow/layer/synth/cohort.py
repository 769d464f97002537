"""Write a synthetic cohort: scans as NIfTI, the cohort sheet, features.tsv and ground_truth.json.

Why chunks: the workflow renders contiguous blocks of subjects in parallel jobs and joins them once. Every
subject's numbers come from its own seeded streams and the cohort-level draws (labels, flips) from the
cohort stream, so a scan's bytes do not depend on the number of chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from layer.io import affine_from_spacing, save_nifti, write_json, write_tsv
from layer.names import SHEET_COLUMNS
from layer.synth.anatomy import ScanParams
from layer.synth.config import SynthConfig
from layer.synth.render import RenderedScan, render_scan
from layer.synth.truth import (
    FEATURE_COLUMNS,
    NUISANCE_COLUMNS,
    STREAM_SCAN,
    Design,
    draw_design,
    ground_truth,
    rng_for,
    wide_values,
)

#: Cohort sheet columns after names.SHEET_COLUMNS: scan design, subject covariates, scan nuisance.
EXTRA_COLUMNS: tuple[str, ...] = ("side", "level", "visit", "age", "sex", "bmi", *NUISANCE_COLUMNS)
SHEET_ORDER: tuple[str, ...] = (*SHEET_COLUMNS, *EXTRA_COLUMNS)
MODALITY_SUFFIX = {"bmode": "bmode", "swe": "swe", "layers": "layers"}


def chunk_subjects(n_subjects: int, chunk: int, n_chunks: int) -> np.ndarray:
    """Subject indices of a chunk: contiguous, sizes differing by at most one."""
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"chunk {chunk} is not in 0..{n_chunks - 1}")
    return np.array_split(np.arange(n_subjects), n_chunks)[chunk]


def scan_paths(scan_id: str, scan_subdir: str | os.PathLike[str]) -> dict[str, str]:
    """Sheet paths (POSIX, relative to the cohort directory) of one scan's three volumes."""
    sub = PurePosixPath(Path(scan_subdir).as_posix())
    return {key: str(sub / f"{scan_id}_{suffix}.nii.gz") for key, suffix in MODALITY_SUFFIX.items()}


def render_design(cfg: SynthConfig, design: Design) -> Iterator[tuple[Any, RenderedScan]]:
    """Each scan of ``design`` (a row of ``design.scans``, a named tuple) with its rendered arrays, in row
    order. Why one place: the written cohort and the in-memory measurements (layer.validation.sizing) must
    render the same scans from the same seeded streams (cfg.seed, scan stream, subject, scan)."""
    wide = wide_values(design.features)
    for scan in design.scans.itertuples(index=False):
        params = ScanParams.from_values(
            wide.loc[scan.scan_id].to_dict(), **{k: getattr(scan, k) for k in NUISANCE_COLUMNS}
        )
        rng = rng_for(cfg.seed, STREAM_SCAN, scan.subject_index, scan.scan_index)
        yield scan, render_scan(params, cfg.shape, cfg.voxel_mm, rng)


def synthesize_chunk(
    cfg: SynthConfig,
    cohort_dir: str | os.PathLike[str],
    scan_subdir: str | os.PathLike[str],
    chunk: int,
    n_chunks: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render and write the scans of one chunk of subjects; return (sheet rows, features rows).

    ``scan_subdir`` is relative to ``cohort_dir`` and is created even when the chunk has no subject.
    """
    cohort_dir = Path(cohort_dir)
    (cohort_dir / scan_subdir).mkdir(parents=True, exist_ok=True)
    subjects = chunk_subjects(cfg.n_subjects, chunk, n_chunks)
    design = draw_design(cfg, subjects)
    affine = affine_from_spacing(cfg.voxel_mm)
    rows = []
    for scan, out in render_design(cfg, design):
        paths = scan_paths(scan.scan_id, scan_subdir)
        for key, array in (("bmode", out.bmode), ("swe", out.swe), ("layers", out.layers)):
            save_nifti(array, affine, cohort_dir / paths[key])
        rows.append({**scan._asdict(), **paths})
    sheet = pd.DataFrame(rows, columns=[*design.scans.columns, *MODALITY_SUFFIX])
    return sheet[list(SHEET_ORDER)], design.features[list(FEATURE_COLUMNS)]


def _concat(tables: pd.DataFrame | Sequence[pd.DataFrame]) -> pd.DataFrame:
    if isinstance(tables, pd.DataFrame):
        return tables
    return pd.concat(list(tables), ignore_index=True)


def withhold_maps(sheet: pd.DataFrame, annotated_fraction: float, seed: int) -> pd.DataFrame:
    """The sheet as a partly annotated real cohort comes: the drawn maps of ``annotated_fraction`` of the
    subjects (stratified by label, drawn with ``seed``), ``layers`` empty for the others; every scan's true
    map in ``true_layers`` (after ``layers``), for scoring predicted maps. Unchanged when the fraction is 1.
    """
    if annotated_fraction >= 1:
        return sheet
    from sklearn.model_selection import train_test_split

    subjects = sheet.groupby(sheet["subject_id"].astype(str))["label"].first().sort_index()
    n_keep = max(1, int(round(annotated_fraction * len(subjects))))
    counts = subjects.value_counts()
    stratify = subjects.to_numpy() if len(counts) == 2 and min(counts.min(), n_keep, len(subjects) - n_keep) >= 2 else None
    kept = (
        subjects.index.to_numpy()
        if n_keep >= len(subjects)
        else train_test_split(subjects.index.to_numpy(), train_size=n_keep, random_state=seed, stratify=stratify)[0]
    )
    out = sheet.copy()
    out.insert(list(out.columns).index("layers") + 1, "true_layers", out["layers"])
    out.loc[~out["subject_id"].astype(str).isin(set(kept)), "layers"] = np.nan
    return out


def finalize_cohort(
    cfg: SynthConfig,
    cohort_dir: str | os.PathLike[str],
    sheets: pd.DataFrame | Sequence[pd.DataFrame],
    features: pd.DataFrame | Sequence[pd.DataFrame],
    annotated_fraction: float = 1.0,
) -> None:
    """Join the chunks' tables, sort by scan_id, write cohort.tsv (maps withheld for all but
    ``annotated_fraction`` of the subjects: :func:`withhold_maps`), features.tsv and ground_truth.json."""
    cohort_dir = Path(cohort_dir)
    sheet = _concat(sheets).sort_values("scan_id", kind="stable").reset_index(drop=True)
    feats = _concat(features).sort_values("scan_id", kind="stable").reset_index(drop=True)
    if sheet["scan_id"].duplicated().any():
        raise ValueError("finalize_cohort: a scan_id appears twice (a chunk was passed twice?)")
    expected = cfg.n_subjects * cfg.scans_per_subject
    if len(sheet) != expected or feats["scan_id"].nunique() != expected:
        raise ValueError(f"finalize_cohort: {len(sheet)} scans in the sheet, {expected} expected from the config")
    write_tsv(withhold_maps(sheet[list(SHEET_ORDER)], annotated_fraction, cfg.seed), cohort_dir / "cohort.tsv")
    write_tsv(feats[list(FEATURE_COLUMNS)], cohort_dir / "features.tsv")
    write_json(ground_truth(cfg, feats), cohort_dir / "ground_truth.json")


def synthesize_cohort(cfg: SynthConfig, cohort_dir: str | os.PathLike[str], n_chunks: int = 1) -> pd.DataFrame:
    """Render every chunk in this process and finalize; return the cohort sheet (sorted by scan_id)."""
    parts = [synthesize_chunk(cfg, cohort_dir, "scans", k, n_chunks) for k in range(n_chunks)]
    finalize_cohort(cfg, cohort_dir, [p[0] for p in parts], [p[1] for p in parts])
    return _concat([p[0] for p in parts]).sort_values("scan_id", kind="stable").reset_index(drop=True)

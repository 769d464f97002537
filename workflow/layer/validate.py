"""Cohort integrity check: every problem of a cohort sheet and its volumes, in one list, before training.

Why one list: a user with 4,000 scans on shared storage must learn about every bad scan in one run, not
one error per rerun after hours of GPU time. Each problem names the scan, the file and the reason.
Volumes are streamed one scan at a time, so memory does not grow with the cohort.

The same function backs the workflow's first rule and the ``layer validate`` command.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from layer.names import BACKGROUND, LAYERS, SHEET_COLUMNS

PATH_COLUMNS: tuple[str, ...] = ("bmode", "swe", "layers")


@dataclass(frozen=True)
class Problem:
    """One finding: which scan (or ``-`` for the sheet), which file, and why."""

    scan_id: str
    file: str
    reason: str
    severity: str = "error"  # "error" stops the study; "warning" is reported only


@dataclass
class Report:
    """All findings of one validation run, errors and warnings apart."""

    problems: list[Problem] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def table(self) -> pd.DataFrame:
        """Problems as a table with columns severity, scan_id, file, reason (errors first)."""
        rows = [(p.severity, p.scan_id, p.file, p.reason) for p in self.errors + self.warnings]
        return pd.DataFrame(rows, columns=["severity", "scan_id", "file", "reason"])

    def text(self, sheet: str | os.PathLike[str]) -> str:
        """Human-readable report: a summary line, then errors, then warnings."""
        lines = [
            f"Cohort validation of {sheet}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
            + (f", {len(self.excluded)} scan(s) excluded" if self.excluded else "")
        ]
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title}:")
                lines += [f"  - scan {p.scan_id} | {p.file} | {p.reason}" for p in items]
        if self.excluded:
            lines.append("Excluded scans: " + ", ".join(self.excluded))
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Rules:
    """Tolerances and policies of the check (config ``validate:``)."""

    n_folds: int = 5
    affine_tolerance_mm: float = 1e-3
    swe_max_nan_in_box: float = 0.25
    absent_layer: str = "error"  # "error" fails the run, "exclude" drops the scan with a warning
    allow_outside_paths: bool = False
    spacing_tolerance: float = 0.25  # relative deviation from the cohort's median spacing that warns

    @classmethod
    def from_attributes(cls, source: object) -> Rules:
        """Rules from any object with attributes of the same names (Snakemake params, argparse args)."""
        return cls(**{f.name: getattr(source, f.name) for f in fields(cls)})


class CohortError(ValueError):
    """Raised by :func:`require_valid` with the whole report as its message."""


def _sheet_problems(sheet: pd.DataFrame, rules: Rules) -> list[Problem]:
    problems: list[Problem] = []
    missing = [c for c in SHEET_COLUMNS if c not in sheet.columns]
    for col in missing:
        hint = _closest(col, sheet.columns)
        problems.append(
            Problem("-", "sheet", f"missing column '{col}'" + (f" (found '{hint}': misnamed?)" if hint else ""))
        )
    if missing:
        return problems
    if len(sheet) == 0:
        return [Problem("-", "sheet", "the sheet has no rows")]
    for col in SHEET_COLUMNS:
        for idx in sheet.index[sheet[col].isna()]:
            problems.append(Problem(_sid(sheet, idx), "sheet", f"empty value in column '{col}' (row {idx + 2})"))
    dup = sheet["scan_id"][sheet["scan_id"].duplicated(keep=False)]
    for sid in sorted(set(dup.astype(str))):
        rows = [str(i + 2) for i in dup.index[dup.astype(str) == sid]]
        problems.append(Problem(sid, "sheet", f"duplicate scan_id (rows {', '.join(rows)})"))
    labels = pd.to_numeric(sheet["label"], errors="coerce")
    bad = sheet.index[~labels.isin([0, 1])]
    for idx in bad:
        problems.append(Problem(_sid(sheet, idx), "sheet", f"label '{sheet.at[idx, 'label']}' is not 0 or 1"))
    good = sheet.loc[labels.isin([0, 1])].assign(label=labels)
    per_subject = good.groupby(good["subject_id"].astype(str))["label"].nunique()
    for sub in per_subject.index[per_subject > 1]:
        problems.append(Problem("-", "sheet", f"subject {sub} has scans with both labels 0 and 1"))
    subj_label = good.groupby(good["subject_id"].astype(str))["label"].first()
    for cls in (0, 1):
        n = int((subj_label == cls).sum())
        if n < rules.n_folds:
            problems.append(
                Problem(
                    "-",
                    "sheet",
                    f"only {n} subject(s) with label {cls}; {rules.n_folds}-fold subject-level "
                    f"cross-validation needs at least {rules.n_folds} per class",
                )
            )
    return problems


def _closest(name: str, columns: Iterable[object]) -> str | None:
    norm = name.replace("_", "").lower()
    for col in columns:
        c = str(col)
        if c != name and c.replace("_", "").replace("-", "").replace(" ", "").lower() == norm:
            return c
    return None


def _sid(sheet: pd.DataFrame, idx: object) -> str:
    value = sheet.at[idx, "scan_id"] if "scan_id" in sheet.columns else None
    return "-" if pd.isna(value) else str(value)


def resolve_path(base: Path, value: str, allow_outside: bool) -> tuple[Path, str | None]:
    """Resolve a sheet path relative to the sheet's directory; say why if it escapes that directory.

    Why: a sheet edited by hand may point anywhere through ``..`` or a symlink; reading outside the
    cohort folder is refused unless the config allows it.
    """
    raw = Path(value)
    path = raw if raw.is_absolute() else base / raw
    if allow_outside:
        return path, None
    resolved = path.resolve()
    root = base.resolve()
    if root != resolved and root not in resolved.parents:
        via = "a symlink" if (path.is_symlink() or ".." not in raw.parts) else "'..'"
        return path, f"path escapes the sheet's directory through {via} ({value})"
    return path, None


def _load(path: Path) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """Fully read a NIfTI file; return (data, affine, error)."""
    if not path.exists():
        return None, None, "file not found"
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
        return data, np.asarray(image.affine), None
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        return None, None, f"unreadable or truncated NIfTI ({type(exc).__name__}: {exc})"


def _squeeze_3d(data: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        return None, f"volume is {data.ndim}-D with shape {tuple(data.shape)}, expected 3-D"
    return data, None


def swe_box(swe: np.ndarray) -> tuple[slice, ...] | None:
    """The SWE box: the bounding box of the finite voxels (None if there are none)."""
    finite = np.isfinite(swe)
    if not finite.any():
        return None
    box = []
    for axis in range(swe.ndim):
        other = tuple(a for a in range(swe.ndim) if a != axis)
        idx = np.flatnonzero(finite.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def _scan_problems(
    scan_id: str, files: dict[str, Path], rules: Rules
) -> tuple[list[Problem], tuple[float, ...] | None, bool]:
    """Problems of one scan; its voxel spacing; whether its only errors are absent layers."""
    problems: list[Problem] = []
    volumes: dict[str, np.ndarray] = {}
    affines: dict[str, np.ndarray] = {}
    for kind, path in files.items():
        data, affine, err = _load(path)
        if err:
            problems.append(Problem(scan_id, str(path), err))
            continue
        assert data is not None and affine is not None
        data3, err = _squeeze_3d(data)
        if err:
            problems.append(Problem(scan_id, str(path), err))
            continue
        assert data3 is not None
        volumes[kind], affines[kind] = data3, affine
    spacing = None
    if "bmode" in affines:
        spacing = tuple(float(s) for s in np.sqrt((affines["bmode"][:3, :3] ** 2).sum(axis=0)))
    ref = next((k for k in PATH_COLUMNS if k in volumes), None)
    for kind in volumes:
        if ref is None or kind == ref:
            continue
        if volumes[kind].shape != volumes[ref].shape:
            problems.append(
                Problem(
                    scan_id,
                    str(files[kind]),
                    f"shape {volumes[kind].shape} differs from {ref} shape {volumes[ref].shape}",
                )
            )
        diff = float(np.abs(affines[kind] - affines[ref]).max())
        if diff > rules.affine_tolerance_mm:
            problems.append(
                Problem(
                    scan_id,
                    str(files[kind]),
                    f"affine differs from {ref} by up to {diff:.4g} mm (tolerance {rules.affine_tolerance_mm})",
                )
            )
    absent_only = False
    if "bmode" in volumes:
        b = volumes["bmode"].astype(np.float64, copy=False)
        n_bad = int((~np.isfinite(b)).sum())
        if n_bad:
            problems.append(Problem(scan_id, str(files["bmode"]), f"B-mode has {n_bad} NaN/inf voxel(s)"))
        elif np.ptp(b) == 0:
            problems.append(Problem(scan_id, str(files["bmode"]), f"B-mode is constant ({b.flat[0]:g})"))
    if "swe" in volumes:
        s = volumes["swe"].astype(np.float64, copy=False)
        if np.isinf(s).any():
            problems.append(Problem(scan_id, str(files["swe"]), f"SWE has {int(np.isinf(s).sum())} inf voxel(s)"))
        box = swe_box(s)
        if box is None:
            problems.append(Problem(scan_id, str(files["swe"]), "SWE has no finite voxel (empty SWE box)"))
        else:
            inside = s[box]
            frac = float(np.isnan(inside).mean())
            if frac > rules.swe_max_nan_in_box:
                problems.append(
                    Problem(
                        scan_id,
                        str(files["swe"]),
                        f"{frac:.0%} of the SWE box is NaN (tolerance {rules.swe_max_nan_in_box:.0%}): "
                        "NaN is allowed only outside the SWE box and for rare dropout",
                    )
                )
            finite = inside[np.isfinite(inside)]
            if finite.size and np.ptp(finite) == 0:
                problems.append(Problem(scan_id, str(files["swe"]), f"SWE is constant ({finite[0]:g})"))
            if finite.size and finite.min() < 0:
                problems.append(Problem(scan_id, str(files["swe"]), "SWE has negative shear-wave speeds"))
    if "layers" in volumes:
        lab = volumes["layers"]
        path = str(files["layers"])
        if not np.issubdtype(lab.dtype, np.integer):
            labf = lab.astype(np.float64)
            if not np.isfinite(labf).all() or not np.array_equal(labf, np.round(labf)):
                problems.append(Problem(scan_id, path, "layer map has non-integer values"))
                return problems, spacing, False
        values = np.unique(lab).astype(np.int64)
        out = [int(v) for v in values if v < BACKGROUND or v > len(LAYERS)]
        if out:
            problems.append(Problem(scan_id, path, f"layer values {out} out of range 0..{len(LAYERS)}"))
        else:
            absent = [name for i, name in enumerate(LAYERS, start=1) if i not in set(values.tolist())]
            if absent:
                other_errors = any(p.severity == "error" for p in problems)
                sev = "warning" if rules.absent_layer == "exclude" else "error"
                action = "scan excluded" if sev == "warning" else "set validate.absent_layer: exclude to drop it"
                problems.append(Problem(scan_id, path, f"layer(s) absent: {', '.join(absent)} ({action})", sev))
                absent_only = sev == "warning" and not other_errors
    return problems, spacing, absent_only


def validate_cohort(sheet_path: str | os.PathLike[str], rules: Rules = Rules()) -> tuple[Report, pd.DataFrame]:
    """Check a cohort sheet and every volume it names; return the report and the usable sheet.

    The returned sheet has the volume paths resolved to absolute paths and excluded scans removed.
    """
    sheet_path = Path(sheet_path)
    report = Report()
    if not sheet_path.exists():
        report.problems.append(Problem("-", str(sheet_path), "cohort sheet not found"))
        return report, pd.DataFrame(columns=list(SHEET_COLUMNS))
    try:
        sheet = pd.read_csv(sheet_path, sep="\t", dtype={"scan_id": str, "subject_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        report.problems.append(Problem("-", str(sheet_path), f"cannot parse the sheet as TSV ({exc})"))
        return report, pd.DataFrame(columns=list(SHEET_COLUMNS))
    report.problems += _sheet_problems(sheet, rules)
    if any(p.reason.startswith("missing column") for p in report.problems):
        return report, sheet
    base = sheet_path.parent
    spacings: dict[str, tuple[tuple[float, ...], str]] = {}
    resolved = sheet.copy()
    for idx, row in sheet.iterrows():
        sid = _sid(sheet, idx)
        files: dict[str, Path] = {}
        for col in PATH_COLUMNS:
            if pd.isna(row[col]):
                continue
            path, err = resolve_path(base, str(row[col]), rules.allow_outside_paths)
            if err:
                report.problems.append(Problem(sid, str(row[col]), err))
                continue
            files[col] = path
            resolved.at[idx, col] = str(path.resolve())
        scan_problems, spacing, absent_only = _scan_problems(sid, files, rules)
        report.problems += scan_problems
        if absent_only:
            report.excluded.append(sid)
        if spacing is not None:
            spacings[sid] = (spacing, str(files["bmode"]))
    report.problems += _spacing_warnings(spacings, rules.spacing_tolerance)
    resolved = resolved[~resolved["scan_id"].astype(str).isin(report.excluded)].reset_index(drop=True)
    return report, resolved


def _spacing_warnings(spacings: dict[str, tuple[tuple[float, ...], str]], tolerance: float) -> list[Problem]:
    """Warn for scans whose voxel spacing is far from the cohort's median (mixed exports)."""
    if len(spacings) < 2:
        return []
    ids = list(spacings)
    arr = np.array([spacings[i][0] for i in ids])
    median = np.median(arr, axis=0)
    rel = np.abs(arr - median) / np.where(median > 0, median, 1)
    out = []
    for i in np.flatnonzero((rel > tolerance).any(axis=1)):
        got = ", ".join(f"{v:.3g}" for v in arr[i])
        want = ", ".join(f"{v:.3g}" for v in median)
        out.append(Problem(ids[i], spacings[ids[i]][1], f"spacing ({got}) mm is far from the cohort median ({want}) mm", "warning"))
    return out

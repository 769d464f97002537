"""Cohort integrity check: every problem of a cohort sheet and its volumes, in one list, before training.

Why one list: a user with 4,000 scans on shared storage must learn about every bad scan in one run, not
one error per rerun after hours of GPU time. Each problem names the scan, the file and the reason.
Volumes are streamed one scan at a time, so memory does not grow with the cohort.

The same function backs the workflow's first rule and the ``layer validate`` command.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from layer.names import BACKGROUND, CHANNELS, LAYERS, SHEET_COLUMNS
from layer.progress import progress

PATH_COLUMNS: tuple[str, ...] = ("bmode", "swe", "layers")
#: Columns a sheet must have; ``swe`` may be left out (or empty for some scans): a B-mode-only study.
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c for c in SHEET_COLUMNS if c != "swe")
#: Required columns whose cells may be empty: ``layers`` (a scan without a drawn map gets a predicted one
#: from the segment stage, layer.segment).
OPTIONAL_CELLS: tuple[str, ...] = ("layers",)
#: Optional path columns that are resolved like the volumes but not checked: ``true_layers``, the true maps
#: a synthetic cohort keeps for scoring predicted maps (layer.synth.cohort.withhold_maps).
REFERENCE_COLUMNS: tuple[str, ...] = ("true_layers",)
#: Longest reason a report line carries; longer texts (exception messages) are cut, value lists summarised.
MAX_REASON = 200


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
    n_scans: int = 0  # scans in the sheet
    n_swe: int = 0  # of them, scans with an SWE volume
    swe_models: tuple[str, ...] = ("swe", "fused")  # the study's models that read SWE
    maps: str = ""  # the layer-map line (how many scans have a drawn map), "" when every scan has one

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
        plan = self.modality_line()
        if plan:
            lines.append(plan)
        if self.maps:
            lines.append(self.maps)
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title}:")
                lines += [f"  - scan {p.scan_id} | {p.file} | {p.reason}" for p in items]
        if self.excluded:
            lines.append("Excluded scans: " + ", ".join(self.excluded))
        return "\n".join(lines) + "\n"

    def modality_line(self) -> str:
        """What the study runs when some or all scans lack SWE ("" when every scan has it)."""
        return modality_plan(self.n_scans, self.n_swe, self.swe_models)


def modality_plan(n_scans: int, n_swe: int, swe_models: tuple[str, ...] = ("swe", "fused")) -> str:
    """One line saying which models run on which scans, or "" when every scan has SWE (all on all)."""
    if n_scans == 0 or n_swe >= n_scans:
        return ""
    if n_swe == 0:
        return f"Modalities: B-mode only (no scan has an SWE volume): the bmode model runs on all {n_scans} scans"
    if not swe_models:
        return f"Modalities: bmode on all {n_scans} scans ({n_swe} with SWE, not used: train.modalities has no swe/fused)"
    return (
        f"Modalities: bmode on all {n_scans} scans; {' and '.join(swe_models)} on the {n_swe} scan(s) with SWE "
        f"({n_scans - n_swe} without)"
    )


def has_swe(sheet: pd.DataFrame) -> pd.Series:
    """Per row of a sheet: whether the scan has an SWE volume (a non-empty ``swe`` cell)."""
    if "swe" not in sheet.columns:
        return pd.Series(False, index=sheet.index)
    return sheet["swe"].notna() & (sheet["swe"].astype(str).str.strip() != "")


@dataclass(frozen=True)
class Rules:
    """Tolerances and policies of the check (config ``validate:``)."""

    n_folds: int = 5
    affine_tolerance_mm: float = 1e-3
    swe_max_nan_in_box: float = 0.25
    absent_layer: str = "error"  # "error" fails the run, "exclude" drops the scan with a warning
    allow_outside_paths: bool = False
    spacing_tolerance: float = 0.25  # relative deviation from the cohort's median spacing that warns
    # Optional, set by the workflow from the study config; None skips the check that needs them.
    bmode_max: float | None = None  # input.bmode_max: B-mode beyond [0, bmode_max] is clipped by the model input
    val_fraction: float | None = None  # split.val_fraction: with it, the subject-level split is tried out
    split_seed: int = 0  # split.seed
    # The study's modalities (train.modalities as the workflow derives them); None: all the data allows.
    modalities: tuple[str, ...] | None = None
    # segmentation.min_annotated_subjects: subjects with a drawn map the segment stage needs when some
    # scans have none (it trains on some of them and reports its quality on the others).
    min_annotated_subjects: int = 10

    @classmethod
    def from_attributes(cls, source: object) -> Rules:
        """Rules from any object with attributes of the same names (Snakemake params, argparse args);
        attributes it lacks keep their defaults."""
        values = {f.name: getattr(source, f.name, f.default) for f in fields(cls)}
        if values["modalities"] is not None:
            values["modalities"] = tuple(values["modalities"])
        return cls(**values)

    def swe_modalities(self) -> list[str]:
        """The study's modalities that read SWE (swe, fused)."""
        wanted = self.modalities if self.modalities is not None else tuple(CHANNELS)
        return [m for m in wanted if "swe" in CHANNELS[m]]


#: What a scan_id may contain: outputs are named after scan ids (``{scan_id}_bmode.nii.gz``), so no path
#: separators, spaces or shell-special characters, and no leading dot or dash.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: First bytes of formats people export instead of NIfTI (checked in this order).
_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (128, b"DICM", "a DICOM file"),
    (0, b"NRRD", "an NRRD file"),
    (0, b"ObjectType", "a MetaImage (.mha/.mhd) file"),
    (0, b"NDims", "a MetaImage (.mha/.mhd) file"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"\x89HDF", "an HDF5 file"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"%PDF", "a PDF document"),
    (0, b"\x00\x00\x00\x01", "an MGH/MGZ (FreeSurfer) file"),
)
#: Formats ``layer import`` converts: the report points there.
_IMPORTABLE = ("a DICOM file", "an NRRD file", "a MetaImage (.mha/.mhd) file")


@dataclass
class ScanInfo:
    """What the cohort-level checks need to know about one scan."""

    spacing: tuple[float, ...] | None = None
    spacing_file: str = ""
    absent_only: bool = False
    bmode_range: tuple[float, float] | None = None
    swe_without_nan: bool = False
    swe_median: float | None = None
    swe_p99: float | None = None
    labels_present: tuple[int, ...] = ()  # layer codes 1..6 found in the drawn map


def read_sheet(sheet_path: Path) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read a cohort sheet with every cell as text (only empty cells are missing); say why it cannot be read.

    Accepts UTF-8 (with or without a byte-order mark) and UTF-16 with a byte-order mark (Excel's "Unicode
    Text"). Surrounding spaces in column names and in the six required columns are removed, with a warning.
    """
    name = str(sheet_path)
    if sheet_path.is_dir():
        return None, [Problem("-", name, "the sheet path is a directory; give the cohort sheet file (TSV)")]
    raw = sheet_path.read_bytes()
    if not raw.strip():
        return None, [
            Problem("-", name, "the sheet is empty (no header line); it needs the columns " + ", ".join(SHEET_COLUMNS))
        ]
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = raw.decode("utf-16")
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            return None, [
                Problem(
                    "-",
                    name,
                    f"the sheet is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8 "
                    "tab-separated text",
                )
            ]
    header = text.lstrip("\r\n").splitlines()[0]
    if "\t" not in header:
        counts = {sep: header.count(sep) for sep in (",", ";", "|", " ")}
        sep = max(counts, key=lambda k: counts[k])
        if counts[sep]:
            what = {",": "commas (a CSV file?)", ";": "semicolons", "|": "'|' characters", " ": "spaces"}[sep]
            return None, [
                Problem(
                    "-",
                    name,
                    f"the sheet is not tab-separated: its header line has no tab but {counts[sep]} {what}; "
                    "save it as tab-separated text (in Excel: 'Text (Tab delimited)')",
                )
            ]
    try:
        sheet = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        return None, [Problem("-", name, f"cannot parse the sheet as TSV ({clip(str(exc).strip(), 120)})")]
    problems: list[Problem] = []
    names = [c.strip() for c in header.split("\t")]
    for col in sorted({c for c in names if names.count(c) > 1 and c}):
        problems.append(Problem("-", "sheet", f"column '{col}' appears {names.count(col)} times"))
    if problems:
        return None, problems
    padded = [str(c) for c in sheet.columns if str(c) != str(c).strip()]
    if padded:
        sheet = sheet.rename(columns={c: c.strip() for c in padded})
        problems.append(
            Problem(
                "-", "sheet", "spaces around column name(s) " + ", ".join(repr(c) for c in padded) + " ignored", "warning"
            )
        )
    for col in SHEET_COLUMNS:
        if col not in sheet.columns:
            continue
        values = sheet[col]
        stripped = values.str.strip()
        n = int((values.notna() & (stripped != values)).sum())
        if n:
            sheet[col] = stripped.replace("", np.nan)
            problems.append(
                Problem("-", "sheet", f"spaces around {n} value(s) of column '{col}' ignored", "warning")
            )
    return sheet, problems


def _sheet_problems(sheet: pd.DataFrame, rules: Rules) -> list[Problem]:
    problems: list[Problem] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet.columns]
    for col in missing:
        hint = _closest(col, sheet.columns)
        problems.append(
            Problem("-", "sheet", f"missing column '{col}'" + (f" (found '{hint}': misnamed?)" if hint else ""))
        )
    swe_hint = _closest("swe", sheet.columns) if "swe" not in sheet.columns else None
    if swe_hint:
        problems.append(
            Problem(
                "-",
                "sheet",
                f"no column 'swe' but a column '{swe_hint}' (misnamed?): rename it to 'swe', or drop it to run "
                "a B-mode-only study",
            )
        )
    if missing:
        return problems
    if len(sheet) == 0:
        return [Problem("-", "sheet", "the sheet has no rows")]
    for col in (c for c in REQUIRED_COLUMNS if c not in OPTIONAL_CELLS):
        for idx in sheet.index[sheet[col].isna()]:
            problems.append(Problem(_sid(sheet, idx), "sheet", f"empty value in column '{col}' (row {idx + 2})"))
    for idx in sheet.index[sheet["scan_id"].notna()]:
        sid = str(sheet.at[idx, "scan_id"])
        if not SAFE_ID.fullmatch(sid):
            problems.append(
                Problem(
                    sid,
                    "sheet",
                    f"scan_id '{sid}' (row {idx + 2}) cannot be used in file names, which the outputs are named "
                    "by: use letters, digits, '.', '_' and '-' only, starting with a letter or digit",
                )
            )
    problems += _reread_problems(sheet)
    dup = sheet["scan_id"][sheet["scan_id"].duplicated(keep=False)]
    for sid in sorted(set(dup.astype(str))):
        rows = [str(i + 2) for i in dup.index[dup.astype(str) == sid]]
        problems.append(Problem(sid, "sheet", f"duplicate scan_id (rows {', '.join(rows)})"))
    labels = pd.to_numeric(sheet["label"], errors="coerce")
    bad = sheet.index[~labels.isin([0, 1]) & sheet["label"].notna()]
    for idx in bad:
        problems.append(
            Problem(
                _sid(sheet, idx),
                "sheet",
                f"label '{sheet.at[idx, 'label']}' is not 0 or 1 (1 = pain, 0 = no pain) (row {idx + 2})",
            )
        )
    good = sheet.assign(label=labels).loc[labels.isin([0, 1]) & sheet["subject_id"].notna()]
    if good.empty:
        return problems
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


def _reread(values: pd.Series) -> pd.Series:
    """How later steps see these ids: they read tables back with type inference, then use them as text."""
    buffer = io.StringIO()
    values.to_frame("id").to_csv(buffer, sep="\t", index=False, lineterminator="\n")
    back = pd.read_csv(io.StringIO(buffer.getvalue()), sep="\t")["id"]
    back.index = values.index
    return back.where(back.isna(), back.astype(str))


def _reread_problems(sheet: pd.DataFrame) -> list[Problem]:
    """Ids that later steps would read as missing, merge, or show differently (tables are re-read as numbers)."""
    problems: list[Problem] = []
    for col in ("scan_id", "subject_id"):
        values = sheet[col].dropna().astype(str)
        if values.empty:
            continue
        back = _reread(values)
        for idx in values.index[back.isna()]:
            problems.append(
                Problem(
                    _sid(sheet, idx),
                    "sheet",
                    f"{col} '{values[idx]}' (row {idx + 2}) reads as a missing value in later steps; rename it",
                )
            )
        kept = values[back.notna()]
        merged = False
        for key, group in kept.groupby(back[back.notna()]):
            originals = sorted(set(group))
            if len(originals) > 1:
                merged = True
                problems.append(
                    Problem(
                        "-",
                        "sheet",
                        f"{col}s {', '.join(repr(o) for o in originals)} become the same id '{key}' in later steps, "
                        "which read the tables back as numbers; make them distinct as text (e.g. prefix a letter)",
                    )
                )
        changed = kept[back[back.notna()] != kept]
        if len(changed) and not merged:
            first = changed.index[0]
            problems.append(
                Problem(
                    "-",
                    "sheet",
                    f"{len(changed)} {col}(s) will appear differently in result tables, which read them as "
                    f"numbers (e.g. '{changed[first]}' as '{back[first]}'); prefix a letter to keep them as written",
                    "warning",
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
        if raw.is_absolute() and root not in Path(os.path.normpath(raw)).parents:
            via = "an absolute path"
        elif ".." in raw.parts:
            via = "'..'"
        else:
            via = "a symlink"
        return path, f"path escapes the sheet's directory through {via} ({value})"
    return path, None


def _file_problem(path: Path, value: str) -> str | None:
    """Why ``path`` is not a readable NIfTI volume, judged from the file system and its first bytes."""
    if not path.exists():
        if path.is_symlink():
            return "broken symlink (its target does not exist)"
        if "\\" in value:
            return "file not found (the path contains '\\': write paths with '/')"
        if not Path(value).is_absolute() and Path(value).exists():
            return (
                "file not found next to the sheet (it exists relative to the current directory, but paths are "
                "relative to the sheet's directory)"
            )
        return "file not found"
    if path.is_dir():
        return "is a directory, not a NIfTI file (the path must name the volume file)"
    if path.stat().st_size == 0:
        return "file is empty (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(544)
    compressed = head[:2] == b"\x1f\x8b"
    if compressed:
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(544)
        except (OSError, EOFError, zlib.error) as exc:
            return f"unreadable or truncated NIfTI ({exception_text(exc)})"
    is_nifti = head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] == b"n+2\x00"
    if not is_nifti:
        kind = file_kind(path, head)
        hint = "; convert it to NIfTI (.nii.gz)"
        if kind in _IMPORTABLE:
            hint += ", e.g. with 'layer import'"
        if compressed and kind.startswith("an MGH"):
            kind, compressed = "an MGZ (FreeSurfer, gzip-compressed MGH) file", False
        return f"not a NIfTI file ({'gzip-compressed ' if compressed else ''}{kind}){hint}"
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return f"a NIfTI file named {path.name}: the study reads files ending in .nii or .nii.gz; rename it"
    if name.endswith(".gz") and not compressed:
        return f"an uncompressed NIfTI file named {path.name}: rename it to .nii (or gzip it)"
    if not name.endswith(".gz") and compressed:
        return f"a gzip-compressed NIfTI file named {path.name}: rename it to end in .nii.gz"
    return None


def clip(text: str, limit: int = 100) -> str:
    """``text`` cut to at most ``limit`` characters (an ellipsis marks the cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def exception_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, cut to fit a report line."""
    return clip(f"{type(exc).__name__}: {exc}", 100)


def summarize_values(values: np.ndarray, n_examples: int = 3) -> str:
    """A long list of distinct values as a count, a range and a few examples (one short phrase)."""
    values = np.unique(np.asarray(values).ravel())
    examples = ", ".join(f"{v:g}" for v in values[:n_examples])
    return f"{len(values):,} distinct values from {values.min():,g} to {values.max():,g} (e.g. {examples})"


def file_kind(path: Path, head: bytes) -> str:
    """What a file that is not NIfTI is, from its first (decompressed) bytes and its name."""
    kind = next((what for at, magic, what in _FORMATS if head[at : at + len(magic)] == magic), None)
    if kind is not None:
        return kind
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in (348, 540):
        return "an Analyze 7.5 header (.hdr/.img pair)"
    if path.suffix.lower() == ".img" and any(path.with_suffix(s).exists() for s in (".hdr", ".HDR")):
        return "the image half of an Analyze .hdr/.img pair"
    if not head:
        return "an unknown format"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head) / len(head)
    return "plain text" if printable > 0.95 else "an unknown format"


def _other_image_kind(image: object) -> str | None:
    """What a file nibabel reads as something other than a NIfTI volume is (CIFTI, ...), if it is one."""
    name = type(image).__name__
    if name.startswith("Cifti2"):
        return "a CIFTI-2 file: brain grayordinate data"
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        return f"a {name.removesuffix('Image') or name} file, not a NIfTI volume"
    return None


def _load(path: Path) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """Fully read a NIfTI file; return (data, affine, error). Never raises for a bad file."""
    try:
        image = nib.load(str(path))
        other = _other_image_kind(image)
        if other:
            return None, None, f"not an image volume ({other}); export the ultrasound volume as NIfTI (.nii.gz)"
        data = np.asarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - any failure of a user's file is a finding, not a crash
        return None, None, f"unreadable or truncated NIfTI ({exception_text(exc)})"
    if data.dtype.fields is not None or not (
        np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating) or data.dtype == np.bool_
    ):
        kind = f"data type {data.dtype}"
        return None, None, f"{kind} is not a real number type (RGB or complex?): store one grey value per voxel"
    err = _geometry_problem(_raw_header(path, image.header), affine)
    if err:
        return None, None, err
    return data, affine, None


def _raw_header(path: Path, loaded: nib.Nifti1Header) -> nib.Nifti1Header:
    """The header as stored: nibabel repairs a zero voxel size to 1 on load, hiding it from the check."""
    try:
        with nib.openers.ImageOpener(str(path)) as fh:
            return type(loaded).from_fileobj(fh, check=False)
    except Exception:  # noqa: BLE001 - fall back to the repaired header
        return loaded


def _geometry_problem(header: nib.Nifti1Header, affine: np.ndarray) -> str | None:
    """Why the voxel-to-mm transform is unusable (NaN, zero spacing, singular), if it is."""
    if not np.isfinite(affine).all():
        return "the affine (voxel-to-mm transform) has NaN or inf entries"
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
        if not np.isfinite(pixdim).all() or (pixdim <= 0).any():
            got = ", ".join(f"{v:g}" for v in pixdim)
            return f"voxel size (pixdim {got}) is zero, negative or NaN and there is no sform/qform: spacing unknown"
    columns = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    for axis, length in enumerate(columns):
        if length < 1e-6:
            return f"voxel spacing along array axis {axis} is 0: the affine is singular"
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6 * float(np.prod(columns)):
        return "the affine is singular (two array axes map to the same direction)"
    return None


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


def depth_from_layers(layers: np.ndarray) -> tuple[int, bool] | None:
    """(axis, flipped) along which the layer map runs from dermis (1) to muscle (6): the axis on which the
    two layers' centres lie farthest apart; None if either layer is missing."""
    dermis, muscle = layers == 1, layers == len(LAYERS)
    if not dermis.any() or not muscle.any():
        return None
    shift = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.arange(layers.shape[axis], dtype=np.float64)
        centre = [float((m.sum(axis=other) * idx).sum() / m.sum()) for m in (dermis, muscle)]
        shift.append((centre[1] - centre[0]) / layers.shape[axis])
    axis = int(np.argmax(np.abs(shift)))
    return axis, shift[axis] < 0


def _depth_problem(layers: np.ndarray) -> str | None:
    """Whether the layers run from dermis (1) to muscle (6) down array axis 0, as the study assumes."""
    found = depth_from_layers(layers)
    if found is None:
        return None
    axis, flipped = found
    if axis != 0:
        return (
            f"the layers run from dermis to muscle along array axis {axis}, but depth must be axis 0: store "
            f"all three volumes as (depth, lateral, elevation), e.g. numpy.moveaxis(array, {axis}, 0)"
        )
    if flipped:
        return "the muscle lies above the dermis: depth index 0 must be the skin; flip axis 0 of all three volumes"
    return None


def _scan_problems(scan_id: str, files: dict[str, Path], rules: Rules) -> tuple[list[Problem], ScanInfo]:
    """Problems of one scan, and what the cohort-level checks need from it."""
    problems: list[Problem] = []
    info = ScanInfo()
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
    if "bmode" in affines:
        info.spacing = tuple(float(s) for s in np.sqrt((affines["bmode"][:3, :3] ** 2).sum(axis=0)))
        info.spacing_file = str(files["bmode"])
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
    if "bmode" in volumes:
        b = volumes["bmode"].astype(np.float64, copy=False)
        n_bad = int((~np.isfinite(b)).sum())
        if n_bad:
            problems.append(Problem(scan_id, str(files["bmode"]), f"B-mode has {n_bad} NaN/inf voxel(s)"))
        elif np.ptp(b) == 0:
            problems.append(Problem(scan_id, str(files["bmode"]), f"B-mode is constant ({b.flat[0]:g})"))
        else:
            info.bmode_range = (float(b.min()), float(b.max()))
    if "swe" in volumes:
        s = volumes["swe"].astype(np.float64, copy=False)
        if np.isinf(s).any():
            problems.append(Problem(scan_id, str(files["swe"]), f"SWE has {int(np.isinf(s).sum())} inf voxel(s)"))
        box = swe_box(s)
        if box is None:
            problems.append(
                Problem(
                    scan_id,
                    str(files["swe"]),
                    "SWE has no finite voxel (empty SWE box): the scan has no shear-wave estimate at all",
                )
            )
        else:
            info.swe_without_nan = not np.isnan(s).any()
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
            if finite.size:
                info.swe_median, info.swe_p99 = (float(v) for v in np.percentile(finite, [50, 99]))
    if "layers" in volumes:
        lab = volumes["layers"]
        path = str(files["layers"])
        if not np.issubdtype(lab.dtype, np.integer):
            labf = lab.astype(np.float64)
            if not np.isfinite(labf).all() or not np.array_equal(labf, np.round(labf)):
                problems.append(Problem(scan_id, path, "layer map has non-integer values"))
                return problems, info
        values = np.unique(lab).astype(np.int64)
        out = [int(v) for v in values if v < BACKGROUND or v > len(LAYERS)]
        if len(values) > 2 * (len(LAYERS) + 1):
            problems.append(
                Problem(scan_id, path, f"not a label map: {summarize_values(values)}; expected 0..{len(LAYERS)}")
            )
        elif out:
            problems.append(Problem(scan_id, path, f"layer values {out} out of range 0..{len(LAYERS)}"))
        else:
            depth = _depth_problem(lab)
            if depth:
                problems.append(Problem(scan_id, path, depth))
            info.labels_present = tuple(int(v) for v in values if 1 <= v <= len(LAYERS))
            absent = [name for i, name in enumerate(LAYERS, start=1) if i not in set(values.tolist())]
            if absent:
                other_errors = any(p.severity == "error" for p in problems)
                sev = "warning" if rules.absent_layer == "exclude" else "error"
                action = "scan excluded" if sev == "warning" else "set validate.absent_layer: exclude to drop it"
                problems.append(Problem(scan_id, path, f"layer(s) absent: {', '.join(absent)} ({action})", sev))
                info.absent_only = sev == "warning" and not other_errors
    return problems, info


def _file_reuse(files: dict[str, dict[str, Path]]) -> list[Problem]:
    """A file named twice: within one scan an error (B-mode given as SWE?), across scans a warning."""
    users: dict[Path, list[tuple[str, str]]] = {}
    for sid, kinds in files.items():
        for kind, path in kinds.items():
            users.setdefault(path.resolve(), []).append((sid, kind))
    problems = []
    for path, who in users.items():
        if len(who) < 2:
            continue
        named = ", ".join(f"{kind} of scan {sid}" for sid, kind in who)
        same_scan = len({sid for sid, _ in who}) < len(who)
        problems.append(
            Problem(
                who[0][0],
                str(path),
                f"the same file is listed {len(who)} times ({named}): a copy-paste error?",
                "error" if same_scan else "warning",
            )
        )
    return problems


def _few(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def _value_warnings(infos: dict[str, ScanInfo], rules: Rules) -> list[Problem]:
    """Cohort-level warnings about value ranges (one line each, naming the scans)."""
    out: list[Problem] = []
    ranges = {sid: i.bmode_range for sid, i in infos.items() if i.bmode_range is not None}
    if rules.bmode_max is not None and ranges:
        top = rules.bmode_max
        above = [sid for sid, (_, hi) in ranges.items() if hi > top * (1 + 1e-6)]
        if above:
            hi = max(ranges[s][1] for s in above)
            out.append(
                Problem(
                    _few(above),
                    "bmode",
                    f"B-mode of {len(above)} scan(s) reaches {hi:g}, above input.bmode_max = {top:g}: the model input "
                    "clips it there (saturated); set input.bmode_max to the export's white level (255 for 8-bit)",
                    "warning",
                )
            )
        below = [sid for sid, (lo, _) in ranges.items() if lo < 0]
        if below:
            lo = min(ranges[s][0] for s in below)
            out.append(
                Problem(
                    _few(below),
                    "bmode",
                    f"B-mode of {len(below)} scan(s) has negative values (down to {lo:g}): the model input clips "
                    "them to 0; B-mode is expected as grey levels from 0 to input.bmode_max",
                    "warning",
                )
            )
        highest = max(hi for _, hi in ranges.values())
        if highest < 0.05 * top:
            out.append(
                Problem(
                    "-",
                    "bmode",
                    f"B-mode never exceeds {highest:g}, under 5% of input.bmode_max = {top:g}: the model sees "
                    "nearly black images; set input.bmode_max to the export's white level (1 for data in 0..1)",
                    "warning",
                )
            )
    no_nan = [sid for sid, i in infos.items() if i.swe_without_nan]
    if no_nan:
        out.append(
            Problem(
                _few(no_nan),
                "swe",
                f"SWE of {len(no_nan)} scan(s) has no NaN, so the SWE box cannot be told apart: export NaN outside "
                "the box (0 also reads as 'no estimate'; any other fill value is read as a speed)",
                "warning",
            )
        )
    medians = {sid: i.swe_median for sid, i in infos.items() if i.swe_median is not None}
    typical = float(np.median(list(medians.values()))) if len(medians) >= 3 else None
    odd = [
        sid
        for sid, i in infos.items()
        if i.swe_median is not None
        and ((i.swe_p99 or 0.0) > 20 or (typical is not None and typical > 0 and i.swe_median > 3 * typical))
    ]
    if odd:
        top = max(infos[s].swe_p99 or 0.0 for s in odd)
        versus = f" or a median over 3x the cohort's {typical:.3g} m/s" if typical is not None else ""
        out.append(
            Problem(
                _few(odd),
                "swe",
                f"SWE of {len(odd)} scan(s) looks like another unit (a 99th percentile over 20 m/s{versus}; "
                f"highest {top:.3g}): tissue is 0.5-10 m/s. If the export is Young's modulus in kPa, "
                "convert: m/s = sqrt(kPa / 3)",
                "warning",
            )
        )
    return out


def _split_problems(sheet: pd.DataFrame, rules: Rules) -> list[Problem]:
    """Try the study's subject-level split; say if a fold's training or validation part lacks a class."""
    from layer.cohort.split import make_folds

    assert rules.val_fraction is not None
    table = sheet.loc[:, ["scan_id", "subject_id", "label"]].astype({"label": int})
    counts = table.groupby("subject_id")["label"].first().value_counts()
    setting = (
        f"({int(counts.get(0, 0))} subjects with label 0, {int(counts.get(1, 0))} with label 1; "
        f"split.n_folds = {rules.n_folds}, split.val_fraction = {rules.val_fraction:g})"
    )
    advice = "add subjects, lower split.n_folds or raise split.val_fraction"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folds = make_folds(table, rules.n_folds, rules.val_fraction, rules.split_seed)
    except ValueError as exc:
        return [Problem("-", "sheet", f"the subject-level split cannot be made ({exc}) {setting}: {advice}")]
    short = []
    for fold, part in folds.groupby("fold"):
        for role, what in (("train", "training"), ("val", "validation (early stopping)")):
            present = set(part.loc[part["role"] == role, "label"].astype(int))
            if present != {0, 1}:
                lacks = " and ".join(f"label {c}" for c in (0, 1) if c not in present)
                short.append(f"fold {fold} {what} part has no subject with {lacks}")
    if short:
        return [Problem("-", "sheet", f"too few subjects for the split {setting}: {'; '.join(short)}; {advice}")]
    return []


def validate_cohort(sheet_path: str | os.PathLike[str], rules: Rules = Rules()) -> tuple[Report, pd.DataFrame]:
    """Check a cohort sheet and every volume it names; return the report and the usable sheet.

    The returned sheet has the volume paths resolved to absolute paths, labels as integers, excluded
    scans removed, and a ``swe`` column (empty for scans without SWE, all empty for a B-mode-only sheet).
    A problem of a file used in several places is reported once, naming every place.
    """
    sheet_path = Path(sheet_path)
    report = Report()
    if not sheet_path.exists():
        report.problems.append(Problem("-", str(sheet_path), "cohort sheet not found"))
        return report, pd.DataFrame(columns=list(SHEET_COLUMNS))
    sheet, problems = read_sheet(sheet_path)
    report.problems += problems
    if sheet is None:
        return report, pd.DataFrame(columns=list(SHEET_COLUMNS))
    report.problems += _sheet_problems(sheet, rules)
    if any(p.reason.startswith("missing column") for p in report.problems):
        return report, sheet
    if "swe" not in sheet.columns:
        sheet.insert(list(sheet.columns).index("bmode") + 1, "swe", np.nan)
    sheet_ok = not any(p.file == "sheet" and p.severity == "error" for p in report.problems)
    base = sheet_path.parent
    infos: dict[str, ScanInfo] = {}
    all_files: dict[str, dict[str, Path]] = {}
    uses: dict[str, list[tuple[str, str]]] = {}  # shown file name -> (scan, column) of every use
    resolved = sheet.copy()
    first_file_problem = len(report.problems)
    for idx, row in progress(sheet.iterrows(), "validate", total=len(sheet)):
        sid = _sid(sheet, idx)
        files: dict[str, Path] = {}
        for col in PATH_COLUMNS:
            if pd.isna(row[col]):
                continue
            path, err = resolve_path(base, str(row[col]), rules.allow_outside_paths)
            if err is None:
                err = _file_problem(path, str(row[col]))
            shown = str(row[col]) if err and "escapes" in err else str(path)
            uses.setdefault(shown, []).append((sid, col))
            if err:
                report.problems.append(Problem(sid, shown, err))
                continue
            files[col] = path
            resolved.at[idx, col] = str(path.resolve())
        for col in (c for c in REFERENCE_COLUMNS if c in sheet.columns and not pd.isna(row[c])):
            resolved.at[idx, col] = str(resolve_path(base, str(row[col]), True)[0].resolve())
        scan_problems, info = _scan_problems(sid, files, rules)
        report.problems += scan_problems
        if info.absent_only:
            report.excluded.append(sid)
        infos[sid] = info
        all_files[sid] = files
    merged, stated = _merge_file_problems(report.problems[first_file_problem:], uses)
    report.problems[first_file_problem:] = merged
    report.problems += [p for p in _file_reuse(all_files) if p.file not in stated]
    spacings = {sid: (i.spacing, i.spacing_file) for sid, i in infos.items() if i.spacing is not None}
    report.problems += _spacing_warnings(spacings, rules.spacing_tolerance)
    report.problems += _value_warnings(infos, rules)
    resolved = resolved[~resolved["scan_id"].astype(str).isin(report.excluded)].reset_index(drop=True)
    report.n_scans, report.n_swe = len(resolved), int(has_swe(resolved).sum())
    report.swe_models = tuple(rules.swe_modalities())
    if sheet_ok:
        resolved["label"] = pd.to_numeric(resolved["label"]).astype(int)
        if rules.val_fraction is not None:
            report.problems += _split_problems(resolved, rules)
        report.problems += _swe_subset_problems(resolved, rules)
        report.maps, problems = annotation_summary(resolved, infos, rules.min_annotated_subjects)
        report.problems += problems
    return report, resolved


def has_map(sheet: pd.DataFrame) -> pd.Series:
    """Per row of a sheet: whether the scan has a drawn layer map (a non-empty ``layers`` cell)."""
    return sheet["layers"].notna() & (sheet["layers"].astype(str).str.strip() != "")


def annotation_summary(
    sheet: pd.DataFrame, infos: dict[str, ScanInfo], min_subjects: int
) -> tuple[str, list[Problem]]:
    """The report's layer-map line (drawn maps per scan, subject and layer) and, when some scans have none,
    the problem of too few annotated subjects for the segment stage to train and test a segmentation.

    "" and no problem when every scan has a drawn map (nothing to predict).
    """
    drawn = has_map(sheet)
    if drawn.all():
        return "", []
    n_scans, n_drawn = len(sheet), int(drawn.sum())
    subjects = sheet["subject_id"].astype(str)
    per_subject = drawn.groupby(subjects).agg(["sum", "size"])
    n_subjects, n_annotated = len(per_subject), int((per_subject["sum"] > 0).sum())
    n_all = int((per_subject["sum"] == per_subject["size"]).sum())
    need = f"the segment stage needs drawn maps of at least {min_subjects} subjects " + (
        "(segmentation.min_annotated_subjects) to train a segmentation and test it on held-out subjects"
    )
    if n_drawn == 0:
        return "Layer maps: none drawn", [
            Problem("-", "layers", f"no scan has a layer map (column 'layers' empty in all {n_scans} rows); {need}")
        ]
    per_layer = ", ".join(
        f"{name} {sum(code in infos.get(str(s), ScanInfo()).labels_present for s in sheet.loc[drawn, 'scan_id'])}"
        for code, name in enumerate(LAYERS, start=1)
    )
    line = (
        f"Layer maps: drawn for {n_drawn} of {n_scans} scans, of {n_annotated} of {n_subjects} subjects "
        f"({n_all} with every scan drawn, {n_annotated - n_all} with some, {n_subjects - n_annotated} with none); "
        f"the segment stage predicts the other {n_scans - n_drawn}. Scans with each layer drawn: {per_layer}"
    )
    if n_annotated < min_subjects:
        return line, [
            Problem("-", "layers", f"only {n_annotated} subject(s) have a drawn layer map; {need}: draw more maps")
        ]
    return line, []


def _uses_text(who: list[tuple[str, str]]) -> str:
    """Where one file is used, short: ``bmode, swe of scan a1; layers of scan a4`` or a count for many scans."""
    by_scan: dict[str, list[str]] = {}
    for sid, col in who:
        by_scan.setdefault(sid, []).append(col)
    if len(by_scan) > 3:
        return f"in {len(by_scan)} scans: {_few(list(by_scan), 3)}"
    return "; ".join(f"{', '.join(cols)} of scan {sid}" for sid, cols in by_scan.items())


def _merge_file_problems(
    problems: list[Problem], uses: dict[str, list[tuple[str, str]]]
) -> tuple[list[Problem], set[str]]:
    """One problem per file and reason, at its first place, naming every use of the file; and the files
    whose repeat is stated in such a merged line (their separate 'listed N times' finding is dropped)."""
    groups: dict[tuple[str, str, str], list[Problem]] = {}
    for p in problems:
        groups.setdefault((p.file, p.reason, p.severity), []).append(p)
    out: list[Problem] = []
    stated: set[str] = set()
    for p in problems:
        group = groups.pop((p.file, p.reason, p.severity), None)
        if group is None:
            continue
        who = uses.get(p.file, [])
        if len(who) < 2:
            out.append(p)
            continue
        stated.add(str(Path(p.file).resolve()))
        scans = list(dict.fromkeys(sid for sid, _ in who))
        affected = list(dict.fromkeys(q.scan_id for q in group))  # the scans where the problem was found
        same_scan = len(scans) < len(who)
        note = f"; listed {len(who)} times ({_uses_text(who)}){': a copy-paste error?' if same_scan else ''}"
        out.append(Problem(_few(affected, 3), p.file, p.reason + note, p.severity))
    return out, stated


def _swe_subset_problems(sheet: pd.DataFrame, rules: Rules) -> list[Problem]:
    """A mixed cohort: the swe and fused models train on the scans with SWE only; say if that subset is too
    small for the folds (per class, and per fold part when the split is tried)."""
    with_swe = has_swe(sheet)
    wanted = rules.swe_modalities()
    if not wanted or with_swe.all() or not with_swe.any():
        return []
    subset = sheet.loc[with_swe]
    what = f"{'/'.join(wanted)} train on the {len(subset)} scan(s) with SWE"
    advice = "add SWE or set train.modalities: [bmode]"
    per_subject = subset.groupby(subset["subject_id"].astype(str))["label"].first()
    short = [
        f"{int((per_subject == c).sum())} subject(s) with label {c}"
        for c in (0, 1)
        if int((per_subject == c).sum()) < rules.n_folds
    ]
    if short:
        return [
            Problem(
                "-",
                "swe",
                f"{what}, of only {' and '.join(short)}; {rules.n_folds}-fold cross-validation needs at least "
                f"{rules.n_folds} per class: {advice}",
            )
        ]
    if rules.val_fraction is None:
        return []
    from layer.cohort.split import make_folds

    table = sheet.loc[:, ["scan_id", "subject_id", "label"]].astype({"label": int})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folds = make_folds(table, rules.n_folds, rules.val_fraction, rules.split_seed)
    except ValueError:
        return []  # said by _split_problems
    folds = folds[folds["scan_id"].isin(set(subset["scan_id"].astype(str)))]
    gaps = []
    for fold, part in folds.groupby("fold"):
        for role, role_name in (("train", "training"), ("val", "validation")):
            present = set(part.loc[part["role"] == role, "label"].astype(int))
            if present != {0, 1}:
                lacks = " and ".join(f"label {c}" for c in (0, 1) if c not in present)
                gaps.append(f"fold {fold} {role_name} part has no {lacks}")
    if gaps:
        listed = "; ".join(gaps[:2]) + (f" and {len(gaps) - 2} more" if len(gaps) > 2 else "")
        return [Problem("-", "swe", f"{what}, too few for the split: {listed}; {advice}")]
    return []


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

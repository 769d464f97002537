"""``layer import``: ultrasound research exports (NRRD, MetaImage, DICOM) into a cohort of NIfTI volumes.

3-D ultrasound arrives as NRRD (3D Slicer), MetaImage ``.mha``/``.mhd`` (PLUS toolkit) or DICOM, seldom as
NIfTI. SimpleITK reads all of them (and NIfTI) with their geometry; each volume is written as NIfTI with:

- the same voxel spacing and orientation: the ITK geometry (LPS) becomes the NIfTI affine (RAS), and
  reordering the array axes reorders the affine's columns with them, so every voxel keeps its place in mm;
- depth on the first array axis, the skin at index 0 (docs/preparing-your-cohort.md). Which axis is depth:
  ``depth_axis`` when given; else the scan's layer map (the axis along which the layers run from dermis to
  muscle, flipped if the muscle comes first); else, for DICOM, the image rows (ultrasound frames are drawn
  with depth down the rows); else the scan is refused: the file cannot tell;
- SWE in m/s: ``swe_unit="kPa"`` converts Young's modulus, m/s = sqrt(kPa / 3);
- a fresh header (:func:`layer.io.save_nifti`): no header field of the export is copied, so no patient
  name, id, birth date, institution or free text (DICOM patient tags, NRRD/MetaImage key-value fields,
  NIfTI ``descrip``) reaches the cohort. Files are named by scan_id, never by the export's name.

A scan is converted whole or not at all: its volumes are read and checked in memory first, then written
(each atomically); a refused scan is left out of the sheet and its reason logged.
"""

from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk

from layer.cohort.validate import (
    depth_from_layers,
    PATH_COLUMNS,
    REQUIRED_COLUMNS,
    SAFE_ID,
    clip,
    exception_text,
    file_kind,
    read_sheet,
)
from layer.io import atomic_path, save_nifti, write_tsv
from layer.names import SHEET_COLUMNS
from layer.progress import progress

#: ITK's patient space is LPS, NIfTI's is RAS: the first two world axes change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
SWE_UNITS: tuple[str, ...] = ("m/s", "kPa")
#: DICOM keywords that identify a person, place or visit; checked with pydicom in each series and never copied.
IDENTIFYING_TAGS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientAddress",
    "OtherPatientIDs", "PatientTelephoneNumbers", "InstitutionName", "InstitutionAddress",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "DeviceSerialNumber", "StationName",
)  # fmt: skip


class Refused(Exception):
    """A volume or scan that cannot be converted; the message is the reason (one short phrase)."""


@dataclass
class Volume:
    """One volume as read: array in ITK index order (i, j, k), its affine (RAS, mm), what it was."""

    array: np.ndarray
    affine: np.ndarray
    kind: str  # "NRRD", "MetaImage", "DICOM", "NIfTI"
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportLog:
    """One line per converted file and per refused scan (scan | file | reason), in order."""

    lines: list[str] = field(default_factory=list)
    n_converted: int = 0
    n_refused: int = 0

    def converted(self, scan_id: str, source: str, text: str) -> None:
        self.lines.append(f"converted {scan_id} | {source} | {text}")

    def refused(self, scan_id: str, source: str, reason: str) -> None:
        self.n_refused += 1
        self.lines.append(f"refused {scan_id} | {source} | {clip(reason, 200)}")

    def text(self) -> str:
        head = f"layer import: {self.n_converted} scan(s) converted, {self.n_refused} refused"
        return "\n".join([head, *self.lines]) + "\n"


def itk_affine(image: sitk.Image) -> np.ndarray:
    """The NIfTI affine (voxel index (i, j, k) -> RAS mm) of a 3-D SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=np.float64)
    return affine


def _kind_of(path: Path) -> str:
    """The format of a file from its first bytes (gzip-compressed NIfTI included)."""
    with open(path, "rb") as fh:
        head = fh.read(544)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            head = fh.read(544)
    if head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] == b"n+2\x00":
        return "NIfTI"
    kind = file_kind(path, head)
    return {"a DICOM file": "DICOM", "an NRRD file": "NRRD", "a MetaImage (.mha/.mhd) file": "MetaImage"}.get(
        kind, kind
    )


def identifying_tags(dicom_file: str | os.PathLike[str]) -> list[str]:
    """Keywords of :data:`IDENTIFYING_TAGS` that a DICOM file fills in (read with pydicom, pixels skipped)."""
    ds = pydicom.dcmread(str(dicom_file), stop_before_pixels=True, force=True)
    return [k for k in IDENTIFYING_TAGS if k in ds and str(ds.data_element(k).value).strip()]


def _read_image(path: Path) -> tuple[sitk.Image, str, list[str]]:
    """Read a file or a DICOM series folder with SimpleITK; return (image, kind, notes)."""
    if path.is_dir():
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
        if not ids:
            raise Refused("no DICOM series in this folder")
        if len(ids) > 1:
            raise Refused(f"{len(ids)} DICOM series in this folder: give each volume its own folder")
        names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), ids[0])
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(names)
        tags = identifying_tags(names[0])
        return reader.Execute(), f"DICOM series ({len(names)} files)", _tag_note(tags)
    if not path.exists():
        raise Refused("file not found")
    if path.stat().st_size == 0:
        raise Refused("file is empty (0 bytes)")
    kind = _kind_of(path)
    if kind not in ("NIfTI", "NRRD", "MetaImage", "DICOM"):
        raise Refused(f"{kind}: layer import reads NRRD, MetaImage (.mha/.mhd), DICOM and NIfTI")
    notes = _tag_note(identifying_tags(path)) if kind == "DICOM" else []
    return sitk.ReadImage(str(path)), kind, notes


def _tag_note(tags: list[str]) -> list[str]:
    """The log's note on the identifying tags a DICOM file fills in (none is copied)."""
    listed = ", ".join(tags[:2]) + (", ..." if len(tags) > 2 else "")
    return [f"{len(tags)} identifying tag(s) dropped ({listed})"] if tags else []


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read one volume (NRRD, MetaImage, DICOM file or series folder, NIfTI); raise :class:`Refused`."""
    path = Path(path)
    try:
        image, kind, notes = _read_image(path)
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a user's file is a refusal, not a crash
        raise Refused(f"unreadable ({exception_text(exc)})") from None
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise Refused(
            f"{image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or vector): export grey values"
        )
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise Refused(f"a {image.GetDimension()}-D image of size {image.GetSize()}, expected a 3-D volume")
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))  # (k, j, i) -> (i, j, k)
    return Volume(array, itk_affine(image), kind, notes)


def depth_first(array: np.ndarray, affine: np.ndarray, axis: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Move array axis ``axis`` to the front (the other two keep their order), optionally flip it, and
    change the affine with it, so that every voxel keeps its position in mm."""
    order = [axis] + [a for a in range(3) if a != axis]
    out = np.transpose(array, order)
    new = affine.copy()
    new[:, :3] = affine[:, order]
    if flip:
        out = out[::-1]
        new[:3, 3] += new[:3, 0] * (out.shape[0] - 1)
        new[:3, 0] = -new[:3, 0]
    return np.ascontiguousarray(out), new


def kpa_to_speed(values: np.ndarray) -> np.ndarray:
    """Young's modulus in kPa to shear-wave speed in m/s (E = 3 rho c^2, rho = 1000 kg/m^3); NaN stays NaN,
    negative moduli become NaN."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(v >= 0, np.sqrt(np.where(v >= 0, v, 0.0) / 3.0), np.nan).astype(np.float32)


def _layer_dtype(array: np.ndarray) -> np.ndarray:
    """A layer map as uint8 when it holds small non-negative integers (else as it is: the check says why)."""
    if array.size and np.isfinite(array).all() and np.array_equal(array, np.round(array)):
        if array.min() >= 0 and array.max() <= 255:
            return array.astype(np.uint8)
    return array


def convert_scan(
    files: dict[str, Path], depth_axis: int | None = None, swe_unit: str = "m/s"
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, str]], str]:
    """Read and convert the volumes of one scan (``{column: path}``); return ``{column: (array, affine,
    what it was)}`` with depth first, and a note on how depth was found. Raise :class:`Refused` naming the
    column."""
    volumes: dict[str, Volume] = {}
    for col, path in files.items():
        try:
            volumes[col] = read_volume(path)
        except Refused as exc:
            raise Refused(f"{col}: {exc}") from None
    shapes = {v.array.shape for v in volumes.values()}
    if len(shapes) > 1:
        listed = ", ".join(f"{c} {v.array.shape}" for c, v in volumes.items())
        raise Refused(f"the volumes differ in shape ({listed})")
    found = depth_from_layers(volumes["layers"].array) if "layers" in volumes else None
    if depth_axis is not None:
        axis, flip, how = depth_axis, bool(found and found[0] == depth_axis and found[1]), "--depth-axis"
    elif found is not None:
        (axis, flip), how = found, "layer map"
    elif any(v.kind.startswith("DICOM") for v in volumes.values()):
        axis, flip, how = 1, False, "DICOM image rows"
    else:
        raise Refused(
            "layers: cannot tell which array axis is depth (no dermis and muscle in the layer map): give --depth-axis"
        )
    out = {}
    for col, vol in volumes.items():
        array = vol.array
        if col == "swe":
            array = kpa_to_speed(array) if swe_unit == "kPa" else array.astype(np.float32, copy=False)
        elif col == "layers":
            array = _layer_dtype(array)
        what = ", ".join([vol.kind + (" in kPa, now m/s" if col == "swe" and swe_unit == "kPa" else ""), *vol.notes])
        out[col] = (*depth_first(array, vol.affine, axis, flip), what)
    note = f"depth: axis {axis} ({how}){', flipped: skin at index 0' if flip else ''}"
    return out, note


def import_cohort(
    manifest: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    depth_axis: int | None = None,
    swe_unit: str = "m/s",
) -> tuple[pd.DataFrame, ImportLog]:
    """Convert every scan of ``manifest`` (a cohort sheet whose paths name exports) into ``out_dir``.

    Writes ``out_dir/scans/{scan_id}_{column}.nii.gz``, the cohort sheet ``out_dir/cohort.tsv`` (the
    converted scans; the manifest's other columns kept) and ``out_dir/import.log``; returns (sheet, log).
    """
    if swe_unit not in SWE_UNITS:
        raise ValueError(f"swe_unit must be one of {SWE_UNITS}, not {swe_unit!r}")
    if depth_axis is not None and depth_axis not in (0, 1, 2):
        raise ValueError(f"depth_axis must be 0, 1 or 2, not {depth_axis}")
    manifest, out_dir = Path(manifest), Path(out_dir)
    log = ImportLog()
    sheet, problems = read_sheet(manifest) if manifest.is_file() else (None, [])
    missing = [c for c in REQUIRED_COLUMNS if sheet is not None and c not in sheet.columns]
    if sheet is None or missing:
        why = (
            problems[0].reason if problems else (f"missing column(s) {', '.join(missing)}" if missing else "not found")
        )
        log.refused("-", str(manifest), f"cannot read the manifest: {why}")
        return pd.DataFrame(), log
    columns = [c for c in PATH_COLUMNS if c in sheet.columns]
    rows, seen = [], set()
    for _, row in progress(sheet.iterrows(), "import", total=len(sheet)):
        sid = str(row["scan_id"])
        if not SAFE_ID.fullmatch(sid) or sid in seen:
            why = "appears twice" if sid in seen else "cannot name files: use letters, digits, '.', '_', '-'"
            log.refused(sid, manifest.name, f"scan_id {why}")
            continue
        seen.add(sid)
        given = {c: str(row[c]).strip() for c in columns if pd.notna(row[c]) and str(row[c]).strip()}
        files = {c: manifest.parent / v for c, v in given.items()}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                converted, note = convert_scan(files, depth_axis, swe_unit)
        except Refused as exc:
            col = str(exc).split(":", 1)[0]
            log.refused(sid, given.get(col, manifest.name), str(exc))
            continue
        new = row.to_dict()
        for col, (array, affine, what) in converted.items():
            rel = f"scans/{sid}_{col}.nii.gz"
            save_nifti(array, affine, out_dir / rel)
            new[col] = rel
            spacing = " x ".join(f"{s:.3g}" for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
            log.converted(sid, given[col], f"{what} -> {rel} {array.shape}, {spacing} mm, {note}")
        log.n_converted += 1
        rows.append(new)
    order = [c for c in SHEET_COLUMNS if c in sheet.columns] + [c for c in sheet.columns if c not in SHEET_COLUMNS]
    table = pd.DataFrame(rows, columns=order)
    if "swe" in table.columns and table["swe"].isna().all():
        table = table.drop(columns="swe")
    write_tsv(table, out_dir / "cohort.tsv")
    with atomic_path(out_dir / "import.log") as tmp:
        tmp.write_text(log.text())
    return table, log

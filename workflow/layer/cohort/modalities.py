"""Which models a user's cohort can run, read from its sheet when the workflow is parsed (stdlib only).

Why at parse time: the DAG (one train job per modality x fold) is built before any rule runs, so the
modalities must be known before ``validate_cohort`` has read a volume. A sheet without a ``swe`` column, or
with it empty for every scan, is a B-mode-only study: the models that read SWE (``swe``, ``fused``) are left
out. A mixed cohort (SWE for some scans) keeps them; they train and are attributed on the scans with SWE
(``layer.nets.data.with_channels``). A sheet that cannot be read keeps the requested modalities, and the
``validate_cohort`` rule then reports why it cannot be read.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

#: Models that read the SWE volume (layer.names.CHANNELS).
SWE_MODALITIES: tuple[str, ...] = ("swe", "fused")


def _sheet_text(path: Path) -> str | None:
    """The sheet as text (UTF-8 with or without a byte-order mark, or UTF-16 with one); None if unreadable."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        return raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def swe_count(sheet_path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(scans, scans with a non-empty ``swe`` cell) of a cohort sheet; None if it cannot be read as TSV."""
    return filled_count(sheet_path, "swe")


def missing_maps(sheet_path: str | os.PathLike[str]) -> bool:
    """Whether some scan of the sheet has no drawn layer map (an empty ``layers`` cell): the study then runs
    the segment stage. False for a sheet that cannot be read (``validate_cohort`` says why)."""
    counts = filled_count(sheet_path, "layers")
    return counts is not None and counts[1] < counts[0]


def filled_count(sheet_path: str | os.PathLike[str], column: str) -> tuple[int, int] | None:
    """(scans, scans with a non-empty ``column`` cell) of a cohort sheet (0 filled without the column);
    None if it cannot be read as TSV."""
    text = _sheet_text(Path(sheet_path))
    if text is None or not text.strip():
        return None
    rows = list(csv.reader(io.StringIO(text.lstrip("\r\n")), delimiter="\t"))
    if not rows or len(rows[0]) < 2:
        return None
    header = [c.strip() for c in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if column not in header:
        return len(body), 0
    at = header.index(column)
    return len(body), sum(1 for r in body if at < len(r) and r[at].strip())


def sheet_modalities(sheet_path: str | os.PathLike[str], requested: list[str]) -> list[str]:
    """The requested modalities this sheet can run: without SWE in any row, only those not reading SWE.

    Raises ValueError when none is left (e.g. ``train.modalities: [swe]`` on a B-mode-only sheet).
    """
    counts = swe_count(sheet_path)
    if counts is None or counts[1] > 0:
        return list(requested)
    kept = [m for m in requested if m not in SWE_MODALITIES]
    if not kept:
        raise ValueError(
            f"train.modalities {list(requested)} all need SWE volumes, but the cohort sheet {sheet_path} has "
            "no 'swe' column or no SWE path in it: add bmode to train.modalities"
        )
    return kept

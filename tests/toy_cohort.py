"""A tiny valid cohort for the validator tests: six layers stacked down axis 0, SWE in a box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from layer.io import affine_from_spacing, save_nifti

SHAPE = (12, 6, 6)
SPACING = (0.5, 1.0, 1.0)


def volumes(seed: int) -> dict[str, np.ndarray]:
    """A valid scan: six layers stacked down axis 0 (skin at index 0), random B-mode, SWE in a box."""
    rng = np.random.default_rng(seed)
    layers = np.zeros(SHAPE, np.uint8)
    for value, (start, stop) in enumerate([(1, 3), (3, 5), (5, 6), (6, 8), (8, 9), (9, 12)], start=1):
        layers[start:stop] = value
    bmode = rng.random(SHAPE).astype(np.float32)
    swe = np.full(SHAPE, np.nan, np.float32)
    swe[1:10, 1:5, :] = 2.0 + rng.random((9, 4, SHAPE[2])).astype(np.float32)
    return {"bmode": bmode, "swe": swe, "layers": layers}


def cohort(root: Path, n_subjects: int = 4, scans: int = 2) -> Path:
    """A valid cohort of n_subjects (alternating labels) x scans; returns the sheet path."""
    rows = []
    for s in range(n_subjects):
        for k in range(scans):
            sid = f"s{s}-{k}"
            row = {"scan_id": sid, "subject_id": f"sub{s}", "label": s % 2}
            for kind, arr in volumes(s * 10 + k).items():
                rel = f"scans/{sid}_{kind}.nii.gz"
                save_nifti(arr, affine_from_spacing(SPACING), root / rel)
                row[kind] = rel
            rows.append(row)
    sheet = root / "cohort.tsv"
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return sheet

"""Attribution examples read back for the overlay figure, without torch: the figure rule runs in the stats
environment (envs/stats.yaml), which has no torch, MONAI or captum."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from layer.io import load_nifti


#: File of an example folder that names its job (modality, method).
EXAMPLE_IDENTITY = "identity.json"


def read_examples(example_dir: str, sheet: pd.DataFrame) -> list[dict]:
    """Read back the first example written by ``layer.explain.attribute.write_examples``, with its B-mode and layers,
    and the modality and method the folder names in ``identity.json``.

    Of several channels, the B-mode one is shown (it is the one drawn under the overlay).
    """
    identity = json.loads((Path(example_dir) / EXAMPLE_IDENTITY).read_text())
    modality, method = identity["modality"], identity["method"]
    files = sorted(Path(example_dir).glob("*.nii.gz"))
    if not files:
        return []
    rows = sheet.set_index(sheet["scan_id"].astype(str))
    sid, channel = files[0].name[: -len(".nii.gz")].rsplit("_", 1)
    chosen = next((f for f in files if f.name == f"{sid}_bmode.nii.gz"), files[0])
    channel = chosen.name[: -len(".nii.gz")].rsplit("_", 1)[1]
    attribution, affine = load_nifti(chosen)
    bmode, _ = load_nifti(rows.at[sid, "bmode"])
    layers, _ = load_nifti(rows.at[sid, "layers"])
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return [
        {
            "scan_id": sid,
            "modality": modality,
            "method": method,
            "channel": channel,
            "bmode": np.asarray(bmode, dtype=np.float32),
            "layers": np.asarray(layers).astype(np.int16),
            "attribution": np.asarray(attribution, dtype=np.float32),
            "spacing": spacing,
        }
    ]

"""Planted d -> image d: how much of a planted layer effect the rendered images carry (issue "The recovery
proof", item 1). For every layer x feature, a default-size cohort (240 subjects, 2 scans each, 48x32x32)
with that one effect at Cohen's d = D, rendered by the synthetic cohort's own code; the image statistic
that reads the feature (thickness -> thickness_mm, echogenicity -> echo_mean, texture -> echo_sd,
stiffness -> swe_mean, measured in the true layer map by layer.features) is compared between patients and
controls as the study does (``layer.features.compare.feature_differences``: subject means, pooled SD).

Run: .venv/bin/python docs/measurements/attenuation/run.py [D ...]   (default D = 1.5 3.0)
Writes results/attenuation/attenuation.tsv; about 10 min on 2 cores.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "workflow"))

import pandas as pd  # noqa: E402

from layer.features.compare import feature_differences  # noqa: E402
from layer.features.table import feature_table  # noqa: E402
from layer.names import LAYERS  # noqa: E402
from layer.synth import SynthConfig, synthesize_cohort  # noqa: E402

STATISTIC = {"thickness": "thickness_mm", "echogenicity": "echo_mean", "texture": "echo_sd", "stiffness": "swe_mean"}


def one(layer: str, feature: str, d: float) -> dict[str, object]:
    cfg = SynthConfig.from_mapping({"preset": "custom", "effects": [{"layer": layer, "feature": feature, "d": d}],
                                    "n_subjects": 240, "scans_per_subject": 2, "seed": 1})  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="att_"))
    try:
        sheet = synthesize_cohort(cfg, work)
        for col in ("bmode", "swe", "layers"):
            sheet[col] = [str(work / p) for p in sheet[col]]
        diff = feature_differences(feature_table(sheet), 200, 0.95, 0).set_index(["layer", "feature"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stat = STATISTIC[feature]
    row = diff.loc[(layer, stat)] if (layer, stat) in diff.index else None
    others = diff.drop(index=(layer, stat), errors="ignore")["d"].abs()
    return {"layer": layer, "feature": feature, "planted_d": d, "statistic": stat,
            "image_d": None if row is None else float(row["d"]),
            "ratio": None if row is None else float(row["d"]) / d,
            "largest_other_abs_d": float(others.max()),
            "largest_other": "/".join(others.idxmax())}  # fmt: skip


if __name__ == "__main__":
    ds = [float(x) for x in sys.argv[1:]] or [1.5, 3.0]
    jobs = [(layer, feature, d) for d in ds for layer in LAYERS for feature in STATISTIC]
    with ProcessPoolExecutor(2) as pool:
        rows = list(pool.map(one, *zip(*jobs)))
    out = ROOT / "results" / "attenuation" / "attenuation.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, sep="\t", index=False, float_format="%.3g")
    print(pd.DataFrame(rows).to_string(index=False))

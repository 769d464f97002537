"""The markdown tables of docs/validation.md from a finished (or partial) grid's results/validation/recovery.tsv.

Run: .venv/bin/python docs/measurements/grid/table.py [results/validation/recovery.tsv]
"""

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "workflow"))

from layer.io import read_tsv  # noqa: E402

path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results" / "validation" / "recovery.tsv"
r = read_tsv(path)
ig, sh = r[r.method == "integrated_gradients"], r[r.method == "shapley_background"]
key = ["scenario", "modality", "replicate"]
m = sh.merge(ig[key + ["top1_accuracy", "recall", "false_positive_rate"]], on=key, suffixes=("", "_ig"))
print("| scenario | modality | model AUC [lower] | oracle | learned | Shapley top-1 / recall / FPR | IG top-1 / recall / FPR |")
print("|---|---|---|---|---|---|---|")


def f(v: float) -> str:
    return "-" if pd.isna(v) else f"{v:.2f}"


for scenario, part in m[m.scenario != "null"].groupby("scenario", sort=False):
    for row in part.itertuples():
        learned = "yes" if row.model_auc_low > 0.7 else "no"
        print(f"| {scenario} | {row.modality} | {row.model_auc:.2f} [{row.model_auc_low:.2f}] | "
              f"{f(row.image_oracle_auc)} | {learned} | {f(row.top1_accuracy)} / {f(row.recall)} / "
              f"{f(row.false_positive_rate)} | {f(row.top1_accuracy_ig)} / {f(row.recall_ig)} / "
              f"{f(row.false_positive_rate_ig)} |")
null = m[m.scenario == "null"]
if len(null):
    for modality, part in null.groupby("modality", sort=False):
        print(f"| null ({len(part)} seeds) | {modality} | {part.model_auc.mean():.2f} (mean) | - | - | "
              f"FPR {part.false_positive_rate.mean():.3f} | FPR {part.false_positive_rate_ig.mean():.3f} |")

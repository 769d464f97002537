"""Robustness: layer scores of the same scans under one-voxel and Dice-level errors of the layer masks."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.attribution import AttributionSettings  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.perturb import robustness_profiles  # noqa: E402
from layer.train import configure_torch, pick_device  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
configure_torch(snakemake.threads, pick_device())
settings = AttributionSettings(
    gradcam_layer=p.gradcam_layer,
    ig_steps=p.ig_steps,
    batch_size=p.batch_size,
    n_background=p.n_background,
    eg_samples=p.eg_samples,
    removal_blur_sigma=p.blur_sigma,
    removal_road_iterations=p.road_iterations,
    removal_road_noise=p.road_noise,
    seed=p.seed,
)
sheet, folds = read_tsv(snakemake.input.sheet), read_tsv(snakemake.input.folds)
parts = []
for method in p.methods:
    part = robustness_profiles(sheet, folds, snakemake.input.model, method, p.n_scans, settings)
    part.insert(0, "method", method)
    parts.append(part)
table = pd.concat(parts, ignore_index=True)
table.insert(0, "modality", snakemake.wildcards.modality)
write_tsv(table, snakemake.output.table)
log.info("%d rows", len(table))

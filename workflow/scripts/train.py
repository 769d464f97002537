"""Train one model (modality x fold), keep its best weights, curve and out-of-fold predictions.

For a null replicate the rule passes ``permutation_seed`` (None for the trained models): the labels are then
permuted across subjects before training.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.config import from_params  # noqa: E402
from layer.io import atomic_path, read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.cohort.split import permute_subject_labels  # noqa: E402
from layer.nets.data import modality_scans  # noqa: E402
from layer.nets.train import ModelSpec, TrainSettings, remove_checkpoint, train_fold  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
spec = ModelSpec(name=p.model_name, width=p.width, lateral_pool=p.lateral_pool, bmode_max=p.bmode_max,
                 swe_scale=p.swe_scale)
settings = from_params(TrainSettings, p)
# A mixed cohort: the swe and fused models see only the scans with SWE.
sheet, folds = modality_scans(read_tsv(snakemake.input.sheet), read_tsv(snakemake.input.folds), snakemake.wildcards.modality)
permutation_seed = p.permutation_seed
if permutation_seed is not None:
    sheet = permute_subject_labels(sheet, permutation_seed)
    log.info("null model: labels permuted across subjects (seed %d)", permutation_seed)
saved, curve, oof = train_fold(
    sheet,
    folds,
    snakemake.wildcards.modality,
    int(snakemake.wildcards.fold),
    spec,
    settings,
    threads=snakemake.threads,
    checkpoint=p.checkpoint,
)
curve.insert(0, "modality", snakemake.wildcards.modality)
curve.insert(1, "fold", int(snakemake.wildcards.fold))
write_tsv(curve, snakemake.output.curve)
write_tsv(oof, snakemake.output.oof)
with atomic_path(snakemake.output.model) as tmp:
    torch.save(saved, tmp)
remove_checkpoint(p.checkpoint)
log.info("best validation AUC %.3f after %d epochs", curve["val_auc"].max(), len(curve))

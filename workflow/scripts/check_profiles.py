"""Layer profiles of the fold-0 model for every method: under cascading parameter randomisation (``{check}``
= sanity) or under one-voxel and Dice-level errors of the layer masks (``{check}`` = robustness)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.explain.attribute import AttributionSettings  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.checks.profiles import check_profiles  # noqa: E402
from layer.nets.data import modality_scans  # noqa: E402
from layer.nets.device import configure_torch, pick_device  # noqa: E402
from layer.segment.quality import held_out_dice  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
configure_torch(snakemake.threads, pick_device())
sheet, folds = modality_scans(read_tsv(snakemake.input.sheet), read_tsv(snakemake.input.folds), snakemake.wildcards.modality)
table = check_profiles(
    snakemake.wildcards.check,
    sheet,
    folds,
    snakemake.input.model,
    p.methods,
    p.n_scans,
    AttributionSettings.from_params(p),
    # where the segment stage ran: its measured held-out Dice, one more mask-error level
    held_out_dice(read_tsv(snakemake.input.quality[0])) if snakemake.input.quality else None,
)
table.insert(0, "modality", snakemake.wildcards.modality)
write_tsv(table, snakemake.output.table)
log.info("%d rows", len(table))

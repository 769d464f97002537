"""Reduce one method's attribution maps (or layer scores) of a model to per-scan, per-channel, per-layer scores."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.aggregate import aggregate_job  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402

log = log_to(snakemake.log[0])
table = aggregate_job(
    snakemake.input.maps, read_tsv(snakemake.input.sheet), snakemake.params.membrane_margin,
    method=snakemake.wildcards.method,
)
table.insert(2, "modality", snakemake.wildcards.modality)
table.insert(3, "method", snakemake.wildcards.method)
table.insert(4, "fold", int(snakemake.wildcards.fold))
if snakemake.params.null_model is not None:
    table.insert(5, "null_model", snakemake.params.null_model)
write_tsv(table, snakemake.output.table)
log.info("%d rows for %d scans", len(table), table["scan_id"].nunique())

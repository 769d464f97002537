"""Dice and mean surface distance of the predicted maps: against the drawn maps of the held-out subjects and,
on the synthetic cohort, against the true maps of the scans whose maps were withheld."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.segment.quality import quality_tables  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
per_scan, summary = quality_tables(
    read_tsv(snakemake.input.sheet), read_tsv(snakemake.input.split), snakemake.input.maps,
    p.n_resamples, p.confidence_level, p.seed,
)
write_tsv(per_scan, snakemake.output.per_scan)
write_tsv(summary, snakemake.output.summary)
log.info("\n%s", summary[summary["layer"] == "mean"].to_string(index=False))

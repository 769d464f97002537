"""Sanity, faithfulness and robustness of the attribution methods in one figure."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.checks.summaries import PROFILE_MEASURE  # noqa: E402
from layer.figures.calls import plot_checks  # noqa: E402
from layer.io import read_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402

log_to(snakemake.log[0])
plot_checks(
    read_tsv(snakemake.input.sanity),
    read_tsv(snakemake.input.curves),
    read_tsv(snakemake.input.robustness),
    PROFILE_MEASURE,
    snakemake.output.png,
)

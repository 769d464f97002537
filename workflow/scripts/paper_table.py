"""The paper's kind of layer numbers in every variant, trained against null models, beside the primary calls."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.stats.paper import paper_scores, paper_table  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
sheet = read_tsv(snakemake.input.sheet)


def scores(paths):
    parts = [paper_scores(path, name, sheet, p.membrane_margin) for path in paths for name in p.maps]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


table = paper_table(
    scores(snakemake.input.attributions), scores(snakemake.input.null), p.n_resamples, p.confidence_level, p.seed,
    p.membrane_margin, read_tsv(snakemake.input.calls), read_tsv(snakemake.input.contrasts), p.primary_method,
)
write_tsv(table, snakemake.output.table)
log.info("%d rows, %d null model file(s)", len(table), len(snakemake.input.null))

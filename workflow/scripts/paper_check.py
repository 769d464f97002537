"""The paper's two claims on each cohort of the paper check, in trained and null models."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.stats.paper import paper_check  # noqa: E402

log = log_to(snakemake.log[0])
cohorts = snakemake.params.cohorts
tables = {c: read_tsv(path) for c, path in zip(cohorts, snakemake.input.tables)}
performance = {c: read_tsv(path) for c, path in zip(cohorts, snakemake.input.performance)}
table = paper_check(tables, performance, snakemake.params.equal_ratio)
write_tsv(table, snakemake.output.table)
log.info("\n%s", "\n".join(table["sentence"]))

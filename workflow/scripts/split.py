"""Subject-level stratified K-fold with an inner validation split."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.cohort.split import check_folds, make_folds  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
folds = make_folds(read_tsv(snakemake.input.sheet), p.n_folds, p.val_fraction, p.seed)
check_folds(folds)
log.info("\n%s", folds.groupby(["fold", "role", "label"]).size().unstack().to_string())
write_tsv(folds, snakemake.output.folds)

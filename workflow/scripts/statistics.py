"""Subject-level bootstrap CIs of every layer score and of model performance."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.stats.tables import layer_saliency_table, performance_table  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
agg = pd.concat([read_tsv(path) for path in snakemake.input.aggregated], ignore_index=True)
oof = pd.concat([read_tsv(path) for path in snakemake.input.oof], ignore_index=True)
saliency = layer_saliency_table(agg, p.n_resamples, p.confidence_level, p.seed)
performance = performance_table(oof, p.n_resamples, p.confidence_level, p.seed)
write_tsv(saliency, snakemake.output.saliency)
write_tsv(performance, snakemake.output.performance)
write_tsv(oof.sort_values(["modality", "scan_id"]), snakemake.output.oof)
log.info("\n%s", performance.to_string(index=False))

"""The recovery table of every scenario, its summary per method and modality, and the heatmaps."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.figures.calls import plot_power, plot_recovery  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.validation.recovery import power_table, subjects_needed, summary_table  # noqa: E402

log = log_to(snakemake.log[0])
recovery = pd.concat([read_tsv(path) for path in snakemake.input], ignore_index=True)
summary = summary_table(recovery, snakemake.params.learned_auc)
write_tsv(recovery, snakemake.output.recovery)
write_tsv(summary, snakemake.output.summary)
plot_recovery(recovery, snakemake.output.heatmap)
power = power_table(recovery)
needed = subjects_needed(power, snakemake.params.target_recall)
write_tsv(power, snakemake.output.power)
write_tsv(needed, snakemake.output.needed)
plot_power(power, snakemake.output.power_figure, snakemake.params.target_recall)
log.info("\n%s\n%s\n%s", recovery.to_string(index=False), summary.to_string(index=False), needed.to_string(index=False))

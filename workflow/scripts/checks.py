"""Summaries of the sanity, faithfulness and robustness checks across modalities and methods."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.checks.summaries import faithfulness_by_operator, robustness_table, sanity_table  # noqa: E402
from layer.attribution_files import load_methods  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402

log = log_to(snakemake.log[0])
sheet = read_tsv(snakemake.input.sheet)
label_of = sheet.set_index(sheet["scan_id"].astype(str))["label"]

sanity = sanity_table(
    pd.concat([read_tsv(path) for path in snakemake.input.sanity], ignore_index=True),
    snakemake.params.sanity_threshold,
)
write_tsv(sanity, snakemake.output.sanity)

aggregated = pd.concat([read_tsv(path) for path in snakemake.input.aggregated], ignore_index=True)
shapley = load_methods(snakemake.input.attributions, snakemake.params.shapley_methods)
curves, summaries = faithfulness_by_operator(aggregated, shapley, label_of)
first = ["modality", "operator"]
write_tsv(curves[first + [c for c in curves.columns if c not in first]], snakemake.output.curves)
write_tsv(summaries[first + [c for c in summaries.columns if c not in first]], snakemake.output.faithfulness)

robustness = robustness_table(pd.concat([read_tsv(path) for path in snakemake.input.robustness], ignore_index=True))
write_tsv(robustness, snakemake.output.robustness)
log.info("sanity:\n%s\nfaithfulness:\n%s", sanity.to_string(index=False), summaries.to_string(index=False))

"""Summaries of the sanity, faithfulness and robustness checks across modalities and methods."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.checks.summaries import faithfulness_tables, robustness_table, sanity_table, scan_contributions  # noqa: E402
from layer.io import load_arrays, read_tsv, write_tsv  # noqa: E402
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
shapley = [load_arrays(path) for path in snakemake.input.shapley]
curves, summaries = [], []
for modality, of_modality in aggregated.groupby("modality", sort=False):
    runs = [run for run in shapley if str(run["modality"]) == modality]
    coalitions = pd.concat(
        [pd.DataFrame(run["coalitions"], index=[str(s) for s in run["scan_ids"]]) for run in runs]
    ).sort_index()
    contributions = {
        method: scan_contributions(table) for method, table in of_modality.groupby("method", sort=True)
    }
    ids = coalitions.index.tolist()
    curve, summary = faithfulness_tables(coalitions.to_numpy(), ids, label_of.loc[ids].to_numpy(), contributions)
    curves.append(curve.assign(modality=modality))
    summaries.append(summary.assign(modality=modality))
first = ["modality"]
curves_table = pd.concat(curves, ignore_index=True)
summary_table = pd.concat(summaries, ignore_index=True)
write_tsv(curves_table[first + [c for c in curves_table.columns if c not in first]], snakemake.output.curves)
write_tsv(summary_table[first + [c for c in summary_table.columns if c not in first]], snakemake.output.faithfulness)

robustness = robustness_table(pd.concat([read_tsv(path) for path in snakemake.input.robustness], ignore_index=True))
write_tsv(robustness, snakemake.output.robustness)
log.info("sanity:\n%s\nfaithfulness:\n%s", sanity.to_string(index=False), summary_table.to_string(index=False))

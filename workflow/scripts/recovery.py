"""Recovery numbers of one scenario replicate: its layer calls scored against the planted truth."""

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.attribution_files import load_methods  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.validation.recovery import auc_without, planted_strength, recovery_table  # noqa: E402
from layer.stats.tables import performance_table  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
sheet = read_tsv(snakemake.input.sheet)
labels = sheet.set_index(sheet["scan_id"].astype(str))["label"]
truth = json.loads(Path(snakemake.input.truth).read_text())
oof = pd.concat([read_tsv(path) for path in snakemake.input.oof], ignore_index=True)
performance = performance_table(oof, p.n_resamples, p.confidence_level, p.seed)
shapley = load_methods(snakemake.input.attributions, [p.shapley_method])
drops = {}
for modality in oof["modality"].unique():
    runs = [run for run in shapley if str(run["modality"]) == modality]
    coalitions = pd.concat([pd.DataFrame(r["coalitions"], index=[str(s) for s in r["scan_ids"]]) for r in runs])
    drivers = [layer for layer, d in planted_strength(truth, modality).items() if d > 0]
    full, without = auc_without(coalitions.to_numpy(), labels.loc[coalitions.index].to_numpy(), drivers)
    drops[modality] = full - without
replicate = int(snakemake.wildcards.vseed)
oracle = read_tsv(snakemake.input.oracle).set_index("modality")["auc"].to_dict()
table = recovery_table(
    snakemake.wildcards.scenario, replicate, read_tsv(snakemake.input.calls), truth, performance, drops, p.measure,
    oracle=oracle,
)
write_tsv(table, snakemake.output.table)
log.info("\n%s", table.to_string(index=False))

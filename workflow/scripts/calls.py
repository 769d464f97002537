"""Layer calls (label permutation tests of the trained models' label gap, descriptions of stored measures,
null models as a diagnostic) and the label gap of layer contrasts."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.config import from_params  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.segment.sheet import scans_by_map_source  # noqa: E402
from layer.stats.calls import CallSettings, calls_and_contrasts, load_conditional  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
sheet = read_tsv(snakemake.input.sheet)
labels = sheet.set_index(sheet["scan_id"].astype(str))["label"]
trained = pd.concat([read_tsv(path) for path in snakemake.input.aggregated], ignore_index=True)
null = (
    pd.concat([read_tsv(path) for path in snakemake.input.null], ignore_index=True) if snakemake.input.null else None
)
if p.map_source is not None:
    # Sensitivity analysis: the calls on the scans whose layer map is of this source only.
    trained, null = (scans_by_map_source(t, sheet, p.map_source) if t is not None else None for t in (trained, null))
    log.info("calls on the %d scans with %s maps", trained["scan_id"].nunique(), p.map_source)
calls, contrasts = calls_and_contrasts(
    trained, null, labels, from_params(CallSettings, p), contrast_method=p.primary_method,
    conditional=load_conditional(snakemake.input.attributions),
)
write_tsv(calls, snakemake.output.calls)
write_tsv(contrasts, snakemake.output.contrasts)
primary = calls[(calls["method"] == p.primary_method) & (calls["kind"] == "test")]
log.info("primary calls:\n%s\ncontrasts:\n%s", primary.to_string(index=False), contrasts.to_string(index=False))

"""Attributions of one model (modality x fold, trained or null) for one method on the fold's held-out scans."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.explain.attribute import AttributionSettings, attribute_fold, save_attribution, write_examples  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.nets.data import modality_scans  # noqa: E402
from layer.nets.device import configure_torch, pick_device  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
configure_torch(snakemake.threads, pick_device())
settings = AttributionSettings.from_params(p)
# The scans with this modality's volumes (a mixed cohort: swe and fused on the scans with SWE only).
sheet, folds = modality_scans(read_tsv(snakemake.input.sheet), read_tsv(snakemake.input.folds), snakemake.wildcards.modality)
result = attribute_fold(sheet, folds, snakemake.input.model, snakemake.wildcards.method, settings)
log.info(
    "%d scans, %s %s, QC:\n%s",
    len(result.scan_ids),
    result.kind,
    result.values.shape,
    result.qc.groupby("check")["value"].describe().to_string(),
)
write_tsv(result.qc, snakemake.output.qc)
w = snakemake.wildcards
write_examples(result, sheet, snakemake.output.examples, p.n_examples, modality=w.modality, method=w.method)
save_attribution(
    snakemake.output.maps, result, modality=w.modality, method=w.method, fold=int(w.fold), null_model=p.null_model
)

"""Attributions of one model (modality x fold, trained or null) on the fold's held-out scans, for every method
of its study: one process per model, so that the libraries and the scans load once."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

import pandas as pd  # noqa: E402

from layer.explain.attribute import AttributionSettings, attribute_model, write_examples  # noqa: E402
from layer.attribution_files import save_model_attributions  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.nets.data import modality_scans  # noqa: E402
from layer.nets.device import configure_torch, pick_device  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
w = snakemake.wildcards
configure_torch(snakemake.threads, pick_device())
settings = AttributionSettings.from_params(p)
# The scans with this modality's volumes (a mixed cohort: swe and fused on the scans with SWE only).
sheet, folds = modality_scans(read_tsv(snakemake.input.sheet), read_tsv(snakemake.input.folds), w.modality)
results = attribute_model(sheet, folds, snakemake.input.model, p.methods, settings)
for method, result in results.items():
    log.info("%s: %d scans, %s %s, QC:\n%s", method, len(result.scan_ids), result.kind, result.values.shape,
             result.qc.groupby("check")["value"].describe().to_string())
    write_examples(result, sheet, f"{snakemake.output.examples}/{method}", p.n_examples, modality=w.modality,
                   method=method)
qc = pd.concat([r.qc.assign(method=m) for m, r in results.items()], ignore_index=True)
write_tsv(qc[["method", "scan_id", "check", "value"]], snakemake.output.qc)
save_model_attributions(snakemake.output.maps, results, modality=w.modality, fold=int(w.fold), null_model=p.null_model)

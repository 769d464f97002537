"""Attribution maps of one model (modality x fold) for one method on the fold's held-out scans."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.attribution import attribute_fold, save_maps, write_examples  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.train import configure_torch, pick_device  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
configure_torch(snakemake.threads, pick_device())
sheet = read_tsv(snakemake.input.sheet)
maps, scan_ids, channels, qc = attribute_fold(
    sheet,
    read_tsv(snakemake.input.folds),
    snakemake.input.model,
    snakemake.wildcards.method,
    p.gradcam_layer,
    p.ig_steps,
    p.batch_size,
)
log.info("%d scans, maps %s, QC:\n%s", len(scan_ids), maps.shape, qc.groupby("check")["value"].describe().to_string())
write_tsv(qc, snakemake.output.qc)
write_examples(maps, scan_ids, channels, sheet, snakemake.output.examples, p.n_examples)
save_maps(snakemake.output.maps, maps, scan_ids, channels)

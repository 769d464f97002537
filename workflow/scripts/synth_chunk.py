"""Render the scans of one chunk of subjects of the synthetic cohort."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.synth import SynthConfig, synthesize_chunk  # noqa: E402

log = log_to(snakemake.log[0])
cfg = SynthConfig.from_mapping({key: getattr(snakemake.params, key) for key in SynthConfig.CONFIG_KEYS})
scans = Path(snakemake.output.scans)
cohort_dir = scans.parents[1]
sheet, features = synthesize_chunk(
    cfg, cohort_dir, scans.relative_to(cohort_dir), int(snakemake.wildcards.chunk), int(snakemake.params.chunks)
)
write_tsv(sheet, snakemake.output.sheet)
write_tsv(features, snakemake.output.features)
log.info("chunk %s: %d scans written to %s", snakemake.wildcards.chunk, len(sheet), scans)

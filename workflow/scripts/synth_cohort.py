"""Merge the chunks of the synthetic cohort into its sheet, features table and ground truth."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import read_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.synth import SynthConfig, finalize_cohort  # noqa: E402

log = log_to(snakemake.log[0])
cfg = SynthConfig.from_mapping({key: getattr(snakemake.params, key) for key in SynthConfig.CONFIG_KEYS})
sheets = [read_tsv(path) for path in snakemake.input.sheets]
features = [read_tsv(path) for path in snakemake.input.features]
finalize_cohort(cfg, Path(snakemake.output.sheet).parent, sheets, features, snakemake.params.annotated_fraction)
log.info("synthetic cohort: %d scans", sum(len(s) for s in sheets))

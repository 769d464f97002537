"""Per-layer saliency with subject-level CIs, per modality and method."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.figures.study import plot_layer_saliency  # noqa: E402
from layer.io import read_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402

log_to(snakemake.log[0])
plot_layer_saliency(
    read_tsv(snakemake.input.saliency),
    snakemake.params.measure,
    snakemake.output.png,
    confidence_level=snakemake.params.confidence_level,
)

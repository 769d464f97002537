"""Held-out annotated scans: drawn against predicted layer boundaries over B-mode."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.figures.segmentation import plot_segmentation  # noqa: E402
from layer.io import read_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.segment.sheet import held_out_examples  # noqa: E402

log_to(snakemake.log[0])
examples = held_out_examples(
    read_tsv(snakemake.input.sheet), read_tsv(snakemake.input.split), snakemake.input.maps, snakemake.params.n_examples
)
plot_segmentation(examples, snakemake.output.png)

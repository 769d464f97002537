"""Example attribution maps over B-mode slices with the layer contours."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.explain.examples import read_examples  # noqa: E402
from layer.figures.study import plot_overlays  # noqa: E402
from layer.io import read_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402

log_to(snakemake.log[0])
sheet = read_tsv(snakemake.input.sheet)
# per model (modality x fold 0), one folder per method of the study
examples = [
    example for folder in snakemake.input.examples for method in snakemake.params.methods
    for example in read_examples(f"{folder}/{method}", sheet)
]
plot_overlays(examples, snakemake.output.png)

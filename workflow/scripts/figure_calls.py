"""Excess over the null models per layer, with the driving calls, for the primary method and measure."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.figures.calls import plot_layer_calls  # noqa: E402
from layer.io import read_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402

log_to(snakemake.log[0])
plot_layer_calls(read_tsv(snakemake.input.calls), snakemake.params.method, snakemake.params.measure, snakemake.output.png)

"""ROC curves of the pooled out-of-fold predictions and the training curves of every model."""

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.figures import plot_roc, plot_training_curves  # noqa: E402
from layer.io import read_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402

log_to(snakemake.log[0])
oracle = json.loads(Path(snakemake.input.truth[0]).read_text())["oracle_auc"] if snakemake.input.truth else None
plot_roc(
    read_tsv(snakemake.input.oof),
    read_tsv(snakemake.input.performance),
    snakemake.output.roc,
    oracle_auc=oracle,
    confidence_level=snakemake.params.confidence_level,
)
curves = []
for path in snakemake.input.curves:
    modality, fold = Path(path).parent.name, int(Path(path).name.split("_")[0].removeprefix("fold"))
    curves.append(read_tsv(path).assign(modality=modality, fold=fold))
plot_training_curves(pd.concat(curves, ignore_index=True), snakemake.output.curves)

"""ROC curves of the pooled out-of-fold predictions and the training curves of every model."""

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.figures.study import plot_roc, plot_training_curves  # noqa: E402
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
curves = pd.concat([read_tsv(path) for path in snakemake.input.curves], ignore_index=True)  # modality, fold
plot_training_curves(curves, snakemake.output.curves)

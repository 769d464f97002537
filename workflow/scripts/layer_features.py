"""Per-layer image statistics of every scan, patients against controls, and the image-level oracle: the
classical biomarker baseline beside the network's answer."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.features.compare import feature_differences, image_oracle  # noqa: E402
from layer.features.table import feature_table  # noqa: E402
from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
table = feature_table(read_tsv(snakemake.input.sheet))
differences = feature_differences(table, p.n_resamples, p.confidence_level, p.seed)
oracle = image_oracle(table, p.modalities, p.n_folds, p.n_resamples, p.confidence_level, p.split_seed)
write_tsv(table, snakemake.output.features)
write_tsv(differences, snakemake.output.differences)
write_tsv(oracle, snakemake.output.oracle)
log.info("image oracle:\n%s\nlargest differences:\n%s", oracle.to_string(index=False),
         differences.reindex(differences["d"].abs().sort_values(ascending=False).index).head(6).to_string(index=False))

"""Check the cohort sheet and every volume before anything trains; stop with the full list of problems."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import atomic_path, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.validate import Rules, validate_cohort  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
rules = Rules(
    n_folds=p.n_folds,
    affine_tolerance_mm=p.affine_tolerance_mm,
    swe_max_nan_in_box=p.swe_max_nan_in_box,
    absent_layer=p.absent_layer,
    allow_outside_paths=p.allow_outside_paths,
    spacing_tolerance=p.spacing_tolerance,
)
report, sheet = validate_cohort(snakemake.input.sheet, rules)
text = report.text(snakemake.input.sheet)
log.info("\n%s", text)
if not report.ok:
    # The report is the message: Snakemake prints the log of a failed job.
    sys.exit(f"\n{text}")
with atomic_path(snakemake.output.report) as tmp:
    tmp.write_text(text)
write_tsv(sheet, snakemake.output.sheet)

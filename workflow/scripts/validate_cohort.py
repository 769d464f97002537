"""Check the cohort sheet and every volume before anything trains; stop with the full list of problems."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import atomic_path, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.validate import Rules, validate_cohort  # noqa: E402

log = log_to(snakemake.log[0])
report, sheet = validate_cohort(snakemake.input.sheet, Rules.from_attributes(snakemake.params))
text = report.text(snakemake.input.sheet)
log.info("\n%s", text)
if not report.ok:
    # The report is the message: Snakemake prints the log of a failed job.
    sys.exit(f"\n{text}")
with atomic_path(snakemake.output.report) as tmp:
    tmp.write_text(text)
write_tsv(sheet, snakemake.output.sheet)

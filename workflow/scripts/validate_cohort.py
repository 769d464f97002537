"""Check the cohort sheet and every volume before anything trains; stop with the full list of problems.

The report is one of the rule's logs, not an output: Snakemake deletes the outputs of a failed job but keeps
its logs, so the report stays in results/cohort/ when the check fails, and validated.tsv (the one output,
which every later step reads) is written only when it passes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import atomic_path, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.cohort.validate import Rules, validate_cohort  # noqa: E402

log = log_to(snakemake.log.main)
report, sheet = validate_cohort(snakemake.input.sheet, Rules.from_attributes(snakemake.params))
text = report.text(snakemake.input.sheet)
log.info("\n%s", text)
with atomic_path(snakemake.log.report) as tmp:
    tmp.write_text(text)
if not report.ok:
    # Printed by Snakemake with the failed job (stderr of this process is the log; __stderr__ is Snakemake's).
    print(
        f"\nCohort validation failed; nothing was trained. Report: {snakemake.log.report}\n{text}",
        file=sys.__stderr__,
        flush=True,
    )
    sys.exit(1)
write_tsv(sheet, snakemake.output.sheet)

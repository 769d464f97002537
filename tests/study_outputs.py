"""The files every finished study writes under results/ (besides per-job models and maps)."""

STUDY_FILES: tuple[str, ...] = (
    "cohort/validation_report.txt",
    "splits/folds.tsv",
    "stats/layer_saliency.tsv",
    "stats/performance.tsv",
    "stats/paper_table.tsv",
    "figures/layer_saliency.png",
    "figures/roc.png",
    "figures/training_curves.png",
    "figures/overlays.png",
)
SYNTHETIC_FILES: tuple[str, ...] = (
    "cohort/synthetic/cohort.tsv",
    "cohort/synthetic/features.tsv",
    "cohort/synthetic/ground_truth.json",
)

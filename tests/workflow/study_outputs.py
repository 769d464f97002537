"""The files every finished study writes under results/ (besides per-job models and maps)."""

STUDY_FILES: tuple[str, ...] = (
    "cohort/validation_report.txt",
    "splits/folds.tsv",
    "stats/layer_saliency.tsv",
    "stats/performance.tsv",
    "stats/paper_table.tsv",
    "stats/layer_calls.tsv",
    "stats/layer_contrasts.tsv",
    "stats/layer_features.tsv",
    "stats/layer_feature_differences.tsv",
    "stats/image_oracle.tsv",
    "checks/sanity.tsv",
    "checks/faithfulness.tsv",
    "checks/deletion_curves.tsv",
    "checks/robustness.tsv",
    "figures/layer_calls.png",
    "figures/checks.png",
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

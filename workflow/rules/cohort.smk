# Cohort validation (before anything trains) and the subject-level folds.


rule validate_cohort:
    input:
        sheet=study_sheet,
    output:
        sheet="{study}/cohort/validated.tsv",
    log:
        # The report is a log so that it survives a failed check (Snakemake deletes a failed job's outputs).
        main="{study}/logs/cohort/validate.log",
        report="{study}/cohort/validation_report.txt",
    benchmark:
        "{study}/benchmarks/cohort/validate.tsv"
    conda:
        "../../envs/cohort.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        **signed(
            n_folds=config["split"]["n_folds"],
            affine_tolerance_mm=config["validate"]["affine_tolerance_mm"],
            swe_max_nan_in_box=config["validate"]["swe_max_nan_in_box"],
            absent_layer=config["validate"]["absent_layer"],
            allow_outside_paths=config["validate"]["allow_outside_paths"],
            spacing_tolerance=config["validate"]["spacing_tolerance"],
            bmode_max=config["input"]["bmode_max"],
            val_fraction=config["split"]["val_fraction"],
            split_seed=config["split"]["seed"],
            modalities=study_modalities,
            min_annotated_subjects=config["segmentation"]["min_annotated_subjects"],
            code=code("validate_cohort.py"),
        ),
    script:
        "../scripts/validate_cohort.py"


rule split:
    input:
        sheet="{study}/cohort/validated.tsv",
        report=report(
            "{study}/cohort/validation_report.txt",
            caption="../report/validation_report.rst",
            category="Cohort",
        ),
    output:
        folds="{study}/splits/folds.tsv",
    log:
        "{study}/logs/cohort/split.log",
    benchmark:
        "{study}/benchmarks/cohort/split.tsv"
    conda:
        "../../envs/cohort.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **signed(
            n_folds=config["split"]["n_folds"],
            val_fraction=config["split"]["val_fraction"],
            seed=config["split"]["seed"],
            code=code("split.py"),
        ),
    script:
        "../scripts/split.py"

rule validate_cohort:
    input:
        sheet=cohort_sheet(),
    output:
        sheet="results/cohort/validated.tsv",
    log:
        # The report is a log so that it survives a failed check (Snakemake deletes a failed job's outputs).
        main="results/logs/cohort/validate.log",
        report="results/cohort/validation_report.txt",
    benchmark:
        "results/benchmarks/cohort/validate.tsv"
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
            code=layer_code("validate", "split"),
        ),
    script:
        "../scripts/validate_cohort.py"


rule split:
    input:
        sheet="results/cohort/validated.tsv",
        report=report(
            "results/cohort/validation_report.txt",
            caption="../report/validation_report.rst",
            category="Cohort",
        ),
    output:
        folds="results/splits/folds.tsv",
    log:
        "results/logs/cohort/split.log",
    benchmark:
        "results/benchmarks/cohort/split.tsv"
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
            code=layer_code("split"),
        ),
    script:
        "../scripts/split.py"

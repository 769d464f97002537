rule validate_cohort:
    input:
        sheet=cohort_sheet(),
    output:
        sheet="results/cohort/validated.tsv",
        report=report(
            "results/cohort/validation_report.txt",
            caption="../report/validation_report.rst",
            category="Cohort",
        ),
    log:
        "results/logs/cohort/validate.log",
    benchmark:
        "results/benchmarks/cohort/validate.tsv"
    conda:
        "../../envs/cohort.yaml"
    params:
        n_folds=config["split"]["n_folds"],
        affine_tolerance_mm=config["validate"]["affine_tolerance_mm"],
        swe_max_nan_in_box=config["validate"]["swe_max_nan_in_box"],
        absent_layer=config["validate"]["absent_layer"],
        allow_outside_paths=config["validate"]["allow_outside_paths"],
        spacing_tolerance=config["validate"]["spacing_tolerance"],
        code=layer_code("validate"),
    script:
        "../scripts/validate_cohort.py"


rule split:
    input:
        sheet="results/cohort/validated.tsv",
    output:
        folds="results/splits/folds.tsv",
    log:
        "results/logs/cohort/split.log",
    benchmark:
        "results/benchmarks/cohort/split.tsv"
    conda:
        "../../envs/cohort.yaml"
    params:
        n_folds=config["split"]["n_folds"],
        val_fraction=config["split"]["val_fraction"],
        seed=config["split"]["seed"],
        code=layer_code("split"),
    script:
        "../scripts/split.py"

# Checks of the attribution methods: layer profiles of the fold-0 model under cascading parameter
# randomisation ({check} = sanity) and under layer-mask errors ({check} = robustness), then the summaries
# with the faithfulness of each method's layer ranking.

CHECK_READS = ("seed", "scans_per_subject", "membrane_margin", "n_background")


rule profile_check:
    input:
        sheet=maps_sheet,
        folds="{study}/splits/folds.tsv",
        model="{study}/models/{modality}/fold0.pt",
        quality=segmentation_quality,
    output:
        table="{study}/checks/{check}/{modality}.tsv",
    log:
        "{study}/logs/checks/{check}/{modality}.log",
    benchmark:
        "{study}/benchmarks/checks/{check}/{modality}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        **signed(
            methods=reported_methods,
            n_scans=config["checks"]["n_scans"],
            # the checks read their scans, seed, margin and background set whatever the methods
            **{key: attribution_setting(key, reported_methods, CHECK_READS) for key in SETTINGS},
            code=code("check_profiles.py"),
        ),
    script:
        "../scripts/check_profiles.py"


rule checks:
    input:
        sheet=maps_sheet,
        sanity=per_model("{study}/checks/sanity/{modality}.tsv"),
        robustness=per_model("{study}/checks/robustness/{modality}.tsv"),
        aggregated=per_model("{study}/aggregate/{modality}/{method}/fold{fold}.tsv"),
        attributions=per_model("{study}/attribution/{modality}/fold{fold}.npz"),
    output:
        sanity=report(
            "{study}/checks/sanity.tsv",
            caption="../report/sanity.rst",
            category="Checks",
        ),
        faithfulness=report(
            "{study}/checks/faithfulness.tsv",
            caption="../report/faithfulness.rst",
            category="Checks",
        ),
        curves="{study}/checks/deletion_curves.tsv",
        robustness=report(
            "{study}/checks/robustness.tsv",
            caption="../report/robustness.rst",
            category="Checks",
        ),
    log:
        "{study}/logs/checks/checks.log",
    benchmark:
        "{study}/benchmarks/checks/checks.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        **signed(
            sanity_threshold=config["checks"]["sanity_threshold"],
            shapley_methods=shapley_methods(),
            code=code("checks.py"),
        ),
    script:
        "../scripts/checks.py"

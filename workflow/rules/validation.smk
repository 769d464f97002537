# Ground-truth recovery study (target `validation`): every step of the study, by the same rules, on each
# planted scenario and seed under results/validation/{scenario}/seed{vseed}/ (the studies are listed in
# STUDIES, common.smk); here only the scoring against the planted truth and the targets.


rule recovery:
    input:
        sheet=f"{V}/cohort/validated.tsv",
        calls=f"{V}/stats/layer_calls.tsv",
        truth=f"{V}/cohort/synthetic/ground_truth.json",
        oracle=f"{V}/stats/image_oracle.tsv",
        oof=per_model("{study}/models/{modality}/fold{fold}_oof.tsv"),
        attributions=per_model("{study}/attribution/{modality}/fold{fold}.npz"),
    output:
        table=f"{V}/recovery.tsv",
    log:
        f"{V}/logs/recovery.log",
    benchmark:
        f"{V}/benchmarks/recovery.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        **signed(
            measure=config["report"]["primary_measure"],
            shapley_method=shapley_method(),
            n_resamples=config["bootstrap"]["n_resamples"],
            confidence_level=config["bootstrap"]["confidence_level"],
            seed=config["bootstrap"]["seed"],
            code=code("recovery.py"),
        ),
    script:
        "../scripts/recovery.py"


rule validation_summary:
    input:
        expand(f"{V}/recovery.tsv", zip, scenario=[n for n, _ in GRID], vseed=[r for _, r in GRID]),
    output:
        recovery=report(
            "results/validation/recovery.tsv",
            caption="../report/recovery.rst",
            category="Validation",
        ),
        summary=report(
            "results/validation/summary.tsv",
            caption="../report/recovery_summary.rst",
            category="Validation",
        ),
        heatmap=report(
            "results/validation/recovery.png",
            caption="../report/recovery_figure.rst",
            category="Validation",
        ),
        power="results/validation/power.tsv",
        needed=report(
            "results/validation/power_needed.tsv",
            caption="../report/power_needed.rst",
            category="Validation",
        ),
        power_figure=report(
            "results/validation/power.png",
            caption="../report/power_figure.rst",
            category="Validation",
        ),
    log:
        "results/logs/validation/summary.log",
    benchmark:
        "results/benchmarks/validation/summary.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        learned_auc=config["validation"]["learned_auc"],
        target_recall=config["validation"]["target_recall"],
        code=code("validation_summary.py"),
    script:
        "../scripts/validation_summary.py"


rule validation:
    default_target: False
    input:
        rules.validation_summary.output,

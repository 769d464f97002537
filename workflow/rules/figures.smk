rule figure_saliency:
    input:
        saliency="results/stats/layer_saliency.tsv",
    output:
        png=report(
            "results/figures/layer_saliency.png",
            caption="../report/layer_saliency.rst",
            category="Layer saliency",
        ),
    log:
        "results/logs/figures/layer_saliency.log",
    benchmark:
        "results/benchmarks/figures/layer_saliency.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        measure=config["report"]["paper_measure"],
        confidence_level=config["bootstrap"]["confidence_level"],
        code=layer_code("figures", "stats", "aggregate"),
    script:
        "../scripts/figure_saliency.py"


rule figure_performance:
    input:
        oof="results/stats/oof_predictions.tsv",
        performance="results/stats/performance.tsv",
        curves=expand(
            "results/models/{modality}/fold{fold}_curve.tsv",
            modality=MODALITIES,
            fold=FOLDS,
        ),
        truth=ground_truth(),
    output:
        roc=report(
            "results/figures/roc.png",
            caption="../report/roc.rst",
            category="Model performance",
        ),
        curves=report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Model performance",
        ),
    log:
        "results/logs/figures/performance.log",
    benchmark:
        "results/benchmarks/figures/performance.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        confidence_level=config["bootstrap"]["confidence_level"],
        code=layer_code("figures", "stats", "aggregate"),
    script:
        "../scripts/figure_performance.py"


rule figure_overlays:
    input:
        sheet="results/cohort/validated.tsv",
        examples=expand(
            "results/attribution/{modality}/{method}/fold0_examples",
            modality=MODALITIES,
            method=METHODS,
        ),
    output:
        png=report(
            "results/figures/overlays.png",
            caption="../report/overlays.rst",
            category="Layer saliency",
        ),
    log:
        "results/logs/figures/overlays.log",
    benchmark:
        "results/benchmarks/figures/overlays.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        code=layer_code("figures", "examples", "stats", "aggregate"),
    script:
        "../scripts/figure_overlays.py"


rule figure_calls:
    input:
        calls="results/stats/layer_calls.tsv",
    output:
        png=report(
            "results/figures/layer_calls.png",
            caption="../report/layer_calls_figure.rst",
            category="Layer calls",
        ),
    log:
        "results/logs/figures/layer_calls.log",
    benchmark:
        "results/benchmarks/figures/layer_calls.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        method=config["report"]["primary_method"],
        measure=config["report"]["primary_measure"],
        code=layer_code(
            "figures", "figures_calls", "inference", "stats", "aggregate", "games"
        ),
    script:
        "../scripts/figure_calls.py"


rule figure_checks:
    input:
        sanity="results/checks/sanity.tsv",
        curves="results/checks/deletion_curves.tsv",
        robustness="results/checks/robustness.tsv",
    output:
        png=report(
            "results/figures/checks.png",
            caption="../report/checks_figure.rst",
            category="Checks",
        ),
    log:
        "results/logs/figures/checks.log",
    benchmark:
        "results/benchmarks/figures/checks.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        code=layer_code(
            "figures", "figures_calls", "inference", "stats", "aggregate", "games"
        ),
    script:
        "../scripts/figure_checks.py"

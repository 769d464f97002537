# Figures of the report: layer saliency, model performance, example maps, layer calls, checks.


rule figure_saliency:
    input:
        saliency="{study}/stats/layer_saliency.tsv",
    output:
        png=report(
            "{study}/figures/layer_saliency.png",
            caption="../report/layer_saliency.rst",
            category="Layer saliency",
        ),
    log:
        "{study}/logs/figures/layer_saliency.log",
    benchmark:
        "{study}/benchmarks/figures/layer_saliency.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        **signed(
            measure=config["report"]["paper_measure"],
            confidence_level=config["bootstrap"]["confidence_level"],
            code=code("figure_saliency.py"),
        ),
    script:
        "../scripts/figure_saliency.py"


rule figure_performance:
    input:
        oof="{study}/stats/oof_predictions.tsv",
        performance="{study}/stats/performance.tsv",
        curves=per_model("{study}/models/{modality}/fold{fold}_curve.tsv"),
        truth=ground_truth,
    output:
        roc=report(
            "{study}/figures/roc.png",
            caption="../report/roc.rst",
            category="Model performance",
        ),
        curves=report(
            "{study}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Model performance",
        ),
    log:
        "{study}/logs/figures/performance.log",
    benchmark:
        "{study}/benchmarks/figures/performance.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        confidence_level=config["bootstrap"]["confidence_level"],
        code=code("figure_performance.py"),
    script:
        "../scripts/figure_performance.py"


rule figure_overlays:
    input:
        sheet=maps_sheet,
        examples=per_model("{study}/attribution/{modality}/fold{fold}_examples", folds=[0]),
    output:
        png=report(
            "{study}/figures/overlays.png",
            caption="../report/overlays.rst",
            category="Layer saliency",
        ),
    log:
        "{study}/logs/figures/overlays.log",
    benchmark:
        "{study}/benchmarks/figures/overlays.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        methods=study_methods,
        code=code("figure_overlays.py"),
    script:
        "../scripts/figure_overlays.py"


rule figure_calls:
    input:
        calls="{study}/stats/layer_calls.tsv",
    output:
        png=report(
            "{study}/figures/layer_calls.png",
            caption="../report/layer_calls_figure.rst",
            category="Layer calls",
        ),
    log:
        "{study}/logs/figures/layer_calls.log",
    benchmark:
        "{study}/benchmarks/figures/layer_calls.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        **signed(
            method=config["report"]["primary_method"],
            measure=config["report"]["primary_measure"],
            code=code("figure_calls.py"),
        ),
    script:
        "../scripts/figure_calls.py"


rule figure_checks:
    input:
        sanity="{study}/checks/sanity.tsv",
        curves="{study}/checks/deletion_curves.tsv",
        robustness="{study}/checks/robustness.tsv",
    output:
        png=report(
            "{study}/figures/checks.png",
            caption="../report/checks_figure.rst",
            category="Checks",
        ),
    log:
        "{study}/logs/figures/checks.log",
    benchmark:
        "{study}/benchmarks/figures/checks.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        code=code("figure_checks.py"),
    script:
        "../scripts/figure_checks.py"


rule figure_segmentation:
    input:
        sheet="{study}/cohort/validated.tsv",
        split="{study}/segmentation/split.tsv",
        maps="{study}/segmentation/maps",
    output:
        png=report(
            "{study}/figures/segmentation.png",
            caption="../report/segmentation_figure.rst",
            category="Segmentation",
        ),
    log:
        "{study}/logs/figures/segmentation.log",
    benchmark:
        "{study}/benchmarks/figures/segmentation.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        n_examples=4,
        code=code("figure_segmentation.py"),
    script:
        "../scripts/figure_segmentation.py"

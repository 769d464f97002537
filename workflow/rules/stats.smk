rule statistics:
    input:
        sheet="results/cohort/validated.tsv",
        aggregated=aggregated(),
        oof=expand(
            "results/models/{modality}/fold{fold}_oof.tsv",
            modality=MODALITIES,
            fold=FOLDS,
        ),
    output:
        saliency=report(
            "results/stats/layer_saliency.tsv",
            caption="../report/layer_saliency_table.rst",
            category="Tables",
        ),
        performance=report(
            "results/stats/performance.tsv",
            caption="../report/performance_table.rst",
            category="Tables",
        ),
        paper=report(
            "results/stats/paper_table.tsv",
            caption="../report/paper_table.rst",
            category="Tables",
        ),
        oof="results/stats/oof_predictions.tsv",
    log:
        "results/logs/stats/statistics.log",
    benchmark:
        "results/benchmarks/stats/statistics.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        n_resamples=config["bootstrap"]["n_resamples"],
        confidence_level=config["bootstrap"]["confidence_level"],
        seed=config["bootstrap"]["seed"],
        paper_method=config["report"]["paper_method"],
        paper_measure=config["report"]["paper_measure"],
        code=layer_code("stats", "aggregate"),
    script:
        "../scripts/statistics.py"


rule calls:
    input:
        sheet="results/cohort/validated.tsv",
        aggregated=aggregated(),
        null=null_aggregated(),
        coalitions=coalition_files(),
    output:
        calls=report(
            "results/stats/layer_calls.tsv",
            caption="../report/layer_calls.rst",
            category="Tables",
        ),
        contrasts=report(
            "results/stats/layer_contrasts.tsv",
            caption="../report/layer_contrasts.rst",
            category="Tables",
        ),
    log:
        "results/logs/stats/calls.log",
    benchmark:
        "results/benchmarks/stats/calls.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        measures=config["calls"]["measures"],
        alpha=config["calls"]["alpha"],
        test=config["calls"]["test"],
        n_permutations=config["calls"]["n_permutations"],
        n_resamples=config["bootstrap"]["n_resamples"],
        confidence_level=config["bootstrap"]["confidence_level"],
        seed=config["bootstrap"]["seed"],
        primary_method=config["report"]["primary_method"],
        primary_measure=config["report"]["primary_measure"],
        code=layer_code("inference", "stats", "aggregate", "games"),
    script:
        "../scripts/calls.py"

# Subject-level intervals of every layer score and of model performance, and the layer calls (label
# permutation tests of the trained models; null models, where the study has them, as a diagnostic).


rule statistics:
    input:
        sheet="{study}/cohort/validated.tsv",
        aggregated=per_model("{study}/aggregate/{modality}/{method}/fold{fold}.tsv"),
        oof=per_model("{study}/models/{modality}/fold{fold}_oof.tsv"),
    output:
        saliency=report(
            "{study}/stats/layer_saliency.tsv",
            caption="../report/layer_saliency_table.rst",
            category="Tables",
        ),
        performance=report(
            "{study}/stats/performance.tsv",
            caption="../report/performance_table.rst",
            category="Tables",
        ),
        paper=report(
            "{study}/stats/paper_table.tsv",
            caption="../report/paper_table.rst",
            category="Tables",
        ),
        oof="{study}/stats/oof_predictions.tsv",
    log:
        "{study}/logs/stats/statistics.log",
    benchmark:
        "{study}/benchmarks/stats/statistics.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        **signed(
            n_resamples=config["bootstrap"]["n_resamples"],
            confidence_level=config["bootstrap"]["confidence_level"],
            seed=config["bootstrap"]["seed"],
            paper_method=config["report"]["paper_method"],
            paper_measure=config["report"]["paper_measure"],
            code=code("statistics.py"),
        ),
    script:
        "../scripts/statistics.py"


rule calls:
    input:
        sheet="{study}/cohort/validated.tsv",
        aggregated=per_model("{study}/aggregate/{modality}/{method}/fold{fold}.tsv"),
        null=per_model(
            "{study}/{run}aggregate/{modality}/{method}/fold{fold}.tsv", runs="null"
        ),
        attributions=per_model("{study}/attribution/{modality}/fold{fold}.npz"),
    output:
        calls=report(
            "{study}/stats/layer_calls.tsv",
            caption="../report/layer_calls.rst",
            category="Tables",
        ),
        contrasts=report(
            "{study}/stats/layer_contrasts.tsv",
            caption="../report/layer_contrasts.rst",
            category="Tables",
        ),
    log:
        "{study}/logs/stats/calls.log",
    benchmark:
        "{study}/benchmarks/stats/calls.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        **signed(
            measures=config["calls"]["measures"],
            describe=config["calls"]["describe"],
            alpha=config["calls"]["alpha"],
            n_permutations=config["calls"]["n_permutations"],
            n_resamples=config["bootstrap"]["n_resamples"],
            confidence_level=config["bootstrap"]["confidence_level"],
            seed=config["bootstrap"]["seed"],
            primary_method=config["report"]["primary_method"],
            code=code("calls.py"),
        ),
    script:
        "../scripts/calls.py"


rule layer_features:
    input:
        sheet="{study}/cohort/validated.tsv",
    output:
        features="{study}/stats/layer_features.tsv",
        differences=report(
            "{study}/stats/layer_feature_differences.tsv",
            caption="../report/layer_feature_differences.rst",
            category="Tables",
        ),
        oracle=report(
            "{study}/stats/image_oracle.tsv",
            caption="../report/image_oracle.rst",
            category="Tables",
        ),
    log:
        "{study}/logs/stats/layer_features.log",
    benchmark:
        "{study}/benchmarks/stats/layer_features.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        **signed(
            modalities=study_modalities,
            n_folds=config["split"]["n_folds"],
            split_seed=config["split"]["seed"],
            n_resamples=config["bootstrap"]["n_resamples"],
            confidence_level=config["bootstrap"]["confidence_level"],
            seed=config["bootstrap"]["seed"],
            code=code("layer_features.py"),
        ),
    script:
        "../scripts/layer_features.py"

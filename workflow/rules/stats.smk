# Subject-level intervals of every layer score and of model performance, and the layer calls (label
# permutation tests of the trained models; null models, where the study has them, as a diagnostic).


rule statistics:
    input:
        sheet=maps_sheet,
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
            code=code("statistics.py"),
        ),
    script:
        "../scripts/statistics.py"


rule calls:
    input:
        sheet=maps_sheet,
        aggregated=per_model("{study}/aggregate/{modality}/{method}/fold{fold}.tsv"),
        null=per_model("{study}/{run}aggregate/{modality}/{method}/fold{fold}.tsv", runs="null"),
        attributions=per_model("{study}/attribution/{modality}/fold{fold}.npz"),
    output:
        calls=report(
            "{study}/stats/layer_calls{maps}.tsv",
            caption="../report/layer_calls.rst",
            category="Tables",
        ),
        contrasts=report(
            "{study}/stats/layer_contrasts{maps}.tsv",
            caption="../report/layer_contrasts.rst",
            category="Tables",
        ),
    log:
        "{study}/logs/stats/calls{maps}.log",
    benchmark:
        "{study}/benchmarks/stats/calls{maps}.tsv"
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
            map_source=map_source,
            code=code("calls.py"),
        ),
    script:
        "../scripts/calls.py"


rule layer_features:
    input:
        sheet=maps_sheet,
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


rule paper_table:
    input:
        sheet=maps_sheet,
        attributions=per_model("{study}/attribution/{modality}/fold{fold}.npz"),
        null=per_model("{study}/{run}attribution/{modality}/fold{fold}.npz", runs="null"),
        calls="{study}/stats/layer_calls.tsv",
        contrasts="{study}/stats/layer_contrasts.tsv",
    output:
        table=report(
            "{study}/stats/paper_table.tsv",
            caption="../report/paper_table.rst",
            category="Tables",
        ),
    log:
        "{study}/logs/stats/paper_table.log",
    benchmark:
        "{study}/benchmarks/stats/paper_table.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        **signed(
            maps=config["report"]["paper_maps"],
            primary_method=config["report"]["primary_method"],
            membrane_margin=config["attribution"]["membrane_margin"],
            n_resamples=config["bootstrap"]["n_resamples"],
            confidence_level=config["bootstrap"]["confidence_level"],
            seed=config["bootstrap"]["seed"],
            code=code("paper_table.py"),
        ),
    script:
        "../scripts/paper_table.py"


rule paper_check_table:
    input:
        tables=paper_check_inputs("stats/paper_table.tsv"),
        performance=paper_check_inputs("stats/performance.tsv"),
    output:
        table=report(
            "results/stats/paper_check.tsv",
            caption="../report/paper_check.rst",
            category="Paper check",
        ),
    log:
        "results/logs/stats/paper_check.log",
    benchmark:
        "results/benchmarks/stats/paper_check.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cohorts=list(paper_check_cohorts()),
        equal_ratio=config["paper_check"]["equal_ratio"],
        code=code("paper_check.py"),
    script:
        "../scripts/paper_check.py"


rule paper_check:
    default_target: False
    input:
        rules.paper_check_table.output,

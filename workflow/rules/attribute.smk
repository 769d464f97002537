rule attribute:
    input:
        sheet="results/cohort/validated.tsv",
        folds="results/splits/folds.tsv",
        model="results/models/{modality}/fold{fold}.pt",
    output:
        maps="results/attribution/{modality}/{method}/fold{fold}.npz",
        qc="results/attribution/{modality}/{method}/fold{fold}_qc.tsv",
        examples=directory(
            "results/attribution/{modality}/{method}/fold{fold}_examples"
        ),
    log:
        "results/logs/attribute/{modality}/{method}/fold{fold}.log",
    benchmark:
        "results/benchmarks/attribute/{modality}/{method}/fold{fold}.tsv"
    wildcard_constraints:
        modality="bmode|swe|fused",
        method=METHOD_PATTERN,
        fold=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        **signed(
            gradcam_layer=config["attribution"]["gradcam_layer"],
            ig_steps=config["attribution"]["ig_steps"],
            batch_size=config["attribution"]["batch_size"],
            n_examples=config["attribution"]["n_examples"],
            scans_per_subject=config["attribution"]["scans_per_subject"],
            n_background=config["attribution"]["n_background"],
            eg_samples=config["attribution"]["eg_samples"],
            blur_sigma=config["attribution"]["blur_sigma"],
            road_iterations=config["attribution"]["road_iterations"],
            road_noise=config["attribution"]["road_noise"],
            seed=config["attribution"]["seed"],
            membrane_margin=config["attribution"]["membrane_margin"],
            code=layer_code(
                "data",
                "model",
                "train",
                "attribution",
                "shapley",
                "regions",
                "robustness",
                "games",
            ),
        ),
    script:
        "../scripts/attribute.py"


use rule attribute as attribute_null with:
    input:
        sheet="results/cohort/validated.tsv",
        folds="results/splits/folds.tsv",
        model="results/null/r{replicate}/models/{modality}/fold{fold}.pt",
    output:
        maps="results/null/r{replicate}/attribution/{modality}/{method}/fold{fold}.npz",
        qc="results/null/r{replicate}/attribution/{modality}/{method}/fold{fold}_qc.tsv",
        examples=directory(
            "results/null/r{replicate}/attribution/{modality}/{method}/fold{fold}_examples"
        ),
    log:
        "results/logs/null/r{replicate}/attribute/{modality}/{method}/fold{fold}.log",
    benchmark:
        "results/benchmarks/null/r{replicate}/attribute/{modality}/{method}/fold{fold}.tsv"
    wildcard_constraints:
        modality="bmode|swe|fused",
        method=METHOD_PATTERN,
        fold=r"\d+",
        replicate=r"\d+",


rule aggregate:
    input:
        sheet="results/cohort/validated.tsv",
        maps="results/attribution/{modality}/{method}/fold{fold}.npz",
    output:
        table="results/aggregate/{modality}/{method}/fold{fold}.tsv",
    log:
        "results/logs/aggregate/{modality}/{method}/fold{fold}.log",
    benchmark:
        "results/benchmarks/aggregate/{modality}/{method}/fold{fold}.tsv"
    wildcard_constraints:
        modality="bmode|swe|fused",
        method=METHOD_PATTERN,
        fold=r"\d+",
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        membrane_margin=config["attribution"]["membrane_margin"],
        code=layer_code("aggregate", "regions", "robustness"),
    script:
        "../scripts/aggregate.py"


use rule aggregate as aggregate_null with:
    input:
        sheet="results/cohort/validated.tsv",
        maps="results/null/r{replicate}/attribution/{modality}/{method}/fold{fold}.npz",
    output:
        table="results/null/r{replicate}/aggregate/{modality}/{method}/fold{fold}.tsv",
    log:
        "results/logs/null/r{replicate}/aggregate/{modality}/{method}/fold{fold}.log",
    benchmark:
        "results/benchmarks/null/r{replicate}/aggregate/{modality}/{method}/fold{fold}.tsv"
    wildcard_constraints:
        modality="bmode|swe|fused",
        method=METHOD_PATTERN,
        fold=r"\d+",
        replicate=r"\d+",

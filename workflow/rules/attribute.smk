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
        method="gradcam|integrated_gradients",
        fold=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        gradcam_layer=config["attribution"]["gradcam_layer"],
        ig_steps=config["attribution"]["ig_steps"],
        batch_size=config["attribution"]["batch_size"],
        n_examples=config["attribution"]["n_examples"],
        code=layer_code("data", "model", "train", "attribution"),
    script:
        "../scripts/attribute.py"


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
        method="gradcam|integrated_gradients",
        fold=r"\d+",
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=layer_code("aggregate"),
    script:
        "../scripts/aggregate.py"

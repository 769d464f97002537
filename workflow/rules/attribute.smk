# Attribution of each model's held-out scans (one job per modality x fold x run, every method of the study:
# one process per model) and its reduction to per-layer scores (one job per method). A model's job carries
# the attribution settings its methods read, so a setting no method of the study reads reruns nothing.

ATTRIBUTION_SETTINGS = {key: attribution_setting(key) for key in SETTINGS}


rule attribute:
    input:
        sheet=maps_sheet,
        folds="{study}/splits/folds.tsv",
        model="{study}/{run}models/{modality}/fold{fold}.pt",
    output:
        maps="{study}/{run}attribution/{modality}/fold{fold}.npz",
        qc="{study}/{run}attribution/{modality}/fold{fold}_qc.tsv",
        examples=directory("{study}/{run}attribution/{modality}/fold{fold}_examples"),
    log:
        "{study}/logs/{run}attribute/{modality}/fold{fold}.log",
    benchmark:
        "{study}/benchmarks/{run}attribute/{modality}/fold{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        **signed(
            methods=run_methods,
            **ATTRIBUTION_SETTINGS,
            null_model=replicate,
            code=code("attribute.py"),
        ),
    script:
        "../scripts/attribute.py"


rule aggregate:
    input:
        sheet=maps_sheet,
        maps="{study}/{run}attribution/{modality}/fold{fold}.npz",
    output:
        table="{study}/{run}aggregate/{modality}/{method}/fold{fold}.tsv",
    log:
        "{study}/logs/{run}aggregate/{modality}/{method}/fold{fold}.log",
    benchmark:
        "{study}/benchmarks/{run}aggregate/{modality}/{method}/fold{fold}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        **signed(
            membrane_margin=config["attribution"]["membrane_margin"],
            null_model=replicate,
            code=code("aggregate.py"),
        ),
    script:
        "../scripts/aggregate.py"

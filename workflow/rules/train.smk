rule train:
    input:
        sheet="results/cohort/validated.tsv",
        folds="results/splits/folds.tsv",
    output:
        model="results/models/{modality}/fold{fold}.pt",
        curve="results/models/{modality}/fold{fold}_curve.tsv",
        oof="results/models/{modality}/fold{fold}_oof.tsv",
    log:
        "results/logs/train/{modality}/fold{fold}.log",
    benchmark:
        "results/benchmarks/train/{modality}/fold{fold}.tsv"
    wildcard_constraints:
        modality="bmode|swe|fused",
        fold=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        **signed(
            checkpoint="results/checkpoints/{modality}/fold{fold}.ckpt",
            model_name=config["model"]["name"],
            width=config["model"]["width"],
            bmode_max=config["input"]["bmode_max"],
            swe_scale=config["input"]["swe_scale"],
            max_epochs=config["train"]["max_epochs"],
            patience=config["train"]["patience"],
            batch_size=config["train"]["batch_size"],
            learning_rate=config["train"]["learning_rate"],
            weight_decay=config["train"]["weight_decay"],
            seed=config["train"]["seed"],
            amp=config["train"]["amp"],
            code=layer_code("data", "model", "train"),
        ),
    script:
        "../scripts/train.py"


use rule train as train_null with:
    output:
        model="results/null/r{replicate}/models/{modality}/fold{fold}.pt",
        curve="results/null/r{replicate}/models/{modality}/fold{fold}_curve.tsv",
        oof="results/null/r{replicate}/models/{modality}/fold{fold}_oof.tsv",
    log:
        "results/logs/null/r{replicate}/train/{modality}/fold{fold}.log",
    benchmark:
        "results/benchmarks/null/r{replicate}/train/{modality}/fold{fold}.tsv"
    wildcard_constraints:
        modality="bmode|swe|fused",
        fold=r"\d+",
        replicate=r"\d+",
    params:
        checkpoint="results/checkpoints/null/r{replicate}/{modality}/fold{fold}.ckpt",
        permutation_seed=lambda wc: null_seed(wc.replicate),
        code=layer_code("data", "model", "train", "split"),

# One model per modality x fold, for the trained models ({run} empty) and every null replicate
# ({run} = null/r{replicate}/: labels permuted across subjects before training).


rule train:
    input:
        sheet="{study}/cohort/validated.tsv",
        folds="{study}/splits/folds.tsv",
    output:
        model="{study}/{run}models/{modality}/fold{fold}.pt",
        curve="{study}/{run}models/{modality}/fold{fold}_curve.tsv",
        oof="{study}/{run}models/{modality}/fold{fold}_oof.tsv",
    log:
        "{study}/logs/{run}train/{modality}/fold{fold}.log",
    benchmark:
        "{study}/benchmarks/{run}train/{modality}/fold{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        **signed(
            checkpoint="{study}/checkpoints/{run}{modality}/fold{fold}.ckpt",
            permutation_seed=permutation_seed,
            model_name=model_setting("name"),
            width=model_setting("width"),
            lateral_pool=model_setting("lateral_pool"),
            bmode_max=config["input"]["bmode_max"],
            swe_scale=config["input"]["swe_scale"],
            max_epochs=config["train"]["max_epochs"],
            patience=config["train"]["patience"],
            batch_size=config["train"]["batch_size"],
            learning_rate=config["train"]["learning_rate"],
            weight_decay=config["train"]["weight_decay"],
            seed=config["train"]["seed"],
            amp=config["train"]["amp"],
            code=code("train.py"),
        ),
    script:
        "../scripts/train.py"

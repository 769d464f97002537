# The segment stage, for a cohort where some scans have no drawn layer map (Study.segment, common.smk):
# a UNet trained on the drawn maps of some annotated subjects, its quality on the others, and the predicted
# maps in the sheet every step that reads layer maps uses ({study}/cohort/mapped.tsv, maps_sheet).


rule segment_train:
    input:
        sheet="{study}/cohort/validated.tsv",
    output:
        model="{study}/segmentation/model.pt",
        split="{study}/segmentation/split.tsv",
        curve="{study}/segmentation/curve.tsv",
    log:
        "{study}/logs/segmentation/train.log",
    benchmark:
        "{study}/benchmarks/segmentation/train.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["segmentation"]["threads"]
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=240,
    params:
        **signed(
            checkpoint="{study}/checkpoints/segmentation.ckpt",
            held_out_fraction=config["segmentation"]["held_out_fraction"],
            width=config["segmentation"]["width"],
            max_epochs=config["segmentation"]["max_epochs"],
            batch_size=config["segmentation"]["batch_size"],
            learning_rate=config["segmentation"]["learning_rate"],
            seed=config["segmentation"]["seed"],
            amp=config["segmentation"]["amp"],
            bmode_max=config["input"]["bmode_max"],
            code=code("segment_train.py"),
        ),
    script:
        "../scripts/segment_train.py"


rule segment_predict:
    input:
        sheet="{study}/cohort/validated.tsv",
        split="{study}/segmentation/split.tsv",
        model="{study}/segmentation/model.pt",
    output:
        maps=directory("{study}/segmentation/maps"),
        sheet="{study}/cohort/mapped.tsv",
    log:
        "{study}/logs/segmentation/predict.log",
    benchmark:
        "{study}/benchmarks/segmentation/predict.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["segmentation"]["threads"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        **signed(
            bmode_max=config["input"]["bmode_max"],
            code=code("segment_predict.py"),
        ),
    script:
        "../scripts/segment_predict.py"


rule segment_quality:
    input:
        sheet="{study}/cohort/validated.tsv",
        split="{study}/segmentation/split.tsv",
        maps="{study}/segmentation/maps",
    output:
        per_scan="{study}/segmentation/quality_per_scan.tsv",
        summary=report(
            "{study}/segmentation/quality.tsv",
            caption="../report/segmentation_quality.rst",
            category="Segmentation",
        ),
    log:
        "{study}/logs/segmentation/quality.log",
    benchmark:
        "{study}/benchmarks/segmentation/quality.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        **signed(
            n_resamples=config["bootstrap"]["n_resamples"],
            confidence_level=config["bootstrap"]["confidence_level"],
            seed=config["bootstrap"]["seed"],
            code=code("segment_quality.py"),
        ),
    script:
        "../scripts/segment_quality.py"

# The synthetic cohort of a study (main or validation scenario), rendered in chunks of subjects.

SYNTH_KEYS = (
    "preset",
    "effects",
    "n_subjects",
    "scans_per_subject",
    "shape",
    "spacing",
    "label_noise",
    "prevalence",
    "seed",
)


rule synth_chunk:
    output:
        sheet="{study}/cohort/synthetic/chunks/chunk{chunk}_sheet.tsv",
        features="{study}/cohort/synthetic/chunks/chunk{chunk}_features.tsv",
        scans=directory("{study}/cohort/synthetic/scans/chunk{chunk}"),
    log:
        "{study}/logs/synth/chunk{chunk}.log",
    benchmark:
        "{study}/benchmarks/synth/chunk{chunk}.tsv"
    conda:
        "../../envs/cohort.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        **signed(
            **{key: synthetic(key) for key in SYNTH_KEYS},
            chunks=synthetic("chunks"),
            code=code("synth_chunk.py"),
        ),
    script:
        "../scripts/synth_chunk.py"


rule synth_cohort:
    input:
        sheets=synth_chunks("{study}/cohort/synthetic/chunks/chunk{chunk}_sheet.tsv"),
        features=synth_chunks("{study}/cohort/synthetic/chunks/chunk{chunk}_features.tsv"),
        scans=synth_chunks("{study}/cohort/synthetic/scans/chunk{chunk}"),
    output:
        sheet="{study}/cohort/synthetic/cohort.tsv",
        features="{study}/cohort/synthetic/features.tsv",
        truth="{study}/cohort/synthetic/ground_truth.json",
    log:
        "{study}/logs/synth/cohort.log",
    benchmark:
        "{study}/benchmarks/synth/cohort.tsv"
    conda:
        "../../envs/cohort.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        **signed(
            **{key: synthetic(key) for key in SYNTH_KEYS},
            annotated_fraction=synthetic("annotated_fraction"),
            code=code("synth_cohort.py"),
        ),
    script:
        "../scripts/synth_cohort.py"

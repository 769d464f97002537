# Ground-truth recovery study (target `validation`): the study DAG on each planted scenario and seed, under
# results/validation/{scenario}/seed{vseed}/, reusing the study's rules with `use rule ... with:`.

SYNTH_KEYS = (
    "preset",
    "effects",
    "n_subjects",
    "scans_per_subject",
    "shape",
    "spacing",
    "label_noise",
    "seed",
)
SYNTH_PARAMS = {key: synth_param(key) for key in SYNTH_KEYS}


use rule synth_chunk as v_synth_chunk with:
    output:
        sheet=f"{V}/cohort/synthetic/chunks/chunk{{chunk}}_sheet.tsv",
        features=f"{V}/cohort/synthetic/chunks/chunk{{chunk}}_features.tsv",
        scans=directory(f"{V}/cohort/synthetic/scans/chunk{{chunk}}"),
    log:
        f"{V}/logs/synth/chunk{{chunk}}.log",
    benchmark:
        f"{V}/benchmarks/synth/chunk{{chunk}}.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,
    params:
        **SYNTH_PARAMS,
        chunks=synth_param("chunks"),
        signature=scenario_signature(*SYNTH_KEYS, "chunks"),


use rule synth_cohort as v_synth_cohort with:
    input:
        sheets=lambda wc: scenario_chunks(
            wc, f"{V}/cohort/synthetic/chunks/chunk{{chunk}}_sheet.tsv"
        ),
        features=lambda wc: scenario_chunks(
            wc, f"{V}/cohort/synthetic/chunks/chunk{{chunk}}_features.tsv"
        ),
        scans=lambda wc: scenario_chunks(
            wc, f"{V}/cohort/synthetic/scans/chunk{{chunk}}"
        ),
    output:
        sheet=f"{V}/cohort/synthetic/cohort.tsv",
        features=f"{V}/cohort/synthetic/features.tsv",
        truth=f"{V}/cohort/synthetic/ground_truth.json",
    log:
        f"{V}/logs/synth/cohort.log",
    benchmark:
        f"{V}/benchmarks/synth/cohort.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,
    params:
        **SYNTH_PARAMS,
        signature=scenario_signature(*SYNTH_KEYS),


use rule validate_cohort as v_validate_cohort with:
    input:
        sheet=f"{V}/cohort/synthetic/cohort.tsv",
    output:
        sheet=f"{V}/cohort/validated.tsv",
    log:
        main=f"{V}/logs/cohort/validate.log",
        report=f"{V}/cohort/validation_report.txt",
    benchmark:
        f"{V}/benchmarks/cohort/validate.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,


use rule split as v_split with:
    input:
        sheet=f"{V}/cohort/validated.tsv",
        report=f"{V}/cohort/validation_report.txt",
    output:
        folds=f"{V}/splits/folds.tsv",
    log:
        f"{V}/logs/cohort/split.log",
    benchmark:
        f"{V}/benchmarks/cohort/split.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,


use rule train as v_train with:
    input:
        sheet=f"{V}/cohort/validated.tsv",
        folds=f"{V}/splits/folds.tsv",
    output:
        model=f"{V}/models/{{modality}}/fold{{fold}}.pt",
        curve=f"{V}/models/{{modality}}/fold{{fold}}_curve.tsv",
        oof=f"{V}/models/{{modality}}/fold{{fold}}_oof.tsv",
    log:
        f"{V}/logs/train/{{modality}}/fold{{fold}}.log",
    benchmark:
        f"{V}/benchmarks/train/{{modality}}/fold{{fold}}.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,
        modality="bmode|swe|fused",
        fold=r"\d+",
    params:
        checkpoint=f"results/checkpoints/validation/{{scenario}}/seed{{vseed}}/{{modality}}/fold{{fold}}.ckpt",


use rule train_null as v_train_null with:
    input:
        sheet=f"{V}/cohort/validated.tsv",
        folds=f"{V}/splits/folds.tsv",
    output:
        model=f"{V}/null/r{{replicate}}/models/{{modality}}/fold{{fold}}.pt",
        curve=f"{V}/null/r{{replicate}}/models/{{modality}}/fold{{fold}}_curve.tsv",
        oof=f"{V}/null/r{{replicate}}/models/{{modality}}/fold{{fold}}_oof.tsv",
    log:
        f"{V}/logs/null/r{{replicate}}/train/{{modality}}/fold{{fold}}.log",
    benchmark:
        f"{V}/benchmarks/null/r{{replicate}}/train/{{modality}}/fold{{fold}}.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,
        modality="bmode|swe|fused",
        fold=r"\d+",
        replicate=r"\d+",
    params:
        checkpoint=f"results/checkpoints/validation/{{scenario}}/seed{{vseed}}/null/r{{replicate}}/{{modality}}/fold{{fold}}.ckpt",


use rule attribute as v_attribute with:
    input:
        sheet=f"{V}/cohort/validated.tsv",
        folds=f"{V}/splits/folds.tsv",
        model=f"{V}/{{run}}models/{{modality}}/fold{{fold}}.pt",
    output:
        maps=f"{V}/{{run}}attribution/{{modality}}/{{method}}/fold{{fold}}.npz",
        qc=f"{V}/{{run}}attribution/{{modality}}/{{method}}/fold{{fold}}_qc.tsv",
        examples=directory(
            f"{V}/{{run}}attribution/{{modality}}/{{method}}/fold{{fold}}_examples"
        ),
    log:
        f"{V}/logs/{{run}}attribute/{{modality}}/{{method}}/fold{{fold}}.log",
    benchmark:
        f"{V}/benchmarks/{{run}}attribute/{{modality}}/{{method}}/fold{{fold}}.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,
        modality="bmode|swe|fused",
        method=METHOD_PATTERN,
        fold=r"\d+",
        run=r"(null/r\d+/)?",


use rule aggregate as v_aggregate with:
    input:
        sheet=f"{V}/cohort/validated.tsv",
        maps=f"{V}/{{run}}attribution/{{modality}}/{{method}}/fold{{fold}}.npz",
    output:
        table=f"{V}/{{run}}aggregate/{{modality}}/{{method}}/fold{{fold}}.tsv",
    log:
        f"{V}/logs/{{run}}aggregate/{{modality}}/{{method}}/fold{{fold}}.log",
    benchmark:
        f"{V}/benchmarks/{{run}}aggregate/{{modality}}/{{method}}/fold{{fold}}.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,
        modality="bmode|swe|fused",
        method=METHOD_PATTERN,
        fold=r"\d+",
        run=r"(null/r\d+/)?",


use rule calls as v_calls with:
    input:
        sheet=f"{V}/cohort/validated.tsv",
        aggregated=v_aggregated(null=False),
        null=v_aggregated(null=True),
        coalitions=coalition_files(V, V_MODALITIES, V_METHODS),
    output:
        calls=f"{V}/stats/layer_calls.tsv",
        contrasts=f"{V}/stats/layer_contrasts.tsv",
    log:
        f"{V}/logs/stats/calls.log",
    benchmark:
        f"{V}/benchmarks/stats/calls.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,


rule recovery:
    input:
        sheet=f"{V}/cohort/validated.tsv",
        calls=f"{V}/stats/layer_calls.tsv",
        truth=f"{V}/cohort/synthetic/ground_truth.json",
        oof=lambda wc: expand(
            f"{V}/models/{{modality}}/fold{{fold}}_oof.tsv",
            scenario=wc.scenario,
            vseed=wc.vseed,
            modality=V_MODALITIES,
            fold=FOLDS,
        ),
        shapley=lambda wc: expand(
            f"{V}/attribution/{{modality}}/{{method}}/fold{{fold}}.npz",
            scenario=wc.scenario,
            vseed=wc.vseed,
            modality=V_MODALITIES,
            method=shapley_method(),
            fold=FOLDS,
        ),
    output:
        table=f"{V}/recovery.tsv",
    log:
        f"{V}/logs/recovery.log",
    benchmark:
        f"{V}/benchmarks/recovery.tsv"
    wildcard_constraints:
        **V_CONSTRAINTS,
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        **signed(
            measure=config["report"]["primary_measure"],
            n_resamples=config["bootstrap"]["n_resamples"],
            confidence_level=config["bootstrap"]["confidence_level"],
            seed=config["bootstrap"]["seed"],
            code=layer_code("recovery", "stats", "aggregate"),
        ),
    script:
        "../scripts/recovery.py"


rule validation_summary:
    input:
        expand(f"{V}/recovery.tsv", scenario=SCENARIOS, vseed=VSEEDS),
    output:
        recovery=report(
            "results/validation/recovery.tsv",
            caption="../report/recovery.rst",
            category="Validation",
        ),
        summary=report(
            "results/validation/summary.tsv",
            caption="../report/recovery_summary.rst",
            category="Validation",
        ),
        heatmap=report(
            "results/validation/recovery.png",
            caption="../report/recovery_figure.rst",
            category="Validation",
        ),
    log:
        "results/logs/validation/summary.log",
    benchmark:
        "results/benchmarks/validation/summary.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        learned_auc=config["validation"]["learned_auc"],
        code=layer_code(
            "recovery",
            "figures",
            "figures_calls",
            "stats",
            "aggregate",
            "inference",
            "games",
        ),
    script:
        "../scripts/validation_summary.py"


rule validation:
    default_target: False
    input:
        rules.validation_summary.output,

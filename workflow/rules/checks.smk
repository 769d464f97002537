rule sanity:
    input:
        sheet="results/cohort/validated.tsv",
        folds="results/splits/folds.tsv",
        model="results/models/{modality}/fold0.pt",
    output:
        table="results/checks/sanity/{modality}.tsv",
    log:
        "results/logs/checks/sanity/{modality}.log",
    benchmark:
        "results/benchmarks/checks/sanity/{modality}.tsv"
    wildcard_constraints:
        modality="bmode|swe|fused",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        methods=METHODS,
        n_scans=config["checks"]["n_scans"],
        gradcam_layer=config["attribution"]["gradcam_layer"],
        ig_steps=config["attribution"]["ig_steps"],
        batch_size=config["attribution"]["batch_size"],
        n_background=config["attribution"]["n_background"],
        eg_samples=config["attribution"]["eg_samples"],
        blur_sigma=config["attribution"]["blur_sigma"],
        road_iterations=config["attribution"]["road_iterations"],
        road_noise=config["attribution"]["road_noise"],
        seed=config["attribution"]["seed"],
        code=layer_code(
            "data", "model", "train", "attribution", "shapley", "checks", "aggregate"
        ),
    script:
        "../scripts/check_profiles.py"


rule robustness:
    input:
        sheet="results/cohort/validated.tsv",
        folds="results/splits/folds.tsv",
        model="results/models/{modality}/fold0.pt",
    output:
        table="results/checks/robustness/{modality}.tsv",
    log:
        "results/logs/checks/robustness/{modality}.log",
    benchmark:
        "results/benchmarks/checks/robustness/{modality}.tsv"
    wildcard_constraints:
        modality="bmode|swe|fused",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        methods=METHODS,
        n_scans=config["checks"]["n_scans"],
        gradcam_layer=config["attribution"]["gradcam_layer"],
        ig_steps=config["attribution"]["ig_steps"],
        batch_size=config["attribution"]["batch_size"],
        n_background=config["attribution"]["n_background"],
        eg_samples=config["attribution"]["eg_samples"],
        blur_sigma=config["attribution"]["blur_sigma"],
        road_iterations=config["attribution"]["road_iterations"],
        road_noise=config["attribution"]["road_noise"],
        seed=config["attribution"]["seed"],
        code=layer_code(
            "data",
            "model",
            "train",
            "attribution",
            "shapley",
            "checks",
            "aggregate",
            "robustness",
        ),
    script:
        "../scripts/check_profiles.py"


rule checks:
    input:
        sheet="results/cohort/validated.tsv",
        sanity=expand("results/checks/sanity/{modality}.tsv", modality=MODALITIES),
        robustness=expand(
            "results/checks/robustness/{modality}.tsv", modality=MODALITIES
        ),
        aggregated=aggregated(),
        shapley=expand(
            "results/attribution/{modality}/{method}/fold{fold}.npz",
            modality=MODALITIES,
            method=shapley_method(),
            fold=FOLDS,
        ),
    output:
        sanity=report(
            "results/checks/sanity.tsv",
            caption="../report/sanity.rst",
            category="Checks",
        ),
        faithfulness=report(
            "results/checks/faithfulness.tsv",
            caption="../report/faithfulness.rst",
            category="Checks",
        ),
        curves="results/checks/deletion_curves.tsv",
        robustness=report(
            "results/checks/robustness.tsv",
            caption="../report/robustness.rst",
            category="Checks",
        ),
    log:
        "results/logs/checks/checks.log",
    benchmark:
        "results/benchmarks/checks/checks.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        sanity_threshold=config["checks"]["sanity_threshold"],
        code=layer_code("checks", "stats", "aggregate", "inference"),
    script:
        "../scripts/checks.py"

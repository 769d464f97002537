import hashlib
import re
from pathlib import Path

LAYER_DIR = Path(workflow.basedir) / "workflow" / "layer"


def layer_code(*modules):
    """Hash of the layer modules a rule's script runs: edits to them rerun the rule (params trigger)."""
    digest = hashlib.sha256()
    for name in ("__init__", "names", "io", "logs") + modules:
        digest.update((LAYER_DIR / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


def synth_code():
    """Hash of the synthetic cohort generator (package layer.synth)."""
    digest = hashlib.sha256()
    for path in sorted((LAYER_DIR / "synth").glob("*")):
        if path.suffix in (".py", ".yaml"):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cohort_sheet():
    """The user's sheet, or the synthetic cohort's sheet."""
    return config["cohort"]["sheet"] or "results/cohort/synthetic/cohort.tsv"


MODALITIES = config["train"]["modalities"]
# The primary and the paper method always run, whatever attribution.methods lists.
METHODS = list(
    dict.fromkeys(
        config["attribution"]["methods"]
        + [config["report"]["paper_method"], config["report"]["primary_method"]]
    )
)
FOLDS = list(range(config["split"]["n_folds"]))
REPLICATES = list(range(config["null"]["replicates"]))
#: Every attribution method (the schema lists the same names): voxel maps, then the removal methods.
METHOD_PATTERN = (
    "gradcam|integrated_gradients|expected_gradients"
    "|(ablation|shapley|shapley_channel)_(mean|road|blur|background)"
)


def signed(**params):
    """A rule's params plus ``signature``, a hash of every param's name and value.

    Why: Snakemake's params trigger compares the *set* of value reprs of a job, without their names, so a
    change of one param to a value another param already holds is not seen (measured: with ``seed`` 0 and
    ``n_examples`` 1 in the attribute rule, ``attribution.membrane_margin`` 1 -> 0 reran nothing).
    """
    params["signature"] = signature(params)
    return params


def signature(params):
    """Hash of the names and values of ``params`` (``code`` left out: it is its own param). A hash, not the
    text: Snakemake formats string params with wildcards, and reprs hold braces."""
    named = ";".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k != "code")
    return hashlib.sha256(named.encode()).hexdigest()[:16]


def null_seed(replicate):
    """Seed of the label permutation of one null replicate (same for every modality and fold)."""
    return int(config["null"]["seed"]) + int(replicate)


def aggregated():
    return expand(
        "results/aggregate/{modality}/{method}/fold{fold}.tsv",
        modality=MODALITIES,
        method=METHODS,
        fold=FOLDS,
    )


def null_aggregated():
    return expand(
        "results/null/r{replicate}/aggregate/{modality}/{method}/fold{fold}.tsv",
        replicate=REPLICATES,
        modality=MODALITIES,
        method=METHODS,
        fold=FOLDS,
    )


def coalition_files(root="results", modalities=None, methods=None):
    """Attribution files (trained and null runs) of the exact six-layer Shapley methods among ``methods``:
    their stored coalition values give the conditional layer calls (layer.inference.conditional_calls).
    """
    exact = [
        m
        for m in (methods or METHODS)
        if re.fullmatch(r"shapley_(mean|road|blur|background)", m)
    ]
    runs = [""] + [f"null/r{r}/" for r in REPLICATES]

    def inputs(wildcards):
        return expand(
            f"{root}/{{run}}attribution/{{modality}}/{{method}}/fold{{fold}}.npz",
            run=runs,
            modality=modalities or MODALITIES,
            method=exact,
            fold=FOLDS,
            **dict(wildcards.items()),
        )

    return inputs


def shapley_method():
    """The exact six-layer Shapley method whose coalition values give the deletion curves."""
    return f"shapley_{config['checks']['removal_operator']}"


def all_outputs():
    return [
        "results/stats/layer_calls.tsv",
        "results/stats/layer_contrasts.tsv",
        "results/checks/sanity.tsv",
        "results/checks/faithfulness.tsv",
        "results/checks/robustness.tsv",
        "results/figures/layer_calls.png",
        "results/figures/checks.png",
        "results/stats/layer_saliency.tsv",
        "results/stats/performance.tsv",
        "results/stats/paper_table.tsv",
        "results/figures/layer_saliency.png",
        "results/figures/roc.png",
        "results/figures/training_curves.png",
        "results/figures/overlays.png",
    ]


def ground_truth():
    """The synthetic cohort's ground truth (oracle AUC), or nothing for a user's cohort."""
    return (
        []
        if config["cohort"]["sheet"]
        else ["results/cohort/synthetic/ground_truth.json"]
    )


# Ground-truth recovery study (validation.smk)
V = "results/validation/{scenario}/seed{vseed}"
V_CONSTRAINTS = {"scenario": r"[A-Za-z0-9_]+", "vseed": r"\d+"}
SCENARIOS = config["validation"]["run"] or list(config["validation"]["scenarios"])
_unknown = sorted(set(SCENARIOS) - set(config["validation"]["scenarios"]))
if _unknown:
    raise ValueError(f"validation.run names unknown scenarios {_unknown}")
VSEEDS = list(range(config["validation"]["replicates"]))
V_MODALITIES = config["validation"]["modalities"]
V_METHODS = list(
    dict.fromkeys(
        config["validation"]["methods"] + [config["report"]["primary_method"]]
    )
)


def scenario(wildcards):
    """The scenario's synthetic block: its own keys over the `synthetic:` block; seed + replicate."""
    block = {
        **config["synthetic"],
        **config["validation"]["scenarios"][wildcards.scenario],
    }
    block["seed"] = int(block["seed"]) + 1000 * int(wildcards.vseed)
    return block


def synth_param(key):
    return lambda wildcards: scenario(wildcards)[key]


def scenario_signature(*keys):
    """The ``signature`` param of a scenario's synthesis job: its own values of ``keys``. Without it the
    job would inherit the study rule's signature of the `synthetic:` block, and switching the default
    study's preset would rerun every scenario."""
    return lambda wildcards: signature({k: scenario(wildcards)[k] for k in keys})


def scenario_chunks(wildcards, pattern):
    return expand(
        pattern,
        chunk=range(scenario(wildcards)["chunks"]),
        scenario=wildcards.scenario,
        vseed=wildcards.vseed,
    )


def v_aggregated(null):
    """The scenario replicate's aggregated tables of the trained (or the null) models."""

    def inputs(wildcards):
        runs = [f"null/r{r}/" for r in REPLICATES] if null else [""]
        return expand(
            f"{V}/{{run}}aggregate/{{modality}}/{{method}}/fold{{fold}}.tsv",
            scenario=wildcards.scenario,
            vseed=wildcards.vseed,
            run=runs,
            modality=V_MODALITIES,
            method=V_METHODS,
            fold=FOLDS,
        )

    return inputs

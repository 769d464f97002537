import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from layer.codegraph import code_hash  # noqa: E402  (stdlib only)
from layer.config import check_methods  # noqa: E402
from layer.explain.registry import (
    METHODS as REGISTRY,
    SETTINGS,
    wildcard_pattern,
)  # noqa: E402

check_methods(config)

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"

# Every path of a step starts with {study}: "results" for the main study, or
# "results/validation/{scenario}/seed{vseed}" for a validation scenario; models and what is computed from
# them add {run}: "" for the trained models, "null/r{replicate}/" for a null replicate.
STUDY = "results"


wildcard_constraints:
    study=r"results(/validation/[A-Za-z0-9_]+/seed\d+)?",
    run=r"(null/r\d+/)?",
    modality="bmode|swe|fused",
    method=wildcard_pattern(),
    fold=r"\d+",
    chunk=r"\d+",
    check="sanity|robustness",
    scenario=r"[A-Za-z0-9_]+",
    vseed=r"\d+",


def code(script):
    """The ``code`` param: a hash of every ``layer`` module ``script`` imports, directly or not
    (layer.codegraph), so that editing one reruns exactly the rules whose scripts use it.
    """
    return code_hash(SCRIPTS / script)


def signature(params):
    """Hash of the names and values of ``params`` (``code`` left out: it is its own param). A hash, not the
    text: Snakemake formats string params with wildcards, and reprs hold braces."""
    named = ";".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k != "code")
    return hashlib.sha256(named.encode()).hexdigest()[:16]


def signed(**params):
    """A rule's params plus ``signature``, a hash of every param's name and value (per job, where a param
    is a function of the wildcards).

    Why: Snakemake's params trigger compares the *set* of value reprs of a job, without their names, so a
    change of one param to a value another param already holds is not seen (measured: with ``seed`` 0 and
    ``n_examples`` 1 in the attribute rule, ``attribution.membrane_margin`` 1 -> 0 reran nothing).
    """
    if not any(callable(v) for v in params.values()):
        return {**params, "signature": signature(params)}

    def job_signature(wildcards):
        return signature(
            {k: v(wildcards) if callable(v) else v for k, v in params.items()}
        )

    return {**params, "signature": job_signature}


class Study:
    """What one study runs: its cohort sheet, synthetic block (None for a user's cohort), modalities,
    methods, folds and null replicates."""

    def __init__(self, sheet, synthetic, modalities, methods):
        self.sheet = sheet
        self.synthetic = synthetic
        self.modalities = list(modalities)
        # The primary method (and, in the main study, the paper's) always runs.
        self.methods = list(dict.fromkeys(methods))
        self.folds = list(range(config["split"]["n_folds"]))
        self.replicates = list(range(config["null"]["replicates"]))

    def exact_shapley(self):
        """Its exact six-layer Shapley methods (their coalition values give the conditional calls)."""
        return [m for m in self.methods if REGISTRY[m].exact_layer_shapley]


def scenario_block(name, vseed):
    """A validation scenario's synthetic block: its own keys over the `synthetic:` block; seed + replicate."""
    block = {**config["synthetic"], **config["validation"]["scenarios"][name]}
    block["seed"] = int(block["seed"]) + 1000 * int(vseed)
    return block


SCENARIOS = config["validation"]["run"] or list(config["validation"]["scenarios"])
_unknown = sorted(set(SCENARIOS) - set(config["validation"]["scenarios"]))
if _unknown:
    raise ValueError(f"validation.run names unknown scenarios {_unknown}")
VSEEDS = list(range(config["validation"]["replicates"]))
V = "results/validation/{scenario}/seed{vseed}"

#: Every study by its path prefix: the main study and each validation scenario x seed.
STUDIES = {
    STUDY: Study(
        config["cohort"]["sheet"] or f"{STUDY}/cohort/synthetic/cohort.tsv",
        None if config["cohort"]["sheet"] else config["synthetic"],
        config["train"]["modalities"],
        config["attribution"]["methods"]
        + [config["report"]["paper_method"], config["report"]["primary_method"]],
    ),
    **{
        V.format(scenario=name, vseed=vseed): Study(
            f"{V.format(scenario=name, vseed=vseed)}/cohort/synthetic/cohort.tsv",
            scenario_block(name, vseed),
            config["validation"]["modalities"],
            config["validation"]["methods"] + [config["report"]["primary_method"]],
        )
        for name in SCENARIOS
        for vseed in VSEEDS
    },
}
MAIN = STUDIES[STUDY]
#: Null replicate of each {run} value (None: the trained models).
RUNS = {"": None, **{f"null/r{r}/": r for r in MAIN.replicates}}
NULL_RUNS = [run for run, replicate in RUNS.items() if replicate is not None]


def study_key(wildcards):
    """The study prefix of a job: its {study} wildcard, or its validation scenario and seed."""
    if "study" in wildcards.keys():
        return wildcards.study
    return V.format(scenario=wildcards.scenario, vseed=wildcards.vseed)


def study(wildcards):
    return STUDIES[study_key(wildcards)]


def study_methods(wildcards):
    """Param function: the study's attribution methods."""
    return study(wildcards).methods


def study_sheet(wildcards):
    """The study's cohort sheet: the user's, or its synthetic cohort's."""
    return study(wildcards).sheet


def replicate(wildcards):
    """The run's null replicate, or None for the trained models (stamped into its tables)."""
    return RUNS[wildcards.run]


def permutation_seed(wildcards):
    """Seed of the label permutation of a null replicate (same for every modality and fold); None for the
    trained models."""
    r = RUNS[wildcards.run]
    return None if r is None else int(config["null"]["seed"]) + r


def synthetic(key):
    """Param function: one key of the study's synthetic block."""

    def value(wildcards):
        return study(wildcards).synthetic[key]

    return value


def synth_chunks(pattern):
    """Input function: ``pattern`` for every chunk of the study's synthetic cohort."""

    def inputs(wildcards):
        return expand(
            pattern,
            chunk=range(study(wildcards).synthetic["chunks"]),
            study=wildcards.study,
        )

    return inputs


def attribution_setting(key):
    """Param function: ``attribution.<key>`` for a method that reads it (layer.explain.registry), else None,
    so that a setting reruns only the methods it reaches."""

    def value(wildcards):
        return (
            config["attribution"][key]
            if key in REGISTRY[wildcards.method].reads
            else None
        )

    return value


def per_model(pattern, runs="trained", methods="all", folds=None):
    """Input function: ``pattern`` for every modality, fold and method of the study.

    ``runs``: ``trained`` (the {run} part empty), ``null`` (every null replicate) or ``both``;
    ``methods``: ``all`` (the study's), ``exact_shapley`` (its exact six-layer Shapley methods) or a list.
    """
    run_values = {"trained": [""], "null": NULL_RUNS, "both": list(RUNS)}[runs]

    def inputs(wildcards):
        s = study(wildcards)
        named = {"all": s.methods, "exact_shapley": s.exact_shapley()}
        return expand(
            pattern,
            study=study_key(wildcards),
            run=run_values,
            modality=s.modalities,
            method=named[methods] if isinstance(methods, str) else methods,
            fold=s.folds if folds is None else folds,
        )

    return inputs


def shapley_method():
    """The exact six-layer Shapley method whose coalition values give the deletion curves."""
    return f"shapley_{config['checks']['removal_operator']}"


def ground_truth(wildcards):
    """The synthetic cohort's ground truth (oracle AUC), or nothing for a user's cohort."""
    return (
        []
        if study(wildcards).synthetic is None
        else [f"{wildcards.study}/cohort/synthetic/ground_truth.json"]
    )


def all_outputs():
    return expand(
        "{study}/{path}",
        study=STUDY,
        path=[
            "stats/layer_calls.tsv",
            "stats/layer_contrasts.tsv",
            "checks/sanity.tsv",
            "checks/faithfulness.tsv",
            "checks/robustness.tsv",
            "figures/layer_calls.png",
            "figures/checks.png",
            "stats/layer_saliency.tsv",
            "stats/performance.tsv",
            "stats/paper_table.tsv",
            "figures/layer_saliency.png",
            "figures/roc.png",
            "figures/training_curves.png",
            "figures/overlays.png",
        ],
    )

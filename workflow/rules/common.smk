import hashlib
import sys
from pathlib import Path

from snakemake.logging import logger

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from layer.codegraph import code_hash  # noqa: E402  (stdlib only)
from layer.config import check_calls, check_methods  # noqa: E402
from layer.explain.registry import (
    METHODS as REGISTRY,
    SETTINGS,
    wildcard_pattern,
)  # noqa: E402
from layer.cohort.modalities import missing_maps, sheet_modalities  # noqa: E402  (stdlib only)
from layer.names import PAPER_MODALITIES  # noqa: E402  (stdlib only)
from layer.validation.grid import grid, scenario_modalities  # noqa: E402  (stdlib only)

check_methods(config)
check_calls(config)

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"

# Every path of a step starts with {study}: "results" for the main study,
# "results/validation/{scenario}/seed{vseed}" for a validation scenario, or "results/paper_check/{cohort}"
# for a cohort of the paper check; models and what is computed from
# them add {run}: "" for the trained models, "null/r{replicate}/" for a null replicate.
STUDY = "results"


wildcard_constraints:
    study=r"results(/validation/[A-Za-z0-9_]+/seed\d+|/paper_check/[A-Za-z0-9_]+)?",
    run=r"(null/r\d+/)?",
    maps=r"(_drawn_maps)?",
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
        return signature({k: v(wildcards) if callable(v) else v for k, v in params.items()})

    return {**params, "signature": job_signature}


class Study:
    """What one study runs: its cohort sheet, synthetic block (None for a user's cohort), modalities,
    methods, folds and null replicates."""

    def __init__(
        self,
        sheet,
        synthetic,
        modalities,
        methods,
        replicates,
        null_modalities,
        null_folds,
        check_methods=(),
        model=None,
    ):
        self.sheet = sheet
        # The network: `model:`, or for a validation study `validation.model` over it.
        self.model = {**config["model"], **(model or {})}
        self.synthetic = synthetic
        self.modalities = list(modalities)
        # The primary method (and, in the main study, the paper's) always runs; the checks' deletion
        # operators add their exact Shapley runs for the trained models only. The reported methods are
        # those of the tables, the null models and the sanity and robustness checks.
        self.reported_methods = list(dict.fromkeys(methods))
        self.methods = list(dict.fromkeys([*methods, *check_methods]))
        self.folds = list(range(config["split"]["n_folds"]))
        # Null models are a diagnostic (layer.stats.calls): R replicates of the null_modalities it runs.
        self.replicates = list(range(replicates))
        self.null_modalities = [m for m in self.modalities if m in null_modalities]
        self.null_folds = [f for f in self.folds if f in null_folds] if null_folds else self.folds
        # Some scans lack a drawn layer map: the segment stage predicts them (a user's sheet is read now,
        # like its modalities; a synthetic cohort withholds maps when annotated_fraction < 1).
        if synthetic is not None:
            self.segment = float(synthetic["annotated_fraction"]) < 1
        else:
            self.segment = missing_maps(sheet)


def scenario_block(name, vseed):
    """A validation scenario's synthetic block: its own keys over the grid's `validation.cohort` over the
    `synthetic:` block; seed + 1000 x seed index."""
    block = {**config["synthetic"], **config["validation"]["cohort"], **config["validation"]["scenarios"][name]}
    block["seed"] = int(block["seed"]) + 1000 * int(vseed)
    return block


SCENARIOS = config["validation"]["run"] or list(config["validation"]["scenarios"])
_unknown = sorted(set(SCENARIOS) - set(config["validation"]["scenarios"]))
if _unknown:
    raise ValueError(f"validation.run names unknown scenarios {_unknown}")
#: Every (scenario, seed index) of the grid: `validation.seeds` per scenario, else `validation.replicates`.
GRID = grid(SCENARIOS, config["validation"]["seeds"], config["validation"]["replicates"])
_unshown = sorted(
    {n for n, r in GRID if not scenario_modalities(scenario_block(n, r), config["validation"]["modalities"])}
)
if _unshown:
    # A scenario whose planted features show in none of validation.modalities has nothing to score.
    logger.warning(
        f"validation: left out {', '.join(_unshown)}: their features show in none of "
        f"validation.modalities {config['validation']['modalities']}"
    )
    GRID = [(n, r) for n, r in GRID if n not in _unshown]
V = "results/validation/{scenario}/seed{vseed}"
#: Cohorts of the paper check besides the main study, each a B-mode and fused study at this prefix.
PAPER_COHORTS = config["paper_check"]["run"] or list(config["paper_check"]["cohorts"])
_unknown = sorted(set(PAPER_COHORTS) - set(config["paper_check"]["cohorts"]))
if _unknown:
    raise ValueError(f"paper_check.run names unknown cohorts {_unknown}")
P = "results/paper_check/{cohort}"
#: The main study's methods: its own, the paper's maps and the primary method (the checks add theirs).
STUDY_METHODS = config["attribution"]["methods"] + [
    config["report"]["paper_method"],
    *config["report"]["paper_maps"],
    config["report"]["primary_method"],
]


def cohort_block(name):
    """A paper-check cohort's synthetic block: its own keys over the `synthetic:` block (same seed: the
    cohorts differ by their planted effects, not by their anatomy draws)."""
    return {**config["synthetic"], **config["paper_check"]["cohorts"][name]}


#: Every study by its path prefix: the main study and each validation scenario x seed.
STUDIES = {
    STUDY: Study(
        config["cohort"]["sheet"] or f"{STUDY}/cohort/synthetic/cohort.tsv",
        None if config["cohort"]["sheet"] else config["synthetic"],
        # A user's sheet without SWE runs B-mode only (read now: the DAG needs it before any rule runs).
        (
            sheet_modalities(config["cohort"]["sheet"], config["train"]["modalities"])
            if config["cohort"]["sheet"]
            else config["train"]["modalities"]
        ),
        STUDY_METHODS,
        config["null"]["replicates"],
        config["null"]["modalities"],
        config["null"]["folds"],
        [f"shapley_{op}" for op in config["checks"]["removal_operators"]],
    ),
    **{
        V.format(scenario=name, vseed=vseed): Study(
            f"{V.format(scenario=name, vseed=vseed)}/cohort/synthetic/cohort.tsv",
            scenario_block(name, vseed),
            scenario_modalities(scenario_block(name, vseed), config["validation"]["modalities"]),
            config["validation"]["methods"]
            + [config["report"]["primary_method"], f"shapley_{config['checks']['removal_operators'][0]}"],
            config["validation"]["null_replicates"],
            config["null"]["modalities"],
            config["null"]["folds"],
            model=config["validation"]["model"],
        )
        for name, vseed in GRID
    },
    **{
        # A paper-check cohort answers the paper's two questions only: its B-mode and fused models, with
        # the paper's maps and the primary method (for the calls beside them).
        P.format(cohort=name): Study(
            f"{P.format(cohort=name)}/cohort/synthetic/cohort.tsv",
            cohort_block(name),
            [m for m in config["train"]["modalities"] if m in PAPER_MODALITIES],
            [*config["report"]["paper_maps"], config["report"]["primary_method"]],
            config["null"]["replicates"],
            config["null"]["modalities"],
            config["null"]["folds"],
        )
        for name in PAPER_COHORTS
    },
}
MAIN = STUDIES[STUDY]
#: Null replicate of each {run} value (None: the trained models), over every study.
RUNS = {
    "": None,
    **{f"null/r{r}/": r for r in sorted({r for s in STUDIES.values() for r in s.replicates})},
}


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


def reported_methods(wildcards):
    """Param function: the study's methods without the checks' extra deletion operators."""
    return study(wildcards).reported_methods


def study_modalities(wildcards):
    """Param function: the study's modalities (B-mode only for a sheet without SWE)."""
    return study(wildcards).modalities


def study_sheet(wildcards):
    """The study's cohort sheet: the user's, or its synthetic cohort's."""
    return study(wildcards).sheet


def maps_sheet(wildcards):
    """The sheet every step that reads layer maps uses: the validated sheet, or, when the segment stage runs,
    the one with each scan's drawn or predicted map and its ``map_source``."""
    name = "mapped" if study(wildcards).segment else "validated"
    return f"{study_key(wildcards)}/cohort/{name}.tsv"


def segmentation_quality(wildcards):
    """Input function: the segment stage's quality table for the robustness check of a study that segments
    (its measured Dice is one more mask-error level), else nothing."""
    s = study(wildcards)
    return [f"{study_key(wildcards)}/segmentation/quality.tsv"] if s.segment and wildcards.check == "robustness" else []


def map_source(wildcards):
    """Param function: the calls' scans by where their map came from: ``drawn`` for the sensitivity analysis
    on drawn maps only ({maps} = ``_drawn_maps``), None for every scan."""
    return "drawn" if wildcards.maps else None


def model_setting(key):
    """Param function: the study's network setting ``key`` (`model:`, or `validation.model` over it)."""

    def setting(wildcards):
        return study(wildcards).model[key]

    return setting


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


def run_methods(wildcards):
    """Param function: the methods of a model's attribution job: the study's, or for a null model its
    reported methods (without the checks' extra deletion operators)."""
    s = study(wildcards)
    return s.methods if RUNS[wildcards.run] is None else s.reported_methods


def attribution_setting(key, methods=run_methods, always=()):
    """Param function: ``attribution.<key>`` for a job one of whose ``methods`` (a param function) reads it
    (layer.explain.registry), or a key in ``always``; else None, so that a setting reruns only the jobs of
    methods that read it."""

    def value(wildcards):
        reads = key in always or any(key in REGISTRY[m].reads for m in methods(wildcards))
        return config["attribution"][key] if reads else None

    return value


def per_model(pattern, runs="trained", methods="all", folds=None):
    """Input function: ``pattern`` for every modality, fold and method of the study.

    ``runs``: ``trained`` (the {run} part empty: every modality) or ``null`` (every null replicate of the
    study's null modalities and null folds, its methods without the checks' extra operators; none when it
    has no null replicate); ``methods``: ``all`` (the study's) or a list. A pattern without ``{method}`` (a model's
    attribution file) gives each model once.
    """
    if runs not in ("trained", "null"):
        raise ValueError(f"per_model: runs must be 'trained' or 'null', not {runs!r}")

    def inputs(wildcards):
        s = study(wildcards)
        named = {"all": s.methods}
        chosen = s.folds if folds is None else folds
        if runs == "trained":
            run_values, modalities = [""], s.modalities
        else:
            run_values, modalities = [f"null/r{r}/" for r in s.replicates], s.null_modalities
            named["all"] = s.reported_methods
            chosen = [f for f in chosen if f in s.null_folds]
        paths = expand(
            pattern,
            study=study_key(wildcards),
            run=run_values,
            modality=modalities,
            method=named[methods] if isinstance(methods, str) else methods,
            fold=chosen,
        )
        return list(dict.fromkeys(paths))  # a per-model pattern (no {method}) once per model

    return inputs


def shapley_methods():
    """The exact six-layer Shapley methods whose coalition values give the deletion curves, one per
    deletion operator of the faithfulness check (``checks.removal_operators``)."""
    return [f"shapley_{op}" for op in config["checks"]["removal_operators"]]


def shapley_method():
    """The first of :func:`shapley_methods` (the recovery's AUC drop without the driver layers)."""
    return shapley_methods()[0]


def paper_check_cohorts():
    """The paper check's cohorts by name -> study prefix: the main study (named by its synthetic preset, or
    ``study`` for a user's cohort) and each `paper_check.cohorts` entry."""
    main = config["synthetic"]["preset"] if MAIN.synthetic is not None else "study"
    return {main: STUDY, **{name: P.format(cohort=name) for name in PAPER_COHORTS if name != main}}


def paper_check_inputs(path):
    """``path`` of every paper-check cohort, in :func:`paper_check_cohorts` order."""
    return [f"{prefix}/{path}" for prefix in paper_check_cohorts().values()]


def ground_truth(wildcards):
    """The synthetic cohort's ground truth (oracle AUC), or nothing for a user's cohort."""
    return [] if study(wildcards).synthetic is None else [f"{wildcards.study}/cohort/synthetic/ground_truth.json"]


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
            "stats/layer_features.tsv",
            "stats/layer_feature_differences.tsv",
            "stats/image_oracle.tsv",
            "figures/layer_saliency.png",
            "figures/roc.png",
            "figures/training_curves.png",
            "figures/overlays.png",
            *(
                ["segmentation/quality.tsv", "figures/segmentation.png", "stats/layer_calls_drawn_maps.tsv"]
                if MAIN.segment
                else []
            ),
        ],
    )

"""Code changes rerun exactly the rules whose scripts import the changed module, directly or not.

Each rule's ``code`` param is derived from its script's imports (layer.codegraph, with ``ast``). The oracle
here is independent: :mod:`modulefinder` on each script, restricted to the workflow folder. For every module
of the ``layer`` package in turn, a copy of the workflow gets a function appended to that module, and
``snakemake --summary`` on the finished smoke study (and, for modules the validation scripts use, on the
finished validation target) must mark exactly the expected rules' outputs "params changed" (a dry run then
plans those jobs and what depends on them; the unedited copy plans nothing).
"""

from __future__ import annotations

import re
import shutil
from modulefinder import ModuleFinder
from pathlib import Path

import pytest

from conftest import ROOT, snakemake

pytestmark = pytest.mark.slow

WORKFLOW = ROOT / "workflow"
MODULES = sorted(
    ".".join(path.relative_to(WORKFLOW).with_suffix("").parts).removesuffix(".__init__")
    for path in (WORKFLOW / "layer").rglob("*.py")
)
#: Rules of the validation target only (not in the main study's DAG).
VALIDATION_ONLY = {"recovery", "validation_summary"}
#: Rules outside the main study's DAG: the validation target's, the paper check's, and the segment stage's
#: (the smoke study has every layer map drawn; tests/workflow/test_partial_maps.py runs them).
SEGMENT_ONLY = {"segment_train", "segment_predict", "segment_quality", "figure_segmentation"}
NOT_IN_MAIN = VALIDATION_ONLY | SEGMENT_ONLY | {"paper_check_table"}


def rule_scripts() -> dict[str, str]:
    """Rule name -> script file name, read from the rule files."""
    scripts = {}
    for smk in (WORKFLOW / "rules").glob("*.smk"):
        for rule, script in re.findall(r"^rule (\w+):.*?^    script:\n        \"\.\./scripts/(\w+\.py)\"", smk.read_text(),
                                       flags=re.M | re.S):
            scripts[rule] = script
    return scripts


def imported_by(script: Path) -> set[str]:
    """``layer`` modules a script imports, by modulefinder (not the code under test)."""
    finder = ModuleFinder(path=[str(WORKFLOW)])
    finder.run_script(str(script))
    return {name for name in finder.modules if name == "layer" or name.startswith("layer.")}


@pytest.fixture(scope="module")
def importers() -> dict[str, set[str]]:
    """Module -> the rules whose scripts import it."""
    by_module: dict[str, set[str]] = {m: set() for m in MODULES}
    for rule, script in rule_scripts().items():
        for module in imported_by(WORKFLOW / "scripts" / script):
            by_module.setdefault(module, set()).add(rule)
    return by_module


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """A copy of the workflow (Snakefile, rules, scripts, package, envs) whose modules the test edits."""
    root = tmp_path_factory.mktemp("workflow_copy")
    shutil.copy2(ROOT / "Snakefile", root / "Snakefile")
    for folder in ("workflow", "envs"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def changed_params(summary: str) -> set[str]:
    """Rules with an output whose params changed, from ``snakemake --summary`` (columns: output file, date,
    rule, log, status, plan). The summary judges each job on its own; a dry run's reasons name only the
    first jobs of a changed chain (the rest are planned for their updated inputs)."""
    rules = set()
    for line in summary.splitlines():
        fields = line.split("\t")
        if len(fields) >= 5 and fields[4] == "params changed":
            rules.add(fields[2])
    return rules


def test_rules_have_scripts_and_modules_are_found(importers):
    assert len(rule_scripts()) >= 18
    assert importers["layer.io"] >= {"train", "attribute", "calls"}  # every script writes through layer.io


def test_unedited_copy_plans_nothing(copy, smoke):
    run = snakemake(smoke["work"], "-n", snakefile=copy / "Snakefile")
    assert "Nothing to be done" in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]


@pytest.mark.parametrize("module", MODULES)
def test_editing_a_module_reruns_exactly_its_importers(module, copy, smoke, validation, importers):
    path = copy / "workflow" / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    original = path.read_text()
    path.write_text(original + "\n\ndef _appended_by_test() -> int:\n    return 1\n")
    try:
        expected = importers.get(module, set())
        main = snakemake(smoke["work"], "--summary", snakefile=copy / "Snakefile")
        assert main.returncode == 0, main.stderr[-3000:]
        assert changed_params(main.stdout) == expected - NOT_IN_MAIN, module
        if expected & VALIDATION_ONLY:
            dry = snakemake(validation["work"], "validation", "--summary", configs=(validation["tiny"],),
                            snakefile=copy / "Snakefile")
            assert dry.returncode == 0, dry.stderr[-3000:]
            planned = changed_params(dry.stdout)
            assert expected & VALIDATION_ONLY <= planned and planned <= expected, (module, planned)
    finally:
        path.write_text(original)

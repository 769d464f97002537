"""Shared fixtures of the workflow tests: the smoke study, run once per session, and the validation target
on one tiny scenario; each followed by the dry runs the rerun tests read.

1. the smoke study with Grad-CAM only;
2. a dry run that adds Integrated Gradients: attribution (one job per model) and what follows may run;
3. the real run that adds it;
4. dry runs after config changes: only the jobs the changed value reaches may run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SMOKE = ROOT / "config" / "presets" / "smoke.yaml"

#: A slim study for the end-to-end runs of other cohorts: Grad-CAM (and the primary method), no null models,
#: two epochs.
SLIM = """
attribution:
  methods: [gradcam]
report:
  paper_method: gradcam
  paper_maps: [gradcam]
"null":
  replicates: 0
train:
  max_epochs: 2
  patience: 1
checks:
  n_scans: 2
"""


def snakemake(
    workdir: Path, *args: str, configs: tuple[Path, ...] = (), snakefile: Path = ROOT / "Snakefile"
) -> subprocess.CompletedProcess:
    # Targets and flags before --configfile, which takes every following word as a config file.
    cmd = [SNAKEMAKE, "-s", str(snakefile), "--cores", "2", *args, "--configfile", str(SMOKE), *map(str, configs)]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Job counts per rule from the 'Job stats' table of a dry run."""
    counts: dict[str, int] = {}
    table = dry_run_output.split("Job stats:", 1)[1] if "Job stats:" in dry_run_output else ""
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("smoke")
    shutil.copytree(ROOT / "config", work / "config")  # a deployment: the user's config/ beside results/
    only_gradcam = work / "gradcam_only.yaml"
    only_gradcam.write_text("attribution:\n  methods: [gradcam]\nreport:\n  paper_method: gradcam\n  paper_maps: [gradcam]\n")
    more_resamples = work / "more_resamples.yaml"
    more_resamples.write_text("bootstrap:\n  n_resamples: 300\n")
    no_margin = work / "no_margin.yaml"
    no_margin.write_text("attribution:\n  membrane_margin: 0\n")
    more_steps = work / "more_steps.yaml"
    more_steps.write_text("attribution:\n  ig_steps: 6\n")
    more_road = work / "more_road.yaml"
    more_road.write_text("attribution:\n  road_iterations: 7\n")
    first = snakemake(work, configs=(only_gradcam,))
    assert first.returncode == 0, first.stderr[-4000:]
    add_method = snakemake(work, "-n")
    assert add_method.returncode == 0, add_method.stderr[-4000:]
    second = snakemake(work)
    assert second.returncode == 0, second.stderr[-4000:]
    nothing = snakemake(work, "-n")
    change_bootstrap = snakemake(work, "-n", configs=(more_resamples,))
    change_margin = snakemake(work, "-n", configs=(no_margin,))
    change_steps = snakemake(work, "-n", configs=(more_steps,))
    change_road = snakemake(work, "-n", configs=(more_road,))
    one_cohort = work / "one_cohort.yaml"
    one_cohort.write_text("paper_check:\n  run: [dfm_only]\n")
    paper = snakemake(work, "paper_check", configs=(one_cohort,))
    assert paper.returncode == 0, paper.stderr[-4000:]
    return {
        "work": work,
        "results": work / "results",
        "add_method": planned_jobs(add_method.stdout + add_method.stderr),
        "add_method_text": add_method.stdout + add_method.stderr,
        "nothing": nothing.stdout + nothing.stderr,
        "change_bootstrap": planned_jobs(change_bootstrap.stdout + change_bootstrap.stderr),
        "change_margin": planned_jobs(change_margin.stdout + change_margin.stderr),
        "change_margin_text": change_margin.stdout + change_margin.stderr,
        "change_steps": planned_jobs(change_steps.stdout + change_steps.stderr),
        "change_road": change_road.stdout + change_road.stderr,
    }


TINY_VALIDATION = """
train:
  modalities: [bmode]
  max_epochs: 2
  patience: 1
validation:
  run: [dfm_echogenicity]
  modalities: [bmode]
  methods: [shapley_background]
  scenarios:
    dfm_echogenicity: {preset: custom, effects: [{layer: dfm, feature: echogenicity, d: 3.0}], chunks: 1}
"""


@pytest.fixture(scope="session")
def validation(tmp_path_factory) -> dict:
    """The validation target on one tiny scenario, then a dry run that adds a second scenario."""
    work = tmp_path_factory.mktemp("validation")
    shutil.copytree(ROOT / "config", work / "config")
    tiny = work / "tiny.yaml"
    tiny.write_text(TINY_VALIDATION)
    run = snakemake(work, "validation", configs=(tiny,))
    assert run.returncode == 0, run.stderr[-4000:]
    more = work / "more.yaml"
    more.write_text(TINY_VALIDATION.replace("run: [dfm_echogenicity]", 'run: [dfm_echogenicity, "null"]'))
    dry = snakemake(work, "validation", "-n", configs=(tiny, more))
    other_study = work / "other_study.yaml"
    other_study.write_text("synthetic:\n  preset: realistic\n  effects: []\n")
    study_change = snakemake(work, "validation", "-n", configs=(tiny, other_study))
    return {
        "work": work,
        "tiny": tiny,
        "results": work / "results",
        "add_scenario": planned_jobs(dry.stdout + dry.stderr),
        "study_change": study_change.stdout + study_change.stderr,
    }



"""Reliability of the whole workflow on the smoke preset: a failed cohort check writes only its report,
interruptions leave nothing a rerun would trust, results are reproducible, outputs carry no patient text.

Runs (session-scoped, each once; about 6 minutes on 2 idle cores):
- ``reference``: the smoke study, uninterrupted.
- ``interrupted``: the smoke study from scratch, killed three times and resumed with ``--rerun-incomplete``
  each time: SIGTERM while a ``train`` job runs, SIGINT (Ctrl-C) while an ``attribute`` job runs, SIGKILL to
  the whole process group (a dead node: Snakemake itself gets no chance to clean up) while ``statistics``
  runs. It is also the second same-seed run of the reproducibility test.
- ``other_seed``: copies of the reference rerun with ``split.seed: 1`` (up to training) and with
  ``bootstrap.seed: 1`` (statistics only).
- ``private``: the reference's synthetic cohort used as a user cohort (``cohort.sheet``), its input volumes
  rewritten with patient-like text in every free-text NIfTI header field and in a header extension.
- a user cohort with broken scans, which must stop at the cohort check.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from toy_cohort import cohort as small_cohort

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SMOKE = ROOT / "config" / "presets" / "smoke.yaml"
#: The result tables that must be byte-identical between runs with the same seeds.
TABLES = ("stats/*.tsv", "splits/folds.tsv", "models/*/*_oof.tsv", "cohort/synthetic/features.tsv")
PLANTED = "PATIENT Jane Doe 1970-01-01"
PLANTED_TOKENS = (b"Jane Doe", b"1970-01-01", b"PATIENT")

pytestmark = pytest.mark.slow


def command(*args: str, configs: tuple[Path, ...] = (), cores: int = 2) -> list[str]:
    # Targets and flags before --configfile, which takes every following word as a config file.
    return [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--cores", str(cores), *args, "--configfile", str(SMOKE),
            *map(str, configs)]


def snakemake(work: Path, *args: str, configs: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args, configs=configs), cwd=work, capture_output=True, text=True, timeout=900)


def deployment(tmp_path_factory, name: str) -> Path:
    work = tmp_path_factory.mktemp(name)
    shutil.copytree(ROOT / "config", work / "config")
    return work


def tables(results: Path) -> dict[str, bytes]:
    found = {str(p.relative_to(results)): p.read_bytes() for pattern in TABLES for p in results.glob(pattern)}
    assert found, f"no result tables under {results}"
    return found


def interrupt(work: Path, log_pattern: str, sig: int, timeout: float = 600) -> dict:
    """Start the study, wait until a log matching ``log_pattern`` appears, send ``sig`` to snakemake's whole
    process group (snakemake and every job it runs), wait for it to end; return what happened."""
    logs = work / "results" / "logs"
    before = set(logs.glob(log_pattern)) if logs.exists() else set()
    with open(work / f"interrupt-{log_pattern.split('/')[0]}.out", "w") as out:
        proc = subprocess.Popen(
            command("--rerun-incomplete"), cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        started = []
        while not started:
            started = [p for p in logs.glob(log_pattern) if p not in before] if logs.exists() else []
            if proc.poll() is not None:
                raise AssertionError(f"snakemake ended (rc {proc.returncode}) before a {log_pattern} job started")
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError(f"no {log_pattern} job started within {timeout} s")
            time.sleep(0.02)
        os.killpg(proc.pid, sig)
        rc = proc.wait(timeout=300)
    return {"rc": rc, "started": started, "stats_done": (work / "results/stats/layer_saliency.tsv").exists()}


def complete_table(path: Path) -> bool:
    """Every row of a TSV has as many fields as its header (a truncated write would not)."""
    lines = path.read_text().splitlines()
    return bool(lines) and all(line.count("\t") == lines[0].count("\t") for line in lines)


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Path:
    work = deployment(tmp_path_factory, "reference")
    run = snakemake(work)
    assert run.returncode == 0, run.stderr[-4000:]
    return work


@pytest.fixture(scope="session")
def interrupted(tmp_path_factory) -> dict:
    work = deployment(tmp_path_factory, "interrupted")
    events = {
        "train": interrupt(work, "train/*/fold*.log", signal.SIGTERM),
        "attribute": interrupt(work, "attribute/*/fold*.log", signal.SIGINT),
    }
    # Between kills: no table a later step would read is truncated, and SIGTERM/SIGINT left no temp files.
    events["tables_complete"] = all(complete_table(p) for p in (work / "results").rglob("*.tsv"))
    events["temp_files"] = [str(p) for p in (work / "results").rglob(".*.tmp*")]
    events["statistics"] = interrupt(work, "stats/statistics.log", signal.SIGKILL)
    unlock = snakemake(work, "--unlock")  # a killed snakemake leaves its lock, as on a dead node
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    final = snakemake(work, "--rerun-incomplete")
    assert final.returncode == 0, final.stderr[-4000:]
    events["work"] = work
    events["final_temp_files"] = [str(p) for p in (work / "results").rglob(".*.tmp*")]
    events["dry"] = snakemake(work, "-n")
    return events


def test_interrupted_jobs_resume_to_the_same_results(reference, interrupted):
    for rule in ("train", "attribute", "statistics"):
        event = interrupted[rule]
        assert event["rc"] != 0, f"snakemake killed in {rule} reported success"
        assert event["started"], rule
    assert not interrupted["statistics"]["stats_done"], "the kill came after statistics had written its tables"
    assert interrupted["tables_complete"]
    assert interrupted["temp_files"] == []
    assert interrupted["final_temp_files"] == []  # SIGKILL's leftovers are removed by the next writer
    assert "Nothing to be done" in interrupted["dry"].stdout + interrupted["dry"].stderr
    assert tables(interrupted["work"] / "results") == tables(reference / "results")


def test_same_seed_same_tables(reference, interrupted, private):
    """Byte-identical tables: a second run from scratch (the interrupted one) and a run of the same volumes
    given as a user cohort (no synthetic features.tsv there)."""
    ref = tables(reference / "results")
    assert set(ref) >= {"stats/layer_saliency.tsv", "stats/performance.tsv", "stats/paper_table.tsv",
                        "splits/folds.tsv", "models/bmode/fold0_oof.tsv", "cohort/synthetic/features.tsv"}
    assert tables(interrupted["work"] / "results") == ref
    user = tables(private / "results")
    assert user == {k: v for k, v in ref.items() if not k.startswith("cohort/synthetic/")}


def test_other_seed_other_tables(reference, tmp_path_factory):
    """On a copy of the reference: split.seed changes the folds and every model's predictions (only the
    training step is run, to save time); bootstrap.seed changes the statistics; the cohort stays as it is."""
    work = tmp_path_factory.mktemp("other_seed")
    shutil.copytree(reference, work, dirs_exist_ok=True)
    ref = tables(reference / "results")
    split_seed = work / "split_seed.yaml"
    split_seed.write_text("split:\n  seed: 1\n")
    trained = [k for k in ref if k.endswith("_oof.tsv")]
    run = snakemake(work, *(f"results/{k}" for k in trained), configs=(split_seed,))
    assert run.returncode == 0, run.stderr[-4000:]
    other = tables(work / "results")
    assert other["cohort/synthetic/features.tsv"] == ref["cohort/synthetic/features.tsv"]
    assert other["splits/folds.tsv"] != ref["splits/folds.tsv"]
    assert all(other[k] != ref[k] for k in trained)
    shutil.rmtree(work)
    shutil.copytree(reference, work)
    boot_seed = work / "bootstrap_seed.yaml"
    boot_seed.write_text("bootstrap:\n  seed: 1\n")
    run = snakemake(work, "results/stats/layer_saliency.tsv", configs=(boot_seed,))
    assert run.returncode == 0, run.stderr[-4000:]
    other = tables(work / "results")
    assert other["splits/folds.tsv"] == ref["splits/folds.tsv"]
    for name in ("stats/layer_saliency.tsv", "stats/performance.tsv"):
        assert other[name] != ref[name], name


# ------------------------------------------------------------------------------------------------ privacy


def plant(path: Path) -> None:
    """Rewrite a NIfTI volume with patient-like text in descrip, aux_file, intent_name and an extension."""
    image = nib.load(str(path))
    data, header = np.asarray(image.dataobj), image.header.copy()
    header["descrip"] = PLANTED.encode()
    header["aux_file"] = PLANTED.encode()[:24]
    header["intent_name"] = PLANTED.encode()[:16]
    header.extensions.append(nib.nifti1.Nifti1Extension("comment", PLANTED.encode()))
    nib.save(nib.Nifti1Image(data, image.affine, header=header), str(path))


def searchable(path: Path) -> list[bytes]:
    """The bytes of a file, and of what is inside it when it is gzip (.gz) or zip (.npz, .pt) compressed."""
    raw = path.read_bytes()
    parts = [raw]
    if raw[:2] == b"\x1f\x8b":
        parts.append(gzip.decompress(raw))
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            for member in z.namelist():
                inner = z.read(member)
                parts += [inner, gzip.decompress(inner)] if inner[:2] == b"\x1f\x8b" else [inner]
    return parts


@pytest.fixture(scope="session")
def private(reference, tmp_path_factory) -> Path:
    work = deployment(tmp_path_factory, "private")
    cohort = work / "cohort_in"
    shutil.copytree(reference / "results/cohort/synthetic", cohort, ignore=shutil.ignore_patterns("chunks"))
    volumes = sorted(cohort.rglob("*.nii.gz"))
    for path in volumes:
        plant(path)
    assert PLANTED.encode() in gzip.decompress(volumes[0].read_bytes())  # planted where a reader would see it
    user = work / "user_cohort.yaml"
    user.write_text(f"cohort:\n  sheet: {cohort / 'cohort.tsv'}\n")
    run = snakemake(work, configs=(user,))
    assert run.returncode == 0, run.stderr[-4000:]
    (work / "snakemake.out").write_text(run.stdout + run.stderr)
    return work


def test_no_header_text_reaches_any_output(private):
    files = [p for p in (private / "results").rglob("*") if p.is_file()]
    assert len(files) > 50 and any(p.name.endswith(".nii.gz") for p in files)  # derived NIfTI maps included
    leaks = [
        str(p.relative_to(private))
        for p in files + [private / "snakemake.out"]
        if any(token in part for part in searchable(p) for token in PLANTED_TOKENS)
    ]
    assert leaks == []


def test_derived_nifti_headers_are_fresh(private):
    for path in (private / "results/attribution").rglob("*.nii.gz"):
        header = nib.load(str(path)).header
        assert header["descrip"].item() == b"" and header["aux_file"].item() == b""
        assert header["intent_name"].item() == b"" and len(header.extensions) == 0


# ------------------------------------------------------------------------------- a cohort that fails the check


def test_failed_cohort_check_writes_only_its_report(tmp_path_factory):
    """Only the report and the rule's log are written; Snakemake prints every scan and reason."""
    work = deployment(tmp_path_factory, "broken")
    sheet = small_cohort(work / "cohort_in")  # 4 subjects: too few for the smoke preset's split, too
    (work / "cohort_in/scans/s1-0_swe.nii.gz").unlink()
    (work / "cohort_in/scans/s2-1_bmode.nii.gz").write_bytes(b"not an image")
    user = work / "user_cohort.yaml"
    user.write_text(f"cohort:\n  sheet: {sheet}\n")
    run = snakemake(work, configs=(user,))
    assert run.returncode != 0
    written = sorted(str(p.relative_to(work / "results")) for p in (work / "results").rglob("*") if p.is_file())
    assert written == ["cohort/validation_report.txt", "logs/cohort/validate.log"]
    report = (work / "results/cohort/validation_report.txt").read_text()
    printed = run.stdout + run.stderr
    for text in (report, printed):
        assert "3 error(s), 0 warning(s)" in text
        assert "scan s1-0 |" in text and "s1-0_swe.nii.gz | file not found" in text
        assert "scan s2-1 |" in text and "s2-1_bmode.nii.gz | not a NIfTI file (plain text)" in text
        assert "the subject-level split cannot be made" in text
    assert "Cohort validation failed; nothing was trained" in printed

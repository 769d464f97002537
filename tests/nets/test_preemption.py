"""Preemption-safe training: a training process killed mid-run resumes from its checkpoint and ends with
the same model, byte for byte on CPU, as a run that was never interrupted.

1. Direct: ``layer.nets.train.train_fold`` runs in a child process (``python -c``) on a tiny synthetic cohort.
   The child is killed with SIGTERM or SIGKILL once the checkpoint reports epoch >= 1, while it is inside
   a later epoch (its validation step is slowed so that the kill lands after optimiser steps that no
   checkpoint holds yet). A rerun with the same checkpoint finishes; every tensor of the saved weights,
   the training curve and the out-of-fold predictions equal those of an uninterrupted run.
2. Through Snakemake: SIGTERM to a running ``snakemake`` while a train job runs. Snakemake deletes the
   job's outputs but not the checkpoint (it is no output); the rerun logs "resumed from".
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from layer.io import read_tsv, write_tsv
from layer.cohort.split import make_folds
from layer.synth import SynthConfig, synthesize_cohort
from layer.cohort.validate import validate_cohort

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SMOKE = ROOT / "config" / "presets" / "smoke.yaml"
MAX_EPOCHS = 6
PATIENCE = 3

# The child: train one fold, save weights, curve and predictions. argv: work dir, checkpoint ("" for
# none), output prefix, seconds to sleep before each validation pass (0 for none).
RUNNER = textwrap.dedent(
    f"""
    import logging, sys, time
    import torch
    import layer.nets.train as T
    from layer.io import read_tsv, write_tsv

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    work, checkpoint, out, delay = sys.argv[1], sys.argv[2] or None, sys.argv[3], float(sys.argv[4])
    if delay:
        predict = T.predict
        def slow_predict(*args, **kwargs):
            time.sleep(delay)
            return predict(*args, **kwargs)
        T.predict = slow_predict
    settings = T.TrainSettings.defaults(max_epochs={MAX_EPOCHS}, patience={PATIENCE}, batch_size=4, seed=3)
    saved, curve, oof = T.train_fold(
        read_tsv(work + "/sheet.tsv"), read_tsv(work + "/folds.tsv"), "fused", 0, T.ModelSpec(), settings,
        threads=1, checkpoint=checkpoint,
    )
    torch.save(saved, out + ".pt")
    write_tsv(curve, out + "_curve.tsv")
    write_tsv(oof, out + "_oof.tsv")
    """
)


def train(work: Path, checkpoint: Path | None, out: str, delay: float = 0.0) -> subprocess.Popen:
    cmd = [sys.executable, "-c", RUNNER, str(work), str(checkpoint or ""), str(work / out), str(delay)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def checkpoint_epoch(path: Path) -> int:
    """The last finished epoch in a checkpoint, -1 if there is none yet (writes are atomic renames)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except FileNotFoundError:
        return -1


def kill_after_epoch(proc: subprocess.Popen, checkpoint: Path, sig: int, epoch: int = 1, timeout: float = 180) -> int:
    """Send ``sig`` once the checkpoint shows ``epoch``; return the epoch it held at that moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it could be killed:\n" + proc.communicate()[0][-3000:]
        seen = checkpoint_epoch(checkpoint)
        if seen >= epoch:
            proc.send_signal(sig)
            proc.communicate(timeout=60)
            return seen
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no checkpoint with epoch >= {epoch} within {timeout} s")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A tiny cohort (24 subjects x 2 scans of 32x16x16), validated, with 2 subject-level folds."""
    root = tmp_path_factory.mktemp("preempt")
    cfg = SynthConfig(preset="strong", n_subjects=24, scans_per_subject=2, shape=(32, 16, 16), spacing=(1.2, 2.5, 2.5))
    synthesize_cohort(cfg, root / "cohort")
    report, sheet = validate_cohort(root / "cohort" / "cohort.tsv")
    assert report.ok, report.text("cohort.tsv")
    write_tsv(sheet, root / "sheet.tsv")
    write_tsv(make_folds(sheet, n_folds=2, val_fraction=0.2, seed=0), root / "folds.tsv")
    return root


@pytest.fixture(scope="module")
def reference(work) -> dict:
    """An uninterrupted run (with a checkpoint file, as in the workflow)."""
    checkpoint = work / "reference.ckpt"
    out = finish(train(work, checkpoint, "reference"))
    assert "resumed from" not in out
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {"saved": torch.load(work / "reference.pt", weights_only=True), "checkpoint": state}


def assert_same_run(work: Path, name: str, reference: dict) -> None:
    saved = torch.load(work / f"{name}.pt", weights_only=True)
    ref = reference["saved"]
    assert saved.keys() == ref.keys()
    assert saved["state_dict"].keys() == ref["state_dict"].keys()
    for key, tensor in ref["state_dict"].items():
        assert torch.equal(saved["state_dict"][key], tensor), f"{key} differs from the uninterrupted run"
    for part in ("curve", "oof"):
        pd.testing.assert_frame_equal(
            read_tsv(work / f"{name}_{part}.tsv"), read_tsv(work / f"reference_{part}.tsv"), check_exact=True
        )


def test_checkpoint_holds_the_state_to_continue(reference):
    state = reference["checkpoint"]  # loaded with weights_only=True: plain tensors and numbers only
    needed = {"epoch", "model", "optimizer", "scaler", "best_auc", "best_state", "bad_epochs", "curve", "settings"}
    assert needed | {"identity"} <= set(state)
    assert state["optimizer"]["state"], "optimiser moments are missing"
    assert any(k.endswith("running_mean") for k in state["model"]), "BatchNorm buffers are missing"
    assert len(state["curve"]) == int(state["epoch"]) + 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_training_resumes_to_the_same_model(work, reference, sig):
    name = f"killed_{sig.name}"
    checkpoint = work / f"{name}.ckpt"
    proc = train(work, checkpoint, name, delay=0.5)
    kill_after_epoch(proc, checkpoint, sig)
    assert proc.returncode == -sig, f"expected death by {sig.name}, got {proc.returncode}"
    assert not (work / f"{name}.pt").exists()
    kept = checkpoint_epoch(checkpoint)
    n_epochs = len(read_tsv(work / "reference_curve.tsv"))
    assert 1 <= kept < n_epochs - 1, f"killed after epoch {kept} of {n_epochs}: nothing left to resume"
    out = finish(train(work, checkpoint, name))
    assert f"resumed from {checkpoint} at epoch {kept + 1}" in out, out[-3000:]
    assert checkpoint_epoch(checkpoint) == n_epochs - 1  # the rerun went on writing it
    assert_same_run(work, name, reference)


def test_checkpoint_of_other_data_is_not_resumed(work, reference, tmp_path):
    """A stale checkpoint (another fold's data, same settings) must not be continued."""
    shutil.copy(work / "reference.ckpt", tmp_path / "stale.ckpt")
    folds = read_tsv(work / "folds.tsv")
    other = work / "other"
    other.mkdir(exist_ok=True)
    shutil.copy(work / "sheet.tsv", other / "sheet.tsv")
    # fold 1's roles under the name of fold 0: same settings, other training scans
    swapped = folds.assign(fold=1 - folds["fold"])
    write_tsv(swapped, other / "folds.tsv")
    out = finish(train(other, tmp_path / "stale.ckpt", "stale"))
    assert "ignoring checkpoint" in out and "resumed from" not in out, out[-3000:]


# --- through Snakemake -------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_to_a_snakemake_job_keeps_checkpoint_and_rerun_resumes(tmp_path):
    """SIGTERM to every process of a running ``snakemake`` (as Slurm does to a preempted job, or a terminal to
    its foreground process group). Snakemake alone would let running jobs finish; the train script dies."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    longer = tmp_path / "longer.yaml"  # enough epochs that SIGTERM lands mid-training
    longer.write_text("train:\n  max_epochs: 15\n  patience: 15\n")
    target = "results/models/bmode/fold0.pt"
    checkpoint = tmp_path / "results/checkpoints/bmode/fold0.ckpt"
    log = tmp_path / "results/logs/train/bmode/fold0.log"
    cmd = [SNAKEMAKE, target, "-s", str(ROOT / "Snakefile"), "--cores", "2", "--configfile", str(SMOKE), str(longer)]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while checkpoint_epoch(checkpoint) < 1:
            assert proc.poll() is None, proc.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)  # the group that this test started, and nothing else
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0, out[-3000:]
    assert not (tmp_path / target).exists(), "snakemake kept the output of a killed job"
    kept = checkpoint_epoch(checkpoint)
    assert kept >= 1, "the checkpoint did not survive the SIGTERM"
    assert "resumed from" not in log.read_text()
    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert f"resumed from results/checkpoints/bmode/fold0.ckpt at epoch {kept + 1}" in log.read_text()
    assert (tmp_path / target).exists() and not checkpoint.exists()
    assert len(read_tsv(tmp_path / "results/models/bmode/fold0_curve.tsv")) == 15

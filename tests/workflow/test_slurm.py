"""The smoke study through a real one-node Slurm with the site profile ``profiles/slurm/profile.yaml``.

Runs only with ``LAYER_TEST_SLURM=1`` (``.ci/run`` sets it) and as root: it installs Debian's ``slurm-wlm``
and ``munge`` if they are missing, then starts its own ``munged``, ``slurmctld`` and ``slurmd`` with every
path (config, sockets, state, logs, pid files) in a temporary directory and its own ports, so that nothing
of the machine's configuration is used or changed. The node has two fake GPUs (``Gres=gpu:2`` backed by
``/dev/null`` and ``/dev/zero``; jobs see ``CUDA_VISIBLE_DEVICES`` and torch stays on the CPU) and four
CPUs (two real cores oversubscribed, so that short jobs overlap), and there is no slurmdbd, so the
profile's status command has to work without accounting.

Two runs at once, through ``--profile profiles/slurm`` with account and partition set on the command line:

1. The smoke preset (Grad-CAM only, plus the null models, the checks and the Shapley run the deletion
   curves need): every output exists; the Slurm job records (``scontrol show job``, kept for
   MinJobAge=3600 s) show that every job that runs a network (``GPU_RULES``), and no other job, requested
   a GPU.
2. The smoke preset with a broken cohort sheet: the run stops with a non-zero exit within FAIL_TIMEOUT,
   naming the failed rule and showing its report, and leaves no job behind.

The fixture stops exactly the daemons it started, by their pid files, also when a test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from study_outputs import STUDY_FILES

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SMOKE = ROOT / "config" / "presets" / "smoke.yaml"
PROFILE = ROOT / "profiles" / "slurm"
PARTITION = "layertest"
ACCOUNT = "root"
#: Rules that run a network and so declare ``gpu=1``; every other rule must not ask for a GPU.
GPU_RULES = ("train", "attribute", "profile_check")
RUN_TIMEOUT = 1200  # s, the smoke study through Slurm with null models and checks (about 80 jobs on 2 cores)
FAIL_TIMEOUT = 180  # s, the broken-sheet run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("LAYER_TEST_SLURM") != "1",
        reason="Slurm integration test: set LAYER_TEST_SLURM=1 (needs root; installs slurm-wlm and munge)",
    ),
]

SLURM_CONF = """\
ClusterName=layertest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/slurmd
SlurmctldPidFile={run}/slurmctld.pid
SlurmdPidFile={run}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
MinJobAge=3600
KillWait=5
InactiveLimit=0
ReturnToService=2
SchedulerType=sched/backfill
NodeName={host} NodeAddr=127.0.0.1 CPUs=4 RealMemory=16000 Gres=gpu:2 State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install() -> None:
    """Debian's slurm-wlm and munge, if missing (about 30 s)."""
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged", "mungekey")):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]


class Cluster:
    """One-node Slurm whose daemons run as children of this process and are stopped by their pid files."""

    def __init__(self, state: Path, run: Path) -> None:
        self.state, self.run = state, run  # run: world-traversable, as munged demands for its socket
        self.conf = state / "slurm.conf"
        # The jobstep plugin drops SLURM_CONF before its nested `srun` (it keeps only a few SLURM_* vars), so
        # srun would look for /etc/slurm/slurm.conf, as on a real cluster. Rather than write there, put a
        # shim first on PATH that hands srun this cluster's config.
        shim = state / "bin" / "srun"
        shim.parent.mkdir()
        shim.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun") or "/usr/bin/srun"} "$@"\n')
        shim.chmod(0o755)
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": f"{shim.parent}:{os.environ['PATH']}"}
        for var in [v for v in self.env if v.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if var != "SLURM_CONF":
                del self.env[var]
        self.procs: dict[str, subprocess.Popen] = {}
        self.pidfiles: dict[str, Path] = {}

    def log_tail(self, n: int = 40) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.state / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(parts)

    def _daemon(self, name: str, cmd: list[str], pidfile: Path) -> None:
        log = open(self.state / f"{name}.stdout", "w")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.pidfiles[name] = pidfile
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert self.procs[name].poll() is None, f"{name} exited:\n{(self.state / f'{name}.stdout').read_text()}"
            assert time.monotonic() < deadline, f"{name}: no pid file after 30 s"
            time.sleep(0.1)

    def start(self) -> None:
        (self.state / "ctld").mkdir()
        (self.state / "slurmd").mkdir()
        key = self.run / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        munge_socket = self.run / "munge.sock"
        self._daemon(
            "munged",
            ["munged", "--foreground", f"--socket={munge_socket}", f"--key-file={key}",
             f"--log-file={self.state / 'munged.log'}", f"--pid-file={self.run / 'munged.pid'}",
             f"--seed-file={self.state / 'munged.seed'}"],
            self.run / "munged.pid",
        )  # fmt: skip
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(
            SLURM_CONF.format(
                host=host,
                ctld_port=_free_port(),
                slurmd_port=_free_port(),
                munge_socket=munge_socket,
                state=self.state,
                run=self.run,
                partition=PARTITION,
            )
        )
        (self.state / "gres.conf").write_text("Name=gpu File=/dev/null\nName=gpu File=/dev/zero\n")
        self._daemon("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)], self.run / "slurmctld.pid")
        self._daemon("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", host], self.run / "slurmd.pid")
        deadline = time.monotonic() + 60
        while True:
            out = self.cmd("sinfo", "-h", "-o", "%T").stdout.strip()
            if out in ("idle", "mixed", "allocated"):
                return
            assert time.monotonic() < deadline, f"node not ready ({out!r}):\n{self.log_tail()}"
            time.sleep(0.5)

    def cmd(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop slurmd, slurmctld and munged by their pid files."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.cmd("scancel", "--full", "--partition", PARTITION)
            deadline = time.monotonic() + 30
            while self.cmd("squeue", "-h", "-t", "RUNNING,COMPLETING").stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc, pidfile = self.procs.get(name), self.pidfiles.get(name)
            if proc is None:
                continue
            pid = int(pidfile.read_text().split()[0]) if pidfile.exists() else proc.pid
            if pid == proc.pid and proc.poll() is None:  # the pid file names the daemon this fixture started
                os.kill(pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(pid, signal.SIGKILL)
                    proc.wait(timeout=20)
            elif proc.poll() is None:  # a pid file that does not match: stop the child we know
                proc.kill()
                proc.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("LAYER_TEST_SLURM=1 needs root (to install slurm-wlm/munge and run slurmd)")
    _install()
    run = Path(tempfile.mkdtemp(prefix="layer-slurm-"))
    run.chmod(0o755)
    c = Cluster(tmp_path_factory.mktemp("slurm"), run)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(run, ignore_errors=True)


class Run:
    """One ``snakemake`` run through the site profile, started in its own session (so that a timeout stops
    exactly it). Only account and partition, and for the test's speed the status checks' timing, are set on
    the command line; everything else comes from profiles/slurm/profile.yaml."""

    def __init__(self, cluster: Cluster, work: Path, *configs: Path) -> None:
        self.cluster, self.work = cluster, work
        shutil.copytree(ROOT / "config", work / "config")  # a deployment: the user's config/ beside results/
        cmd = [
            SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--profile", str(PROFILE),
            "--default-resources", f"slurm_account={ACCOUNT}", f"slurm_partition={PARTITION}",
            "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
            "--configfile", str(SMOKE), *map(str, configs),
        ]  # fmt: skip
        self.start = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=work, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip

    def wait(self, timeout: float) -> tuple[int, str, float]:
        """(exit code, output, seconds); fails the test if the run is not over within ``timeout`` s."""
        try:
            out, _ = self.proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - self.start)))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the session this run started, nothing else
            out, _ = self.proc.communicate(timeout=60)
            pytest.fail(f"snakemake did not finish within {timeout} s:\n{out[-4000:]}\n{self.cluster.log_tail()}")
        return self.proc.returncode, out, time.monotonic() - self.start

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()


def job_records(cluster: Cluster, output: str) -> dict[str, dict[str, str]]:
    """Slurm's record (``scontrol show job``) of every job a run submitted, by Slurm job id."""
    ids = re.findall(r"submitted with SLURM jobid (\d+)", output)
    assert ids, output[-3000:]
    records = {}
    for jobid in ids:
        shown = cluster.cmd("scontrol", "show", "job", "-o", jobid)
        assert shown.returncode == 0, shown.stderr
        records[jobid] = dict(re.findall(r"(\w+(?::\w+)?)=(\S*)", shown.stdout))
    return records


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> dict:
    """Both runs at once (they share the one node): the smoke study, and one with a broken cohort sheet."""
    broken_dir = tmp_path_factory.mktemp("broken_slurm")
    sheet = broken_dir / "broken.tsv"  # a scan whose volumes do not exist
    sheet.write_text(
        "scan_id\tsubject_id\tlabel\tbmode\tswe\tlayers\nx1\ts1\t1\tno_b.nii.gz\tno_s.nii.gz\tno_l.nii.gz\n"
    )
    broken_config = broken_dir / "broken.yaml"
    broken_config.write_text(f"cohort:\n  sheet: {sheet}\n")
    smoke_dir = tmp_path_factory.mktemp("smoke_slurm")
    # One voxel method (and the exact Shapley run the deletion curves need): more methods add jobs and
    # nothing Slurm-specific.
    gradcam_only = smoke_dir / "gradcam_only.yaml"
    gradcam_only.write_text(
        "attribution:\n  methods: [gradcam]\nreport:\n  primary_method: gradcam\n  paper_method: gradcam\n"
        "  paper_maps: [gradcam]\n"
        "checks:\n  removal_operators: [background]\n"
    )
    started: list[Run] = []
    try:
        started.append(broken := Run(cluster, broken_dir / "work", broken_config))
        started.append(smoke := Run(cluster, smoke_dir / "work", gradcam_only))
        broken_result = broken.wait(FAIL_TIMEOUT)
        code, out, seconds = smoke.wait(RUN_TIMEOUT)
    finally:
        for run in started:
            run.stop()
    assert code == 0, out[-6000:] + "\n" + cluster.log_tail()
    print(f"\nsmoke study through Slurm: {seconds:.0f} s; broken sheet: failed after {broken_result[2]:.0f} s")
    return {
        "results": smoke.work / "results",
        "records": job_records(cluster, out),
        "broken": broken_result,
        "broken_work": broken.work,
    }


def test_smoke_study_outputs_exist(runs):
    res = runs["results"]
    for rel in STUDY_FILES:
        assert (res / rel).stat().st_size > 0, rel
    for modality in ("bmode", "swe", "fused"):
        for fold in (0, 1):
            assert (res / f"models/{modality}/fold{fold}.pt").stat().st_size > 0
            assert not (res / f"checkpoints/{modality}/fold{fold}.ckpt").exists()
            assert (res / f"attribution/{modality}/fold{fold}.npz").stat().st_size > 0
            assert (res / f"aggregate/{modality}/gradcam/fold{fold}.tsv").stat().st_size > 0


def test_gpu_requested_by_network_rules_only(runs):
    by_rule: dict[str, list[dict[str, str]]] = {}
    for record in runs["records"].values():
        rule = re.match(r"rule_([a-z_]+?)(?:_wildcards_|$)", record.get("Comment", "")).group(1)
        by_rule.setdefault(rule, []).append(record)
    assert len(by_rule.get("train", [])) == 3 * 2 + 2  # trained models, null models of bmode and fused (fold 0)
    # one attribution job per model, every method of its study in it
    assert len(by_rule.get("attribute", [])) == 3 * 2 + 2
    assert len(by_rule.get("profile_check", [])) == 3 * 2  # sanity and robustness
    for rule, records in by_rule.items():
        for record in records:
            assert record["JobState"] == "COMPLETED", (rule, record)
            gpu = "gpu:1" in record.get("TresPerJob", "")
            assert gpu == (rule in GPU_RULES), (rule, record.get("TresPerJob"))
            assert record["Partition"] == PARTITION and record["Account"] == ACCOUNT


def test_failing_rule_fails_cleanly(runs, cluster):
    code, out, seconds = runs["broken"]
    assert code != 0, out[-3000:]
    assert "Error in rule validate_cohort" in out, out[-3000:]
    assert "no_b.nii.gz" in out  # the validation report, shown from the failed job's log
    assert not (runs["broken_work"] / "results/cohort/validated.tsv").exists()
    assert cluster.cmd("squeue", "-h").stdout.strip() == "", "jobs left behind"

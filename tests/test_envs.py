"""Every rule that runs code has a log, a benchmark and a conda env whose pins equal requirements.lock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.lower()] = version.strip()
    pins["torch"] = "2.13.0"  # installed first and alone by the Makefile
    return pins


def _rules() -> list[tuple[str, str, str]]:
    """(file name, rule name, rule body) of every rule in workflow/rules."""
    out = []
    for path in RULES:
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M):
            out.append((path.name, match.group(1), match.group(2)))
    return out


def test_rules_found():
    names = {name for _, name, _ in _rules()}
    assert {"synth_chunk", "validate_cohort", "split", "train", "attribute", "aggregate", "statistics"} <= names


@pytest.mark.parametrize(("file", "rule", "body"), _rules(), ids=lambda v: v if isinstance(v, str) and "\n" not in v else "")
def test_rule_has_log_benchmark_conda(file, rule, body):
    for directive in ("log:", "benchmark:", "conda:", "script:"):
        assert re.search(rf"^\s+{directive}", body, flags=re.M), f"rule {rule} in {file} lacks {directive}"
    env = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", body).group(1)
    assert (ROOT / "workflow" / "rules" / env).resolve().is_file(), f"rule {rule}: env {env} not found"


@pytest.mark.parametrize("env", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_equal_lock(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    lock = _lock()
    for requirement in pip:
        name, _, version = requirement.partition("==")
        assert version, f"{env.name}: {requirement} is not pinned exactly"
        assert lock.get(name.lower()) == version, f"{env.name}: {requirement} differs from requirements.lock"


def test_every_env_is_used():
    used = {re.search(r"conda:\s*\n\s*\"\.\./\.\./envs/([^\"]+)\"", body).group(1) for _, _, body in _rules()}
    assert used == {p.name for p in (ROOT / "envs").glob("*.yaml")}

"""Conda per rule, checked statically (no conda channel is reachable here; docs/cluster.md says how to build
the envs once with ``snakemake --sdm conda --conda-create-envs-only``).

The rules are read from the workflow as Snakemake loads it (its API), not from the .smk text, so a rule
added anywhere, in any style, is checked:

- every rule that runs code has a log, a benchmark and ``conda:`` pointing at an existing file in envs/;
- every env lists exactly the channels conda-forge and nodefaults, only ``python=<the project's>`` and
  ``pip`` as conda packages, and its Python packages in a ``pip:`` section, each pinned with ``==`` to
  exactly the version of requirements.lock (torch: the pin of the Makefile and pyproject.toml, which must
  agree); changing a pin in one place only fails;
- every third-party package that a rule's script imports (following the ``layer`` modules it imports) is
  in that rule's env;
- every env file is used by some rule.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVS = ROOT / "envs"
LAYER = ROOT / "workflow" / "layer"


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _torch_pin() -> str:
    makefile = re.findall(r"pip install[^\n]*\btorch==([\w.+]+)", (ROOT / "Makefile").read_text())
    pyproject = re.findall(r'"torch==([\w.+]+)"', (ROOT / "pyproject.toml").read_text())
    assert makefile and pyproject, "torch pin not found in Makefile or pyproject.toml"
    assert set(makefile) == set(pyproject) and len(set(makefile)) == 1, (
        f"torch pinned differently: Makefile {makefile}, pyproject.toml {pyproject}"
    )
    return makefile[0]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.lock: {line!r} is not an exact pin"
            pins[_norm(name)] = version.strip()
    assert "torch" not in pins, "torch is pinned in the Makefile and pyproject.toml, not in requirements.lock"
    pins["torch"] = _torch_pin()
    return pins


def _python_version() -> str:
    match = re.search(r'requires-python\s*=\s*">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text())
    assert match, "requires-python not found in pyproject.toml"
    return match.group(1)


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> list:
    """The workflow's rules as Snakemake loads them (in a scratch working directory with a copy of config/)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    work = tmp_path_factory.mktemp("envs")
    shutil.copytree(ROOT / "config", work / "config")
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(),
            storage_settings=StorageSettings(),
            snakefile=ROOT / "Snakefile",
            workdir=work,
        )
        return list(workflow_api._workflow.rules)  # the loaded Rule objects (Snakemake has no public accessor)


def runs_code(rule) -> bool:
    return bool(rule.script or rule.shellcmd or rule.notebook or rule.wrapper or not rule.norun)


def env_file(rule) -> Path | None:
    return (Path(rule.basedir) / str(rule.conda_env)).resolve() if rule.conda_env else None


def test_rules_found(rules):
    names = {r.name for r in rules}
    assert {"synth_chunk", "validate_cohort", "split", "train", "attribute", "aggregate", "statistics"} <= names
    # every `rule x:` written in workflow/rules is among the loaded rules (nothing is hidden behind a condition)
    smk = (ROOT / "workflow/rules").glob("*.smk")
    written = {name for path in smk for name in re.findall(r"^rule (\w+):", path.read_text(), re.M)}
    assert written <= names


def test_every_rule_that_runs_code_has_log_benchmark_and_env(rules):
    problems = []
    for rule in filter(runs_code, rules):
        where = f"rule {rule.name} ({Path(rule.snakefile).relative_to(ROOT)})"
        if not rule.log:
            problems.append(f"{where}: no log")
        if not rule.benchmark:
            problems.append(f"{where}: no benchmark")
        env = env_file(rule)
        if env is None:
            problems.append(f"{where}: no conda env")
        elif env.parent != ENVS or not env.is_file():
            problems.append(f"{where}: conda env {rule.conda_env} is not a file in envs/")
        if rule.shellcmd is None and rule.script is None and rule.notebook is None and rule.wrapper is None:
            problems.append(f"{where}: a run: block (conda: does not apply; use script:)")
    assert not problems, "\n".join(problems)


def _env(path: Path) -> tuple[list[str], dict[str, str]]:
    """(conda packages, {pip distribution: pinned version}) of an env file, checking its shape."""
    spec = yaml.safe_load(path.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"], f"{path.name}: channels {spec['channels']}"
    conda = [d for d in spec["dependencies"] if isinstance(d, str)]
    pip_sections = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, f"{path.name}: needs exactly one pip: section"
    pins = {}
    for requirement in pip_sections[0]:
        name, sep, version = str(requirement).partition("==")
        exact = sep and version and not re.search(r"[<>=!~,;\s]", version)
        assert exact, f"{path.name}: {requirement} is not an exact pin"
        pins[_norm(name)] = version
    return conda, pins


@pytest.mark.parametrize("env", sorted(ENVS.glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_equal_lock(env):
    conda, pins = _env(env)
    assert sorted(conda) == sorted(["pip", f"python={_python_version()}"]), (
        f"{env.name}: conda packages {conda}; Python packages belong under pip:"
    )
    lock = _lock()
    for name, version in pins.items():
        assert name in lock, f"{env.name}: {name} is not in requirements.lock"
        assert lock[name] == version, f"{env.name}: {name}=={version}, requirements.lock has {lock[name]}"


def test_every_env_is_used(rules):
    used = {env_file(r) for r in rules if r.conda_env}
    assert used == {p.resolve() for p in ENVS.glob("*.yaml")}


def _imports(path: Path, seen: set[Path]) -> set[str]:
    """Top-level third-party modules imported by ``path`` and, recursively, by the ``layer`` modules it imports.

    Imports inside functions count too (conservative)."""
    if path in seen or not path.is_file():
        return set()
    seen.add(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            top, *rest = module.split(".")
            if top == "layer":
                sub = LAYER.joinpath(*rest)
                for candidate in (sub.with_suffix(".py"), sub / "__init__.py"):
                    found |= _imports(candidate, seen)
                found |= _imports(LAYER / "__init__.py", seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def test_env_has_every_package_the_script_imports(rules):
    dists = importlib.metadata.packages_distributions()
    problems = []
    for rule in rules:
        if not (rule.script and rule.conda_env):
            continue
        script = (Path(rule.basedir) / rule.script).resolve()
        _, pins = _env(env_file(rule))
        for module in sorted(_imports(script, set())):
            names = {_norm(d) for d in dists.get(module, [module])}
            if not names & set(pins):
                problems.append(f"rule {rule.name}: {script.name} imports {module} ({', '.join(sorted(names))}), "
                                f"not in {env_file(rule).name}")  # fmt: skip
    assert not problems, "\n".join(problems)

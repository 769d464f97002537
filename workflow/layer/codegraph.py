"""Which ``layer`` modules a workflow script runs, read from its imports: the rules' ``code`` params.

Why: Snakemake reruns a job when its script changes, but not when a library module the script imports
changes. Each rule therefore carries a hash of the modules its script imports, directly or through other
modules. Listing them by hand drifted (a figure rule omitted a module its script imported); reading the
imports with :mod:`ast` cannot. Stdlib only: the Snakemake process calls it while it parses the workflow.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

#: The folder that holds the ``layer`` package (``workflow/``).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of module ``name`` (``layer.x.y``) under ``root``, or None if it is not ours."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_inits(name: str, root: Path) -> list[str]:
    """``layer``, ``layer.x`` ... : the packages Python runs the ``__init__`` of before module ``name``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Names of the modules an AST imports (absolute or relative), with ``from a import b`` giving both
    ``a`` and ``a.b`` (``b`` may be a submodule)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@functools.cache
def _module_deps(name: str, root: Path) -> frozenset[str]:
    path = _module_file(name, root)
    if path is None:
        return frozenset()
    tree = ast.parse(path.read_text(), str(path))
    return frozenset(_imported(tree, name, path.name == "__init__.py"))


def closure(script: str | Path, root: Path = PACKAGE_ROOT, package: str = "layer") -> list[str]:
    """Every module of ``package`` that running ``script`` imports, directly or not, sorted.

    Package ``__init__`` modules on the way count too: Python runs them.
    """
    tree = ast.parse(Path(script).read_text(), str(script))
    todo = [n for n in _imported(tree, "__main__", False) if n == package or n.startswith(package + ".")]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or _module_file(name, root) is None:
            continue
        seen.add(name)
        todo.extend(_package_inits(name, root))
        todo.extend(n for n in _module_deps(name, root) if n.startswith(package + ".") or n == package)
    return sorted(seen)


def package_data(modules: list[str], root: Path = PACKAGE_ROOT) -> list[Path]:
    """Data files (``*.yaml``) beside the imported modules: a package reads them at run time (the
    synthetic cohort's tissue model)."""
    folders = {_module_file(name, root).parent for name in modules}
    return sorted(p for folder in folders for p in folder.glob("*.yaml"))


def code_hash(script: str | Path, root: Path = PACKAGE_ROOT) -> str:
    """Hash of the source of every ``layer`` module (and package data file) ``script`` imports."""
    modules = closure(script, root)
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode())
        digest.update(_module_file(name, root).read_bytes())
    for path in package_data(modules, root):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]

"""layer.codegraph: the modules a script imports, on a hand-built package."""

from __future__ import annotations

from pathlib import Path

from layer.codegraph import closure, code_hash, package_data


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _toy(tmp_path: Path) -> Path:
    _write(tmp_path, {
        "layer/__init__.py": '"""top"""\n',
        "layer/names.py": "X = 1\n",
        "layer/unused.py": "from layer import names\n",
        "layer/stats/__init__.py": '"""stats"""\n',
        "layer/stats/tests.py": "from .helpers import h\nimport numpy as np\n",
        "layer/stats/helpers.py": "from ..names import X\n\ndef h():\n    from layer.lazy import z\n    return z\n",
        "layer/lazy.py": "z = 0\n",
        "layer/synth/__init__.py": "from layer.synth import model\n",
        "layer/synth/model.py": "M = 2\n",
        "layer/synth/presets.yaml": "a: 1\n",
        "script.py": "import sys\nfrom layer.stats.tests import h\n",
        "script2.py": "from layer import synth\n",
    })
    return tmp_path


def test_closure_follows_relative_function_level_and_package_imports(tmp_path):
    root = _toy(tmp_path)
    assert closure(root / "script.py", root) == [
        "layer", "layer.lazy", "layer.names", "layer.stats", "layer.stats.helpers", "layer.stats.tests",
    ]  # not layer.unused, not numpy
    assert closure(root / "script2.py", root) == ["layer", "layer.synth", "layer.synth.model"]
    assert [p.name for p in package_data(closure(root / "script2.py", root), root)] == ["presets.yaml"]


def test_hash_changes_with_an_imported_module_only(tmp_path):
    root = _toy(tmp_path)
    before = code_hash(root / "script.py", root)
    (root / "layer/unused.py").write_text("Y = 2\n")
    assert code_hash(root / "script.py", root) == before
    (root / "layer/lazy.py").write_text("z = 1\n")
    assert code_hash(root / "script.py", root) != before
    data = code_hash(root / "script2.py", root)
    (root / "layer/synth/presets.yaml").write_text("a: 2\n")
    assert code_hash(root / "script2.py", root) != data

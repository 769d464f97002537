"""The config schema documents every key, config/README.md shows it, and the presets validate."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from layer.configdoc import load_schema, render, undocumented

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def test_every_key_has_description_and_default():
    assert undocumented(load_schema(SCHEMA)) == []


def test_config_readme_is_current():
    assert render(load_schema(SCHEMA)) in (ROOT / "config" / "README.md").read_text()


@pytest.mark.parametrize("preset", sorted((ROOT / "config" / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_validate(preset):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for key, value in yaml.safe_load(preset.read_text()).items():
        config.setdefault(key, {}).update(value)
    validate(config, str(SCHEMA))


def test_unknown_key_is_rejected():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["train"]["max_epoch"] = 3  # typo of max_epochs
    with pytest.raises(Exception, match="max_epoch"):
        validate(config, str(SCHEMA))


def test_schema_defaults_equal_config_yaml():
    """config.yaml spells out the defaults: a run without it (schema defaults) is the same study."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    schema = load_schema(SCHEMA)
    for section, values in config.items():
        for key, value in values.items():
            assert schema["properties"][section]["properties"][key]["default"] == value, f"{section}.{key}"

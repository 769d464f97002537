"""The config schema documents every key, config/README.md shows it, and the presets validate."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from layer.config import check_calls, check_methods
from layer.configdoc import load_schema, render, undocumented
from layer.explain.registry import METHOD_NAMES

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


@pytest.mark.parametrize("block", ["cohort", "model"])
def test_unknown_key_of_the_grids_blocks_is_rejected(block):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["validation"][block]["n_subject"] = 3  # typo of n_subjects
    with pytest.raises(Exception, match="n_subject"):
        validate(config, str(SCHEMA))


def test_unknown_method_is_rejected_in_one_line():
    """The schema leaves method names to the registry; the workflow checks them with the registry."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    check_methods(config)  # the default config passes
    config["attribution"]["methods"] = ["gradcam", "integrated_gradient"]  # typo
    with pytest.raises(ValueError) as error:
        check_methods(config)
    message = str(error.value)
    assert message.startswith("config attribution.methods: unknown method integrated_gradient;")
    assert "\n" not in message and message.endswith(", ".join(METHOD_NAMES))


def test_a_score_method_as_a_paper_map_is_refused_in_one_line():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["report"]["paper_maps"] = ["gradcam_last", "shapley_background"]
    with pytest.raises(ValueError) as error:
        check_methods(config)
    message = str(error.value)
    assert message.startswith("config report.paper_maps: shapley_background give layer scores, not voxel maps")
    assert "\n" not in message and "gradcam_last" in message and len(message) < 250


def test_a_stored_measure_in_calls_measures_is_refused_in_one_line():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    check_calls(config)  # the default config passes
    config["calls"]["measures"] = ["label_gap", "mass_share_abs"]  # the old default
    with pytest.raises(ValueError) as error:
        check_calls(config)
    message = str(error.value)
    assert message.startswith("config calls.measures: mass_share_abs cannot be tested")
    assert "\n" not in message and "calls.describe" in message and len(message) < 250


def test_method_lists_come_from_the_registry():
    """No method list is written in the schema: the keys that take a method name point at the registry."""
    text = SCHEMA.read_text()
    assert "shapley_channel_background" not in text
    assert text.count("x-registry: methods") == 4
    assert "`shapley_channel_background`" in render(load_schema(SCHEMA))


def test_schema_defaults_equal_config_yaml():
    """config.yaml spells out the defaults: a run without it (schema defaults) is the same study."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    schema = load_schema(SCHEMA)
    for section, values in config.items():
        for key, value in values.items():
            assert schema["properties"][section]["properties"][key]["default"] == value, f"{section}.{key}"

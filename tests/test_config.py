"""A bad config is refused before any job runs, naming the key and what is allowed."""

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import DEFAULT, REPO, TINY, snakemake
from poolbench import grid

SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def changed(path: str, value):
    """TINY with the key at slash-separated `path` set to `value`."""
    config = copy.deepcopy(TINY)
    *parents, last = path.split("/")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return config


def check(config):
    validate(config, SCHEMA)
    grid.check_consistency(config)


BAD = {
    "negative seed": ("seeds", [-1], ["instance['seeds']", "'minimum': 0"]),
    "negative seed count": ("seeds", -3, ["instance['seeds']", "'minimum': 1"]),
    "non-integer seed": ("seeds", [0, 1.5], ["instance['seeds']", "'type': 'integer'"]),
    "empty seed list": ("seeds", [], ["instance['seeds']", "'minItems': 1"]),
    "target_accept of 1": (
        "sampler/target_accept", [0.8, 1.0], ["1.0 is greater than or equal to the maximum of 1", "target_accept"]
    ),
    "target_accept of 0": (
        "sampler/target_accept", [0], ["0 is less than or equal to the minimum of 0", "target_accept"]
    ),
    "empty target_accept": ("sampler/target_accept", [], ["[] should be non-empty", "target_accept"]),
    "unknown variant": (
        "models/variants",
        ["pooled", "partial"],
        ["'partial' is not one of ['pooled', 'unpooled', 'hierarchical']", "variants"],
    ),
    "unknown parameterisation": (
        "models/parameterisations",
        ["centred"],
        ["'centred' is not one of ['centered', 'noncentered']", "parameterisations"],
    ),
    "empty variants": ("models/variants", [], ["[] should be non-empty", "variants"]),
    "zero groups": ("scenarios/hard/n_groups", 0, ["0 is less than the minimum of 2", "n_groups"]),
    "unknown backend": (
        "sampler/backends", ["stan"], ["'stan' is not one of ['nutpie', 'pymc', 'numpyro']", "backends"]
    ),
    "misspelt key": ("sampler/draw", 100, ["'draw' was unexpected", "sampler"]),
    "minority smaller than outliers": (
        "scenarios/hard/minority_points",
        1,
        ["count 2 exceeds scenarios/hard/minority_points=1", "count must be <= minority_points"],
    ),
    "showcase seed not simulated": ("plots/showcase_seed", 9, ["plots/showcase_seed: 9 is not one of seeds [0, 1]"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_config_is_refused_naming_key_and_allowed_values(case):
    path, value, expected = BAD[case]
    with pytest.raises((WorkflowError, grid.ConfigError)) as error:
        check(changed(path, value))
    for fragment in expected:
        assert fragment in str(error.value)


@pytest.mark.parametrize("config", [DEFAULT, TINY], ids=["default", "tiny"])
def test_shipped_configs_are_valid(config):
    check(copy.deepcopy(config))


def test_schema_defaults_equal_the_default_config():
    """Every key has a description and a default, and the defaults are config/config.yaml's."""
    schema = yaml.safe_load(open(SCHEMA))

    def walk(node, config, path):
        for key, sub in node.get("properties", {}).items():
            sub = schema["definitions"]["positive_number"] | sub if "$ref" in sub else sub
            assert "description" in sub and "default" in sub, f"{path}{key}: needs description and default"
            if sub.get("type") == "object" and "properties" in sub:
                assert set(sub.get("required", [])) == set(sub["properties"]), f"{path}{key}: required list"
                walk(sub, config[key], f"{path}{key}/")
            elif key in config and not isinstance(config[key], dict):
                assert sub["default"] == config[key], f"{path}{key}: schema default != config/config.yaml"

    walk(schema, DEFAULT, "")


@pytest.mark.parametrize(
    "path, value, fragment",
    [
        ("sampler/target_accept", [1.5], "1.5 is greater than or equal to the maximum of 1"),
        ("scenarios/hard/minority_points", 1, "exceeds scenarios/hard/minority_points=1"),
    ],
)
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, path, value, fragment):
    result = snakemake(tmp_path, changed(path, value), "--dry-run", check=False)
    assert result.returncode != 0
    assert fragment in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()

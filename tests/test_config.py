"""A bad config is refused before any job runs, naming the key and what is allowed."""

import copy

import numpy as np
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import DEFAULT, REPO, TINY, snakemake
from poolbench import config as config_checks
from poolbench import variants

SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def changed(path: str, value, base=TINY):
    """`base` with the key at slash-separated `path` set to `value`."""
    config = copy.deepcopy(base)
    *parents, last = path.split("/")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return config


def check(config):
    validate(config, SCHEMA)
    config_checks.check(config)


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
        ["'partial' is not one of ['pooled', 'unpooled', 'hierarchical', 'pooled_intercept'", "variants"],
    ),
    "unknown parameterisation": (
        "models/parameterisations",
        ["centred"],
        ["'centred' is not one of ['centered', 'noncentered', 'partial', 'mixed', 'learned']", "parameterisations"],
    ),
    "unknown likelihood": ("models/likelihoods", ["cauchy"], ["'cauchy' is not one of ['normal', 'student_t', 'binomial', 'poisson', 'negative_binomial']"]),
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
    # Issue #12, item 5: what JSON Schema lets through.
    "draws as a float": ("sampler/draws", 300.0, ["sampler/draws: 300.0 must be a whole number written without a decimal point (300)"]),
    "n_groups as a float": ("scenarios/hard/n_groups", 8.0, ["scenarios/hard/n_groups: 8.0 must be a whole number"]),
    "outlier count as a float": ("outlier_levels/1/count", 2.0, ["outlier_levels/1/count: 2.0 must be a whole number"]),
    "seed count as a float": ("seeds", 2.0, ["seeds: 2.0 must be a whole number"]),
    "NaN target_accept": ("sampler/target_accept", [float("nan")], ["sampler/target_accept/0: nan is not a finite number"]),
    "NaN hdi_prob": ("sampler/hdi_prob", float("nan"), ["sampler/hdi_prob: nan is not a finite number"]),
    "NaN prior": ("models/priors/hierarchical/mu_sd", float("nan"), ["models/priors/hierarchical/mu_sd: nan is not a finite number"]),
    "infinite outlier value": ("outlier_levels/1/value", float("inf"), ["outlier_levels/1/value: inf is not a finite number"]),
    "tune of 0": ("sampler/tune", 0, ["0 is less than the minimum of 50", "tune"]),
    "draws of 1": ("sampler/draws", 1, ["1 is less than the minimum of 50", "draws"]),
    "scenario name with a trailing newline": (
        "scenarios", {"hard\n": TINY["scenarios"]["hard"], "tutorial": TINY["scenarios"]["tutorial"]},
        ["'hard\\n' does not match"],
    ),
    "scenario name of 300 characters": (
        "scenarios", {"h" * 300: TINY["scenarios"]["hard"], "tutorial": TINY["scenarios"]["tutorial"]},
        ["is too long"],
    ),
    # Item 6: target_accepts that would share a label (and one would never be fitted).
    "close target_accepts": (
        "sampler/target_accept", [0.8, 0.80000001],
        ["sampler/target_accept: 0.8 and 0.80000001 are the same value at 6 significant digits (0.8)"],
    ),
    # Trust thresholds (issue #13).
    "negative trust threshold": ("trust/min_ess_per_chain", -1, ["-1 is less than the minimum of 0", "min_ess_per_chain"]),
    "R-hat threshold below 1": ("trust/max_rhat", 0.99, ["0.99 is less than the minimum of 1", "max_rhat"]),
    "unknown trust key": ("trust/max_rhatt", 1.1, ["'max_rhatt' was unexpected", "trust"]),
    # Calibration and real data.
    "calibration of an unknown scenario": ("sbc/scenarios", ["nowhere"], ["sbc/scenarios: 'nowhere' is not one of the scenarios"]),
    "unknown default prior key": (
        "models/priors", {"hierarchical": {"sigma_sdd": 1.0}},
        ["models/priors/hierarchical/sigma_sdd: unknown prior key; hierarchical has ['mu_sd', 'noise_rate', 'sigma_dist', 'sigma_rate', 'sigma_sd']"],
    ),
    "negative default prior": (
        "models/priors", {"pooled": {"slope_sd": -1.0}},
        ["models/priors/pooled/slope_sd: -1.0 must be a positive number"],
    ),
    "unknown spread prior": (
        "models/priors", {"hierarchical": {"sigma_dist": "cauchy"}},
        ["models/priors/hierarchical/sigma_dist: 'cauchy' is not one of ['exponential', 'halfnormal']"],
    ),
    "unknown likelihood prior key": (
        "models/likelihood_priors", {"student_t": {"nu_mean": 3.0}},
        ["models/likelihood_priors/student_t/nu_mean: unknown prior key; student_t has ['nu_alpha', 'nu_beta']"],
    ),
    "prior block of an unknown variant": ("models/priors", {"hierarchal": {}}, ["'hierarchal' is not one of"]),
    "prior set with an unknown key": (
        "models/prior_sets", {"weak": {"hierarchical": {"sigma_sdd": 1.0}}},
        ["models/prior_sets/weak/hierarchical/sigma_sdd: unknown prior key"],
    ),
    "prior set for a likelihood the study does not fit": (
        "models/prior_sets", {"weak": {"likelihoods": ["student_t"], "hierarchical": {"sigma_sd": 1.0}}},
        ["models/prior_sets/weak/likelihoods: 'student_t' is not one of the likelihoods ['normal']"],
    ),
    "prior set for an unknown likelihood": (
        "models/prior_sets", {"weak": {"likelihoods": ["cauchy"]}}, ["'cauchy' is not one of ['normal', 'student_t', 'binomial', 'poisson', 'negative_binomial']"],
    ),
    "study named like a results folder": ("study/name", "cache", ["study/name: 'cache' is reserved"]),
    "data set without its CSV": (
        "datasets", {"mine": {"x": "x", "y": "y", "group": "g", "variants": ["pooled_intercept"]}},
        ["'' should be non-empty", "['datasets']['mine']['csv']"],
    ),
    # Integers out of range: refused here, not by numpy or pyarrow in a job. tiny.yaml's
    # `tutorial` scenario has rng: legacy (np.random.RandomState takes seeds below 2**32).
    "seed 2**32 with the legacy rng": (
        "seeds", [0, 2**32], ["4294967296 is greater than the maximum of 4294967295", "instance['seeds'][1]"],
    ),
    "seed 2**64": (
        "seeds", [0, 2**64], ["18446744073709551616 is greater than the maximum of 4294967295", "instance['seeds'][1]"],
    ),
    "seed count 2**64": ("seeds", 2**64, ["is greater than the maximum of 100000", "instance['seeds']"]),
    "showcase seed 2**32": (
        "plots/showcase_seed", 2**32, ["4294967296 is greater than the maximum of 4294967295", "['plots']['showcase_seed']"],
    ),
    "outlier count 2**63": (
        "outlier_levels/1/count", 2**63, ["is greater than the maximum of 1000000", "['outlier_levels'][1]['count']"],
    ),
    "divergences allowed 2**64": (
        "trust/max_divergences", 2**64, ["is greater than the maximum of 64000000", "['trust']['max_divergences']"],
    ),
    "ESS per chain 2**64": (  # times the chains column it overflowed int64 in aggregate
        "trust/min_ess_per_chain", 2**64, ["is greater than the maximum of 1000000", "['trust']['min_ess_per_chain']"],
    ),
    "funnel group 10000": ("plots/funnel_group", 10000, ["10000 is greater than the maximum of 9999", "funnel_group"]),
    "thin 2**64": ("sbc/thin", 2**64, ["is greater than the maximum of 1000000", "['sbc']['thin']"]),
    "prior as a whole number beyond int64": (
        "models/priors/pooled/slope_sd", 2**64,
        ["models/priors/pooled/slope_sd: 18446744073709551616 is too large: a whole number here must lie within "
         "-9223372036854775807..9223372036854775807 (int64)"],
    ),
    "noise as a whole number beyond a float": (  # crashed check() with an OverflowError
        "scenarios/hard/noise", 10**400, ["scenarios/hard/noise: 100000... (401 digits) is too large"],
    ),
    # sbc/thin leaving too few ranks (tiny.yaml: draws 300, chains 2): one draw per chain ...
    "thin above draws": (
        "sbc", {"simulations": 20, "scenarios": ["hard"], "target_accept": [0.8], "thin": 301},
        ["sbc/thin: 301 with sampler/draws 300 and sampler/chains 2 gives 2 ranks per simulation",
         "needs at least 100 (max(100, sbc/simulations 20))", "use sbc/thin 1..6"],
    ),
    # ... just below the minimum (2 * ceil(300 / 7) = 86) ...
    "thin leaving fewer ranks than the minimum": (
        "sbc", {"simulations": 20, "scenarios": ["hard"], "target_accept": [0.8], "thin": 7},
        ["sbc/thin: 7 with sampler/draws 300 and sampler/chains 2 gives 86 ranks per simulation",
         "needs at least 100", "use sbc/thin 1..6"],
    ),
    # ... fewer ranks than simulations (2 * ceil(300 / 5) = 120 < 150) ...
    "thin leaving fewer ranks than simulations": (
        "sbc", {"simulations": 150, "scenarios": ["hard"], "target_accept": [0.8], "thin": 5},
        ["sbc/thin: 5 with sampler/draws 300 and sampler/chains 2 gives 120 ranks per simulation",
         "needs at least 150 (max(100, sbc/simulations 150))", "use sbc/thin 1..4"],
    ),
    # ... and more simulations than any thin can serve.
    "more simulations than draws times chains": (
        "sbc", {"simulations": 700, "scenarios": ["hard"], "target_accept": [0.8], "thin": 1},
        ["sbc/thin: 1 with sampler/draws 300 and sampler/chains 2 gives 600 ranks per simulation",
         "no thin is enough: raise sampler/draws to at least 350"],
    ),
    # Families (issue #26): a scenario's family must be fitted by one of models/likelihoods, ...
    "binomial scenario with no binomial family fitted": (
        "scenarios/hard/family", "binomial",
        ["scenarios/hard/family: binomial, but models/likelihoods ['normal'] lists no family for binomial outcomes "
         "(one of ['binomial'])"],
    ),
    # ... its outliers values its data can take, ...
    "outlier a yes/no answer cannot take": (
        "scenarios/hard/family", "binomial",
        ["outlier_levels: value 30 for the binomial scenario 'hard': an outlier must be a value its data can take, "
         "0..1 (its trials)"],
    ),
    # ... and a count scenario's rates must not overflow (slopes N(2, 1) on the log scale).
    "Poisson rates that overflow": (
        "scenarios/hard/family", "poisson",
        ["scenarios/hard: rates exp(intercept + slope x) up to e^35.0", "overflow counts beyond 1e+09"],
    ),
    "a data set's trials column with a normal family": (
        "datasets", {"d": {"csv": "d.csv", "trials": "n"}},
        ["datasets/d/trials: 'n' belongs to a binomial outcome; the family is normal"],
    ),
    "vary noise of a family without noise": (
        "scenarios/hard", {"rng": "default", "family": "binomial", "slope_mean": 1.0, "slope_sd": 1.0,
                           "points_per_group": 5, "vary": {"noise": [0.5, 1.0]}},
        ["scenarios/hard/vary/noise: the binomial family has no noise"],
    ),
    "a family that fits nothing": (
        "models/likelihoods", ["normal", "poisson"],
        ["models/likelihoods: 'poisson' fits no scenario or data set (their outcomes: ['continuous']); remove it "
         "or add data of its count outcome"],
    ),
    # A prior set whose scope leaves nothing to fit is a mistake, not an empty axis.
    "a prior set fitted to no model": (
        "models/prior_sets", {"weak": {"scenarios": [], "datasets": [], "hierarchical": {"sigma_sd": 1.0}}},
        ["models/prior_sets/weak: fitted to no model"],
    ),
    # A data set may fit only some of the families for its outcome, never others (tiny.yaml
    # fits the normal likelihood only).
    "a data set's likelihood that models/likelihoods does not fit": (
        "datasets", {"d": {"csv": "d.csv", "likelihoods": ["student_t"]}},
        ["datasets/d/likelihoods: ['student_t'] not among the families of models/likelihoods for its continuous "
         "outcome: ['normal']"],
    ),
    "a data set's likelihood of another outcome": (
        "datasets", {"d": {"csv": "d.csv", "likelihoods": ["poisson"]}},
        ["datasets/d/likelihoods: ['poisson'] not among the families"],
    ),
    "unknown family of a scenario": (
        "scenarios/hard/family", "student_t",
        ["'student_t' is not one of ['normal', 'binomial', 'poisson', 'negative_binomial']"],
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_config_is_refused_naming_key_and_allowed_values(case):
    path, value, expected = BAD[case]
    with pytest.raises((WorkflowError, config_checks.ConfigError)) as error:
        check(changed(path, value))
    for fragment in expected:
        assert fragment in str(error.value), str(error.value)


def test_every_integer_in_the_schema_has_a_maximum():
    """No integer the config accepts overflows int64 (or uint32, for seeds) in a job."""
    schema = yaml.safe_load(open(SCHEMA))
    unbounded = []

    def walk(node, path):
        if isinstance(node, dict):
            types = node.get("type", [])
            if "integer" in ([types] if isinstance(types, str) else types) and "maximum" not in node:
                unbounded.append(path)
            for key, sub in node.items():
                walk(sub, f"{path}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}/{i}")

    walk(schema, "")
    assert not unbounded


@pytest.mark.parametrize("scenario", ["tutorial", "hard"])  # rng: legacy, default
def test_the_largest_seed_is_accepted_and_simulates(scenario):
    import pyarrow as pa

    from poolbench.simulate import simulate

    seed = 2**32 - 1
    config = changed("seeds", [0, seed])
    config["plots"]["showcase_seed"] = seed
    check(config)  # the boundary is allowed ...
    data, _ = simulate(scenario, config["scenarios"][scenario], config["outlier_levels"][1], seed, config["master_seed"])
    assert pa.Table.from_pandas(data).column("seed").to_pylist()[0] == seed  # ... and runs


def test_the_seed_bound_is_the_legacy_rngs():
    schema = yaml.safe_load(open(SCHEMA))
    assert schema["properties"]["seeds"]["items"]["maximum"] == 2**32 - 1
    np.random.RandomState(2**32 - 1)
    with pytest.raises(ValueError):  # the first seed the schema refuses is the first numpy refuses
        np.random.RandomState(2**32)


@pytest.mark.parametrize(
    "sbc",
    [
        {"simulations": 20, "thin": 6},  # 2 chains * ceil(300 / 6) = 100 = SBC_MIN_RANKS
        {"simulations": 150, "thin": 4},  # 2 * 75 = 150 ranks for 150 simulations
        {"simulations": 0, "thin": 1000},  # calibration off: thin is not used
        {"simulations": 20, "thin": 1000, "scenarios": []},  # no design to calibrate on
    ],
    ids=["100 ranks", "150 ranks for 150 simulations", "calibration off", "no sbc scenarios"],
)
def test_thin_at_the_boundary_or_unused_is_accepted(sbc):
    config = changed("sbc", {"scenarios": ["hard"], "target_accept": [0.8]} | sbc)
    check(config)


def test_the_rank_count_matches_what_sbc_ranks_keeps():
    """The rule counts ranks as poolbench.sbc.ranks makes them: every thin-th draw of each chain."""
    import xarray as xr

    from poolbench.sbc import ranks

    for draws, chains, thin in [(300, 2, 10), (300, 2, 13), (300, 2, 301), (1000, 4, 7), (50, 3, 50)]:
        posterior = xr.Dataset({"mu": (("chain", "draw"), np.zeros((chains, draws)))})
        tree = xr.DataTree.from_dict({"posterior": posterior})
        (row,) = ranks(tree, {"mu": np.float64(1.0)}, thin)
        assert row["n_ranks"] == config_checks.sbc_n_ranks(draws, chains, thin)


def test_the_parameterisation_map_with_two_backends_is_refused():
    """The map's thresholds are one sampler's answer: pooled over two they would mix them."""
    config = changed("sampler/backends", ["nutpie", "pymc"])
    config["study"]["parameterisation_map"] = True
    with pytest.raises(config_checks.ConfigError, match="sampler/backends: .*study/parameterisation_map: true"):
        check(config)


@pytest.mark.parametrize(
    "config",
    [DEFAULT, TINY, *[yaml.safe_load(p.read_text()) for p in sorted((REPO / "config/studies").glob("*.yaml"))]],
    ids=lambda c: c["study"]["name"],
)
def test_shipped_configs_are_valid(config):
    check(copy.deepcopy(config))


def test_schema_defaults_equal_the_default_config():
    """Every key has a description and a default, and the defaults are config/config.yaml's."""
    schema = yaml.safe_load(open(SCHEMA))

    def walk(node, config, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub and "default" in sub, f"{path}{key}: needs description and default"
            if sub.get("type") == "object" and "properties" in sub:
                assert set(sub.get("required", [])) == set(sub["properties"]), f"{path}{key}: required list"
                walk(sub, config.get(key, {}), f"{path}{key}/")
            elif key in config and not isinstance(config[key], dict):
                assert sub["default"] == config[key], f"{path}{key}: schema default != config/config.yaml"

    walk(schema, DEFAULT, "")


def test_schema_enums_come_from_the_registry_and_prior_keys_are_only_there():
    """The registry declares each variant, likelihood and prior key once; the schema's
    enums agree with it, and its prior blocks are open objects (no key, no default restated)."""
    schema = yaml.safe_load(open(SCHEMA))
    assert schema["definitions"]["variant"]["enum"] == list(variants.VARIANTS)
    assert schema["definitions"]["likelihood"]["enum"] == list(variants.LIKELIHOODS)
    models = schema["properties"]["models"]["properties"]
    assert models["likelihoods"]["items"] == {"$ref": "#/definitions/likelihood"}
    for block in ("priors", "likelihood_priors"):
        assert "properties" not in models[block] and models[block]["additionalProperties"] == {"$ref": "#/definitions/prior_keys"}
    # The default config writes its priors out for users to edit: the registry's numbers.
    for name, block in DEFAULT["models"]["priors"].items():
        assert block == variants.VARIANTS[name].priors, name
    for name, block in DEFAULT["models"]["likelihood_priors"].items():
        assert block == variants.LIKELIHOODS[name].priors, name
    # Every other enum of a model fact: parameterisations, spread priors, prior rules, backends.
    from poolbench.samplers import SAMPLERS

    assert models["parameterisations"]["items"]["enum"] == list(variants.PARAMETERISATIONS)
    assert schema["definitions"]["spread_prior"]["enum"] == list(variants.SPREAD_PRIORS)
    assert schema["definitions"]["prior_rule"]["enum"] == list(variants.PRIOR_RULES)
    assert schema["properties"]["sampler"]["properties"]["backends"]["items"]["enum"] == list(SAMPLERS)


@pytest.mark.parametrize(
    "path, value, fragment",
    [
        ("sampler/target_accept", [1.5], "1.5 is greater than or equal to the maximum of 1"),
        ("scenarios/hard/minority_points", 1, "exceeds scenarios/hard/minority_points=1"),
        ("sampler/draws", 300.0, "sampler/draws: 300.0 must be a whole number"),
        ("trust/max_rhat", 0.5, "0.5 is less than the minimum of 1"),
        ("seeds", [0, 2**32], ("4294967296 is greater than the maximum of 4294967295", "On instance['seeds'][1]")),
        ("seeds", [0, 2**64], ("18446744073709551616 is greater than the maximum of 4294967295", "On instance['seeds'][1]")),
        ("sbc", {"simulations": 20, "scenarios": ["hard"], "target_accept": [0.8], "thin": 301},
         ("sbc/thin: 301 with sampler/draws 300 and sampler/chains 2 gives 2 ranks per simulation",
          "needs at least 100", "use sbc/thin 1..6")),
    ],
)
@pytest.mark.slow
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, path, value, fragment):
    result = snakemake(tmp_path, changed(path, value), "--dry-run", check=False)
    assert result.returncode != 0
    for part in [fragment] if isinstance(fragment, str) else fragment:
        assert part in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_a_data_sets_likelihoods_restrict_its_fits_and_a_family_fitted_nowhere_is_refused():
    from poolbench import grid

    config = changed("models/likelihoods", ["normal", "student_t"])
    config["datasets"] = {"d": {"csv": "d.csv", "likelihoods": ["normal"]}}
    check(config)  # (fills in the schema's defaults)
    planned = config
    assert {s.likelihood for s in grid.dataset_specs(planned, "d")} == {"normal"}
    assert {s.likelihood for s in grid.simulated_specs(planned)} == {"normal", "student_t"}
    # Without simulated scenarios no data set fits student_t: refused, not planned empty.
    config["scenarios"], config["sbc"]["scenarios"] = {}, []
    with pytest.raises((WorkflowError, config_checks.ConfigError), match=r"models/likelihoods: 'student_t' fits no scenario or data set: the data "
                       r"sets of its continuous outcome leave it out of their `likelihoods`"):
        check(config)

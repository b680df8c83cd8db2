"""Config checks beyond Snakemake's `validate()`: what JSON Schema lets through.

`validate(config, schema)` (in `workflow/rules/common.smk`) checks the schema and fills in
defaults. It accepts `draws: 50.0` as an integer and lets NaN and infinity through every
numeric bound (every comparison with NaN is false). `check()` refuses both, and whole
numbers in `number` keys too large for int64, then the cross-key contradictions a schema
cannot express, naming each key and what is allowed.
"""

from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import yaml

from poolbench import grid, variants
from poolbench.variants import DEFAULT_LIKELIHOOD, LIKELIHOODS, LOG_LINK, TRIALS, families_for

SCHEMA = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"


class ConfigError(ValueError):
    """A config that passes the schema but cannot be run as it stands."""


def _is_whole_number(checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


# Whole numbers in `number` keys (priors, noise, outlier values, ...) reach numpy, pandas,
# pyarrow and PyTensor as int64: beyond it they overflow there (or, beyond a float, here).
INT64_MAX = 2**63 - 1


def _is_finite_number(checker, instance) -> bool:
    if isinstance(instance, bool) or not isinstance(instance, (int, float)):
        return False
    if isinstance(instance, int):
        return -INT64_MAX <= instance <= INT64_MAX
    return math.isfinite(instance)


# The schema's own types, read strictly: an integer is written without a decimal point,
# a number is finite.
_STRICT_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
    {"integer": _is_whole_number, "number": _is_finite_number}
)
StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, type_checker=_STRICT_TYPES
)


def _key(error: jsonschema.ValidationError) -> str:
    return "/".join(str(part) for part in error.absolute_path) or "(top level)"


def _explain(error: jsonschema.ValidationError) -> str:
    value = error.instance
    if error.validator == "type" and isinstance(value, int) and not isinstance(value, bool):
        if "number" in _types(error.validator_value) and abs(value) > INT64_MAX:
            digits = str(abs(value))
            shown = value if len(digits) <= 30 else f"{'-' * (value < 0)}{digits[:6]}... ({len(digits)} digits)"
            return (f"{shown} is too large: a whole number here must lie within -{INT64_MAX}..{INT64_MAX} "
                    "(int64); write it with a decimal point to mean a float")
    if error.validator == "type" and isinstance(value, float):
        if not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if value.is_integer() and "integer" in str(error.validator_value):
            return f"{value!r} must be a whole number written without a decimal point ({int(value)})"
    return error.message


def _types(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def strict_type_problems(config: dict, schema: dict) -> list[str]:
    validator = StrictValidator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        # oneOf / anyOf errors hide the useful one among their context.
        leaves = error.context or [error]
        for leaf in leaves:
            if leaf.validator == "type" and ({"integer", "number"} & set(_types(leaf.validator_value))):
                problems.append(f"{_key(leaf)}: {_explain(leaf)}")
        if not error.context and error.validator != "type":
            problems.append(f"{_key(error)}: {error.message}")
    return list(dict.fromkeys(problems))


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def check(config: dict, schema: dict | None = None) -> None:
    """Refuse what the schema let through; raise ConfigError listing every problem."""
    problems = strict_type_problems(config, schema or load_schema())
    if not problems:
        problems = consistency_problems(config)
    if problems:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(problems))


def _adaptation_problems(config: dict) -> list[str]:
    """A mass-matrix adaptation no listed backend can do, or one whose packages are missing."""
    import importlib.util

    sampler, problems = config["sampler"], []
    able = [b for b in sampler["backends"] if b in grid.ADAPTIVE_BACKENDS]
    for adaptation in sampler.get("adaptation", [grid.DEFAULT_ADAPTATION]):
        if adaptation == grid.DEFAULT_ADAPTATION:
            continue
        if not able:
            problems.append(f"sampler/adaptation: {adaptation!r} is nutpie's; backends {sampler['backends']} adapt "
                            f"only {grid.DEFAULT_ADAPTATION!r}: add nutpie to sampler/backends or list {grid.DEFAULT_ADAPTATION!r} alone")
        if adaptation == "flow" and importlib.util.find_spec("flowjax") is None:
            problems.append("sampler/adaptation: 'flow' needs the flowjax package (and JAX), which is not installed: "
                            "`pip install flowjax`, or list another adaptation")
    return problems


def consistency_problems(config: dict) -> list[str]:
    """Cross-key rules that a JSON schema cannot express."""
    problems = []
    try:
        scenarios = grid.scenarios(config)
    except ValueError as error:
        return [str(error)]
    levels = config["outlier_levels"]
    for name, scenario in scenarios.items():
        for level in levels:
            if level["count"] > scenario["minority_points"]:
                problems.append(
                    f"outlier_levels: count {level['count']} exceeds "
                    f"scenarios/{name}/minority_points={scenario['minority_points']}; "
                    "outliers replace minority-group points, so count must be <= minority_points"
                )
    problems += _family_problems(config, scenarios)
    labels = [grid.outlier_label(level) for level in levels]
    if len(set(labels)) != len(labels):
        problems.append(f"outlier_levels: duplicate levels {labels}")
    for key in ("sampler/target_accept", "sbc/target_accept"):
        block, name = key.split("/")
        values = config[block][name]
        by_label: dict[str, list] = {}
        for value in values:
            by_label.setdefault(grid.target_accept_label(value), []).append(value)
        for label, same in by_label.items():
            if len(same) > 1:
                problems.append(
                    f"{key}: {' and '.join(map(repr, same))} are the same value at 6 significant "
                    f"digits ({label}); give distinct values"
                )
    problems += _prior_set_problems(config)
    if not problems:  # the plan needs a config that holds together
        planned = {spec.prior for spec in grid.model_specs(config)}
        problems += [f"models/prior_sets/{name}: fitted to no model: its variants, likelihoods, scenarios and "
                     "datasets (with each data set's own `likelihoods`) leave nothing to fit; widen its scope or "
                     "remove it" for name in config["models"]["prior_sets"] if name not in planned]
    problems += _plot_problems(config, scenarios)
    problems += _thin_problems(config)
    for name in config["sbc"]["scenarios"]:
        if name not in scenarios:
            problems.append(f"sbc/scenarios: {name!r} is not one of the scenarios {list(scenarios)}")
    if config["study"]["name"].lower() in RESERVED_STUDY_NAMES:  # case-insensitive file systems too
        problems.append(
            f"study/name: {config['study']['name']!r} is reserved (results/cache/ holds the fit cache, "
            "results/benchmarks/ the speed benchmarks); choose another name"
        )
    problems += _adaptation_problems(config)
    backends = grid.sampler_labels(config)
    if config["study"]["parameterisation_map"] and len(backends) > 1:
        # The map's thresholds and heatmaps are one sampler's answer; pooled they would mix two.
        problems.append(
            f"sampler/backends: samplers {backends} (backends x sampler/adaptation) with study/parameterisation_map: true; "
            "the map answers for one sampler: list one backend and one adaptation, or run a study per sampler"
        )
    if "simulated" in config["datasets"]:
        problems.append("datasets/simulated: the name 'simulated' is reserved (it labels the simulated fits' jobs)")
    clashes = set(config["datasets"]) & set(scenarios)
    if clashes:
        problems.append(f"datasets: {sorted(clashes)} named like scenarios; give data sets their own names")
    return problems


# A Poisson or negative-binomial scenario is refused when exp(eta) may exceed this rate,
# eta bounded by |mean| + RATE_SDS sds of its intercepts and slopes, |x| by RATE_X (x is
# standard normal): numpy refuses rates near 1e19, and far below that the counts' sums
# lose their precision as floats.
LARGEST_RATE, RATE_SDS, RATE_X = 1e9, 5.0, 5.0


def _family_problems(config: dict, scenarios: dict) -> list[str]:
    """A scenario's or data set's family must be fitted by some family of
    models/likelihoods (the same outcome); outliers must be values a discrete family can
    take; a count scenario's rates must not overflow."""
    problems = []
    fitted = config["models"]["likelihoods"]
    owners = [(f"scenarios/{name}", scenario) for name, scenario in config["scenarios"].items()]
    owners += [(f"datasets/{name}", dataset) for name, dataset in config["datasets"].items()]
    outcomes, used = set(), set()
    for where, block in owners:
        family = LIKELIHOODS[block.get("family", DEFAULT_LIKELIHOOD)]
        outcomes.add(family.outcome)
        listed = block.get("likelihoods")
        if listed is not None:
            wrong = [name for name in listed if name not in families_for(family.outcome, fitted)]
            if wrong:
                problems.append(f"{where}/likelihoods: {wrong} not among the families of models/likelihoods for its "
                                f"{family.outcome} outcome: {families_for(family.outcome, fitted)}")
        used |= set(listed if listed is not None else families_for(family.outcome, fitted))
        if not families_for(family.outcome, fitted):
            problems.append(f"{where}/family: {family.name}, but models/likelihoods {fitted} lists no family for "
                            f"{family.outcome} outcomes (one of {families_for(family.outcome, LIKELIHOODS)})")
        if not family.has_noise and block.get("vary", {}).get("noise"):
            problems.append(f"{where}/vary/noise: the {family.name} family has no noise; vary another key")
    for name, dataset in config["datasets"].items():  # (a scenario's trials default to 1 whatever its family)
        family = LIKELIHOODS[dataset.get("family", DEFAULT_LIKELIHOOD)]
        labelled = {key: dataset[key] for key in ("trials", "success") if dataset.get(key) is not None}
        if TRIALS not in family.columns:
            problems += [f"datasets/{name}/{key}: {value!r} belongs to a binomial outcome; the family is {family.name}"
                         for key, value in labelled.items()]
        elif len(labelled) == 2:
            problems.append(f"datasets/{name}/success: {labelled['success']!r} with trials {labelled['trials']!r}: "
                            "`success` labels yes/no rows of one trial each, a trials column makes y a count of "
                            "successes; give one")
    if owners:
        unused = [name for name in fitted if name not in used]
        for name in unused:
            if LIKELIHOODS[name].outcome in outcomes:  # its data are there: a `likelihoods` list leaves it out
                problems.append(f"models/likelihoods: {name!r} fits no scenario or data set: the data sets of its "
                                f"{LIKELIHOODS[name].outcome} outcome leave it out of their `likelihoods`; remove it "
                                "or list it in datasets/<name>/likelihoods")
            else:
                problems.append(f"models/likelihoods: {name!r} fits no scenario or data set (their outcomes: "
                                f"{sorted(outcomes)}); remove it or add data of its {LIKELIHOODS[name].outcome} outcome")
    for name, scenario in scenarios.items():
        family = LIKELIHOODS[scenario.get("family", DEFAULT_LIKELIHOOD)]
        if not family.discrete:
            continue
        largest = scenario.get("trials", 1) if TRIALS in family.columns else None
        for level in config["outlier_levels"]:
            value = level["value"]
            if level["count"] and (value != round(value) or value < 0 or (largest is not None and value > largest)):
                allowed = f"0..{largest} (its trials)" if largest is not None else "a whole number >= 0"
                problems.append(f"outlier_levels: value {value:g} for the {family.name} scenario {name!r}: an outlier "
                                f"must be a value its data can take, {allowed}; give this study levels of its own")
        if family.link == LOG_LINK:
            eta = (abs(scenario.get("intercept_mean", 0.0)) + RATE_SDS * scenario.get("intercept_sd", 0.0)
                   + (abs(scenario["slope_mean"]) + RATE_SDS * scenario["slope_sd"]) * RATE_X)
            if eta > math.log(LARGEST_RATE):
                problems.append(
                    f"scenarios/{name}: rates exp(intercept + slope x) up to e^{eta:.1f} (|mean| + {RATE_SDS:g} sd of "
                    f"intercepts and slopes, |x| up to {RATE_X:g}) overflow counts beyond {LARGEST_RATE:g}: give the "
                    f"{family.name} scenario smaller slope_mean/slope_sd/intercept_mean/intercept_sd (log scale)")
    return problems


# Folders of results/ that are not studies.
RESERVED_STUDY_NAMES = ("cache", "benchmarks")

# Fewest ranks per simulation (chains * ceil(draws / thin)) the calibration test is run on.
# The test (poolbench.metrics.calibration: ArviZ's ECDF-PIT `pot_c` on (rank + 0.5) /
# (n_ranks + 1)) treats PIT values as continuous, but ranks take only n_ranks + 1 values:
# with few of them the ties alone make it reject perfectly calibrated ranks, and the more
# so the more simulations there are. Measured (docs/reliability.md, "Calibration needs
# enough ranks"): at alpha 0.05, 2-30 ranks flag 7-100 % of calibrated parameters; with at
# least max(SBC_MIN_RANKS, simulations) ranks the rate is that of continuous PIT values
# (0.06-0.07, 10 to 1000 simulations), while 50 ranks give up to 0.078 at 100 simulations and
# 100 ranks 0.073 at 200, 0.098 at 500 and 0.150 at 1000. A property of the test (it would
# sit beside metrics.CALIBRATION_ALPHA), kept here where it is enforced.
SBC_MIN_RANKS = 100


def sbc_min_ranks(simulations: int) -> int:
    """Ranks per simulation the calibration test needs for this many simulations."""
    return max(SBC_MIN_RANKS, simulations)


def sbc_n_ranks(draws: int, chains: int, thin: int) -> int:
    """Ranks per simulation: `poolbench.sbc.ranks` keeps draws 0, thin, 2 thin, ... of each chain."""
    return chains * -(-draws // thin)


def _thin_problems(config: dict) -> list[str]:
    sbc, sampler = config["sbc"], config["sampler"]
    if not (sbc["simulations"] > 0 and sbc["scenarios"]):
        return []
    draws, chains, thin = sampler["draws"], sampler["chains"], sbc["thin"]
    n_ranks, needed = sbc_n_ranks(draws, chains, thin), sbc_min_ranks(sbc["simulations"])
    if n_ranks >= needed:
        return []
    gives = (
        f"sbc/thin: {thin} with sampler/draws {draws} and sampler/chains {chains} gives {n_ranks} ranks per "
        f"simulation (chains * ceil(draws / thin)); the calibration test needs at least {needed} "
        f"(max({SBC_MIN_RANKS}, sbc/simulations {sbc['simulations']})), else the ties among so few ranks "
        "flag calibrated models as miscalibrated (docs/reliability.md)"
    )
    per_chain = -(-needed // chains)  # each chain must keep at least this many draws
    if per_chain > draws:
        return [f"{gives}; no thin is enough: raise sampler/draws to at least {per_chain} (with thin 1) "
                "or sampler/chains, or lower sbc/simulations"]
    # ceil(draws / t) >= per_chain  <=>  draws / t > per_chain - 1  <=>  t <= largest.
    largest = draws if per_chain <= 1 else -(-draws // (per_chain - 1)) - 1
    return [f"{gives}; use sbc/thin 1..{largest}, or more draws or chains"]


def _prior_set_problems(config: dict) -> list[str]:
    """Prior blocks (the models' defaults, prior sets and data sets' own) against the
    registry's prior keys (the schema leaves them open: the registry declares them once),
    and the places a prior set is fitted against the config's scenarios, data sets and
    likelihoods."""
    problems = []
    blocks = {"models/priors": config["models"]["priors"]}
    blocks |= {f"models/prior_sets/{name}": block for name, block in config["models"]["prior_sets"].items()}
    blocks |= {f"datasets/{name}/priors": d.get("priors", {}) for name, d in config["datasets"].items()}
    for where, block in blocks.items():
        for variant, keys in block.items():
            if variant in grid.PRIOR_SET_SCOPE:
                continue
            problems += _prior_key_problems(f"{where}/{variant}", variant, keys, variants.VARIANTS[variant].priors)
    for likelihood, keys in config["models"]["likelihood_priors"].items():
        problems += _prior_key_problems(f"models/likelihood_priors/{likelihood}", likelihood, keys,
                                        variants.LIKELIHOODS[likelihood].priors)
    for name, block in config["models"]["prior_sets"].items():
        for scope, known in (("scenarios", config["scenarios"]), ("datasets", config["datasets"]),
                             ("likelihoods", config["models"]["likelihoods"])):
            for item in block.get(scope, []):
                if item not in known:
                    problems.append(f"models/prior_sets/{name}/{scope}: {item!r} is not one of the {scope} {list(known)[:20]}")
    return problems


def _prior_key_problems(where: str, owner: str, keys: dict, allowed: dict) -> list[str]:
    """`keys` of a prior block against `allowed`, the registry's keys of `owner` (a variant
    or a likelihood) with their defaults."""
    problems = []
    for key, value in keys.items():
        if key not in allowed:
            known = f"{owner} has {sorted(allowed)}" if allowed else f"{owner} has no prior keys"
            problems.append(f"{where}/{key}: unknown prior key; {known}")
        elif isinstance(allowed[key], str):
            if key.endswith("_dist") and value not in variants.SPREAD_PRIORS:
                problems.append(f"{where}/{key}: {value!r} is not one of {list(variants.SPREAD_PRIORS)}")
        elif isinstance(value, str) or not (value > 0):
            problems.append(f"{where}/{key}: {value!r} must be a positive number")
    return problems


def _plot_problems(config: dict, scenarios: dict) -> list[str]:
    problems = []
    plots = config["plots"]
    if plots["showcase_seed"] not in grid.seeds(config):
        problems.append(
            f"plots/showcase_seed: {plots['showcase_seed']} is not one of seeds {grid.seeds(config)[:20]}"
        )
    counts = [level["count"] for level in config["outlier_levels"]]
    if plots["showcase_outliers"] not in counts:
        problems.append(
            f"plots/showcase_outliers: {plots['showcase_outliers']} is not one of the "
            f"outlier_levels counts {counts}"
        )
    if scenarios and plots["tutorial_scenario"] not in scenarios:
        problems.append(
            f"plots/tutorial_scenario: {plots['tutorial_scenario']!r} is not one of the "
            f"scenarios {list(scenarios)[:20]}"
        )
    smallest = min((s["n_groups"] for s in scenarios.values()), default=None)
    if smallest is not None and plots["funnel_group"] >= smallest:
        problems.append(
            f"plots/funnel_group: {plots['funnel_group']} is not a group of every scenario "
            f"(the smallest has {smallest} groups: 0..{smallest - 1})"
        )
    return problems

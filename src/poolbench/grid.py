"""The experiment grid: what the config declares, enumerated in one place.

Snakemake's `common.smk`, the scripts, the benchmark and the tests all read the grid
through these functions, so model names, labels, seeds and the split of fits into jobs
cannot drift apart. Nothing here imports PyMC.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from poolbench.variants import (
    DATA_RULE, DEFAULT_LIKELIHOOD, FIXED_RULE, LIKELIHOODS, NO_PARAMETERISATION, STUDENT_T, VARIANTS,
)

DEFAULT_PRIOR = "default"
SIMULATED = "simulated"
REAL = "real"
# Real data sets have no outlier level or seed; their fits carry these in those columns.
OBSERVED = "observed"


@dataclass(frozen=True)
class ModelSpec:
    """One compiled model: a variant, its parameterisation, a likelihood, a prior set."""

    variant: str
    parameterisation: str = NO_PARAMETERISATION
    likelihood: str = DEFAULT_LIKELIHOOD
    prior: str = DEFAULT_PRIOR

    @property
    def name(self) -> str:
        """The model's name in tables and paths: the variant, with its parameterisation."""
        if self.parameterisation == NO_PARAMETERISATION:
            return self.variant
        return f"{self.variant}_{self.parameterisation}"

    @property
    def structure(self) -> str:
        """Everything that makes a separate compiled model, as a path: model/likelihood/prior."""
        return f"{self.name}/{self.likelihood}/{self.prior}"

    @classmethod
    def from_name(cls, name: str, likelihood: str = DEFAULT_LIKELIHOOD, prior: str = DEFAULT_PRIOR) -> "ModelSpec":
        """Parse a model name against the registry (variant names may hold underscores)."""
        if name in MODEL_NAMES:
            return cls(*MODEL_NAMES[name], likelihood=likelihood, prior=prior)
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODEL_NAMES)}")


# Every model name the registry allows -> (variant, parameterisation).
MODEL_NAMES = {
    ModelSpec(v.name, p).name: (v.name, p) for v in VARIANTS.values() for p in v.parameterisations
}


class FitKey(NamedTuple):
    """Which data a fit sees and at which target_accept. For real data sets `scenario` is
    the data set's name, `outliers` is OBSERVED and `seed` 0."""

    source: str
    scenario: str
    outliers: str
    seed: int
    target_accept: float


class SbcKey(NamedTuple):
    """One simulation of a calibration cell: the design's scenario and the simulation index."""

    scenario: str
    simulation: int
    target_accept: float


# How NUTS adapts its mass matrix: a diagonal from the draws' variances (every backend),
# nutpie's diagonal from draws and gradients, low-rank plus diagonal, or a normalizing flow
# (needs flowjax and JAX). `sampler/adaptation` lists those fitted, as an axis.
DEFAULT_ADAPTATION = "diag"
ADAPTATIONS = (DEFAULT_ADAPTATION, "draw_diag", "low_rank", "flow")
# The backends that adapt otherwise than the default.
ADAPTIVE_BACKENDS = ("nutpie",)


def sampler_label(backend: str, adaptation: str = DEFAULT_ADAPTATION) -> str:
    """What a fit's `backend` column, path and findings call its sampler: the backend,
    followed by its adaptation where that is not the default ('nutpie-low_rank')."""
    return backend if adaptation == DEFAULT_ADAPTATION else f"{backend}-{adaptation}"


def sampler_parts(label: str) -> tuple[str, str]:
    """(backend, adaptation) of a sampler label."""
    backend, _, adaptation = label.partition("-")
    return backend, adaptation or DEFAULT_ADAPTATION


def sampler_labels(config: dict) -> list[str]:
    """Every sampler of the run: each backend under each listed adaptation it can do (the
    backends other than nutpie adapt only the default way)."""
    sampler = config["sampler"]
    return [sampler_label(backend, adaptation) for backend in sampler["backends"]
            for adaptation in sampler.get("adaptation", [DEFAULT_ADAPTATION])
            if adaptation == DEFAULT_ADAPTATION or backend in ADAPTIVE_BACKENDS]


def seeds(config: dict) -> list[int]:
    """Replicate seeds: `seeds` is a count (0..n-1) or an explicit list."""
    value = config["seeds"]
    return list(range(value)) if isinstance(value, int) else list(value)


def outlier_label(level: dict) -> str:
    """Path-safe label of an outlier level, e.g. '2at30'."""
    return f"{level['count']}at{level['value']:g}"


def outlier_levels(config: dict) -> dict[str, dict]:
    return {outlier_label(level): level for level in config["outlier_levels"]}


def target_accept_label(value: float) -> str:
    return f"{value:g}"


# The keys a scenario can `vary`, in the order their values appear in expanded names
# (fixed, so that the names do not depend on how the config orders them).
VARY_KEYS = ("points_per_group", "noise", "n_groups", "slope_sd", "intercept_sd")


def scenarios(config: dict) -> dict[str, dict]:
    """Every scenario to simulate, with `vary` expanded into one scenario per combination
    (named `{scenario}_{value}_{value}`, values in the order of VARY_KEYS) and
    `minority_points` filled in."""
    out = {}
    for name, scenario in config["scenarios"].items():
        listed = scenario.get("vary", {})
        vary = {key: listed[key] for key in VARY_KEYS if listed.get(key)}
        base = {key: value for key, value in scenario.items() if key != "vary"}
        for combination in itertools.product(*vary.values()):
            expanded = base | dict(zip(vary, combination))
            if expanded.get("minority_points") is None:
                expanded["minority_points"] = expanded["points_per_group"]
            label = "_".join([name, *(f"{value:g}" for value in combination)])
            if label in out:
                raise ValueError(f"scenarios/{name}: expands to {label!r}, which another scenario already names")
            out[label] = expanded
    return out


def prior_sets(config: dict) -> list[str]:
    return [DEFAULT_PRIOR, *config["models"]["prior_sets"]]


# Keys of a prior set that say how and where it applies; every other key names a variant.
PRIOR_SET_SCOPE = ("rule", "scenarios", "datasets", "variants", "likelihoods")


def prior_set_covers(config: dict, prior: str, *, variant: str | None = None, likelihood: str | None = None,
                     scenario: str | None = None, dataset: str | None = None) -> bool:
    """Whether prior set `prior` is fitted to this variant, likelihood, simulated scenario
    (its name in the config, or one of its `vary` expansions) or real data set: everywhere
    unless the set lists `variants`, `likelihoods`, `scenarios` or `datasets`. The default
    set applies everywhere."""
    if prior == DEFAULT_PRIOR:
        return True
    scope = config["models"]["prior_sets"][prior]
    if variant is not None and "variants" in scope and variant not in scope["variants"]:
        return False
    if likelihood is not None and "likelihoods" in scope and likelihood not in scope["likelihoods"]:
        return False
    if scenario is not None and "scenarios" in scope:
        return scenario_base(config, scenario) in scope["scenarios"]
    if dataset is not None and "datasets" in scope:
        return dataset in scope["datasets"]
    return True


def family_of(config: dict, *, scenario: str | None = None, dataset: str | None = None) -> str:
    """The family a simulated scenario (its name, or one of its `vary` expansions, which
    cannot vary the family) draws y from, or a real data set's outcome is read as
    (`family`, normal unless the config says otherwise)."""
    block = config["datasets"][dataset] if dataset is not None else config["scenarios"][scenario_base(config, scenario)]
    return block.get("family", DEFAULT_LIKELIHOOD)


def family_fits(config: dict, likelihood: str, **where) -> bool:
    """Whether a model of family `likelihood` is fitted to this scenario or data set: where
    its outcome (continuous, binomial, count) is the data's. A Poisson scenario is fitted
    with the Poisson and the negative-binomial families of `models/likelihoods`, never with
    the normal one."""
    return LIKELIHOODS[likelihood].outcome == LIKELIHOODS[family_of(config, **where)].outcome


def dataset_fits(config: dict, likelihood: str, dataset: str) -> bool:
    """Whether a model of family `likelihood` is fitted to a real data set: of its outcome,
    and listed by its `likelihoods` where it lists them."""
    listed = config["datasets"][dataset].get("likelihoods")
    return family_fits(config, likelihood, dataset=dataset) and (listed is None or likelihood in listed)


def scenario_base(config: dict, scenario: str) -> str:
    """The config's name of a scenario, also of one of its `vary` expansions."""
    if scenario in config["scenarios"]:
        return scenario
    return next((name for name in config["scenarios"] if scenario.startswith(f"{name}_")), scenario)


def specs(variants: list[str], config: dict, **where) -> list[ModelSpec]:
    """Every compiled model for these variants: parameterisations (where the variant has
    hierarchical terms), likelihoods and the prior sets fitted there (`where`: a
    `dataset=` or, with `simulated=True`, on some simulated scenario)."""
    models = config["models"]
    simulated = where.pop("simulated", False)
    out = []
    for variant in variants:
        allowed = VARIANTS[variant].parameterisations
        parameterisations = [p for p in models["parameterisations"] if p in allowed] or list(allowed)
        for parameterisation, likelihood, prior in itertools.product(
            parameterisations, models["likelihoods"], prior_sets(config)
        ):
            if not prior_set_covers(config, prior, variant=variant, likelihood=likelihood, **where):
                continue
            if "dataset" in where and not dataset_fits(config, likelihood, where["dataset"]):
                continue
            if simulated and not any(prior_set_covers(config, prior, scenario=s) and family_fits(config, likelihood, scenario=s)
                                     for s in scenarios(config)):
                continue
            out.append(ModelSpec(variant, parameterisation, likelihood, prior))
    return out


def simulated_specs(config: dict) -> list[ModelSpec]:
    return specs(config["models"]["variants"], config, simulated=True) if config["scenarios"] else []


def dataset_specs(config: dict, dataset: str) -> list[ModelSpec]:
    return specs(config["datasets"][dataset]["variants"], config, dataset=dataset)


def model_specs(config: dict) -> list[ModelSpec]:
    """Every compiled model of the run, simulated and real data together, each once."""
    every = simulated_specs(config) + [s for d in config["datasets"] for s in dataset_specs(config, d)]
    return list(dict.fromkeys(every))


def priors(config: dict, spec: ModelSpec, dataset: str | None = None) -> dict:
    """The prior of one model on simulated data (`dataset` None) or on a real data set:
    its `rule` (variants.PRIOR_RULES) and its hyperparameters, keys sorted.

    The default prior set reads fixed numbers on simulated data (the registry's, the
    tutorial's, then the config's `models/priors`) and the data rule on real data (the
    registry's DATA_RULE_PRIORS), unless the data set's `priors` block sets `rule: fixed`;
    that block's variant keys then override. A named prior set has its own `rule` (fixed
    unless it says `data`) and overrides the defaults of that rule. Last come the
    likelihood's own priors (scale-free: the same under either rule)."""
    models, variant = config["models"], VARIANTS[spec.variant]
    if spec.prior == DEFAULT_PRIOR:
        block = config["datasets"][dataset].get("priors", {}) if dataset is not None else {}
        rule = block.get("rule", DATA_RULE if dataset is not None else FIXED_RULE)
    else:
        block = models["prior_sets"][spec.prior]
        rule = block.get("rule", FIXED_RULE)
    if rule == DATA_RULE:
        merged = variant.data_priors
    else:
        merged = dict(variant.priors) | models["priors"].get(spec.variant, {})
    merged |= block.get(spec.variant, {})
    family = LIKELIHOODS[spec.likelihood]
    if not family.has_noise:  # binomial and count models have no noise, hence no noise prior
        merged.pop("noise_rate", None)
    merged |= family.priors | models["likelihood_priors"].get(spec.likelihood, {})
    return {"rule": rule} | {key: merged[key] for key in sorted(merged)}


def fit_keys(config: dict, spec: ModelSpec) -> list[FitKey]:
    """Every fit of one model, in a fixed order: simulated scenarios (outlier levels,
    seeds, target_accepts), then the real data sets that list its variant."""
    tas = config["sampler"]["target_accept"]
    keys = []
    if spec in simulated_specs(config):
        levels = list(outlier_levels(config))
        covered = [s for s in scenarios(config)
                   if prior_set_covers(config, spec.prior, scenario=s) and family_fits(config, spec.likelihood, scenario=s)]
        for scenario, outliers, seed, ta in itertools.product(covered, levels, seeds(config), tas):
            keys.append(FitKey(SIMULATED, scenario, outliers, seed, ta))
    for dataset in config["datasets"]:
        if spec in dataset_specs(config, dataset):
            keys += [FitKey(REAL, dataset, OBSERVED, 0, ta) for ta in tas]
    return keys


def sbc_keys(config: dict, spec: ModelSpec) -> list[SbcKey]:
    """Every simulation of one calibration model: on the calibration's scenarios that its
    prior set is fitted to."""
    sbc = config["sbc"]
    covered = [s for s in sbc["scenarios"]
               if prior_set_covers(config, spec.prior, scenario=s) and family_fits(config, spec.likelihood, scenario=s)]
    return [
        SbcKey(scenario, simulation, ta)
        for scenario, ta, simulation in itertools.product(covered, sbc["target_accept"], range(sbc["simulations"]))
    ]


def sbc_specs(config: dict) -> list[ModelSpec]:
    if not (config["sbc"]["simulations"] and config["sbc"]["scenarios"]):
        return []
    return [spec for spec in simulated_specs(config) if sbc_keys(config, spec)]


def parts(fit_keys: list[FitKey], sbc_keys: list[SbcKey], fits_per_job: int) -> dict[str, tuple[list, list]]:
    """A model's work split into jobs, `label -> (fits, calibration simulations)`: the
    simulated fits and the simulations in runs of at most `fits_per_job` each (job
    `simulated-pK` does the K-th run of both, so one compiled model serves them), and each
    real data set's fits apart (a broken CSV then stops only its own jobs). Labels:
    `simulated-p0`, `radon-p0`, ..."""
    by_source: dict[str, list] = {}
    for key in fit_keys:
        by_source.setdefault(key.scenario if key.source == REAL else SIMULATED, []).append(key)
    simulated = by_source.pop(SIMULATED, [])
    out = {}
    for start in range(0, max(len(simulated), len(sbc_keys)), fits_per_job):
        run = slice(start, start + fits_per_job)
        out[f"{SIMULATED}-p{start // fits_per_job}"] = (simulated[run], sbc_keys[run])
    for source, keys in by_source.items():
        for start in range(0, len(keys), fits_per_job):
            out[f"{source}-p{start // fits_per_job}"] = (keys[start : start + fits_per_job], [])
    return out


def real_fit_label(dataset: str, model: str, likelihood: str, prior: str) -> str:
    """How the PSIS-LOO comparison names one real-data fit (`metrics.compare_real`)."""
    return f"{dataset}/{model}/{likelihood}/{prior}"


def derive_seed(master_seed: int, *keys: object) -> int:
    """A 32-bit seed from the master seed and grid coordinates.

    Names are hashed with CRC32 (stable across processes, unlike `hash`), and numbers
    enter as their repr, so every coordinate tuple gets its own independent stream.
    """
    entropy = [master_seed] + [zlib.crc32(repr(key).encode()) for key in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _model_coordinates(spec: ModelSpec) -> tuple:
    """The model's part of a sampler seed. Likelihood and prior set enter only when they
    are not the defaults, so the seeds of the tutorial's models never changed."""
    extra = () if spec.likelihood == DEFAULT_LIKELIHOOD else (spec.likelihood,)
    extra += () if spec.prior == DEFAULT_PRIOR else (spec.prior,)
    return (spec.name, *extra)


def fit_seed(master_seed: int, key: FitKey, spec: ModelSpec) -> int:
    """The sampler seed of one fit."""
    return derive_seed(
        master_seed, "fit", key.scenario, key.outliers, key.seed, *_model_coordinates(spec), key.target_accept
    )


def prior_predictive_seed(master_seed: int, key: FitKey, spec: ModelSpec) -> int:
    """The seed of one dataset's prior predictive check under one model (the same at every
    target_accept)."""
    return derive_seed(master_seed, "prior-predictive", key.scenario, key.outliers, key.seed, *_model_coordinates(spec))


def sbc_seeds(master_seed: int, key: SbcKey, spec: ModelSpec) -> tuple[int, int, int]:
    """Seeds of one calibration simulation: its design (x), its prior draw, its sampler.
    The design and the prior draw depend on the simulation's index, never on how many
    simulations there are, so adding simulations keeps the ones already done."""
    model = _model_coordinates(spec)
    return (
        derive_seed(master_seed, "sbc-design", key.scenario, key.simulation),
        derive_seed(master_seed, "sbc-prior", key.scenario, key.simulation, *model),
        derive_seed(master_seed, "sbc-fit", key.scenario, key.simulation, *model, key.target_accept),
    )


def calibration_label(model: str, likelihood: str, prior: str, backend: str, scenario: str, target_accept: float) -> str:
    """File-safe name of a calibration cell, e.g. 'hierarchical_centered.normal.default.nutpie.hard.ta0.8'."""
    return f"{model}.{likelihood}.{prior}.{backend}.{scenario}.ta{target_accept_label(target_accept)}"


def experiment_hash(config: dict) -> str:
    """Hash of everything that decides the numbers (all but the `plots` block)."""
    experiment = {k: v for k, v in config.items() if k != "plots"}
    return hashlib.sha256(json.dumps(experiment, sort_keys=True).encode()).hexdigest()[:12]


# The tutorial's own dataset: its design with the legacy generator, seed 0, two outliers
# at 30 (config/README.md). Its story is told in three numbers on a report's first screen.
TUTORIAL_DESIGN = {"rng": "legacy", "n_groups": 8, "points_per_group": 50, "minority_points": 5, "noise": 0.1,
                   "slope_mean": 2.0, "slope_sd": 1.0}
TUTORIAL_SEED, TUTORIAL_OUTLIERS = 0, {"count": 2, "value": 30.0}
# The tutorial's three models: no pooling, partial pooling, partial pooling with robust noise.
TUTORIAL_MODELS = {"unpooled": ("unpooled", DEFAULT_LIKELIHOOD), "pooled": ("hierarchical", DEFAULT_LIKELIHOOD),
                   "robust": ("hierarchical", STUDENT_T)}


def tutorial_dataset(config: dict) -> tuple[str, str, int] | None:
    """(scenario, outlier label, seed) of the tutorial's own dataset where the config fits
    it, else None."""
    if TUTORIAL_SEED not in seeds(config) or TUTORIAL_OUTLIERS not in config["outlier_levels"]:
        return None
    for name, scenario in scenarios(config).items():
        if (all(scenario.get(key) == value for key, value in TUTORIAL_DESIGN.items()) and not scenario.get("intercept_sd")
                and scenario.get("family", DEFAULT_LIKELIHOOD) == DEFAULT_LIKELIHOOD):
            return name, outlier_label(TUTORIAL_OUTLIERS), TUTORIAL_SEED
    return None


def showcase_target_accept(config: dict) -> float:
    """The target_accept of the fits shown in per-dataset figures: the highest in the grid,
    where the samplers are most trustworthy."""
    return max(config["sampler"]["target_accept"])


def showcase_outlier_label(config: dict) -> str:
    count = config["plots"]["showcase_outliers"]
    return next(
        outlier_label(level) for level in config["outlier_levels"] if level["count"] == count
    )

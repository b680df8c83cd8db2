"""The experiment grid: what the config declares, enumerated in one place.

Snakemake's `common.smk`, the scripts and the tests all read the grid through
these functions, so paths, labels and seeds cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass

import numpy as np

HIERARCHICAL = "hierarchical"
NO_PARAMETERISATION = "none"
# Posterior variable names shared by models, metrics and plots (kept here, away from
# PyMC, so that plot and report jobs never import it).
SLOPE = "slope"
COMMON_SLOPE = "common_slope"
MU = "mu_slope"
SIGMA = "sigma_slope"


class ConfigError(ValueError):
    """A config that passes the schema but contradicts itself."""


@dataclass(frozen=True)
class ModelSpec:
    """One model structure: a pooling variant and (for the hierarchical one) a parameterisation."""

    variant: str
    parameterisation: str

    @property
    def name(self) -> str:
        if self.parameterisation == NO_PARAMETERISATION:
            return self.variant
        return f"{self.variant}_{self.parameterisation}"

    @classmethod
    def from_name(cls, name: str) -> "ModelSpec":
        variant, _, parameterisation = name.partition("_")
        return cls(variant, parameterisation or NO_PARAMETERISATION)


def seeds(config: dict) -> list[int]:
    """Replicate seeds: `seeds` is a count (0..n-1) or an explicit list."""
    value = config["seeds"]
    return list(range(value)) if isinstance(value, int) else list(value)


def outlier_label(level: dict) -> str:
    """Path-safe label of an outlier level, e.g. '2at30'."""
    return f"{level['count']}at{level['value']:g}"


def outlier_levels(config: dict) -> dict[str, dict]:
    return {outlier_label(level): level for level in config["outlier_levels"]}


def model_specs(config: dict) -> list[ModelSpec]:
    """Every model structure to fit; parameterisation varies for the hierarchical variant only."""
    specs = []
    for variant in config["models"]["variants"]:
        if variant == HIERARCHICAL:
            specs += [
                ModelSpec(variant, p) for p in config["models"]["parameterisations"]
            ]
        else:
            specs.append(ModelSpec(variant, NO_PARAMETERISATION))
    return specs


def target_accept_label(value: float) -> str:
    return f"{value:g}"


def derive_seed(master_seed: int, *keys: object) -> int:
    """A 32-bit seed from the master seed and grid coordinates.

    Names are hashed with CRC32 (stable across processes, unlike `hash`), and numbers
    enter as their repr, so every coordinate tuple gets its own independent stream.
    """
    entropy = [master_seed] + [zlib.crc32(repr(key).encode()) for key in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def fit_seed(master_seed: int, truth, spec: ModelSpec, target_accept: float) -> int:
    """The sampler seed of one fit (`truth`: the dataset's poolbench.simulate.Truth)."""
    return derive_seed(
        master_seed, "fit", truth.scenario, truth.outliers, truth.seed, spec.name, target_accept
    )


def experiment_hash(config: dict) -> str:
    """Hash of everything that decides the numbers (all but the `plots` block)."""
    experiment = {k: v for k, v in config.items() if k != "plots"}
    return hashlib.sha256(json.dumps(experiment, sort_keys=True).encode()).hexdigest()[:12]


def showcase_target_accept(config: dict) -> float:
    """The target_accept of the fits shown in per-dataset figures: the highest in the grid,
    where the samplers are most trustworthy."""
    return max(config["sampler"]["target_accept"])


def check_consistency(config: dict) -> None:
    """Cross-key rules that a JSON schema cannot express; raise naming the keys."""
    problems = []
    levels = config["outlier_levels"]
    for name, scenario in config["scenarios"].items():
        for level in levels:
            if level["count"] > scenario["minority_points"]:
                problems.append(
                    f"outlier_levels: count {level['count']} exceeds "
                    f"scenarios/{name}/minority_points={scenario['minority_points']}; "
                    "outliers replace minority-group points, so count must be <= minority_points"
                )
    labels = [outlier_label(level) for level in levels]
    if len(set(labels)) != len(labels):
        problems.append(f"outlier_levels: duplicate levels {labels}")
    plots = config["plots"]
    if plots["showcase_seed"] not in seeds(config):
        problems.append(
            f"plots/showcase_seed: {plots['showcase_seed']} is not one of seeds {seeds(config)}"
        )
    if plots["showcase_outliers"] not in [level["count"] for level in levels]:
        problems.append(
            f"plots/showcase_outliers: {plots['showcase_outliers']} is not one of the "
            f"outlier_levels counts {[level['count'] for level in levels]}"
        )
    if plots["tutorial_scenario"] not in config["scenarios"]:
        problems.append(
            f"plots/tutorial_scenario: {plots['tutorial_scenario']!r} is not one of the "
            f"scenarios {list(config['scenarios'])}"
        )
    if problems:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(problems))


def showcase_outlier_label(config: dict) -> str:
    count = config["plots"]["showcase_outliers"]
    return next(
        outlier_label(level)
        for level in config["outlier_levels"]
        if level["count"] == count
    )

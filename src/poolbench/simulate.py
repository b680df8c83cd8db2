"""Simulate grouped regression datasets with a minority group and outliers.

y is drawn through the scenario's family (`family`, default normal): the linear predictor
intercept + slope * x of each observation, then y from the family's simulator
(`SIMULATORS`: normal noise; binomial successes out of `trials` through the logit;
Poisson or negative-binomial counts through the log).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from poolbench.data import DATASET_COLUMNS, Truth
from poolbench.grid import derive_seed, outlier_label
from poolbench.variants import (
    BINOMIAL, DEFAULT_LIKELIHOOD, LIKELIHOODS, NEGATIVE_BINOMIAL, NORMAL, OVERDISPERSION, POISSON, TRIALS,
)

# Scenario keys of the families, with their defaults (as in the schema).
DEFAULT_TRIALS, DEFAULT_OVERDISPERSION = 1, 0.5


def scenario_trials(scenario: dict) -> int:
    """Trials per observation of a scenario: its `trials` for a binomial family, else 1 (the
    dataset tables' `trials` column)."""
    family = LIKELIHOODS[scenario.get("family", DEFAULT_LIKELIHOOD)]
    return int(scenario.get("trials", DEFAULT_TRIALS)) if TRIALS in family.columns else 1


def _normal(rng, eta: np.ndarray, noise: np.ndarray, scenario: dict) -> np.ndarray:
    return eta + noise


def _binomial(rng, eta: np.ndarray, noise: np.ndarray, scenario: dict) -> np.ndarray:
    return rng.binomial(scenario_trials(scenario), 1.0 / (1.0 + np.exp(-eta))).astype(float)


def _poisson(rng, eta: np.ndarray, noise: np.ndarray, scenario: dict) -> np.ndarray:
    return rng.poisson(np.exp(eta)).astype(float)


def _negative_binomial(rng, eta: np.ndarray, noise: np.ndarray, scenario: dict) -> np.ndarray:
    """Mean exp(eta), variance mu + (overdispersion * mu)^2 (the model's parameterisation),
    as numpy's negative_binomial(n, p) with n = 1 / overdispersion^2, p = n / (n + mu)."""
    shape = 1.0 / scenario.get("overdispersion", DEFAULT_OVERDISPERSION) ** 2
    return rng.negative_binomial(shape, shape / (shape + np.exp(eta))).astype(float)


# A family's simulator: y from the linear predictor `eta`, the scenario's noise draws (the
# normal family's, drawn for every family so that x and the intercepts of a seed are the
# same whatever the family), the scenario and the generator. Families without one
# (student_t) cannot be simulated; the schema's `family` enum lists these (tested).
SIMULATORS = {NORMAL: _normal, BINOMIAL: _binomial, POISSON: _poisson, NEGATIVE_BINOMIAL: _negative_binomial}


def group_index(n_groups: int, points_per_group: int, minority_points: int, sizes: str = "equal") -> np.ndarray:
    """Group of each observation. Equal sizes, in the tutorial's order:
    `points_per_group * [0..G-2]` (majority groups interleaved) followed by
    `minority_points * [G-1]`. Geometric sizes (`geometric_sizes`): each group's
    observations together, group 0 first, so the minority group's are still last."""
    if sizes == "geometric":
        return np.repeat(np.arange(n_groups), geometric_sizes(n_groups, points_per_group, minority_points))
    majority = np.tile(np.arange(n_groups - 1), points_per_group)
    return np.concatenate([majority, np.full(minority_points, n_groups - 1)])


def geometric_sizes(n_groups: int, largest: int, smallest: int) -> np.ndarray:
    """Group sizes falling geometrically from `largest` (group 0) to `smallest` (the last),
    rounded (8 groups from 100 to 2: 100, 57, 33, 19, 11, 6, 3, 2)."""
    steps = np.arange(n_groups) / (n_groups - 1)
    return np.maximum(1, np.rint(largest * (smallest / largest) ** steps)).astype(int)


def _groups(scenario: dict) -> np.ndarray:
    return group_index(scenario["n_groups"], scenario["points_per_group"], _minority(scenario),
                       scenario.get("group_sizes", "equal"))


def design(scenario: dict, rng_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A scenario's design without its responses: the group and x of each observation,
    drawn as `simulate` draws them (used by simulation-based calibration)."""
    groups = _groups(scenario)
    rng = np.random.default_rng(rng_seed)
    return groups, rng.standard_normal(len(groups))


def _minority(scenario: dict) -> int:
    minority = scenario.get("minority_points")
    return scenario["points_per_group"] if minority is None else minority


def simulate(
    scenario_name: str,
    scenario: dict,
    level: dict,
    seed: int,
    master_seed: int,
) -> tuple[pd.DataFrame, Truth]:
    """One dataset of a scenario at an outlier level.

    The draws are made in the tutorial's order (slopes, x, noise), then the intercepts
    when the scenario has them. With `rng: legacy` they come from
    `np.random.RandomState(seed)`, which for seed 0 replays `np.random.seed(0)` bit for
    bit; otherwise from `default_rng` seeded by master seed, scenario and seed. The outlier
    level is not part of the seed, so all levels share the same clean data.
    """
    minority_points = _minority(scenario)
    groups = _groups(scenario)
    n = len(groups)
    if scenario["rng"] == "legacy":
        rng_seed = seed
        rng = np.random.RandomState(seed)
        normal, standard_normal = rng.normal, rng.randn
    else:
        rng_seed = derive_seed(master_seed, "dataset", scenario_name, seed)
        rng = np.random.default_rng(rng_seed)
        normal, standard_normal = rng.normal, rng.standard_normal
    slopes = normal(scenario["slope_mean"], scenario["slope_sd"], size=scenario["n_groups"])
    x = standard_normal(n)
    noise = scenario["noise"] * standard_normal(n)
    intercept_sd = scenario.get("intercept_sd", 0.0)
    if intercept_sd > 0:
        intercepts = normal(scenario.get("intercept_mean", 0.0), intercept_sd, size=scenario["n_groups"])
        eta = intercepts[groups] + slopes[groups] * x
    else:  # the tutorial's model: no intercept (and no draw, so its streams are unchanged)
        intercepts = np.zeros(scenario["n_groups"])
        eta = slopes[groups] * x
    family = LIKELIHOODS[scenario.get("family", DEFAULT_LIKELIHOOD)]
    y = SIMULATORS[family.name](rng, eta, noise, scenario)

    is_outlier = np.zeros(n, dtype=bool)
    if level["count"]:
        is_outlier[n - level["count"] :] = True
        y[is_outlier] = level["value"]

    label = outlier_label(level)
    data = pd.DataFrame(
        {
            "outliers": label,
            "seed": seed,
            "x": x,
            "y": y,
            "group": groups,
            "group_label": groups.astype(str),
            "is_outlier": is_outlier,
            TRIALS: scenario_trials(scenario),
        }
    )[DATASET_COLUMNS]
    truth = Truth(
        scenario=scenario_name,
        seed=seed,
        outliers=label,
        outlier_count=level["count"],
        outlier_value=float(level["value"]),
        rng=scenario["rng"],
        rng_seed=rng_seed,
        n_groups=scenario["n_groups"],
        points_per_group=scenario["points_per_group"],
        minority_points=minority_points,
        minority_group=scenario["n_groups"] - 1,
        # The noise sd of a family that has one; binomial and count data have none.
        noise=float(scenario["noise"]) if family.has_noise else 0.0,
        slope_mean=float(scenario["slope_mean"]),
        slope_sd=float(scenario["slope_sd"]),
        slopes=slopes.tolist(),
        intercept_mean=float(scenario.get("intercept_mean", 0.0)),
        intercept_sd=float(intercept_sd),
        intercepts=intercepts.tolist(),
        family=family.name,
        trials=scenario_trials(scenario),
        overdispersion=float(scenario.get("overdispersion", DEFAULT_OVERDISPERSION)) if OVERDISPERSION in family.parameters else 0.0,
    )
    return data, truth


def simulate_scenario(
    name: str, scenario: dict, levels: dict[str, dict], seeds: list[int], master_seed: int
) -> tuple[list[pd.DataFrame], list[Truth]]:
    """Every dataset of a scenario: outlier levels, then seeds."""
    frames, truths = [], []
    for level in levels.values():
        for seed in seeds:
            data, truth = simulate(name, scenario, level, seed, master_seed)
            frames.append(data)
            truths.append(truth)
    return frames, truths

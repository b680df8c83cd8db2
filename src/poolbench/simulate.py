"""Simulate grouped linear-regression datasets with a minority group and outliers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from poolbench.grid import derive_seed, outlier_label

DATASET_COLUMNS = ["x", "y", "group", "is_outlier"]


@dataclass
class Truth:
    """What generated a dataset: the fits are scored against it."""

    scenario: str
    seed: int
    outliers: str
    outlier_count: int
    outlier_value: float
    rng: str
    rng_seed: int
    n_groups: int
    points_per_group: int
    minority_points: int
    minority_group: int
    noise: float
    slope_mean: float
    slope_sd: float
    slopes: list[float]

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> "Truth":
        return cls(**json.loads(Path(path).read_text()))


def group_index(n_groups: int, points_per_group: int, minority_points: int) -> np.ndarray:
    """Group of each observation, in the tutorial's order: `points_per_group * [0..G-2]`
    (majority groups interleaved) followed by `minority_points * [G-1]`."""
    majority = np.tile(np.arange(n_groups - 1), points_per_group)
    return np.concatenate([majority, np.full(minority_points, n_groups - 1)])


def simulate(
    scenario_name: str,
    scenario: dict,
    level: dict,
    seed: int,
    master_seed: int,
) -> tuple[pd.DataFrame, Truth]:
    """One dataset of a scenario at an outlier level.

    The draws are made in the tutorial's order (slopes, x, noise). With `rng: legacy` they
    come from `np.random.RandomState(seed)`, which for seed 0 replays `np.random.seed(0)`
    bit for bit; otherwise from `default_rng` seeded by master seed, scenario and seed.
    The outlier level is not part of the seed, so all levels share the same clean data.
    """
    groups = group_index(
        scenario["n_groups"], scenario["points_per_group"], scenario["minority_points"]
    )
    n = len(groups)
    if scenario["rng"] == "legacy":
        rng_seed = seed
        legacy = np.random.RandomState(seed)
        slopes = legacy.normal(
            scenario["slope_mean"], scenario["slope_sd"], size=scenario["n_groups"]
        )
        x = legacy.randn(n)
        y = slopes[groups] * x + scenario["noise"] * legacy.randn(n)
    else:
        rng_seed = derive_seed(master_seed, "dataset", scenario_name, seed)
        rng = np.random.default_rng(rng_seed)
        slopes = rng.normal(
            scenario["slope_mean"], scenario["slope_sd"], size=scenario["n_groups"]
        )
        x = rng.standard_normal(n)
        y = slopes[groups] * x + scenario["noise"] * rng.standard_normal(n)

    is_outlier = np.zeros(n, dtype=bool)
    if level["count"]:
        is_outlier[n - level["count"] :] = True
        y[is_outlier] = level["value"]

    data = pd.DataFrame({"x": x, "y": y, "group": groups, "is_outlier": is_outlier})
    truth = Truth(
        scenario=scenario_name,
        seed=seed,
        outliers=outlier_label(level),
        outlier_count=level["count"],
        outlier_value=float(level["value"]),
        rng=scenario["rng"],
        rng_seed=rng_seed,
        n_groups=scenario["n_groups"],
        points_per_group=scenario["points_per_group"],
        minority_points=scenario["minority_points"],
        minority_group=scenario["n_groups"] - 1,
        noise=float(scenario["noise"]),
        slope_mean=float(scenario["slope_mean"]),
        slope_sd=float(scenario["slope_sd"]),
        slopes=slopes.tolist(),
    )
    return data, truth


def write_dataset(data: pd.DataFrame, path: str | Path) -> None:
    # pandas writes floats as their shortest round-trip repr, so the CSV is exact.
    data.to_csv(path, index=False)


def read_dataset(path: str | Path, n_groups: int | None = None) -> pd.DataFrame:
    """Read a dataset CSV exactly, refusing one that a fit could not use."""
    data = pd.read_csv(path, float_precision="round_trip")
    missing = [c for c in DATASET_COLUMNS if c not in data.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {DATASET_COLUMNS}")
    bad = data[DATASET_COLUMNS].isna().any()
    if bad.any():
        raise ValueError(f"{path}: empty or NaN values in column(s) {list(bad[bad].index)}")
    if not np.isfinite(data[["x", "y"]].to_numpy(dtype=float)).all():
        raise ValueError(f"{path}: non-finite values in x or y")
    groups = data["group"]
    if not pd.api.types.is_integer_dtype(groups) or groups.min() < 0:
        raise ValueError(f"{path}: column 'group' must hold non-negative integers")
    if n_groups is not None and groups.max() >= n_groups:
        raise ValueError(f"{path}: group {groups.max()} out of range for {n_groups} groups")
    return data

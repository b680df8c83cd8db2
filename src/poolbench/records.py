"""The columns of poolbench's tables, declared once.

The fit loop writes records with these columns (a failed fit has them too, empty), the
aggregation, the report, the tests and the benchmark import them instead of restating
them. Nothing heavy is imported here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Which fit a row is: the data it saw and the model and sampler settings that fitted it.
IDENTITY = [
    "source", "scenario", "outliers", "outlier_count", "seed", "model", "variant",
    "parameterisation", "likelihood", "prior", "backend", "target_accept",
]
# What generated simulated data (NaN for real data): the axes a study varies.
DESIGN = ["n_groups", "points_per_group", "minority_points", "noise", "outlier_value"]
SETTINGS = ["draws", "tune", "chains", "adaptation", "hdi_prob", "random_seed"]
STATUS = ["status", "error"]
# Cost, not results: differs between otherwise identical runs.
TIMING = ["compile_seconds", "sampling_seconds", "ess_bulk_per_second"]
DIAGNOSTICS = [
    "n_divergent", "divergence_rate", "max_rhat", "min_ess_bulk", "min_ess_tail", "min_bfmi",
    "mean_tree_depth", "max_tree_depth_rate", "step_size",
]
# Estimates of the population parameters (hierarchical terms; NaN where absent).
POPULATION = [
    f"{name}_{stat}"
    for name in ("mu_slope", "sigma_slope", "mu_intercept", "sigma_intercept", "nu", "overdispersion")
    for stat in ("mean", "sd", "hdi_lower", "hdi_upper")
]
# Errors against the simulated truth (NaN for real data).
TRUTH_ERRORS = [
    "slope_rmse", "intercept_rmse", "hdi_coverage", "minority_slope_mean", "minority_bias",
    "minority_abs_error", "mu_slope_error", "sigma_slope_error",
]
# Out-of-sample predictive accuracy (real data only): PSIS-LOO.
LOO = ["elpd_loo", "elpd_loo_se", "p_loo", "n_pareto_k_bad"]
# The verdict, computed at aggregation from DIAGNOSTICS and the config's `trust` block.
VERDICT = ["trusted", "untrusted_because"]
# The model check's inputs (poolbench.metrics): power-scaling sensitivity of each variable
# a user reads, and the prior predictive check's count of group statistics outside.
CHECKED = ("mu_slope", "sigma_slope", "mu_intercept", "sigma_intercept", "common_slope",
           "common_intercept", "slope", "intercept", "noise", "nu", "overdispersion")
SENSITIVITY = [f"{name}_{component}_sensitivity" for name in CHECKED for component in ("prior", "likelihood")]
PRIOR_PREDICTIVE = ["prior_predictive_outside", "prior_predictive_checked"]
# The model verdict, computed at aggregation from SENSITIVITY and PRIOR_PREDICTIVE
# (poolbench.metrics.model_verdict); apart from the sampler's.
DIAGNOSES = [f"{name}_diagnosis" for name in CHECKED]
MODEL_VERDICT = ["model_ok", "model_flags", *DIAGNOSES]

FIT_COLUMNS = (IDENTITY + DESIGN + SETTINGS + STATUS + TIMING + DIAGNOSTICS + POPULATION + TRUTH_ERRORS + LOO
               + SENSITIVITY + PRIOR_PREDICTIVE)

GROUP_COLUMNS = IDENTITY + [
    "group", "group_label", "n_obs", "is_minority",
    "true_slope", "slope_mean", "slope_sd", "slope_hdi_lower", "slope_hdi_upper", "slope_error",
    "hdi_covers_truth",
    "true_intercept", "intercept_mean", "intercept_sd", "intercept_hdi_lower", "intercept_hdi_upper",
    "intercept_error",
    # The prior predictive check: the group's observed mean and sd of y, and the central
    # 99 % of their prior predictive distribution.
    "observed_mean", "observed_sd", "prior_mean_lower", "prior_mean_upper", "prior_sd_lower",
    "prior_sd_upper", "prior_outside",
    # A partially centered model's centeredness lambda_j of each coefficient (poolbench.centering).
    "slope_centeredness", "intercept_centeredness",
]

# Simulation-based calibration: one row per simulation and scalar parameter.
SBC_IDENTITY = ["model", "variant", "parameterisation", "likelihood", "prior", "backend",
                "scenario", "target_accept", "simulation"]
RANK_COLUMNS = SBC_IDENTITY + ["parameter", "rank", "n_ranks", "true_value"]
SBC_FIT_COLUMNS = SBC_IDENTITY + SETTINGS + STATUS + TIMING + DIAGNOSTICS

_TEXT = {"source", "scenario", "outliers", "model", "variant", "parameterisation", "likelihood",
         "prior", "backend", "adaptation", "status", "error", "group_label", "parameter", "untrusted_because",
         "model_flags", *DIAGNOSES}
_INTEGER = {"seed", "outlier_count", "draws", "tune", "chains", "random_seed", "n_divergent",
            "group", "n_obs", "simulation", "rank", "n_ranks", *PRIOR_PREDICTIVE}
_BOOLEAN = {"is_minority", "hdi_covers_truth", "trusted", "prior_outside", "model_ok"}


def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """A table with exactly `columns`, in order, whatever the rows hold (a failed fit's
    record lacks its results; an empty job has no rows): the readers never meet a
    missing column. Integer columns holding gaps become floats, as pandas must."""
    table = pd.DataFrame(rows).reindex(columns=columns)
    for column in columns:
        if column in _TEXT:
            table[column] = table[column].astype(object).where(table[column].notna(), "")
        elif column in _BOOLEAN:
            if table[column].notna().all():
                table[column] = table[column].astype(bool)
        elif column in _INTEGER and table[column].notna().all():
            table[column] = table[column].astype(np.int64)
        else:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    return table

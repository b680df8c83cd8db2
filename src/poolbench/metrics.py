"""Per-fit diagnostics and errors against the truth, computed with ArviZ."""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from poolbench.grid import MU, SIGMA, SLOPE
from poolbench.simulate import Truth

SAMPLE_DIMS = ("chain", "draw")
# Sample-stat names differ between samplers; each tuple lists the aliases of one statistic.
TREE_DEPTH = ("depth", "tree_depth")
MAX_DEPTH_HIT = ("maxdepth_reached", "reached_max_treedepth")
# What a stored posterior keeps of the sampler's statistics: what ArviZ's diagnostics and
# plots read (divergences, energy, tree depth, step size, acceptance, log density), under
# nutpie's and PyMC's names. nutpie's adaptation internals (mass-matrix updates, Fisher
# distances, divergence positions) are left out: they were a third of each NetCDF write.
KEPT_SAMPLE_STATS = (
    "diverging", "energy", "energy_error", "n_steps", "step_size",
    *TREE_DEPTH, *MAX_DEPTH_HIT, "mean_tree_accept", "acceptance_rate", "logp", "lp",
)


def _stat(sample_stats: xr.Dataset, aliases: tuple[str, ...]) -> xr.DataArray | None:
    return next((sample_stats[a] for a in aliases if a in sample_stats), None)


def _over_all_variables(diagnostic: xr.DataTree, reduce) -> float:
    """`reduce` (np.nanmin or np.nanmax) over every element of every posterior variable."""
    values = [var.values.ravel() for var in diagnostic.to_dataset().data_vars.values()]
    return float(reduce(np.concatenate(values)))


def sampler_diagnostics(tree: xr.DataTree) -> dict:
    """Divergences, R-hat, ESS, tree depth and step size of one fit."""
    stats = tree["sample_stats"].to_dataset()
    n_draws = stats.sizes["chain"] * stats.sizes["draw"]
    n_divergent = int(stats["diverging"].sum())
    # The three diagnostics the tables keep, not az.summary's five: MCSEs would double the cost.
    depth = _stat(stats, TREE_DEPTH)
    max_depth_hit = _stat(stats, MAX_DEPTH_HIT)
    return {
        "n_divergent": n_divergent,
        "divergence_rate": n_divergent / n_draws,
        "max_rhat": _over_all_variables(az.rhat(tree), np.nanmax),
        "min_ess_bulk": _over_all_variables(az.ess(tree, method="bulk"), np.nanmin),
        "min_ess_tail": _over_all_variables(az.ess(tree, method="tail"), np.nanmin),
        "mean_tree_depth": float(depth.mean()) if depth is not None else np.nan,
        "max_tree_depth_rate": (
            float(max_depth_hit.mean()) if max_depth_hit is not None else np.nan
        ),
        "step_size": float(stats["step_size"].mean()),
    }


def _interval(tree: xr.DataTree, var: str, hdi_prob: float) -> tuple:
    posterior = tree["posterior"][var]
    hdi = az.hdi(tree, prob=hdi_prob, var_names=[var])[var]
    return (
        posterior.mean(SAMPLE_DIMS),
        posterior.std(SAMPLE_DIMS),
        hdi.sel(ci_bound="lower"),
        hdi.sel(ci_bound="upper"),
    )


def group_estimates(tree: xr.DataTree, truth: Truth, hdi_prob: float) -> list[dict]:
    """One row per group: posterior mean, sd, HDI, error vs true slope, HDI coverage."""
    mean, sd, lower, upper = _interval(tree, SLOPE, hdi_prob)
    rows = []
    for g, true_slope in enumerate(truth.slopes):
        lo, hi = float(lower.isel(group=g)), float(upper.isel(group=g))
        est = float(mean.isel(group=g))
        rows.append(
            {
                "group": g,
                "is_minority": g == truth.minority_group,
                "true_slope": true_slope,
                "slope_mean": est,
                "slope_sd": float(sd.isel(group=g)),
                "slope_hdi_lower": lo,
                "slope_hdi_upper": hi,
                "slope_error": est - true_slope,
                "hdi_covers_truth": lo <= true_slope <= hi,
            }
        )
    return rows


def estimate_summary(groups: list[dict], tree: xr.DataTree, truth: Truth, hdi_prob: float) -> dict:
    """Fit-level errors: group-slope RMSE ("shrinkage error"), minority error, mu and sigma."""
    errors = np.array([row["slope_error"] for row in groups])
    minority = groups[truth.minority_group]
    summary = {
        "slope_rmse": float(np.sqrt(np.mean(errors**2))),
        "minority_slope_mean": minority["slope_mean"],
        "minority_error": minority["slope_error"],
        "hdi_coverage": float(np.mean([row["hdi_covers_truth"] for row in groups])),
    }
    for var, label in ((MU, "mu_slope"), (SIGMA, "sigma_slope")):
        if var in tree["posterior"]:
            mean, sd, lower, upper = _interval(tree, var, hdi_prob)
            summary |= {
                f"{label}_mean": float(mean),
                f"{label}_sd": float(sd),
                f"{label}_hdi_lower": float(lower),
                f"{label}_hdi_upper": float(upper),
            }
        else:
            summary |= {f"{label}_{k}": np.nan for k in ("mean", "sd", "hdi_lower", "hdi_upper")}
    summary["mu_slope_error"] = summary["mu_slope_mean"] - truth.slope_mean
    return summary

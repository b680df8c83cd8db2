"""Per-fit diagnostics, estimates, errors against the truth, PSIS-LOO and the trust
verdict, computed with ArviZ. No PyMC here."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from poolbench import grid, records, upstream
from poolbench.data import Truth
from poolbench.variants import (
    INTERCEPT, MU, NU, OBSERVED, OVERDISPERSION, SIGMA, SLOPE, VARIANTS, population_mean, population_sd,
)

upstream.drop_unloaded_lazy_proxies()  # else SciPy loads JAX here (docs/upstream.md)

SAMPLE_DIMS = ("chain", "draw")
# Sample-stat names differ between samplers; each tuple lists the aliases of one statistic.
TREE_DEPTH = ("depth", "tree_depth")
MAX_DEPTH_HIT = ("maxdepth_reached", "reached_max_treedepth")
# The tree depth limit of every backend's NUTS at the settings poolbench uses (nutpie's
# `maxdepth`, PyMC's and NumPyro's `max_tree_depth`: 10). NumPyro reports the depth but not
# whether the limit was hit; it is read from the depth then. PyMC reports NumPyro's depth as
# floor(log2(steps)) + 1 (Stan's convention), so a tree that U-turned during its 10th
# doubling also counts: a NumPyro fit may fail `max_tree_depth_share` slightly sooner.
MAX_TREE_DEPTH = 10
# What a stored posterior keeps of the sampler's statistics: what the diagnostics and
# ArviZ's divergence and energy plots read (divergences, energy, tree depth, step size),
# under nutpie's and PyMC's names. The rest (adaptation internals, acceptance, log density)
# is left out: each variable costs ~3 ms of every NetCDF write (docs/performance.md).
KEPT_SAMPLE_STATS = ("diverging", "energy", "step_size", *TREE_DEPTH, *MAX_DEPTH_HIT)
# Population parameters reported per fit, by their column prefix.
POPULATION_PARAMETERS = {
    "mu_slope": MU,
    "sigma_slope": SIGMA,
    "mu_intercept": population_mean(INTERCEPT),
    "sigma_intercept": population_sd(INTERCEPT),
    "nu": NU,
    "overdispersion": OVERDISPERSION,
}
# Pareto k above this makes a PSIS-LOO term unreliable (Vehtari et al. 2024).
PARETO_K_BAD = 0.7


def _stat(sample_stats: xr.Dataset, aliases: tuple[str, ...]) -> xr.DataArray | None:
    return next((sample_stats[a] for a in aliases if a in sample_stats), None)


def _draws_matrix(posterior: xr.Dataset) -> np.ndarray:
    """Every element of every posterior variable as a column of one (chain, draw, element)
    array: ArviZ's array layer then computes a diagnostic of all of them in one call, where
    its xarray layer makes one call per variable (the same numbers; ~10 % less time: the
    cost is the per-column computation itself, docs/performance.md)."""
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    columns = [var.transpose("chain", "draw", ...).values.reshape(chains, draws, -1).astype(float)
               for var in posterior.data_vars.values()]
    return np.concatenate(columns, axis=2)


def sampler_diagnostics(tree: xr.DataTree) -> dict:
    """Divergences, R-hat, ESS, E-BFMI, tree depth and step size of one fit."""
    stats = tree["sample_stats"].to_dataset()
    n_draws = stats.sizes["chain"] * stats.sizes["draw"]
    n_divergent = int(stats["diverging"].sum())
    draws = _draws_matrix(tree["posterior"].to_dataset())
    # The diagnostics the verdict needs, not az.summary's: its MCSEs would double the cost.
    depth = _stat(stats, TREE_DEPTH)
    max_depth_hit = _stat(stats, MAX_DEPTH_HIT)
    if max_depth_hit is None and depth is not None:
        max_depth_hit = depth >= MAX_TREE_DEPTH
    return {
        "n_divergent": n_divergent,
        "divergence_rate": n_divergent / n_draws,
        "max_rhat": float(np.nanmax(az.rhat(draws, chain_axis=0, draw_axis=1))),
        "min_ess_bulk": float(np.nanmin(az.ess(draws, chain_axis=0, draw_axis=1, method="bulk"))),
        # The tail quantiles ArviZ's xarray layer takes by default (its `stats.ci_prob`).
        "min_ess_tail": float(np.nanmin(az.ess(draws, chain_axis=0, draw_axis=1, method="tail",
                                               prob=az.rcParams["stats.ci_prob"]))),
        "min_bfmi": float(np.min(az.bfmi(tree).to_dataset()["energy"].values)),
        "mean_tree_depth": float(depth.mean()) if depth is not None else np.nan,
        "max_tree_depth_rate": float(max_depth_hit.mean()) if max_depth_hit is not None else np.nan,
        "step_size": float(stats["step_size"].mean()),
    }


def _intervals(tree: xr.DataTree, names: list[str], hdi_prob: float) -> dict[str, tuple]:
    """Posterior mean, sd and HDI bounds of each variable, in one ArviZ call."""
    posterior = tree["posterior"].to_dataset()[names]
    hdi = az.hdi(tree, prob=hdi_prob, var_names=names).to_dataset()
    mean, sd = posterior.mean(SAMPLE_DIMS), posterior.std(SAMPLE_DIMS)
    return {
        name: (mean[name], sd[name], hdi[name].sel(ci_bound="lower"), hdi[name].sel(ci_bound="upper"))
        for name in names
    }


def estimates(
    tree: xr.DataTree,
    variant: str,
    hdi_prob: float,
    group_sizes: np.ndarray,
    group_labels: list[str],
    truth: Truth | None,
) -> tuple[list[dict], dict]:
    """Per group: every scored coefficient's mean, sd, HDI (and error against the truth);
    per fit: the population parameters' and, with a truth, the errors that summarise it."""
    scored = list(VARIANTS[variant].scored)
    population = [name for name in POPULATION_PARAMETERS.values() if name in tree["posterior"]]
    intervals = _intervals(tree, scored + population, hdi_prob)
    rows = []
    for g, (size, label) in enumerate(zip(group_sizes, group_labels)):
        row = {"group": g, "group_label": label, "n_obs": int(size)}
        if truth is not None:
            row["is_minority"] = g == truth.minority_group
        for coefficient in scored:
            mean, sd, lower, upper = (float(v.isel(group=g)) for v in intervals[coefficient])
            row |= {
                f"{coefficient}_mean": mean,
                f"{coefficient}_sd": sd,
                f"{coefficient}_hdi_lower": lower,
                f"{coefficient}_hdi_upper": upper,
            }
            if truth is not None:
                true_value = (truth.slopes if coefficient == SLOPE else _intercepts(truth))[g]
                row |= {f"true_{coefficient}": true_value, f"{coefficient}_error": mean - true_value}
                if coefficient == SLOPE:
                    row["hdi_covers_truth"] = lower <= true_value <= upper
        rows.append(row)
    summary = {}
    for column, name in POPULATION_PARAMETERS.items():
        if name in intervals:
            mean, sd, lower, upper = intervals[name]
            summary |= {
                f"{column}_mean": float(mean),
                f"{column}_sd": float(sd),
                f"{column}_hdi_lower": float(lower),
                f"{column}_hdi_upper": float(upper),
            }
    if truth is not None:
        summary |= truth_errors(rows, summary, truth, scored)
    return rows, summary


def _intercepts(truth: Truth) -> list[float]:
    return truth.intercepts or [0.0] * truth.n_groups


def truth_errors(rows: list[dict], population: dict, truth: Truth, scored: list[str]) -> dict:
    """Fit-level errors: group-slope RMSE ("shrinkage error"), the minority group's error as
    an absolute error (seeds cannot cancel it) and as a bias, and the population mean and
    spread against the scenario's slope_mean and slope_sd."""
    slope_errors = np.array([row["slope_error"] for row in rows])
    minority = rows[truth.minority_group]
    out = {
        "slope_rmse": float(np.sqrt(np.mean(slope_errors**2))),
        "hdi_coverage": float(np.mean([row["hdi_covers_truth"] for row in rows])),
        "minority_slope_mean": minority["slope_mean"],
        "minority_bias": minority["slope_error"],
        "minority_abs_error": abs(minority["slope_error"]),
        "mu_slope_error": population.get("mu_slope_mean", np.nan) - truth.slope_mean,
        "sigma_slope_error": population.get("sigma_slope_mean", np.nan) - truth.slope_sd,
    }
    if INTERCEPT in scored:
        intercept_errors = np.array([row["intercept_error"] for row in rows])
        out["intercept_rmse"] = float(np.sqrt(np.mean(intercept_errors**2)))
    return out


def pointwise_loo(tree: xr.DataTree):
    """PSIS-LOO with its pointwise terms, as ArviZ's `compare` computes it from a posterior,
    without the draws x observations log weights, which `compare` does not read. `compare`
    deep-copies what it is given: given these instead of posteriors, a comparison of radon's
    8 models holds ~2 MB instead of every model's log-likelihood twice."""
    loo = az.loo(tree, var_name=OBSERVED, pointwise=True)
    loo.log_weights = None
    return loo


# What ArviZ's `compare` reads of a PSIS-LOO result besides its pointwise terms.
LOO_FIELDS = ("elpd", "se", "p", "n_samples", "n_data_points", "scale", "warning", "good_k")


def loo_table(loo) -> pd.DataFrame:
    """A `pointwise_loo` result as a table, a row per observation, from which `loo_from_table`
    rebuilds it: the fit job stores it beside the posterior (the log-likelihood it came from
    is not kept), and the comparison rebuilds the result from it instead of computing LOO."""
    frame = pd.DataFrame({"elpd_i": np.ravel(loo.elpd_i), "pareto_k": np.ravel(loo.pareto_k)})
    return frame.assign(**{field: getattr(loo, field) for field in LOO_FIELDS})


def loo_from_table(frame: pd.DataFrame):
    """The PSIS-LOO result `loo_table` stored, as ArviZ's `compare` takes it."""
    return az.ELPDDataLOO(
        **{field: frame[field].tolist()[0] for field in LOO_FIELDS},
        elpd_i=xr.DataArray(frame["elpd_i"].to_numpy(), dims="observation"),
        pareto_k=xr.DataArray(frame["pareto_k"].to_numpy(), dims="observation"),
    )


def loo_summary(loo) -> dict:
    """The summary of a fit's PSIS-LOO (a `pointwise_loo` result) that joins its record."""
    return {
        "elpd_loo": float(loo.elpd),
        "elpd_loo_se": float(loo.se),
        "p_loo": float(loo.p),
        # A NaN Pareto k (a stuck chain's tied draws) is as unreliable as a large one;
        # ArviZ 1.3 counts it as good (docs/upstream.md).
        "n_pareto_k_bad": int((~(np.asarray(loo.pareto_k) <= PARETO_K_BAD)).sum()),
    }


# The checks of the trust verdict, by the name `untrusted_because` lists them under.
TRUST_CHECKS = ("failed", "rhat", "ess_bulk", "ess_tail", "divergences", "bfmi", "tree_depth")


def trust_verdict(fits: pd.DataFrame, trust: dict) -> pd.DataFrame:
    """`trusted` and `untrusted_because` (the failed checks, comma-separated) for every fit,
    from its diagnostics and the config's `trust` thresholds. A missing diagnostic fails
    its check: what cannot be shown good is not trusted."""
    min_ess = trust["min_ess_per_chain"] * fits["chains"]
    failing = pd.DataFrame(
        {
            "failed": fits["status"] != "ok",
            "rhat": ~(fits["max_rhat"] < trust["max_rhat"]),
            "ess_bulk": ~(fits["min_ess_bulk"] >= min_ess),
            "ess_tail": ~(fits["min_ess_tail"] >= min_ess),
            "divergences": ~(fits["n_divergent"] <= trust["max_divergences"]),
            "bfmi": ~(fits["min_bfmi"] >= trust["min_bfmi"]),
            "tree_depth": ~(fits["max_tree_depth_rate"] <= trust["max_tree_depth_share"]),
        },
        index=fits.index,
    )[list(TRUST_CHECKS)]
    ok = fits["status"] == "ok"
    # A failed fit has no diagnostics: it is untrusted because it failed, nothing more.
    failing.loc[~ok, [c for c in TRUST_CHECKS if c != "failed"]] = False
    reasons = failing.apply(lambda row: ",".join(row.index[row]), axis=1) if len(fits) else pd.Series(dtype=str)
    return fits.assign(trusted=~failing.any(axis=1), untrusted_because=reasons.astype(str))


# Model checks (issue #25): power-scaling sensitivity (Kallioinen et al. 2023) of the
# variables a user reads. A sensitivity at or above this (the authors' and ArviZ's
# `psense_summary` threshold) means power-scaling the prior (or the likelihood) by
# 0.99..1.01 moves that posterior noticeably.
SENSITIVITY_THRESHOLD = 0.05
# A group-level spread is estimated from as many values as there are groups: with few
# groups its prior always shows (measured on the hard regime, 8 groups, priors that follow
# the data: 0.04-0.05; the tutorial's Exp(13) there: 0.36-0.45). Up to this prior
# sensitivity a spread is "weakly identified by G groups", a note, not a failed check.
WEAK_SPREAD_SENSITIVITY = 0.2
# The variables checked, each a column prefix: population means and spreads, pooled
# coefficients, unpooled per-group coefficients (the largest sensitivity over groups),
# the noise and Student-t's nu.
CHECKED_VARIABLES = records.CHECKED
CONFLICT, PRIOR_DOMINATED, WEAKLY_IDENTIFIED = "prior-data conflict", "prior-dominated", "weakly identified"
# The prior predictive check: the observed mean and sd of y in each group against the
# central PRIOR_PREDICTIVE_PROB of their prior predictive distribution.
PRIOR_PREDICTIVE_PROB = 0.99
PRIOR_PREDICTIVE_DRAWS = 1000


def prior_sensitivity(posterior: xr.Dataset, log_prior: np.ndarray, log_likelihood: np.ndarray,
                      names: tuple[str, ...]) -> dict:
    """`{name}_prior_sensitivity` and `{name}_likelihood_sensitivity` of each variable in
    `names` (the largest over its groups for a per-group one), by ArviZ's power-scaling
    (`arviz_stats.psense`), from per-draw sums of the log prior and the log-likelihood
    (`poolbench.densities.LogDensities`): nothing per observation is needed or kept."""
    from arviz_stats import psense

    names = [name for name in names if name in posterior]
    tree = xr.DataTree.from_dict({
        "posterior": posterior[names],
        "log_prior": xr.Dataset({"prior": (SAMPLE_DIMS, log_prior)}),
        "log_likelihood": xr.Dataset({OBSERVED: (SAMPLE_DIMS, log_likelihood)}),
    })
    out = {}
    for component in ("prior", "likelihood"):
        try:
            values = psense(tree, var_names=names, group=component)
        except ValueError as exc:
            # arviz_stats raises where the largest log weights are all equal: draws that did
            # not move (a stuck chain; seen in a centered binomial fit). Nothing can be said
            # of such a fit's sensitivity (NaN: no diagnosis); its sampler verdict already
            # says it is not to be trusted.
            if "tail values are the same" not in str(exc):
                raise
            out |= {f"{name}_{component}_sensitivity": np.nan for name in names}
            continue
        for name in names:
            out[f"{name}_{component}_sensitivity"] = float(np.nanmax(np.asarray(values[name])))
    return out


def _diagnosis(name: str, prior: float, likelihood: float) -> str:
    if not prior >= SENSITIVITY_THRESHOLD:  # NaN: nothing to say
        return ""
    if name.startswith("sigma_") and prior < WEAK_SPREAD_SENSITIVITY:
        return WEAKLY_IDENTIFIED
    if likelihood >= SENSITIVITY_THRESHOLD:
        return CONFLICT
    # Data without outliers cannot say how heavy the tails are: Student-t's nu then
    # follows its prior, which says nothing against the rest of the model.
    return WEAKLY_IDENTIFIED if name == NU else PRIOR_DOMINATED


def model_verdict(fits: pd.DataFrame) -> pd.DataFrame:
    """The model check of every fit, apart from the sampler's `trusted`: per checked
    variable its diagnosis (`{name}_diagnosis`: prior-data conflict when both the prior
    and the likelihood are sensitive, prior-dominated when only the prior is, weakly
    identified for a group-level spread with moderate prior sensitivity), then `model_ok`
    (no conflict, no prior domination, prior predictive check passed) and `model_flags`,
    readable ("; "-separated)."""
    flags = [[] for _ in range(len(fits))]
    bad = np.zeros(len(fits), dtype=bool)
    out = {}
    for name in CHECKED_VARIABLES:
        prior = fits.get(f"{name}_prior_sensitivity", pd.Series(np.nan, index=fits.index)).to_numpy(float)
        likelihood = fits.get(f"{name}_likelihood_sensitivity", pd.Series(np.nan, index=fits.index)).to_numpy(float)
        diagnoses = [_diagnosis(name, p, lik) for p, lik in zip(prior, likelihood)]
        out[f"{name}_diagnosis"] = diagnoses
        for i, diagnosis in enumerate(diagnoses):
            if diagnosis == WEAKLY_IDENTIFIED:
                groups = fits["n_groups"].iloc[i] if "n_groups" in fits else np.nan
                by = f" by {int(groups)} groups" if name.startswith("sigma_") and groups == groups else ""
                flags[i].append(f"{name}: {WEAKLY_IDENTIFIED}{by} (prior {prior[i]:.2f})")
            elif diagnosis:
                bad[i] = True
                flags[i].append(f"{name}: {diagnosis} (prior {prior[i]:.2f}, likelihood {likelihood[i]:.2f})")
    outside = fits.get("prior_predictive_outside", pd.Series(np.nan, index=fits.index)).to_numpy(float)
    checked = fits.get("prior_predictive_checked", pd.Series(np.nan, index=fits.index)).to_numpy(float)
    for i, (k, n) in enumerate(zip(outside, checked)):
        if k > 0:
            bad[i] = True
            flags[i].append(f"prior predictive: {int(k)} of {int(n)} group statistics outside its "
                            f"central {PRIOR_PREDICTIVE_PROB:.0%}")
    ok = fits["status"].to_numpy() == "ok"
    # In the order records.MODEL_VERDICT declares.
    return fits.assign(model_ok=ok & ~bad, model_flags=["; ".join(f) for f in flags], **out)


def prior_predictive_check(y: np.ndarray, group_idx: np.ndarray, n_groups: int, replicated) -> list[dict]:
    """Per group: the observed mean and sd of y and the central PRIOR_PREDICTIVE_PROB of
    their prior predictive distribution (`replicated`: an iterable of prior predictive y),
    and whether the observed value of either lies outside. A group of one row has no sd. A
    replicate that could not be drawn (None: rates beyond numpy's, `PriorSimulator.replicates`)
    counts as a mean larger than any observed, with no sd."""
    def stats(values):
        count = np.bincount(group_idx, minlength=n_groups)
        total = np.bincount(group_idx, weights=values, minlength=n_groups)
        mean = total / np.maximum(count, 1)
        squares = np.bincount(group_idx, weights=(values - mean[group_idx]) ** 2, minlength=n_groups)
        sd = np.where(count > 1, np.sqrt(squares / np.maximum(count - 1, 1)), np.nan)
        return np.where(count > 0, mean, np.nan), sd

    beyond = (np.full(n_groups, np.finfo(float).max), np.full(n_groups, np.nan))
    draws = [beyond if values is None else stats(np.asarray(values, dtype=float)) for values in replicated]
    means, sds = np.array([d[0] for d in draws]), np.array([d[1] for d in draws])
    tail = (1 - PRIOR_PREDICTIVE_PROB) / 2
    observed_mean, observed_sd = stats(np.asarray(y, dtype=float))
    rows = []
    for g in range(n_groups):
        row = {"group": g, "observed_mean": float(observed_mean[g]), "observed_sd": float(observed_sd[g])}
        for stat, values, observed in (("mean", means[:, g], observed_mean[g]), ("sd", sds[:, g], observed_sd[g])):
            finite = values[np.isfinite(values)]
            lower, upper = (np.quantile(finite, [tail, 1 - tail]) if len(finite) and observed == observed
                            else (np.nan, np.nan))
            row |= {f"prior_{stat}_lower": float(lower), f"prior_{stat}_upper": float(upper),
                    f"_{stat}_outside": bool(observed < lower or observed > upper)}
        row["prior_outside"] = bool(row.pop("_mean_outside") | row.pop("_sd_outside"))
        rows.append(row)
    return rows


# A calibration cell is miscalibrated when one of its parameters' uniformity p-values falls
# below this level divided by the number of parameters tested in the cell (Bonferroni).
CALIBRATION_ALPHA = 0.05
CALIBRATION_CELL = ["model", "variant", "parameterisation", "likelihood", "prior", "backend", "scenario", "target_accept"]


def calibration(rank_table: pd.DataFrame, sbc_fits: pd.DataFrame) -> pd.DataFrame:
    """Per cell and parameter: the ECDF-PIT uniformity test's p-value (ArviZ, `pot_c`), the
    direction of any departure, and the share of untrusted simulation fits.

    Ranks become PIT values (rank + 0.5) / (n_ranks + 1). p-values are per parameter; a
    cell tests several, so the verdict uses Bonferroni: miscalibrated when any p-value is
    below CALIBRATION_ALPHA / (parameters in the cell)."""
    from arviz_stats.base import array_stats

    cell = CALIBRATION_CELL
    rows = []
    trust = sbc_fits.groupby(cell, dropna=False)["trusted"].agg(["mean", "size"]).rename(
        columns={"mean": "share_trusted", "size": "n_simulations"})
    for keys, table in rank_table.groupby(cell + ["parameter"], sort=False, dropna=False):
        pit = (table["rank"].to_numpy() + 0.5) / (table["n_ranks"].to_numpy() + 1)
        p_value = float(array_stats.uniformity_test(pit, axis=-1, method="pot_c")[0])
        rows.append(dict(zip(cell + ["parameter"], keys)) | {
            "n_ranked": len(pit),
            "p_value": p_value,
            "pit_mean": float(pit.mean()),
            "pit_var": float(pit.var()),
        })
    table = pd.DataFrame(rows, columns=cell + ["parameter", "n_ranked", "p_value", "pit_mean", "pit_var"])
    tested = table.groupby(cell, dropna=False)["parameter"].transform("size")
    table["alpha_bonferroni"] = CALIBRATION_ALPHA / tested
    table["miscalibrated"] = table["p_value"] < table["alpha_bonferroni"]
    table["departure"] = [departure(r) if r.miscalibrated else "" for r in table.itertuples()]
    return table.join(trust, on=cell) if len(table) else table.assign(share_trusted=np.nan, n_simulations=0)


def departure(row) -> str:
    """What a miscalibrated parameter's PIT values say about its posteriors. Uniform PIT
    values have mean 1/2 and variance 1/12."""
    if abs(row.pit_mean - 0.5) > 0.1:
        # Truth mostly above the draws: the posteriors sit too low (and vice versa).
        return "biased low (posteriors below the truth)" if row.pit_mean > 0.5 else "biased high (posteriors above the truth)"
    if row.pit_var > 1 / 12:
        return "under-dispersed (posteriors too narrow)"
    return "over-dispersed (posteriors too wide)"


def pit_tree(ranks: pd.DataFrame) -> xr.DataTree:
    """A calibration cell's PIT values, (rank + 0.5) / (n_ranks + 1), as ArviZ's
    `prior_sbc` group: a variable per parameter with dims (chain=1, draw=simulation)."""
    pit = ranks.assign(pit=(ranks["rank"] + 0.5) / (ranks["n_ranks"] + 1))
    wide = pit.pivot_table(index="simulation", columns="parameter", values="pit", sort=False)
    return xr.DataTree.from_dict(
        {"prior_sbc": xr.Dataset({name: (("chain", "draw"), wide[name].to_numpy()[None]) for name in wide})}
    )


COMPARISON_COLUMNS = [
    "dataset", "model", "likelihood", "prior", "backend", "trusted", "untrusted_because", "rank", "elpd_loo",
    "elpd_loo_se", "elpd_diff", "elpd_diff_se", "p_loo", "weight", "n_pareto_k_bad",
    "n_obs", "pareto_k_threshold", "n_pareto_k_high", "loo_reliable", "not_ranked_because", "model_ok", "model_flags",
]


def loo_reliability(loo) -> dict:
    """Whether a fit's PSIS-LOO (a `pointwise_loo` or `loo_from_table` result) can be
    trusted: none of its Pareto k above ArviZ's `good_k` for its number of draws
    (min(1 - 1/log10(S), 0.7), the threshold ArviZ's own warning and `compare` use). A NaN
    k counts as high (docs/upstream.md)."""
    k = np.ravel(np.asarray(loo.pareto_k, dtype=float))
    threshold = float(loo.good_k) if loo.good_k is not None else PARETO_K_BAD
    high = int((~(k <= threshold)).sum())
    return {"n_obs": int(k.size), "pareto_k_threshold": threshold, "n_pareto_k_high": high, "loo_reliable": high == 0}


def loo_unreliable_because(row: dict) -> str:
    return (f"PSIS-LOO unreliable: {row['n_pareto_k_high']} of {row['n_obs']} Pareto k > "
            f"{row['pareto_k_threshold']:.2f}")


def compare_real(fits: pd.DataFrame, posteriors: dict, backend: str) -> pd.DataFrame:
    """Per real data set: ArviZ's PSIS-LOO comparison (stacking weights, ELPD differences
    with their standard errors) of the trusted fits at the highest target_accept whose
    PSIS-LOO is reliable (`loo_reliability`). The others are listed, unranked, with the
    reason (`not_ranked_because`): untrusted (and why), or PSIS-LOO unreliable (how many
    Pareto k are too high): an ELPD estimated from failing importance sampling would crown
    a model on a number that means nothing. `posteriors`: each fit's posterior (DataTree)
    or its PSIS-LOO result (`pointwise_loo`, `loo_from_table`), keyed
    'dataset/model/likelihood/prior', all sampled by `backend` (the config's first): the
    comparison lists and ranks that backend's fits, one row per model."""
    real = fits[(fits["source"] == "real") & (fits["backend"] == backend)]
    loos = {label: pointwise_loo(value) if isinstance(value, xr.DataTree) else value for label, value in posteriors.items()}
    rows = []
    # dropna=False: a data set may be named 'NA' or 'None'; no name may vanish.
    for dataset, fits_here in real.groupby("scenario", sort=False, dropna=False):
        cell = fits_here[np.isclose(fits_here["target_accept"], fits_here["target_accept"].max())]
        ranked = {}
        for fit in cell.itertuples():
            label = grid.real_fit_label(dataset, fit.model, fit.likelihood, fit.prior)
            row = {"dataset": dataset, "model": fit.model, "likelihood": fit.likelihood, "prior": fit.prior, "backend": backend,
                   "trusted": bool(fit.trusted), "untrusted_because": fit.untrusted_because,
                   "elpd_loo": fit.elpd_loo, "elpd_loo_se": fit.elpd_loo_se, "p_loo": fit.p_loo,
                   "n_pareto_k_bad": fit.n_pareto_k_bad, "loo_reliable": False,
                   # The model check travels with the ranking: a ranked fit may follow its prior.
                   "model_ok": getattr(fit, "model_ok", np.nan), "model_flags": getattr(fit, "model_flags", "")}
            if label in loos:
                row |= loo_reliability(loos[label])
            if not fit.trusted:
                row["not_ranked_because"] = f"untrusted: {fit.untrusted_because}"
            elif label not in loos:
                row["not_ranked_because"] = "no PSIS-LOO"
            elif not row["loo_reliable"]:
                row["not_ranked_because"] = loo_unreliable_because(row)
            else:
                row["not_ranked_because"] = ""
                ranked[label] = row
            rows.append(row)
        if len(ranked) >= 2:
            compared = az.compare({label: loos[label] for label in ranked}, method="stacking",
                                  var_name=OBSERVED, round_to="none")
            for label, result in compared.iterrows():
                ranked[label] |= {"rank": int(result["rank"]), "elpd_diff": float(result["elpd_diff"]),
                                  "elpd_diff_se": float(result["dse"]), "weight": float(result["weight"])}
        elif len(ranked) == 1:
            next(iter(ranked.values())).update(rank=0, elpd_diff=0.0, elpd_diff_se=0.0, weight=1.0)
    table = pd.DataFrame(rows).reindex(columns=COMPARISON_COLUMNS)
    table["loo_reliable"] = table["loo_reliable"].astype(bool)
    table["not_ranked_because"] = table["not_ranked_because"].fillna("").astype(str)
    table["model_flags"] = table["model_flags"].fillna("").astype(str)
    return table.sort_values(["dataset", "rank"], na_position="last", kind="stable").reset_index(drop=True)

"""How far each group's coefficient is centered: the partial and mixed parameterisations.

A hierarchical coefficient theta_j ~ N(mu, sigma) can be sampled centered (theta_j itself)
or non-centered (mu + sigma * z_j). Partial centering (Papaspiliopoulos, Roberts & Sköld
2007) interpolates per group with its centeredness lambda_j in [0, 1]:

    theta~_j ~ N(lambda_j * mu, sigma ** lambda_j),
    theta_j  = mu + sigma ** (1 - lambda_j) * (theta~_j - lambda_j * mu),

centered at lambda = 1, non-centered at 0, and theta_j ~ N(mu, sigma) for every lambda (the
posterior is the same; only the geometry the sampler sees changes). For a normal hierarchy
the efficient choice is

    w_j = tau^2 I_j / (tau^2 I_j + sigma_y^2),

the share of group j's posterior precision that comes from its data: I_j is its
information on the coefficient (n_j for an intercept, sum of x^2 over the group for a
slope), tau the spread of the coefficient over groups and sigma_y the noise. `partial`
uses lambda_j = w_j, `mixed` rounds it (centered where w_j >= 1/2). tau and sigma_y come
from a deterministic pilot (`pilot`), documented in config/README.md ("Partial
centering"). Nothing here imports PyMC.
"""

from __future__ import annotations

import numpy as np

from poolbench.priors import Y_CENTER, coefficient_unit, on_grid
from poolbench.variants import (
    DATA_RULE, HIERARCHICAL, INTERCEPT, LEARNED, LIKELIHOODS, LOG_LINK, LOGIT_LINK, MIXED, PARTIAL, TRIALS, VARIANTS,
    prior_key, spread_prior,
)

# The parameterisations whose centeredness is computed here, from the data.
FROM_DATA = (PARTIAL, MIXED)
# Where `mixed` centers a group: its efficient centeredness at least this.
MIXED_THRESHOLD = 0.5


def centeredness_name(coefficient: str) -> str:
    """The pm.Data name (and the groups table's column) of a coefficient's lambda_j."""
    return f"{coefficient}_centeredness"


def working_response(arrays: dict, likelihood: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(z, weights, noise_known): the data as a normal regression on the link's scale.

    The identity link: z = y, weight 1, the noise to be estimated. A link family: one
    Newton step of its GLM from the pooled rate (iteratively reweighted least squares'
    first step), z = eta + (y - mu) / (dmu/deta) with weight (dmu/deta)^2 / Var(y), whose
    noise is 1 by construction. The pooled rate is shrunk by half an observation (no
    infinite logit or log where every trial succeeds or no count is seen)."""
    family = LIKELIHOODS[likelihood]
    y = np.asarray(arrays["y"], dtype="float64")
    n = max(len(y), 1)
    if family.link == LOGIT_LINK:
        trials = np.asarray(arrays[TRIALS], dtype="float64")
        rate = (y.sum() + 0.5) / (trials.sum() + 1.0)
        weights = trials * rate * (1 - rate)
        return np.log(rate / (1 - rate)) + (y - trials * rate) / np.maximum(weights, 1e-300), weights, True
    if family.link == LOG_LINK:
        mean = (y.sum() + 0.5) / n
        # A negative binomial's Var = mu + (phi mu)^2, phi^2 by the moments of y (0: Poisson).
        phi2 = max(0.0, (float(np.var(y)) - mean) / mean**2) if family.robust else 0.0
        weights = np.full(len(y), mean / (1 + phi2 * mean))
        return np.log(mean) + (y - mean) / mean, weights, True
    return y, np.ones(len(y)), False


def pilot(arrays: dict, n_groups: int, variant: str, likelihood: str,
          prior: dict) -> dict[str, tuple[float, float, np.ndarray]]:
    """Per hierarchical coefficient: (tau^2, sigma_y^2, I_j), the pilot's estimates.

    Each group's own weighted least-squares fit of z on its design (1 and x where the
    model has an intercept, x alone where its line passes through the origin) gives an
    estimate b_j with variance v_j. sigma_y^2: the pooled residual variance of those fits
    over the groups with more observations than coefficients (the identity link; 1 for
    a link family, whose weights carry it); where no group has, the residual variance of
    one fit to all the data; where that has no residual degree of freedom either, 0.
    tau^2: the square of tau's posterior SPREAD_QUANTILE quantile given the estimates under
    the model's own priors on the spread and the mean (`posterior_spread`), over the groups
    with an estimate; 0 where fewer than two have one; where some v_j is 0 (an exact fit)
    the plain variance of the estimates."""
    z, weights, noise_known = working_response(arrays, likelihood)
    x = np.asarray(arrays["x"], dtype="float64")
    groups = np.asarray(arrays["group_idx"])
    terms = VARIANTS[variant].terms
    design = np.column_stack([np.ones_like(x), x]) if INTERCEPT in terms else x[:, None]
    columns = {INTERCEPT: 0, "slope": design.shape[1] - 1}
    p = design.shape[1]
    estimates, variances, residual, dof = [], [], 0.0, 0
    for g in range(n_groups):
        rows = groups == g
        X, W, Z = design[rows], weights[rows], z[rows]
        precision = X.T @ (W[:, None] * X)
        if len(Z) < p or np.linalg.matrix_rank(precision) < p:
            estimates.append(None)
            variances.append(None)
            continue
        b = np.linalg.solve(precision, X.T @ (W * Z))
        estimates.append(b)
        variances.append(np.diag(np.linalg.inv(precision)))
        if len(Z) > p:
            residual += float(W @ (Z - X @ b) ** 2)
            dof += len(Z) - p
    if noise_known:
        noise2 = 1.0
    elif dof > 0:
        noise2 = residual / dof
    elif len(z) > p and np.linalg.matrix_rank(design.T @ design) == p:
        b = np.linalg.lstsq(design, z, rcond=None)[0]
        noise2 = float(np.sum((z - design @ b) ** 2)) / (len(z) - p)
    else:
        noise2 = 0.0
    out = {}
    for coefficient, kind in terms.items():
        if kind != HIERARCHICAL:
            continue
        c = columns[coefficient]
        known = [(b[c], v[c] * noise2) for b, v in zip(estimates, variances) if b is not None]
        tau2 = posterior_spread(np.array([b for b, _ in known]), np.array([v for _, v in known]),
                                *_population_prior(prior, coefficient, arrays))
        regressor = design[:, c]
        information = np.bincount(groups, weights=weights * regressor**2, minlength=n_groups)[:n_groups]
        out[coefficient] = (tau2, noise2, information)
    return out


def _population_prior(prior: dict, coefficient: str, arrays: dict) -> tuple[float, float, str, float]:
    """(mean's centre, mean's sd, spread's distribution, spread's scale) of a hierarchical
    coefficient's prior in the pilot's units (those of x and y as given, on the link's
    scale): the fixed rule's numbers as they are; the data rule's times the coefficient's
    unit (s_y / s_x for a slope, s_y for an intercept, whose mean is centred at the centre
    of y), as `poolbench.models` builds them. The spread's scale is an exponential's mean
    or a half-normal's sd."""
    unit, centre = 1.0, 0.0
    if prior.get("rule") == DATA_RULE:
        unit = float(coefficient_unit(coefficient, arrays))
        centre = float(arrays[Y_CENTER]) if coefficient == INTERCEPT and Y_CENTER in arrays else 0.0
    dist, parameter = spread_prior(prior, coefficient)
    scale = parameter * unit if dist == "halfnormal" else unit / parameter  # an exponential's mean
    return centre, prior[prior_key(coefficient, "mu_sd")] * unit, dist, scale


# lambda suits tau at the lower end of its posterior's central 90 %, not at its median: at
# small tau a centered group makes the funnel NUTS diverges in, while at large tau a
# non-centered one only mixes more slowly. Measured (docs/centering.md, 2026-12-07): on radon
# the median centered floor slopes up to 0.76 where sigma_slope's posterior reaches 0, and
# every partial form diverged there (161 of its 198 divergent draws at sigma_slope
# 0.002-0.04, the posterior mean 0.25); at this quantile none did (diagonal metric).
SPREAD_QUANTILE = 0.05
# tau's posterior is evaluated on TAU_GRID_POINTS points even in log tau (`_tau_grid`), over
# groups in chunks of TAU_GRID_GROUPS (the grid's temporaries stay ~30 MB for any number of
# groups).
TAU_GRID_POINTS = 4001
TAU_GRID_GROUPS = 1024


def posterior_spread(estimates: np.ndarray, variances: np.ndarray, mean_centre: float, mean_sd: float,
                     spread_dist: str, spread_scale: float, quantile: float = SPREAD_QUANTILE) -> float:
    """tau^2 of estimates b_j with known sampling variances v_j: the square of the posterior
    `quantile` of tau in b_j ~ N(mu, tau^2 + v_j), mu ~ N(mean_centre, mean_sd) integrated out,
    tau under its prior (an exponential of mean `spread_scale`, or a half-normal of that
    sd), on a grid that the estimates and the prior bound (`_tau_grid`; deterministic).
    The model's own prior on the spread: where it holds the posterior's spread far below
    what the data alone say (the tutorial's sigma_slope ~ Exp(13) on groups of five noisy
    points), lambda must follow the posterior that NUTS actually samples, not the data
    alone. 0 with fewer than two estimates; the plain variance of the estimates where some
    v_j is 0 (an exact fit)."""
    if not 0 < quantile < 1:
        raise ValueError(f"the quantile of tau must lie in (0, 1), got {quantile}")
    if len(estimates) < 2:
        return 0.0
    if not (variances > 0).all():
        return float(np.var(estimates, ddof=1))
    tau = _tau_grid(estimates, variances, mean_centre, spread_dist, spread_scale)
    log_marginal = _log_marginal(tau, estimates - mean_centre, variances, mean_sd)
    log_prior = -tau / spread_scale if spread_dist == "exponential" else -0.5 * (tau / spread_scale) ** 2
    log_density = log_marginal + log_prior + np.log(tau)  # per unit of log tau
    density = np.exp(log_density - log_density.max())
    mass = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    return float(np.exp(np.interp(mass[-1] * quantile, mass, np.log(tau)))) ** 2


def _tau_grid(estimates, variances, mean_centre, spread_dist, spread_scale) -> np.ndarray:
    """From far below the estimates' standard errors and the prior's scale (where the
    posterior density of log tau has vanished: tau^2 adds nothing to v_j and the prior is
    flat) to above both the prior's 1 - 1e-9 quantile and ten times the larger of the
    estimates' range and their distance from the mean prior's centre (a tight mean prior
    far from them puts tau that high), plus their largest standard error."""
    prior_top = spread_scale * (np.log(1e9) if spread_dist == "exponential" else 6.2)
    distance = max(float(np.ptp(estimates)), float(np.abs(estimates - mean_centre).max()))
    top = max(prior_top, 10 * (distance + float(np.sqrt(variances.max()))))
    bottom = min(top * 1e-8, 1e-4 * min(float(np.sqrt(variances.min())), spread_scale))
    return np.geomspace(bottom, top, TAU_GRID_POINTS)


def _log_marginal(tau: np.ndarray, r: np.ndarray, variances: np.ndarray, mean_sd: float) -> np.ndarray:
    """log N(r; 0, D + s0^2 11') per tau (D = diag(tau^2 + v_j), s0 = mean_sd; constants
    dropped), by Sherman-Morrison: log det D + log(1 + s0^2 S) and the quadratic form in its
    stable form, sum (r_j - rbar)^2 / d_j + rbar^2 S / (1 + s0^2 S) with S = sum 1 / d_j and
    rbar the precision-weighted mean of r (r_j' D^-1 r minus its correction loses every digit
    when |r| is far above sqrt(d)). Summed over chunks of groups."""
    chunks = [slice(start, start + TAU_GRID_GROUPS) for start in range(0, len(r), TAU_GRID_GROUPS)]
    s1, sr, logdet = (np.zeros(len(tau)) for _ in range(3))
    for part in chunks:
        d = tau[:, None] ** 2 + variances[None, part]
        s1 += (1 / d).sum(axis=1)
        sr += (r[None, part] / d).sum(axis=1)
        logdet += np.log(d).sum(axis=1)
    mean = sr / s1
    spread = np.zeros(len(tau))
    for part in chunks:
        d = tau[:, None] ** 2 + variances[None, part]
        spread += ((r[None, part] - mean[:, None]) ** 2 / d).sum(axis=1)
    shrink = 1 + mean_sd**2 * s1
    return -0.5 * (logdet + np.log(shrink) + spread + mean**2 * s1 / shrink)


def efficient_centeredness(tau2: float, noise2: float, information: np.ndarray) -> np.ndarray:
    """w_j = tau^2 I_j / (tau^2 I_j + sigma_y^2), with 0/0 = 0: a group without
    information, or no spread between groups, is non-centered; noise 0 with information
    centers the group."""
    numerator = tau2 * np.asarray(information, dtype="float64")
    denominator = numerator + noise2
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def centeredness(arrays: dict, n_groups: int, variant: str, likelihood: str, parameterisation: str,
                 prior: dict) -> dict[str, np.ndarray]:
    """The pm.Data values lambda_j of every hierarchical coefficient of a partial or mixed
    model (`centeredness_name`), from the data and the model's prior (`prior`, as
    poolbench.grid.priors gives it) alone: the same data and prior give the same lambda,
    bit for bit. Empty for the other parameterisations."""
    if parameterisation not in FROM_DATA:
        return {}
    out = {}
    for coefficient, (tau2, noise2, information) in pilot(arrays, n_groups, variant, likelihood, prior).items():
        # On the grid: the units of x and y change w's last bits, and lambda is the sampler's.
        w = on_grid(efficient_centeredness(tau2, noise2, information))
        out[centeredness_name(coefficient)] = (w >= MIXED_THRESHOLD).astype("float64") if parameterisation == MIXED else w
    return out


def placeholder(n_groups: int, variant: str) -> dict[str, np.ndarray]:
    """lambda_j = 1/2 for every group: a model of a learned parameterisation before its
    centeredness is learned (its draws from the prior do not depend on lambda)."""
    return {name: np.full(n_groups, 0.5) for name in centeredness_names(variant)}


def centeredness_names(variant: str) -> list[str]:
    """The centeredness names of a variant's hierarchical coefficients."""
    return [centeredness_name(c) for c, kind in VARIANTS[variant].terms.items() if kind == HIERARCHICAL]


def has_centeredness(parameterisation: str) -> bool:
    return parameterisation in (*FROM_DATA, LEARNED)


def recentred(tilde: np.ndarray, mu, sigma, lam_from: np.ndarray, lam_to: np.ndarray) -> np.ndarray:
    """theta~ of the same theta under another centeredness: from theta = mu +
    sigma^(1 - lam_from) (tilde - lam_from mu), the theta~ that lam_to gives it (calibration
    draws its truth under one lambda and fits under the data's)."""
    return lam_to * mu + sigma ** (lam_to - lam_from) * (tilde - lam_from * mu)

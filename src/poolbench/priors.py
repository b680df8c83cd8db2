"""The data rule's scales: what a prior that follows the data is scaled by.

Under the data rule (`poolbench.variants.DATA_RULE`; config/README.md, "Priors that follow
the data") a model's priors are read in units of the data's own scale. The scales enter
the model as data (`pm.Data`), so one compiled model serves every dataset, and the
sampler sees the data in those units whatever the user's: a response in milliseconds or
in millions gives the same geometry, the same verdict and, in the data's units, the same
answer. Nothing here imports PyMC.
"""

from __future__ import annotations

import numpy as np

from poolbench.variants import (
    BINOMIAL_OUTCOME, DATA_RULE, DEFAULT_LIKELIHOOD, IDENTITY_LINK, LIKELIHOODS, LOG_LINK, LOGIT_LINK, SLOPE, TRIALS,
    VARIANTS,
)

# The pm.Data names of the scales in a data-rule model.
Y_CENTER, Y_SCALE, X_SCALE = "y_center", "y_scale", "x_scale"
SCALE_NAMES = (Y_CENTER, Y_SCALE, X_SCALE)
# Beyond this |value| the squares behind a standard deviation overflow a float64 (1e308).
LARGEST_VALUE = 1e150


# Standardised data (x / s_x, (y - m_y) / s_y) and a partial form's lambda are rounded to
# multiples of this (2^-32: 2e-10 of the data's sd, far below any measurement's precision).
# A change of units changes their last bits; on this grid they are the same bit for bit
# (unless a value falls within those last bits of a grid point's midpoint, or |value| >
# 2^20, beyond which float64 holds no finer than the grid), and so is every fit on them.
GRID_STEP = 2.0**-32


def coefficient_unit(coefficient: str, scales: dict):
    """The data rule's unit of a coefficient: s_y / s_x for a slope, s_y for an intercept
    and the noise (the response's unit). `scales` holds numbers or the model's tensors."""
    if coefficient == SLOPE:
        return scales[Y_SCALE] / scales[X_SCALE]
    return scales[Y_SCALE]


def on_grid(values, rounding=np.round):
    """`values` rounded to a multiple of GRID_STEP, half to even: numpy arrays, or with
    `rounding=pytensor.tensor.round` a graph's tensors (the model's standardised data)."""
    return rounding(values / GRID_STEP) * GRID_STEP


class ScaleError(ValueError):
    """Data whose scale the data rule cannot take: constant, or too large."""


def _sd(values: np.ndarray, what: str) -> float:
    values = np.asarray(values, dtype="float64")
    if values.size == 0 or not np.isfinite(values).all():
        raise ScaleError(f"{what}: empty or non-finite values; the data rule needs finite numbers")
    if np.abs(values).max() > LARGEST_VALUE:
        raise ScaleError(f"{what}: values beyond ±{LARGEST_VALUE:g}; their spread overflows. "
                         "Rescale the column (other units) first")
    sd = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    if not (np.isfinite(sd) and sd > 0):
        raise ScaleError(f"{what}: the same value everywhere (sd 0); the data rule scales priors by "
                         "its spread, and nothing varies to be modelled")
    return sd


def data_scales(x: np.ndarray, y: np.ndarray, has_intercept: bool, likelihood: str = DEFAULT_LIKELIHOOD,
                trials: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The data rule's scales of one dataset: s_y = sd(y), s_x = sd(x) (sample sds) and
    the centre m_y = mean(y) of a model with an intercept (none without one: its line
    passes through the origin, which centring would move).

    A family with a link (binomial: logit, Poisson and negative binomial: log) has its
    coefficients on the link's scale, where y has no unit of its own: s_y = 1 (rstanarm
    scales a GLM's priors by sd(x) only), and the centre is the link of y's mean rate,
    logit(sum(y) / sum(trials)) or log(mean(y))."""
    family = LIKELIHOODS[likelihood]
    s_x = _sd(x, "x")
    if family.link == IDENTITY_LINK:
        scales = {Y_SCALE: np.asarray(_sd(y, "y")), X_SCALE: np.asarray(s_x)}
        if has_intercept:
            scales[Y_CENTER] = np.asarray(float(np.mean(y)))
        return scales
    if family.outcome != BINOMIAL_OUTCOME:  # a binomial outcome varies through its rate (below)
        _sd(y, "y")  # a response that never varies has nothing to model, on any scale
    scales = {Y_SCALE: np.asarray(1.0), X_SCALE: np.asarray(s_x)}
    if has_intercept:
        scales[Y_CENTER] = np.asarray(_link_of_mean(family.link, y, trials))
    return scales


def _link_of_mean(link: str, y: np.ndarray, trials: np.ndarray | None) -> float:
    y = np.asarray(y, dtype="float64")
    if link == LOGIT_LINK:
        rate = y.sum() / np.asarray(trials, dtype="float64").sum()
        if not 0 < rate < 1:
            raise ScaleError(f"y: {'no successes' if rate == 0 else 'every trial a success'}; the logit of the "
                             "success rate is infinite and nothing varies to be modelled")
        return float(np.log(rate / (1 - rate)))
    if link == LOG_LINK:
        return float(np.log(y.mean()))  # y varies and is >= 0, so its mean is > 0
    raise ValueError(f"no data rule for the {link} link")


def model_inputs(arrays: dict[str, np.ndarray], variant: str, prior: dict,
                 likelihood: str = DEFAULT_LIKELIHOOD) -> dict[str, np.ndarray]:
    """The `pm.Data` values of one fit: the data arrays, plus their scales where the prior
    follows the data."""
    if prior.get("rule") != DATA_RULE:
        return arrays
    return arrays | data_scales(arrays["x"], arrays["y"], VARIANTS[variant].has_intercept, likelihood,
                                arrays.get(TRIALS))


def design_scales(scenario: dict, x: np.ndarray, has_intercept: bool,
                  likelihood: str = DEFAULT_LIKELIHOOD) -> dict[str, np.ndarray]:
    """The data rule's scales for calibration, where y is drawn from the prior and cannot
    set it (a prior that depends on the data it generates is no generative model): those
    of the scenario's design, s_x = sd(x) of the design and s_y the sd of y its nominal
    parameters imply, sqrt(noise^2 + (slope_mean^2 + slope_sd^2) var(x) + intercept_sd^2),
    centred at its intercept mean. A family with a link: s_y = 1 (as `data_scales`)."""
    s_x = _sd(x, "x of the design")
    if LIKELIHOODS[likelihood].link == IDENTITY_LINK:
        var_y = (scenario["noise"] ** 2 + (scenario["slope_mean"] ** 2 + scenario["slope_sd"] ** 2) * s_x**2
                 + scenario.get("intercept_sd", 0.0) ** 2)
        s_y = float(np.sqrt(var_y))
    else:
        s_y = 1.0
    scales = {Y_SCALE: np.asarray(s_y), X_SCALE: np.asarray(s_x)}
    if has_intercept:
        scales[Y_CENTER] = np.asarray(float(scenario.get("intercept_mean", 0.0)))
    return scales

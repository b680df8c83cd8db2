"""PyMC models built from the variant registry's terms.

Every model exposes `slope` (and `intercept` where it has one) with dims `group`, so
metrics and plots treat all variants alike. Data enter through `pm.Data`, so one compiled
model serves every dataset with the same number of groups.

What is evaluated on a built model for the metrics lives in `poolbench.densities`, the
learned form's variational run in `poolbench.learned`: a fit's key and metrics depend on
the models built here only through the built model itself, so a new builder (a family, a
term) changes nothing for the others.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from poolbench.centering import centeredness, centeredness_name, centeredness_names, has_centeredness, placeholder
from poolbench.grid import ModelSpec
from poolbench.priors import SCALE_NAMES, X_SCALE, Y_CENTER, Y_SCALE, coefficient_unit, model_inputs, on_grid
from poolbench.variants import (
    BINOMIAL, CENTERED, DATA_RULE, FIXED_RULE, HIERARCHICAL, IDENTITY_LINK, INTERCEPT, LIKELIHOODS, NEGATIVE_BINOMIAL, NOISE, NORMAL,
    NU, OBSERVED, OVERDISPERSION, POISSON, POOLED, SLOPE, STUDENT_T, TRIALS, UNPOOLED, VARIANTS, common,
    partially_centered, population_mean, population_sd, prior_key, spread_prior, standardised,
)

OBSERVED_DATA = "y"


def _spread(name: str, prior: dict, coefficient: str):
    dist, parameter = spread_prior(prior, coefficient)
    return pm.HalfNormal(name, parameter) if dist == "halfnormal" else pm.Exponential(name, parameter)


def scaled_name(name: str) -> str:
    """A data-rule model's free parameter in the data's own scale, e.g. 'mu_slope_std'."""
    return f"{name}_std"


class Units:
    """Where a model's parameters are sampled. Fixed rule: in the data's units, under the
    names the posterior shows (the tutorial's models, unchanged). Data rule: in units of
    the data's scale (`poolbench.priors`), as `{name}_std`, each also kept in the data's
    units as a Deterministic of its name: centre + unit * value. The sampler then sees
    the same geometry whatever the units of x and y, and the log-likelihood stays that
    of the data as given (PSIS-LOO, predictive checks)."""

    def __init__(self, rule: str, scales: dict | None, centeredness: dict | None = None):
        self.scaled = rule == DATA_RULE
        self.scales = scales
        self.centeredness = centeredness or {}  # lambda_j of a partially centered model's terms

    def name(self, name: str) -> str:
        return scaled_name(name) if self.scaled else name

    def unit(self, coefficient: str):
        return coefficient_unit(coefficient, self.scales)

    def sampled(self, scaled, shown):
        """What the linear predictor takes of a term: under the data rule its value in the
        data's scale (`scaled`), the model's likelihood then being written in those units
        too (`build_model`); under the fixed rule the value in the data's units (`shown`)."""
        return scaled if self.scaled else shown

    def shown(self, name: str, value, coefficient: str, centred: bool, dims=None, deterministic=False):
        """`value` in the data's units under `name` (as it is, with the fixed rule, unless
        it must become a named Deterministic)."""
        if self.scaled:
            value = self.unit(coefficient) * value
            if centred and coefficient == INTERCEPT:
                value = self.scales[Y_CENTER] + value
        elif not deterministic:
            return value
        return pm.Deterministic(name, value, dims=dims)


def pooled_term(coefficient: str, prior: dict, parameterisation: str, n_groups: int, units: Units):
    raw = pm.Normal(units.name(common(coefficient)), 0.0, prior[f"{coefficient}_sd"])
    value = units.shown(common(coefficient), raw, coefficient, centred=True)
    shown = pm.Deterministic(coefficient, value * pm.math.ones(n_groups), dims="group")
    return units.sampled(raw * pm.math.ones(n_groups), shown)


def unpooled_term(coefficient: str, prior: dict, parameterisation: str, n_groups: int, units: Units):
    raw = pm.Normal(units.name(coefficient), 0.0, prior[f"{coefficient}_sd"], dims="group")
    return units.sampled(raw, units.shown(coefficient, raw, coefficient, centred=True, dims="group"))


def tilde_scale(sigma, centeredness):
    """sigma^lambda_j, the sd of theta~_j, as exp(lambda_j log sigma): PyTensor reads log
    sigma off the sampler's log-transformed value instead of computing a power and its
    gradient."""
    return pt.exp(centeredness * pt.log(sigma))


def partially_centered_value(mu, sigma, centeredness, tilde):
    """theta_j = mu + sigma^(1 - lambda_j) (theta~_j - lambda_j mu), theta~_j ~ N(lambda_j mu,
    sigma^lambda_j): N(mu, sigma) for every lambda_j (poolbench.centering). Written as
    mu + sigma (theta~_j - lambda_j mu) / sigma^lambda_j, whose quotient is the one the
    normal log density of theta~ computes: the graph computes it once. With powers of
    sigma a leapfrog step of these forms cost 1.5-1.9 times the non-centered one's; so,
    1.2-1.3 times (measured on the hard regime, the same trajectories; docs/centering.md)."""
    return mu + sigma * ((tilde - centeredness * mu) / tilde_scale(sigma, centeredness))


def hierarchical_term(coefficient: str, prior: dict, parameterisation: str, n_groups: int, units: Units):
    """Centered: coefficient_g ~ N(mu, sigma). Non-centered: mu + sigma * z_g, z_g ~ N(0, 1).
    Partial, mixed and learned: each group centered as far as its pm.Data centeredness
    lambda_g says (`partially_centered_value`)."""
    mean, spread = population_mean(coefficient), population_sd(coefficient)
    mu = pm.Normal(units.name(mean), 0.0, prior[prior_key(coefficient, "mu_sd")])
    sigma = _spread(units.name(spread), prior, coefficient)
    if parameterisation == CENTERED:
        raw = pm.Normal(units.name(coefficient), mu, sigma, dims="group")
    elif has_centeredness(parameterisation):
        lam = units.centeredness[centeredness_name(coefficient)]
        if not isinstance(lam, Variable):  # data; a variable while it is learned (`learned_centeredness`)
            lam = pm.Data(centeredness_name(coefficient), lam, dims="group")
        tilde = pm.Normal(partially_centered(coefficient), lam * mu, tilde_scale(sigma, lam), dims="group")
        raw = partially_centered_value(mu, sigma, lam, tilde)
    else:
        z = pm.Normal(standardised(coefficient), 0.0, 1.0, dims="group")
        raw = mu + sigma * z
    value = units.shown(coefficient, raw, coefficient, centred=True, dims="group",
                        deterministic=parameterisation != CENTERED)
    units.shown(mean, mu, coefficient, centred=True)
    units.shown(spread, sigma, coefficient, centred=False)
    return units.sampled(raw, value)


TERM_BUILDERS = {POOLED: pooled_term, UNPOOLED: unpooled_term, HIERARCHICAL: hierarchical_term}


# A family's builder: y given the linear predictor `eta` (the mean itself for the identity
# link), the noise sd (None for a family without noise), the prior's keys and the family's
# own data columns (`Likelihood.columns`, as pm.Data).
def normal_likelihood(eta, noise, y, prior: dict, n_obs, columns: dict):
    return pm.Normal(OBSERVED, mu=eta, sigma=noise, observed=y, shape=n_obs)


def student_t_likelihood(eta, noise, y, prior: dict, n_obs, columns: dict):
    nu = pm.Gamma(NU, alpha=prior["nu_alpha"], beta=prior["nu_beta"])
    return pm.StudentT(OBSERVED, nu=nu, mu=eta, sigma=noise, observed=y, shape=n_obs)


def binomial_likelihood(eta, noise, y, prior: dict, n_obs, columns: dict):
    return pm.Binomial(OBSERVED, n=columns[TRIALS], logit_p=eta, observed=y, shape=n_obs)


def poisson_likelihood(eta, noise, y, prior: dict, n_obs, columns: dict):
    return pm.Poisson(OBSERVED, mu=pm.math.exp(eta), observed=y, shape=n_obs)


def negative_binomial_likelihood(eta, noise, y, prior: dict, n_obs, columns: dict):
    overdispersion = pm.HalfNormal(OVERDISPERSION, prior["overdispersion_sd"])
    # PyMC's NegativeBinomial(mu, alpha) has Var = mu + mu^2 / alpha.
    return pm.NegativeBinomial(OBSERVED, mu=pm.math.exp(eta), alpha=1.0 / overdispersion**2, observed=y, shape=n_obs)


LIKELIHOOD_BUILDERS = {NORMAL: normal_likelihood, STUDENT_T: student_t_likelihood, BINOMIAL: binomial_likelihood,
                       POISSON: poisson_likelihood, NEGATIVE_BINOMIAL: negative_binomial_likelihood}
assert set(LIKELIHOOD_BUILDERS) == set(LIKELIHOODS), "every registered likelihood needs a builder"


def build_model(spec: ModelSpec, prior: dict, arrays: dict[str, np.ndarray], n_groups: int,
                for_sampler: bool = False) -> pm.Model:
    """PyMC model of `spec` on `arrays` (poolbench.data.model_arrays; with the data rule's
    scales, poolbench.priors.model_inputs, or they are computed from these arrays);
    `prior` holds the rule and hyperparameters of poolbench.grid.priors.

    Under the data rule, `for_sampler` gives the model NUTS runs on: its likelihood that of
    the standardised response (`data_scale_likelihood`), so that nothing the sampler
    computes depends on the units of x and y. Without it, the model whose likelihood is
    that of y as given, on which everything else is evaluated (log-likelihood and PSIS-LOO,
    predictive checks, prior sensitivity): the same posterior, its log density shifted by
    the constant n log s_y. Under the fixed rule both are the same model."""
    variant, family = VARIANTS[spec.variant], LIKELIHOODS[spec.likelihood]
    rule = prior.get("rule", FIXED_RULE)
    if rule == DATA_RULE and not {Y_SCALE, X_SCALE} <= set(arrays):
        arrays = model_inputs(arrays, spec.variant, prior, spec.likelihood)
    lams = {name: arrays[name] for name in centeredness_names(spec.variant) if name in arrays}
    if has_centeredness(spec.parameterisation) and not lams:
        lams = centeredness(arrays, n_groups, spec.variant, spec.likelihood, spec.parameterisation, prior) or placeholder(
            n_groups, spec.variant)
    # No fixed coords for observations: one compiled model then fits datasets of any size.
    with pm.Model(coords={"group": np.arange(n_groups)}) as model:
        x = pm.Data("x", arrays["x"])
        y = pm.Data("y", arrays["y"])
        group_idx = pm.Data("group_idx", arrays["group_idx"])
        columns = {name: pm.Data(name, arrays[name]) for name in family.columns}
        scales = {name: pm.Data(name, arrays[name]) for name in SCALE_NAMES if name in arrays} if rule == DATA_RULE else None
        units = Units(rule, scales, lams)
        terms = {
            coefficient: TERM_BUILDERS[kind](coefficient, prior, spec.parameterisation, n_groups, units)
            for coefficient, kind in variant.terms.items()
        }
        covariate = x
        if units.scaled:  # x in units of s_x: on the grid for the sampler (`data_scale_likelihood`)
            covariate = on_grid(x / scales[X_SCALE], pt.round) if for_sampler else x / scales[X_SCALE]
        mean = terms[SLOPE][group_idx] * covariate
        if INTERCEPT in terms:
            mean = terms[INTERCEPT][group_idx] + mean
        noise = None
        if family.has_noise:
            raw_noise = pm.Exponential(units.name(NOISE), prior["noise_rate"])
            noise = units.sampled(raw_noise, units.shown(NOISE, raw_noise, NOISE, centred=False))
        observed = y
        if units.scaled:
            mean, noise, observed = data_scale_likelihood(family, scales, mean, noise, y, for_sampler)
        LIKELIHOOD_BUILDERS[spec.likelihood](mean, noise, observed, prior, x.shape, columns)
    return model


def data_scale_likelihood(family, scales: dict, eta, noise, y, for_sampler: bool):
    """(mean, noise, observed) of a data-rule model's likelihood, from its linear predictor
    `eta` and `noise` in units of the data's scale (x / s_x; on the grid for the sampler).

    A link family's response has no unit (s_y = 1): eta + m_y on the link's scale, either
    way. The identity link: for the sampler, the standardised response (y - m_y) / s_y on
    the grid, with eta and the noise as they are; the units of x and y, which change the
    last bits of every product with s_y or s_x, then reach no number NUTS computes (its
    trajectories, step size and verdict are the same in any units: a change of units
    multiplied out in the graph moved a fit at the R-hat threshold across it). Otherwise
    y as given, with mean m_y + s_y eta and noise s_y * noise (and x as given: the
    log-likelihood is that of the data, not of the grid's 2e-10 sd away)."""
    center = scales[Y_CENTER] if Y_CENTER in scales else 0.0
    if family.link != IDENTITY_LINK:
        return center + eta, noise, y
    if for_sampler:
        return eta, noise, on_grid((y - center) / scales[Y_SCALE], pt.round)
    return center + scales[Y_SCALE] * eta, scales[Y_SCALE] * noise, y


def specification_digest(model: pm.Model) -> str:
    """The digest of what one built model is: its log density and its deterministics as
    PyTensor graphs of the value variables (terms, priors and their numbers, likelihood,
    transforms), with the names and dims of its variables. Part of the fit cache's key in
    place of the registry's file: editing one variant's entry in `poolbench.variants`
    changes the keys of that variant's fits only. Deterministic across processes (the
    graph printer labels nodes in traversal order; no addresses, no random generators)."""
    import hashlib
    import json

    from pytensor.printing import debugprint

    outputs = [model.logp(), *model.replace_rvs_by_values(model.deterministics)]
    graph = debugprint(outputs, file="str", print_type=True)
    names = {
        "free": [rv.name for rv in model.free_RVs],
        "observed": [rv.name for rv in model.observed_RVs],
        "deterministic": [v.name for v in model.deterministics],
        "dims": {name: list(dims or ()) for name, dims in model.named_vars_to_dims.items()},
    }
    return hashlib.sha256((graph + json.dumps(names, sort_keys=True)).encode()).hexdigest()


def render_model_graph(model: pm.Model, svg: str, png: str) -> None:
    """Plate diagram of a model as SVG and PNG, rendered by Graphviz's `dot`."""
    import shutil

    if shutil.which("dot") is None:
        raise RuntimeError(
            "Graphviz's `dot` program is needed to draw plate diagrams and was not found on PATH. "
            "Install it: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
            "(macOS) or `conda install -c conda-forge graphviz`."
        )
    graph = pm.model_to_graphviz(model)
    for path, fmt in ((svg, "svg"), (png, "png")):
        with open(path, "wb") as out:
            out.write(graph.pipe(format=fmt))

"""PyMC models built from the variant registry's terms.

Every model exposes `slope` (and `intercept` where it has one) with dims `group`, so
metrics and plots treat all variants alike. Data enter through `pm.Data`, so one compiled
model serves every dataset with the same number of groups.
"""

from __future__ import annotations

import numpy as np
import pymc as pm

from poolbench.grid import ModelSpec
from poolbench.variants import (
    CENTERED, HIERARCHICAL, INTERCEPT, LIKELIHOODS, NOISE, NU, OBSERVED, POOLED, SLOPE, UNPOOLED,
    VARIANTS, common, population_mean, population_sd, standardised,
)

DATA_NAMES = ("x", "y", "group_idx")


def _prior_key(coefficient: str, key: str) -> str:
    """Prior keys of the slope term are bare ('mu_sd'); the intercept's are prefixed."""
    return key if coefficient == SLOPE else f"{coefficient}_{key}"


def _spread(name: str, prior: dict, coefficient: str):
    if prior.get("sigma_dist", "exponential") == "halfnormal":
        return pm.HalfNormal(name, prior[_prior_key(coefficient, "sigma_sd")])
    return pm.Exponential(name, prior[_prior_key(coefficient, "sigma_rate")])


def pooled_term(coefficient: str, prior: dict, parameterisation: str, n_groups: int):
    value = pm.Normal(common(coefficient), 0.0, prior[f"{coefficient}_sd"])
    return pm.Deterministic(coefficient, value * pm.math.ones(n_groups), dims="group")


def unpooled_term(coefficient: str, prior: dict, parameterisation: str, n_groups: int):
    return pm.Normal(coefficient, 0.0, prior[f"{coefficient}_sd"], dims="group")


def hierarchical_term(coefficient: str, prior: dict, parameterisation: str, n_groups: int):
    """Centered: coefficient_g ~ N(mu, sigma). Non-centered: mu + sigma * z_g, z_g ~ N(0, 1)."""
    mu = pm.Normal(population_mean(coefficient), 0.0, prior[_prior_key(coefficient, "mu_sd")])
    sigma = _spread(population_sd(coefficient), prior, coefficient)
    if parameterisation == CENTERED:
        return pm.Normal(coefficient, mu, sigma, dims="group")
    z = pm.Normal(standardised(coefficient), 0.0, 1.0, dims="group")
    return pm.Deterministic(coefficient, mu + sigma * z, dims="group")


TERM_BUILDERS = {POOLED: pooled_term, UNPOOLED: unpooled_term, HIERARCHICAL: hierarchical_term}


def normal_likelihood(mean, noise, y, prior: dict, n_obs):
    return pm.Normal(OBSERVED, mu=mean, sigma=noise, observed=y, shape=n_obs)


def student_t_likelihood(mean, noise, y, prior: dict, n_obs):
    nu = pm.Gamma(NU, alpha=prior["nu_alpha"], beta=prior["nu_beta"])
    return pm.StudentT(OBSERVED, nu=nu, mu=mean, sigma=noise, observed=y, shape=n_obs)


LIKELIHOOD_BUILDERS = {"normal": normal_likelihood, "student_t": student_t_likelihood}
assert set(LIKELIHOOD_BUILDERS) == set(LIKELIHOODS), "every registered likelihood needs a builder"


def build_model(spec: ModelSpec, prior: dict, arrays: dict[str, np.ndarray], n_groups: int) -> pm.Model:
    """PyMC model of `spec` on `arrays` (poolbench.data.model_arrays); `prior` holds the
    variant's and the likelihood's prior hyperparameters (poolbench.grid.priors)."""
    variant = VARIANTS[spec.variant]
    # No fixed coords for observations: one compiled model then fits datasets of any size.
    with pm.Model(coords={"group": np.arange(n_groups)}) as model:
        x = pm.Data("x", arrays["x"])
        y = pm.Data("y", arrays["y"])
        group_idx = pm.Data("group_idx", arrays["group_idx"])
        terms = {
            coefficient: TERM_BUILDERS[kind](coefficient, prior, spec.parameterisation, n_groups)
            for coefficient, kind in variant.terms.items()
        }
        mean = terms[SLOPE][group_idx] * x
        if INTERCEPT in terms:
            mean = terms[INTERCEPT][group_idx] + mean
        noise = pm.Exponential(NOISE, prior["noise_rate"])
        LIKELIHOOD_BUILDERS[spec.likelihood](mean, noise, y, prior, x.shape)
    return model


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


class PointwiseLogLikelihood:
    """The pointwise log-likelihood of a fit's posterior draws (for PSIS-LOO), compiled once
    per model: what `pm.compute_log_likelihood` computes, without compiling on every call
    (~1 s each, more than sampling a radon fit)."""

    def __init__(self, model: pm.Model):
        from pymc.model.transform.conditioning import remove_value_transforms

        self.model = model
        # The posterior holds constrained values: evaluate on the untransformed model.
        self.untransformed = remove_value_transforms(model)
        observed = [self.untransformed[OBSERVED]]
        self.function = self.untransformed.compile_fn(
            inputs=self.untransformed.value_vars,
            outs=self.untransformed.logp(vars=observed, sum=False),
            on_unused_input="ignore",
        )

    def __call__(self, tree, arrays: dict):
        from pymc.backends.arviz import apply_function_over_dataset, coords_and_dims_for_inferencedata

        pm.set_data(arrays, model=self.untransformed)
        coords, dims = coords_and_dims_for_inferencedata(self.untransformed)
        free = [rv.name for rv in self.model.free_RVs]
        posterior = tree["posterior"].to_dataset()[free].astype(
            {self.untransformed.rvs_to_values[rv].name: self.untransformed.rvs_to_values[rv].type.dtype
             for rv in self.untransformed.free_RVs},
            copy=False,
        )
        return apply_function_over_dataset(
            self.function, posterior, output_var_names=[OBSERVED], sample_dims=("chain", "draw"),
            dims=dims, coords=coords, progressbar=False,
        )

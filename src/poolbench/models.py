"""PyMC models built from the variant registry's terms.

Every model exposes `slope` (and `intercept` where it has one) with dims `group`, so
metrics and plots treat all variants alike. Data enter through `pm.Data`, so one compiled
model serves every dataset with the same number of groups.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable

from poolbench.centering import centeredness, centeredness_name, centeredness_names, has_centeredness, placeholder
from poolbench.grid import ModelSpec
from poolbench.priors import SCALE_NAMES, X_SCALE, Y_CENTER, Y_SCALE, model_inputs
from poolbench.variants import (
    BINOMIAL, CENTERED, DATA_RULE, FIXED_RULE, HIERARCHICAL, INTERCEPT, LIKELIHOODS, NEGATIVE_BINOMIAL, NOISE, NORMAL,
    NU, OBSERVED, OVERDISPERSION, PARTIAL, POISSON, POOLED, SLOPE, STUDENT_T, TRIALS, UNPOOLED, VARIANTS, common,
    partially_centered, population_mean, population_sd, standardised,
)

OBSERVED_DATA = "y"


def _prior_key(coefficient: str, key: str) -> str:
    """Prior keys of the slope term are bare ('mu_sd'); the intercept's are prefixed."""
    return key if coefficient == SLOPE else f"{coefficient}_{key}"


def _spread(name: str, prior: dict, coefficient: str):
    if prior.get("sigma_dist", "exponential") == "halfnormal":
        return pm.HalfNormal(name, prior[_prior_key(coefficient, "sigma_sd")])
    return pm.Exponential(name, prior[_prior_key(coefficient, "sigma_rate")])


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
        if coefficient == SLOPE:
            return self.scales[Y_SCALE] / self.scales[X_SCALE]
        return self.scales[Y_SCALE]  # intercepts and the noise: the response's unit

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
    return pm.Deterministic(coefficient, value * pm.math.ones(n_groups), dims="group")


def unpooled_term(coefficient: str, prior: dict, parameterisation: str, n_groups: int, units: Units):
    raw = pm.Normal(units.name(coefficient), 0.0, prior[f"{coefficient}_sd"], dims="group")
    return units.shown(coefficient, raw, coefficient, centred=True, dims="group")


def partially_centered_value(mu, sigma, centeredness, tilde):
    """theta_j = mu + sigma^(1 - lambda_j) (theta~_j - lambda_j mu), theta~_j ~ N(lambda_j mu,
    sigma^lambda_j): N(mu, sigma) for every lambda_j (poolbench.centering)."""
    return mu + sigma ** (1.0 - centeredness) * (tilde - centeredness * mu)


def hierarchical_term(coefficient: str, prior: dict, parameterisation: str, n_groups: int, units: Units):
    """Centered: coefficient_g ~ N(mu, sigma). Non-centered: mu + sigma * z_g, z_g ~ N(0, 1).
    Partial, mixed and learned: each group centered as far as its pm.Data centeredness
    lambda_g says (`partially_centered_value`)."""
    mean, spread = population_mean(coefficient), population_sd(coefficient)
    mu = pm.Normal(units.name(mean), 0.0, prior[_prior_key(coefficient, "mu_sd")])
    sigma = _spread(units.name(spread), prior, coefficient)
    if parameterisation == CENTERED:
        raw = pm.Normal(units.name(coefficient), mu, sigma, dims="group")
        value = units.shown(coefficient, raw, coefficient, centred=True, dims="group")
    elif has_centeredness(parameterisation):
        lam = units.centeredness[centeredness_name(coefficient)]
        if not isinstance(lam, Variable):  # data; a variable while it is learned (`learned_centeredness`)
            lam = pm.Data(centeredness_name(coefficient), lam, dims="group")
        tilde = pm.Normal(partially_centered(coefficient), lam * mu, sigma**lam, dims="group")
        value = units.shown(coefficient, partially_centered_value(mu, sigma, lam, tilde), coefficient, centred=True,
                            dims="group", deterministic=True)
    else:
        z = pm.Normal(standardised(coefficient), 0.0, 1.0, dims="group")
        value = units.shown(coefficient, mu + sigma * z, coefficient, centred=True, dims="group", deterministic=True)
    units.shown(mean, mu, coefficient, centred=True)
    units.shown(spread, sigma, coefficient, centred=False)
    return value


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


def build_model(spec: ModelSpec, prior: dict, arrays: dict[str, np.ndarray], n_groups: int) -> pm.Model:
    """PyMC model of `spec` on `arrays` (poolbench.data.model_arrays; with the data rule's
    scales, poolbench.priors.model_inputs, or they are computed from these arrays);
    `prior` holds the rule and hyperparameters of poolbench.grid.priors."""
    variant, family = VARIANTS[spec.variant], LIKELIHOODS[spec.likelihood]
    rule = prior.get("rule", FIXED_RULE)
    if rule == DATA_RULE and not {Y_SCALE, X_SCALE} <= set(arrays):
        arrays = model_inputs(arrays, spec.variant, prior, spec.likelihood)
    lams = {name: arrays[name] for name in centeredness_names(spec.variant) if name in arrays}
    if has_centeredness(spec.parameterisation) and not lams:
        lams = centeredness(arrays, n_groups, spec.variant, spec.likelihood, spec.parameterisation) or placeholder(
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
        mean = terms[SLOPE][group_idx] * x
        if INTERCEPT in terms:
            mean = terms[INTERCEPT][group_idx] + mean
        noise = None
        if family.has_noise:
            noise = units.shown(NOISE, pm.Exponential(units.name(NOISE), prior["noise_rate"]), NOISE, centred=False)
        LIKELIHOOD_BUILDERS[spec.likelihood](mean, noise, y, prior, x.shape, columns)
    return model


# The learned parameterisation's variational run (Gorinova, Moore & Hoffman 2020, VIP):
# mean-field ADVI steps and Adam's learning rate. lambda_j = sigmoid(a_j), a_j starting at
# the pilot's formula (`partial`'s lambda, clipped to [LEARN_CLIP, 1 - LEARN_CLIP] so that its
# logit is finite) and read as the average of a_j over the second half of the run: the ELBO is
# often nearly flat in lambda (docs/centering.md), where Adam's steps on a noisy gradient
# would leave the last iterate wherever the noise took it.
LEARN_STEPS = 3000
LEARN_RATE = 0.05
LEARN_CLIP = 0.01


def learned_centeredness(spec: ModelSpec, prior: dict, arrays: dict, n_groups: int, seed: int) -> dict[str, np.ndarray]:
    """lambda_j of every hierarchical coefficient of a learned model: optimised jointly with
    a mean-field ADVI approximation of the lambda-parameterised posterior (the
    parameterisation under which the posterior looks most like independent normals), from
    the pilot's formula, then fixed for NUTS. Seeded: the same data and seed give the same
    lambda. Compiles its step for this one call; a job's fits share one compiled
    `CenterednessLearner` (`poolbench.samplers.CompiledModels.learner`)."""
    return CenterednessLearner(spec, prior, arrays, n_groups)(arrays, seed)


class CenterednessLearner:
    """PyMC's `pm.fit(n=LEARN_STEPS, method="advi", random_seed=seed, ...)` on the
    lambda-parameterised model, with its step function compiled once (~1.8 s of a learned
    fit's ~3 s were that compile). Every call starts from the state `pm.fit` starts from:
    the data set, the approximation's means at the model's initial point and its rho at 0,
    the optimiser's state as compiled, lambda at the pilot's formula, and the random
    streams seeded as `pm.fit` seeds them (the approximation's RandomState(seed): one draw
    for the initial point, the next for the step function's streams). Same data and seed:
    the same lambda as `pm.fit` gives, bit for bit (tests/test_centering.py)."""

    def __init__(self, spec: ModelSpec, prior: dict, arrays: dict, n_groups: int):
        import pytensor
        import pytensor.tensor as pt
        from pymc.initial_point import make_initial_point_fn
        from pytensor.tensor.random.type import RandomType

        self.spec, self.n_groups = spec, n_groups
        self.logits = {name: pytensor.shared(np.zeros(n_groups), name=f"{name}_logit")
                       for name in centeredness_names(spec.variant)}
        self.model = build_model(spec, prior, arrays | {name: pt.sigmoid(a) for name, a in self.logits.items()}, n_groups)
        with self.model:
            self.inference = pm.ADVI(random_seed=0)
            self.step = self.inference.objective.step_function(
                score=True, obj_optimizer=pm.adam(learning_rate=LEARN_RATE), more_obj_params=list(self.logits.values()))
        group = self.inference.approx.groups[0]
        self.group_values = {self.model.rvs_to_values[v].name for v in group.group}
        self.mu, self.rho = group.params_dict["mu"], group.params_dict["rho"]
        self.initial_point = make_initial_point_fn(model=self.model, jitter_rvs={}, return_transformed=True)
        # The optimiser's state as compiled (Adam's moments and step count), restored per call.
        # (Not the data: each call sets its own.)
        set_per_call = {self.mu, self.rho, *self.logits.values(), *self.model.data_vars}
        set_per_call |= {length for length in self.model.dim_lengths.values() if isinstance(length, SharedVariable)}
        self.optimiser_state = {var: var.get_value(borrow=False) for var in self.step.get_shared()
                                if var not in set_per_call and not isinstance(var.type, RandomType)}
        self.rngs = [var for var in self.step.get_shared() if isinstance(var.type, RandomType)]

    def __call__(self, arrays: dict, seed: int) -> dict[str, np.ndarray]:
        from pymc.blocking import DictToArrayBijection
        from pymc.pytensorf import reseed_rngs

        seeds = np.random.RandomState(seed)
        for var, value in self.optimiser_state.items():
            var.set_value(value.copy())
        data = {var.name for var in self.model.data_vars}
        pm.set_data({name: value for name, value in arrays.items() if name in data}, model=self.model)
        start = self.initial_point(seeds.randint(2**30, dtype=np.int64))
        self.mu.set_value(DictToArrayBijection.map({k: v for k, v in start.items() if k in self.group_values}).data)
        self.rho.set_value(np.zeros_like(self.rho.get_value()))
        reseed_rngs(self.rngs, seeds.randint(2**30, dtype=np.int64))
        pilot = centeredness(arrays, self.n_groups, self.spec.variant, self.spec.likelihood, PARTIAL)
        for name, a in self.logits.items():
            a.set_value(_logit(np.clip(pilot[name], LEARN_CLIP, 1.0 - LEARN_CLIP)))
        averaged = {name: np.zeros(self.n_groups) for name in self.logits}
        for step in range(1, LEARN_STEPS + 1):
            if np.isnan(self.step()):
                raise FloatingPointError(f"NaN occurred in the variational run that learns {sorted(self.logits)}")
            if step > LEARN_STEPS // 2:
                for name, a in self.logits.items():
                    averaged[name] += a.get_value()
        steps = LEARN_STEPS - LEARN_STEPS // 2
        return {name: 1.0 / (1.0 + np.exp(-total / steps)) for name, total in averaged.items()}


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def group_level(variant: str) -> set[str]:
    """Free parameters of a model's group level: its hierarchical coefficients (centered),
    their offsets (non-centered) and partially centered values, in either rule's names."""
    names = set()
    for coefficient, kind in VARIANTS[variant].terms.items():
        if kind == HIERARCHICAL:
            names |= {coefficient, scaled_name(coefficient), standardised(coefficient), partially_centered(coefficient)}
    return names


class LogDensities:
    """Per posterior draw, the log density of the model's top-level priors and its
    log-likelihood summed over the observations: what power-scaling sensitivity
    (`poolbench.metrics.prior_sensitivity`) reweights, and the log-likelihood that
    calibration ranks as a test quantity. Compiled once per model; evaluated on every draw
    at once (the graph vectorised over draws), never stored per observation.

    The group level (a centered coefficient's N(mu, sigma), a non-centered offset's N(0, 1))
    is not power-scaled: scaling it would judge the parameterisation, not the prior
    (the two forms' group-level densities differ by a Jacobian), and it is the population
    model the hyperparameters' prior is about (Kallioinen et al. 2023 power-scale the
    top-level priors of hierarchical models)."""

    def __init__(self, model: pm.Model, variant: str):
        import pytensor
        import pytensor.tensor as pt
        from pymc.model.transform.conditioning import remove_value_transforms
        from pytensor.graph.replace import vectorize_graph

        self.model = remove_value_transforms(model)
        skip = group_level(variant)
        priors = [rv for rv in self.model.free_RVs if rv.name not in skip]
        values = [self.model.rvs_to_values[rv] for rv in self.model.free_RVs]
        log_prior = pt.sum([term.sum() for term in self.model.logp(vars=priors, sum=False)])
        log_likelihood = self.model.logp(vars=[self.model[OBSERVED]], sum=True)
        self.names = [value.name for value in values]
        # One leading draw dimension on every parameter: one call evaluates every draw.
        batched = [pt.tensor(name=v.name, dtype=v.dtype, shape=(None, *(None,) * v.ndim)) for v in values]
        outputs = vectorize_graph([log_prior, log_likelihood], replace=dict(zip(values, batched)))
        self.function = pytensor.function(batched, outputs, on_unused_input="ignore", mode=self.MODE)

    MODE = "FAST_COMPILE"

    def __call__(self, posterior, arrays: dict) -> tuple[np.ndarray, np.ndarray]:
        """(log prior, log-likelihood), each of shape (chain, draw), for `posterior` (an
        xarray Dataset of the fit's draws) on the data `arrays` (pm.Data values)."""
        pm.set_data(arrays, model=self.model)
        chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
        inputs = [np.asarray(posterior[name].values, dtype=self.model[name].dtype).reshape(chains * draws, *posterior[name].shape[2:])
                  for name in self.names]
        # Draws in chunks of at most LOG_DENSITY_ELEMENTS draw-observation terms: a million
        # rows by 4000 draws at once would take 32 GB.
        step = max(1, self.LOG_DENSITY_ELEMENTS // max(len(arrays[OBSERVED_DATA]), 1))
        parts = [self.function(*(values[start:start + step] for values in inputs))
                 for start in range(0, chains * draws, step)]
        log_prior = np.concatenate([part[0] for part in parts])
        log_likelihood = np.concatenate([part[1] for part in parts])
        return log_prior.reshape(chains, draws), log_likelihood.reshape(chains, draws)

    LOG_DENSITY_ELEMENTS = 4_000_000


class PriorSimulator:
    """Draws of named variables and of y from a model's prior, for given data (its design:
    groups and x; and, under the data rule, the scales). Compiled once (PyTensor's Python
    linker: quick to build, and the draws do not depend on a compiler); reseeded for every
    call, so a draw depends only on its own seed. Calibration draws its true values with
    it, the prior predictive check its replicated datasets."""

    def __init__(self, model: pm.Model, names: list[str], mode: str = "FAST_COMPILE"):
        from pymc.pytensorf import collect_default_updates, compile

        self.model, self.names = model, names
        outputs = [model[name] for name in names] + [model[OBSERVED]]
        self.rngs = list(collect_default_updates(inputs=[], outputs=outputs))
        with model:
            self.draw = compile(inputs=[], outputs=outputs, random_seed=False, mode=mode)

    def __call__(self, arrays: dict, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        from pymc.pytensorf import reseed_rngs

        pm.set_data(arrays, model=self.model)
        reseed_rngs(self.rngs, seed)
        *values, y = self.draw()
        return dict(zip(self.names, values)), y

    def replicates(self, arrays: dict, seed: int, draws: int):
        """`draws` prior predictive datasets (y only), one after another from one seed.

        A count model's prior may put mass on rates beyond what numpy can draw (a log
        link's tail: a Poisson rate above ~1e19); such a replicate is None (larger than
        every observation: `poolbench.metrics.prior_predictive_check`), and the next one is
        drawn from a seed of its own (the failed call left the generators where they were)."""
        from pymc.pytensorf import reseed_rngs

        pm.set_data(arrays, model=self.model)
        reseed_rngs(self.rngs, seed)
        for i in range(draws):
            try:
                yield self.draw()[-1]
            except ValueError as exc:
                if not beyond_drawable(exc):
                    raise
                reseed_rngs(self.rngs, [seed, i])
                yield None


def beyond_drawable(exc: ValueError) -> bool:
    """Whether numpy refused to draw a count because its rate is too large to represent
    ("lam value too large", "n too large or p too small")."""
    return any(message in str(exc) for message in ("lam value too large", "n too large or p too small"))


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

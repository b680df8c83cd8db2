"""What the metrics evaluate on a fit's built model: the log prior and log-likelihood of
every draw (power-scaling sensitivity, calibration's test quantity), the pointwise
log-likelihood (PSIS-LOO), and draws from the prior (calibration's true values, the prior
predictive check).

Apart from the builders (`poolbench.models`) because this code decides every fit's metrics
(`poolbench.cache.METRICS_MODULES`) while a builder decides only its own models, which
reach their fits' keys as built graphs: adding a family or a term recomputes no other
model's metrics and resamples no calibration fit.
"""

from __future__ import annotations

import numpy as np
import pymc as pm

from poolbench.models import OBSERVED_DATA, scaled_name
from poolbench.variants import HIERARCHICAL, OBSERVED, VARIANTS, partially_centered, standardised


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

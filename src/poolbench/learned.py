"""The learned parameterisation's centeredness (Gorinova, Moore & Hoffman 2020, VIP): a
short variational run on the lambda-parameterised model, then lambda fixed for NUTS.

Its own module because a learned fit's lambda is not in the data arrays when the fit cache
is asked: this code (and the pilot it starts from, `poolbench.centering`) is part of those
fits' keys (`poolbench.cache.learning_code_version`), and nothing else's.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
from pytensor.compile.sharedvalue import SharedVariable

from poolbench.centering import centeredness, centeredness_names
from poolbench.grid import ModelSpec
from poolbench.models import build_model
from poolbench.variants import PARTIAL

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

        self.spec, self.prior, self.n_groups = spec, prior, n_groups
        self.logits = {name: pytensor.shared(np.zeros(n_groups), name=f"{name}_logit")
                       for name in centeredness_names(spec.variant)}
        # The sampler's model: the variational run, like NUTS, sees no units (`build_model`).
        self.model = build_model(spec, prior, arrays | {name: pt.sigmoid(a) for name, a in self.logits.items()}, n_groups,
                                 for_sampler=True)
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
        pilot = centeredness(arrays, self.n_groups, self.spec.variant, self.spec.likelihood, PARTIAL, self.prior)
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

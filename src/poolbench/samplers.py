"""NUTS backends behind one interface: compile a model once, then sample many datasets.

Every backend returns the posterior as an ArviZ DataTree with the sample stats ArviZ's
diagnostics read. Only the sampler call belongs here; the batch loop is `poolbench.fit`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pymc as pm
import xarray as xr
from pymc.exceptions import SamplingError

from poolbench.grid import DEFAULT_ADAPTATION, sampler_label, sampler_parts
from poolbench.variants import DATA_RULE, FIXED_RULE, LEARNED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplerSettings:
    backend: str
    draws: int
    tune: int
    chains: int
    threads: int = 1
    # How NUTS adapts its mass matrix (`poolbench.grid.ADAPTATIONS`; nutpie alone has others).
    adaptation: str = DEFAULT_ADAPTATION

    @classmethod
    def from_label(cls, label: str, **settings) -> "SamplerSettings":
        """The settings of a sampler label (`poolbench.grid.sampler_label`), e.g. 'nutpie-low_rank'."""
        backend, adaptation = sampler_parts(label)
        return cls(backend=backend, adaptation=adaptation, **settings)

    @property
    def label(self) -> str:
        """What tables, paths and findings call this sampler: its backend, with its adaptation."""
        return sampler_label(self.backend, self.adaptation)

    def decides_draws(self) -> dict:
        """The settings that decide the draws (threads do not: results never depend on it).
        The default adaptation is left out: the keys of fits made before it was an axis hold."""
        extra = {} if self.adaptation == DEFAULT_ADAPTATION else {"adaptation": self.adaptation}
        return {"backend": self.backend, "draws": self.draws, "tune": self.tune, "chains": self.chains} | extra


class Sampler:
    """Compile once, then sample many datasets with the same number of groups.

    NUTS runs on `sampled` (`poolbench.models.build_model(..., for_sampler=True)`; the
    model itself where none is given); its draws, the same free parameters and
    deterministics, are evaluated on `model` (log-likelihood, predictive checks)."""

    def __init__(self, model: pm.Model, settings: SamplerSettings, sampled: pm.Model | None = None):
        self.model = model
        self.sampled = model if sampled is None else sampled
        self.settings = settings

    def sample(self, arrays: dict, seed: int, target_accept: float) -> xr.DataTree:
        """Posterior of one dataset (attrs["sampling_time"], where the sampler sets it,
        excludes per-call compilation)."""
        raise NotImplementedError


class StartCheck:
    """PyMC's `Model.check_start_vals` (same test, same message), compiled once per job
    instead of on every call. Data reach it through the model's `pm.Data` variables."""

    def __init__(self, model: pm.Model):
        factors = model.basic_RVs + model.potentials
        self.names = [factor.name for factor in factors]
        logps = [factor.sum() for factor in model.logp(factors, sum=False)]
        # Python linker: compiles in ~0.1 s where numba takes ~1.5 s; a call costs ~0.2 ms.
        self.logps = model.compile_fn(inputs=model.value_vars, outs=logps, mode="FAST_COMPILE")
        self.point = model.initial_point()

    def __call__(self) -> None:
        results = dict(zip(self.names, np.round(self.logps(self.point), 2)))
        if not all(np.isfinite(v) for v in results.values()):
            raise SamplingError(
                "Initial evaluation of model at starting point failed!\n"
                f"Starting values:\n{self.point}\n\nLogp initial evaluation results:\n{results}"
            )


class NutpieSampler(Sampler):
    def __init__(self, model, settings, sampled=None):
        import nutpie

        from poolbench import nutpie_callbacks

        super().__init__(model, settings, sampled)
        self._nutpie = nutpie
        with nutpie_callbacks.faster_callbacks():  # same draws, ~1.3 s less compile per model
            self.compiled = nutpie.compile_pymc_model(self.sampled)
        self.check_start = StartCheck(self.sampled)

    def sample(self, arrays, seed, target_accept):
        s = self.settings
        # PyMC's start check names the offending terms. It also keeps nutpie off its
        # failed-initialisation path, after which nutpie 0.16's worker threads outlive the
        # call and can crash the interpreter at exit (SIGSEGV).
        pm.set_data(arrays, model=self.sampled)
        self.check_start()
        # The default is not passed: the call, and so the draws, stay those of before the axis.
        adaptation = {} if s.adaptation == DEFAULT_ADAPTATION else {"adaptation": s.adaptation}
        return self._nutpie.sample(
            self.compiled.with_data(**arrays),
            draws=s.draws,
            tune=s.tune,
            chains=s.chains,
            cores=s.threads,
            seed=seed,
            target_accept=target_accept,
            save_warmup=False,
            progress_bar=False,
            **adaptation,
        )


class PymcSampler(Sampler):
    """Through pm.sample, which compiles on every call (cached on disk by PyTensor)."""

    nuts_sampler = "pymc"
    nuts_options: dict = {}

    def sample(self, arrays, seed, target_accept):
        s = self.settings
        with self.sampled:
            pm.set_data(arrays)
            return pm.sample(
                draws=s.draws,
                tune=s.tune,
                chains=s.chains,
                cores=s.threads,
                random_seed=seed,
                target_accept=target_accept,
                nuts_sampler=self.nuts_sampler,
                progressbar=False,
                compute_convergence_checks=False,
                nuts=dict(self.nuts_options),  # a copy: pm.sample adds target_accept to it
            )


class NumpyroSampler(PymcSampler):
    nuts_sampler = "numpyro"
    # One CPU device: chains one after another (the "parallel" method needs a device each).
    nuts_options = {"chain_method": "sequential"}


SAMPLERS = {"nutpie": NutpieSampler, "pymc": PymcSampler, "numpyro": NumpyroSampler}


class CompiledModels:
    """A job's compiled models: one per number of groups, built when a fit first needs it.
    A model that cannot be built fails every fit that needs it (an error of the machine
    stops the job: `poolbench.fit`)."""

    def __init__(self, spec, prior: dict, settings: SamplerSettings):
        self.spec, self.prior, self.settings = spec, prior, settings
        self.samplers: dict[int, Sampler | Exception] = {}
        self.bare: dict[int, object] = {}  # models built for their densities alone
        self.for_sampler: dict[int, object] = {}  # the data rule's models NUTS runs on
        self.digests: dict[int, str] = {}  # their specifications, for the cache key
        self.learners: dict[int, object] = {}  # a learned form's variational steps
        self.seconds = 0.0

    def get(self, arrays: dict, n_groups: int) -> Sampler:
        from poolbench.learned import CenterednessLearner
        from poolbench.models import build_model
        from poolbench.storage import is_environment_error

        if n_groups not in self.samplers:
            start = time.perf_counter()
            try:
                model = self.model(arrays, n_groups)
                self.samplers[n_groups] = SAMPLERS[self.settings.backend](model, self.settings,
                                                                          self.sampled_model(arrays, n_groups))
                if self.spec.parameterisation == LEARNED:
                    self.learners[n_groups] = CenterednessLearner(self.spec, self.prior, arrays, n_groups)
                self.bare.pop(n_groups, None)  # the sampler's model serves from now on
            except Exception as exc:
                if is_environment_error(exc):
                    raise
                self.samplers[n_groups] = exc
            seconds = time.perf_counter() - start
            self.seconds += seconds
            log.info("%s: model for %d groups ready in %.2f s (%s)", self.spec.structure, n_groups, seconds, self.settings.backend)
        sampler = self.samplers[n_groups]
        if isinstance(sampler, Exception):
            raise sampler
        return sampler

    def learner(self, arrays: dict, n_groups: int):
        """A learned parameterisation's variational step for `n_groups` groups
        (`poolbench.learned.CenterednessLearner`): compiled with the model's sampler and
        shared by the job's fits as the sampler is; its compile is compile time."""
        self.get(arrays, n_groups)
        return self.learners[n_groups]

    def specification(self, arrays: dict, n_groups: int) -> str:
        """`poolbench.models.specification_digest` of the model for `n_groups` groups, for
        the fit cache's key; "unbuildable" where the model cannot be built (its fits fail
        when they ask for the sampler, `get`, and are never served from the cache)."""
        from poolbench.models import specification_digest
        from poolbench.storage import is_environment_error

        if n_groups not in self.digests:
            try:
                model = self.model(arrays, n_groups)
            except Exception as exc:
                if is_environment_error(exc):
                    raise
                model = None
            # A failure of the digest itself is a bug here, not a model that cannot be
            # built: it stops the job rather than key fits by a placeholder.
            if model is None:
                self.digests[n_groups] = "unbuildable"
            else:
                sampled = self.sampled_model(arrays, n_groups)
                digest = specification_digest(model)
                # The data rule's sampler model decides the draws too (the fixed rule's is the model).
                self.digests[n_groups] = digest if sampled is model else f"{digest}+{specification_digest(sampled)}"
        return self.digests[n_groups]

    def sampled_model(self, arrays: dict, n_groups: int):
        """The model NUTS runs on (`poolbench.models.build_model(..., for_sampler=True)`):
        under the fixed rule the model itself (`model`)."""
        if self.prior.get("rule", FIXED_RULE) != DATA_RULE:
            return self.model(arrays, n_groups)
        if n_groups not in self.for_sampler:
            from poolbench.models import build_model

            self.for_sampler[n_groups] = build_model(self.spec, self.prior, arrays, n_groups, for_sampler=True)
        return self.for_sampler[n_groups]

    def model(self, arrays: dict, n_groups: int):
        """The PyMC model for `n_groups` groups, without compiling a sampler where none was
        needed (metrics recomputed from cached draws only evaluate densities). Carries the
        compiled checks (`poolbench.fit.log_densities`, the prior simulator) as attributes."""
        sampler = self.samplers.get(n_groups)
        if sampler is not None and not isinstance(sampler, Exception):
            return sampler.model
        if n_groups not in self.bare:
            from poolbench.models import build_model

            self.bare[n_groups] = build_model(self.spec, self.prior, arrays, n_groups)
        return self.bare[n_groups]

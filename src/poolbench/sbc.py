"""Simulation-based calibration (Talts et al. 2018; Modrák et al. 2023).

For each simulation: draw every parameter from the model's own prior, simulate y with a
scenario's design (its groups and x), fit with the job's compiled model (the same
compile-once sampler as the grid), and record the rank of each true value among thinned
posterior draws. If the fits are calibrated, ranks are uniform; `calibration` tests that
with ArviZ's ECDF-PIT uniformity test (`poolbench.metrics.calibration`).

simuk (arviz-devs) does the same loop but calls `pm.sample` afresh for every simulation
and bakes each simulated y into the graph (`pm.observe`), so nothing compiled survives from
one simulation to the next (measured: ~6.5 s per simulation, against ~0.1 s here). Ranks
are therefore computed here, in numpy, from the posterior draws.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from poolbench import cache as fit_cache
from poolbench import metrics, records, storage
from poolbench.centering import centeredness, centeredness_name, has_centeredness, placeholder, recentred
from poolbench.data import response_dtype
from poolbench.fit import environment_fault, error_message, learned_inputs, learning_key, log_densities
from poolbench.grid import ModelSpec, SbcKey, sbc_seeds
from poolbench.densities import PriorSimulator, beyond_drawable
from poolbench.models import scaled_name
from poolbench.samplers import CompiledModels, SamplerSettings
from poolbench.simulate import design, scenario_trials
from poolbench.priors import design_scales
from poolbench.variants import (
    DATA_RULE, HIERARCHICAL, LIKELIHOODS, TRIALS, VARIANTS, partially_centered, population_mean, population_sd,
)

# The calibration's derived test quantity, reported in the ranks table like a parameter.
LOG_LIKELIHOOD = "log_likelihood"

log = logging.getLogger(__name__)


def ranks(tree: xr.DataTree, truth: dict[str, np.ndarray], thin: int) -> list[dict]:
    """Rank of each true value among the thinned draws (chains pooled): 0..n_ranks."""
    posterior = tree["posterior"]
    rows = []
    for name, true in truth.items():
        draws = posterior[name].values[:, ::thin]  # (chain, draw, ...)
        draws = draws.reshape(-1, *draws.shape[2:])
        below = (draws < np.asarray(true)[None]).sum(axis=0)
        n_ranks = draws.shape[0]
        for index in np.ndindex(np.shape(true)):
            label = name if not index else f"{name}[{','.join(map(str, index))}]"
            rows.append({"parameter": label, "rank": int(below[index]), "n_ranks": n_ranks,
                         "true_value": float(np.asarray(true)[index])})
    return rows


@dataclass
class SbcBatch:
    """The calibration simulations of one model and backend (one job)."""

    spec: ModelSpec
    fit_prior: dict
    settings: SamplerSettings
    scenarios: dict[str, dict]
    master_seed: int
    thin: int
    cache_dir: str | None = None
    # The prior the simulations are drawn from; the fitted one unless a test says otherwise
    # (a deliberately wrong model must be flagged miscalibrated).
    generating_prior: dict | None = None
    # The job's compiled models, shared with its grid fits (one compile serves both).
    models: CompiledModels | None = None

    def __post_init__(self):
        self.cache = fit_cache.FitCache(self.cache_dir)
        self.models = self.models or CompiledModels(self.spec, self.fit_prior, self.settings)
        self.simulators: dict[int, PriorSimulator] = {}
        self.names = list(VARIANTS[self.spec.variant].calibrated(LIKELIHOODS[self.spec.likelihood]))

    def simulator(self, arrays: dict, n_groups: int) -> PriorSimulator:
        if n_groups not in self.simulators:
            from poolbench.models import build_model

            model = build_model(self.spec, self.generating_prior or self.fit_prior, arrays, n_groups)
            # The free parameters too: the log-likelihood's true value is computed from them.
            free = [rv.name for rv in model.free_RVs if rv.name not in self.names]
            self.simulators[n_groups] = PriorSimulator(model, self.names + free)
        return self.simulators[n_groups]

    def run(self, keys: list[SbcKey]) -> tuple[pd.DataFrame, pd.DataFrame]:
        fit_rows, rank_rows, n_cached = [], [], 0
        compiled_before = self.models.seconds  # what this run compiles is shared out below
        for i, key in enumerate(keys, start=1):
            record, key_ranks, cached = self.fit_one(key)
            record["ess_bulk_per_second"] = record.get("min_ess_bulk", np.nan) / max(record["sampling_seconds"], 1e-9)
            n_cached += cached
            fit_rows.append(record)
            rank_rows += [{k: record[k] for k in records.SBC_IDENTITY} | row for row in key_ranks]
            if i % 10 == 0 or i == len(keys):
                log.info("simulation %d/%d (%s, ta=%g): %s%s", i, len(keys), key.scenario, key.target_accept,
                         record["status"], " (cached)" if cached else "")
        log.info("%s: %d simulations, %d from the cache", self.spec.structure, len(keys), n_cached)
        fresh = [r for r in fit_rows if not r.pop("_cached")]
        for record in fresh:
            record["compile_seconds"] += (self.models.seconds - compiled_before) / len(fresh)
        return (records.frame(fit_rows, records.SBC_FIT_COLUMNS),
                records.frame(rank_rows, records.RANK_COLUMNS))

    def fit_one(self, key: SbcKey) -> tuple[dict, list[dict], bool]:
        spec, settings = self.spec, self.settings
        scenario = self.scenarios[key.scenario]
        design_seed, prior_seed, fit_seed = sbc_seeds(self.master_seed, key, spec)
        groups, x = design(scenario, design_seed)
        family = LIKELIHOODS[spec.likelihood]
        arrays = {"x": x, "y": np.zeros(len(x), dtype=response_dtype(spec.likelihood)), "group_idx": groups.astype("int64")}
        if TRIALS in family.columns:
            arrays[TRIALS] = np.full(len(x), scenario_trials(scenario), dtype="int64")
        if self.fit_prior.get("rule") == DATA_RULE:
            arrays |= design_scales(scenario, x, VARIANTS[spec.variant].has_intercept, spec.likelihood)
        n_groups = scenario["n_groups"]
        # The prior's draws do not depend on a partially centered model's lambda (theta ~
        # N(mu, sigma) whatever it is): they are drawn under 1/2, the fit gets the data's.
        drawn_centeredness = placeholder(n_groups, spec.variant) if has_centeredness(spec.parameterisation) else {}
        arrays |= drawn_centeredness
        identity = {
            "model": spec.name, "variant": spec.variant, "parameterisation": spec.parameterisation,
            "likelihood": spec.likelihood, "prior": spec.prior, "backend": settings.label,
            "scenario": key.scenario, "target_accept": key.target_accept, "simulation": key.simulation,
        }
        record = identity | {"draws": settings.draws, "tune": settings.tune, "chains": settings.chains,
                             "adaptation": settings.adaptation,
                             "hdi_prob": np.nan, "random_seed": fit_seed, "compile_seconds": 0.0, "_cached": False}
        try:
            drawn, y = self.simulator(arrays, n_groups)(arrays, prior_seed)
        except ValueError as exc:  # a count prior's rate beyond what numpy draws: no dataset to fit
            if not beyond_drawable(exc):
                raise
            return record | {"status": "failed", "error": f"simulated data not drawable: {error_message(exc)}",
                             "sampling_seconds": 0.0}, [], False
        truth = {name: drawn[name] for name in self.names}
        free = {name: value for name, value in drawn.items() if name not in self.names}
        arrays["y"] = np.asarray(y, dtype=response_dtype(spec.likelihood))
        arrays |= centeredness(arrays, n_groups, spec.variant, spec.likelihood, spec.parameterisation,
                               self.fit_prior)
        cache_key = fit_cache.fit_key(
            fit_cache.arrays_digest(arrays), n_groups,
            {"model": spec.name, "likelihood": spec.likelihood, "specification": self.models.specification(arrays, n_groups)}
            | learning_key(spec),
            self.fit_prior, settings.decides_draws(), key.target_accept, fit_seed,
        )
        hit = self.cache.get(cache_key, identity, posterior_required=False)
        # The entry keeps no posterior (it is cheaper to sample again than to store one):
        # metrics from older metrics code or other inputs (thinning) mean sampling again.
        if hit is not None and hit.metrics_current(self.metrics_inputs(truth)):
            return record | hit.entry["sampling"] | hit.entry["record"] | {"_cached": True}, hit.entry["ranks"], True
        start = time.perf_counter()
        try:
            sampler = self.models.get(arrays, n_groups)
            start = time.perf_counter()
            arrays, learning = learned_inputs(self.models, arrays, n_groups, fit_seed)
            free = self.recentred(free, truth, drawn_centeredness, arrays)
            tree = sampler.sample(arrays, fit_seed, key.target_accept)
        except Exception as exc:
            if storage.is_environment_error(exc):
                raise environment_fault(exc, f"sampling {spec.structure} on {key}") from exc
            log.exception("simulation fit failed: %s %s", spec.structure, key)
            return record | {"status": "failed", "error": error_message(exc),
                             "sampling_seconds": time.perf_counter() - start}, [], False
        sampling = {"sampling_seconds": float(tree["posterior"].attrs.get("sampling_time", time.perf_counter() - start - learning))
                    + learning}
        computed = self.metrics(tree, truth, self.log_likelihood_rank(sampler, tree, free | truth, arrays))
        try:
            self.cache.put_record(cache_key, identity, sampling, computed)
        except Exception as exc:
            if storage.is_environment_error(exc):
                raise environment_fault(exc, f"storing the simulation fit {spec.structure} {key}") from exc
            raise
        return record | sampling | computed["record"], computed["ranks"], False

    def recentred(self, free: dict, truth: dict, drawn: dict, arrays: dict) -> dict:
        """The true free parameters under the fit's centeredness (`arrays`) where they were
        drawn under another (`drawn`): what the true log-likelihood is evaluated at."""
        unit = scaled_name if self.fit_prior.get("rule") == DATA_RULE else (lambda name: name)
        free, values = dict(free), free | truth
        for coefficient in (c for c, kind in VARIANTS[self.spec.variant].terms.items() if kind == HIERARCHICAL):
            name, lam = partially_centered(coefficient), centeredness_name(coefficient)
            if name in free and lam in drawn:
                free[name] = recentred(free[name], values[unit(population_mean(coefficient))],
                                       values[unit(population_sd(coefficient))], drawn[lam], arrays[lam])
        return free

    def metrics(self, tree: xr.DataTree, truth: dict, log_likelihood: dict) -> dict:
        record = {"status": "ok", "error": "", **metrics.sampler_diagnostics(tree)}
        return {"metrics_version": fit_cache.metrics_code_version(), "metrics_inputs": self.metrics_inputs(truth),
                "record": record, "ranks": ranks(tree, truth, self.thin) + [log_likelihood]}

    def log_likelihood_rank(self, sampler, tree: xr.DataTree, true_values: dict, arrays: dict) -> dict:
        """The rank of a derived test quantity (Modrák et al. 2023): the log-likelihood of
        the simulated data at the true parameters among its values at the thinned
        posterior draws. Miscalibration that no single parameter shows (a wrong
        dependence between them, a misspecified likelihood) shows in it."""
        densities = log_densities(sampler.model, self.spec.variant)
        posterior = tree["posterior"].to_dataset().isel(draw=slice(None, None, self.thin))
        _, draws = densities(posterior, arrays)
        true_point = xr.Dataset({name: (("chain", "draw", *(f"{name}_dim_{i}" for i in range(np.ndim(value)))),
                                        np.asarray(value)[None, None]) for name, value in true_values.items()})
        _, true = densities(true_point, arrays)
        return {"parameter": LOG_LIKELIHOOD, "rank": int((draws < true.item()).sum()), "n_ranks": int(draws.size),
                "true_value": float(true.item())}

    def metrics_inputs(self, truth: dict) -> str:
        """What the ranks depend on besides the draws: the thinning (a changed `sbc/thin`
        must not keep ranks of the old one) and the true values."""
        return fit_cache.metrics_inputs(thin=self.thin, truth={name: np.asarray(value).tolist() for name, value in truth.items()},
                                        registry=VARIANTS[self.spec.variant].metrics_facts(LIKELIHOODS[self.spec.likelihood]))

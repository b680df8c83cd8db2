"""Fit one compiled model to a batch of datasets and target_accept values.

A fit job compiles its model once per number of groups and reuses it for every fit of the
batch: only the `pm.Data` values change. Finished fits come back from the fit cache
(`poolbench.cache`) when their inputs did not change. A fit whose model or sampler fails
becomes a record with status "failed" and the job goes on; an error of the machine (disk
full, permissions, I/O) stops the job with the path and the cause instead: it says
nothing about the model, and a rerun after it is fixed must sample that fit.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from poolbench import cache as fit_cache
from poolbench import metrics, records, storage
from poolbench.centering import centeredness, centeredness_names
from poolbench.data import DataError, DatasetTable, Truth, model_arrays
from poolbench.figures import PPC_DRAWS, PPC_POINTS
from poolbench.grid import REAL, FitKey, ModelSpec, derive_seed, fit_seed, prior_predictive_seed
from poolbench.paths import loo_path
from poolbench.priors import ScaleError, model_inputs
from poolbench.runtime import progress, release_memory
from poolbench.samplers import CompiledModels, Sampler, SamplerSettings
from poolbench.variants import LEARNED, LIKELIHOODS, OBSERVED, TRIALS, VARIANTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitTask:
    """One fit: which data at which target_accept, and where its posterior goes."""

    key: FitKey
    posterior: str


@dataclass
class DataSource:
    """The datasets a fit job reads: a dataset table per scenario (or real data set) and,
    for simulated scenarios, their truths by (outliers, seed)."""

    tables: dict[str, DatasetTable]
    truths: dict[str, dict[tuple[str, int], Truth]]

    def dataset(self, key: FitKey) -> tuple[pd.DataFrame, Truth | None, int]:
        """The observations, the truth (None for real data) and the number of groups."""
        table = self.tables[key.scenario]
        data = table.get(key.outliers, key.seed)
        truth = self.truths.get(key.scenario, {}).get((key.outliers, key.seed))
        n_groups = truth.n_groups if truth is not None else table.n_groups
        return data, truth, n_groups


def identity(key: FitKey, spec: ModelSpec, backend: str) -> dict:
    """The fit a record, a cache entry or a posterior belongs to."""
    return {
        "source": key.source,
        "scenario": key.scenario,
        "outliers": key.outliers,
        "seed": key.seed,
        "model": spec.name,
        "variant": spec.variant,
        "parameterisation": spec.parameterisation,
        "likelihood": spec.likelihood,
        "prior": spec.prior,
        "backend": backend,
        "target_accept": key.target_accept,
    }


def error_message(exc: BaseException) -> str:
    """One readable line for the tables: nutpie appends a native backtrace, which is noise here."""
    text = f"{type(exc).__name__}: {exc}".split("Stack backtrace:")[0]
    return " ".join(text.split())[:500]


def environment_fault(exc: BaseException, doing: str) -> storage.EnvironmentFault:
    return storage.EnvironmentFault(
        f"{doing}: {type(exc).__name__}: {exc}. This is the machine, not the model: free disk "
        "space or fix permissions, then rerun; fits already finished come back from the cache."
    )


def posterior_tree(tree: xr.DataTree, arrays: dict, attrs: dict, per_group: list[str] = ()) -> xr.DataTree:
    """What a stored posterior keeps: the draws, the sample stats ArviZ reads, the data the
    fit saw (with its per-group data `per_group`: a partially centered model's lambda_j,
    without which its draws cannot be read back), and (in attrs) which fit it is and what
    generated its data."""
    stats = tree["sample_stats"].to_dataset()
    stats = stats[[v for v in metrics.KEPT_SAMPLE_STATS if v in stats.data_vars]]
    groups = {
        "posterior": tree["posterior"].to_dataset(),
        "sample_stats": stats,
        "observed_data": xr.Dataset({OBSERVED: ("obs", arrays["y"])}),
        "constant_data": xr.Dataset({name: ("obs", arrays[name]) for name in ("x", "group_idx", TRIALS) if name in arrays}
                                    | {name: ("group", arrays[name]) for name in per_group if name in arrays}),
    }
    if "posterior_predictive" in tree.children:
        groups["posterior_predictive"] = tree["posterior_predictive"].to_dataset()
    out = xr.DataTree.from_dict(groups)
    out.attrs |= attrs
    return out


class FitBatch:
    """The fits of one job: one model (variant, parameterisation, likelihood, prior set)
    and backend over many datasets and target_accepts."""

    def __init__(self, spec: ModelSpec, prior: dict, settings: SamplerSettings, hdi_prob: float,
                 master_seed: int, data: DataSource, cache_dir: str | Path | None = None,
                 check_target_accept: float | None = None):
        """`check_target_accept`: the target_accept whose real-data fits keep replicated
        datasets for the report's predictive check (replicating costs a compile per fit)."""
        self.spec, self.prior, self.settings = spec, prior, settings
        self.check_target_accept = check_target_accept
        self.hdi_prob, self.master_seed, self.data = hdi_prob, master_seed, data
        self.cache = fit_cache.FitCache(cache_dir)
        self.models = CompiledModels(spec, prior, settings)
        self._prior_checks: dict[tuple, list[dict]] = {}

    def run(self, tasks: list[FitTask]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Fit every task; return the per-fit table and the per-group table."""
        for task in tasks:  # the job's directory output exists even if every fit fails
            Path(task.posterior).parent.mkdir(parents=True, exist_ok=True)
        fit_rows, group_rows, fresh = [], [], []
        n_cached = 0
        compiled_before = self.models.seconds  # what this run compiles is shared out below
        for i, task in enumerate(tasks, start=1):
            record, groups, cached = self.fit_one(task)
            if task.key.source == REAL and not cached:  # its log-likelihood is draws x rows
                release_memory()
            record["ess_bulk_per_second"] = record.get("min_ess_bulk", float("nan")) / max(record["sampling_seconds"], 1e-9)
            n_cached += cached
            if not cached:
                fresh.append(record)
            fit_rows.append(record)
            group_rows += [{**{k: record[k] for k in records.IDENTITY}, **row} for row in groups]
            key = task.key
            log.info(
                "fit %d/%d %s %s seed=%s ta=%g: %s%s, %s divergences",
                i, len(tasks), key.scenario, key.outliers, key.seed, key.target_accept,
                record["status"], " (cached)" if cached else "", record.get("n_divergent", "-"),
            )
        log.info("%s: %d fits, %d from the cache", self.spec.structure, len(tasks), n_cached)
        # The job's model compilation, shared out over the fits it served.
        for record in fresh:
            record["compile_seconds"] += (self.models.seconds - compiled_before) / len(fresh)
        return records.frame(fit_rows, records.FIT_COLUMNS), records.frame(group_rows, records.GROUP_COLUMNS)

    def fit_one(self, task: FitTask) -> tuple[dict, list[dict], bool]:
        key, spec, settings = task.key, self.spec, self.settings
        data, truth, n_groups = self.data.dataset(key)
        try:
            arrays = model_inputs(model_arrays(data, spec.likelihood), spec.variant, self.prior, spec.likelihood)
        except ScaleError as exc:  # the data, not the model: no fit could use it
            raise DataError(f"{key.scenario} ({key.outliers}, seed {key.seed}): {exc}") from exc
        arrays |= centeredness(arrays, n_groups, spec.variant, spec.likelihood, spec.parameterisation, self.prior)
        seed = fit_seed(self.master_seed, key, spec)
        fit_identity = identity(key, spec, settings.label)
        replicate = key.source == REAL and key.target_accept == self.check_target_accept
        # Whether the posterior holds replicated datasets is part of what is stored: a fit
        # cached without them must not serve the predictive check.
        model = {"model": spec.name, "likelihood": spec.likelihood, "replicated": replicate,
                 "specification": self.models.specification(arrays, n_groups)}
        model |= learning_key(spec)
        if key.source == REAL:
            # A real-data entry keeps its pointwise LOO instead of its log-likelihood, and
            # replicated datasets capped at what the check draws (issue #24): entries made
            # before, which hold neither, never serve.
            model |= {"replicated": [PREDICTIVE_DRAWS, PPC_POINTS] if replicate else False, "stores": "pointwise-loo"}
        cache_key = fit_cache.fit_key(
            fit_cache.arrays_digest(arrays), n_groups, model, self.prior,
            settings.decides_draws(), key.target_accept, seed,
        )
        record = fit_identity | _design(truth) | {"n_groups": n_groups} | {
            "draws": settings.draws, "tune": settings.tune, "chains": settings.chains, "adaptation": settings.adaptation,
            "hdi_prob": self.hdi_prob, "random_seed": seed, "compile_seconds": 0.0,
        }
        metrics_inputs = self.metrics_inputs(data, truth, n_groups)
        hit = self.cache.get(cache_key, fit_identity)
        if hit is not None:
            try:
                storage.copy_file(hit.posterior, task.posterior)
                stale_metrics = not hit.metrics_current(metrics_inputs)
                stale_loo = key.source == REAL and not _loo_current(hit)
                if stale_metrics or stale_loo:  # recompute from the cached draws, do not resample
                    tree = storage.read_posterior(hit.posterior)
                    # A learned lambda is not in the key's arrays; its draws are read with it.
                    stored = tree["constant_data"]
                    arrays = arrays | {name: stored[name].values for name in centeredness_names(spec.variant) if name in stored}
                    update = self.metrics(tree, key, data, arrays, truth, n_groups, metrics_inputs) if stale_metrics else {}
                    extras = {}
                    if stale_loo:  # the LOO code changed: its log-likelihood again, from the draws
                        loo = _pointwise_loo(tree, self.models.get(arrays, n_groups), arrays)
                        extras = _write_loo(loo, task.posterior, update)
                    self.cache.update_metrics(cache_key, hit, update, extras)
                if LOO_FILE in hit.extras and not stale_loo:
                    storage.copy_file(hit.extras[LOO_FILE], loo_path(task.posterior))
            except Exception as exc:
                if storage.is_environment_error(exc):
                    raise environment_fault(exc, f"copying the cached fit {hit.posterior} to {task.posterior}") from exc
                raise
            return record | hit.entry["sampling"] | hit.entry["record"], hit.entry["groups"], True

        start = time.perf_counter()
        try:
            sampler = self.models.get(arrays, n_groups)
            start = time.perf_counter()  # the compile is shared out over the job's fits
            arrays, learning = learned_inputs(self.models, arrays, n_groups, seed)
            # Real data may take minutes (a million rows): say so while it runs.
            with progress(log, f"sampling {len(arrays['y'])} observations") if key.source == REAL else nullcontext():
                tree = sampler.sample(arrays, seed, key.target_accept)
            elapsed = time.perf_counter() - start
            loo = None
            if key.source == REAL:  # judged without a truth: by predictive accuracy and checks
                tree, loo = _with_predictive(tree, sampler, arrays, seed, replicate)
        except storage.EnvironmentFault:
            raise
        except Exception as exc:
            if storage.is_environment_error(exc):
                raise environment_fault(exc, f"sampling {spec.structure} on {key}") from exc
            log.exception("fit failed: %s %s", spec.structure, key)
            return record | {
                "status": "failed", "error": error_message(exc),
                "sampling_seconds": time.perf_counter() - start,
            }, [], False
        # pm.sample compiles inside the call; its own clock covers the sampling alone.
        # A learned parameterisation's variational run is part of its sampling cost.
        sampling = {"sampling_seconds": float(tree["posterior"].attrs.get("sampling_time", elapsed - learning)) + learning}
        record["compile_seconds"] += elapsed - sampling["sampling_seconds"]
        attrs = {"fit": json.dumps(fit_identity), "truth": truth.to_json() if truth else "null"}
        tree = posterior_tree(tree, arrays, attrs, centeredness_names(spec.variant))
        try:
            storage.write_posterior(tree, task.posterior)
            computed = self.metrics(tree, key, data, arrays, truth, n_groups, metrics_inputs)
            extras = _write_loo(loo, task.posterior, computed) if loo is not None else {}
            self.cache.put(cache_key, fit_identity, Path(task.posterior), sampling, computed, extras)
        except Exception as exc:
            if storage.is_environment_error(exc):
                raise environment_fault(exc, f"storing the fit {spec.structure} {key}") from exc
            raise
        return record | sampling | computed["record"], computed["groups"], False

    def metrics(self, tree: xr.DataTree, key: FitKey, data: pd.DataFrame, arrays: dict, truth: Truth | None,
                n_groups: int, inputs: str) -> dict:
        """Everything a record says about a posterior, with the version of the code that
        said it and what else it was computed from (`inputs`, `metrics_inputs`; stored in
        the cache beside the posterior): diagnostics, estimates, and the model check's
        inputs (prior sensitivity, prior predictive check)."""
        sizes, labels = _group_facts(data, n_groups)
        groups, summary = metrics.estimates(tree, self.spec.variant, self.hdi_prob, sizes, labels, truth)
        model = self.models.model(arrays, n_groups)
        log_prior, log_likelihood = log_densities(model, self.spec.variant)(tree["posterior"].to_dataset(), arrays)
        sensitivity = metrics.prior_sensitivity(tree["posterior"].to_dataset(), log_prior, log_likelihood,
                                                VARIANTS[self.spec.variant].read + LIKELIHOODS[self.spec.likelihood].own_parameters)
        checks = self.prior_predictive(model, key, arrays, n_groups)
        groups = [row | check | {name: float(arrays[name][row["group"]]) for name in centeredness_names(self.spec.variant)
                                 if name in arrays} for row, check in zip(groups, checks)]
        record = {"status": "ok", "error": "", **metrics.sampler_diagnostics(tree), **summary, **sensitivity,
                  "prior_predictive_outside": int(sum(check["prior_outside"] for check in checks)),
                  "prior_predictive_checked": int(sum(np.isfinite([c["prior_mean_lower"], c["prior_sd_lower"]]).sum()
                                                      for c in checks))}
        return {"metrics_version": fit_cache.metrics_code_version(),
                "metrics_inputs": inputs, "record": record, "groups": groups}

    def prior_predictive(self, model, key: FitKey, arrays: dict, n_groups: int) -> list[dict]:
        """The prior predictive check of one dataset (`metrics.prior_predictive_check`):
        the same at every target_accept, so drawn once per dataset, from a seed of the
        dataset and the model."""
        dataset = (key.scenario, key.outliers, key.seed)
        if dataset not in self._prior_checks:
            if not hasattr(model, "prior_simulator"):  # compiled once per model
                from poolbench.densities import PriorSimulator

                model.prior_simulator = PriorSimulator(model, [])
            seed = prior_predictive_seed(self.master_seed, key, self.spec)
            with progress(log, f"prior predictive check of {len(arrays['y'])} observations"):
                replicated = model.prior_simulator.replicates(arrays, seed, metrics.PRIOR_PREDICTIVE_DRAWS)
                self._prior_checks[dataset] = metrics.prior_predictive_check(
                    arrays["y"], arrays["group_idx"], n_groups, replicated)
        return self._prior_checks[dataset]

    def metrics_inputs(self, data: pd.DataFrame, truth: Truth | None, n_groups: int) -> str:
        """What the metrics depend on besides the draws: the cache key covers x, y and the
        group index, not the HDI probability, the groups' labels or the truth."""
        sizes, labels = _group_facts(data, n_groups)
        return fit_cache.metrics_inputs(hdi_prob=self.hdi_prob, sizes=sizes.tolist(), labels=labels,
                                        truth=truth.to_json() if truth else None,
                                        registry=VARIANTS[self.spec.variant].metrics_facts(LIKELIHOODS[self.spec.likelihood]))


def learning_key(spec: ModelSpec) -> dict:
    """What else decides a learned parameterisation's draws, whose lambda the key's data
    arrays do not hold (it is learned after the cache is asked): the learning code."""
    return {"learned": fit_cache.learning_code_version()} if spec.parameterisation == LEARNED else {}


def learned_inputs(models: CompiledModels, arrays: dict, n_groups: int, seed: int) -> tuple[dict, float]:
    """`arrays` with a learned model's centeredness (`poolbench.learned.learned_centeredness`,
    seeded from the fit's seed, by the job's compiled step: `CompiledModels.learner`), and
    the seconds its variational run took; as they are for the others. The step's compile,
    once per job, is not in those seconds: like the model's, it is compile time."""
    if models.spec.parameterisation != LEARNED:
        return arrays, 0.0
    learner = models.learner(arrays, n_groups)
    start = time.perf_counter()
    learned = learner(arrays, derive_seed(seed, "learned-centeredness"))
    return arrays | learned, time.perf_counter() - start


def _group_facts(data: pd.DataFrame, n_groups: int) -> tuple:
    """Each group's number of observations and label (its index where it has none)."""
    sizes = data["group"].value_counts().reindex(range(n_groups), fill_value=0).to_numpy()
    labels = data.drop_duplicates("group").set_index("group")["group_label"].reindex(range(n_groups))
    return sizes, [str(g) if pd.isna(label) else str(label) for g, label in zip(range(n_groups), labels)]


def _design(truth: Truth | None) -> dict:
    if truth is None:
        return {"outlier_count": 0}
    return {
        "outlier_count": truth.outlier_count,
        "outlier_value": truth.outlier_value,
        "n_groups": truth.n_groups,
        "points_per_group": truth.points_per_group,
        "minority_points": truth.minority_points,
        "noise": truth.noise,
    }


# Replicated datasets kept for the posterior predictive check of a real-data fit: as many
# as its figure draws.
PREDICTIVE_DRAWS = PPC_DRAWS
# The cache entry's name of a real-data fit's pointwise LOO (`poolbench.paths.loo_path`).
LOO_FILE = "loo.parquet"


def _write_loo(loo, posterior: str, entry: dict) -> dict[str, Path]:
    """Store a real-data fit's pointwise LOO beside its posterior, and mark `entry` (what
    goes into its cache entry) as computed by this metrics code; the cache's extras."""
    path = Path(loo_path(posterior))
    storage.write_table(metrics.loo_table(loo), path)
    entry["loo_version"] = fit_cache.metrics_code_version()
    return {LOO_FILE: path}


def _loo_current(hit: fit_cache.CachedFit) -> bool:
    """Whether a real-data entry's pointwise LOO was computed by the current metrics code."""
    return LOO_FILE in hit.extras and hit.entry.get("loo_version") == fit_cache.metrics_code_version()


def log_densities(model, variant: str):
    """The per-draw log prior and log-likelihood of a PyMC model
    (`poolbench.densities.LogDensities`), compiled once per model."""
    if not hasattr(model, "poolbench_log_densities"):
        from poolbench.densities import LogDensities

        model.poolbench_log_densities = LogDensities(model, variant)
    return model.poolbench_log_densities


def _pointwise_loo(tree: xr.DataTree, sampler: Sampler, arrays: dict):
    """PSIS-LOO of a real-data fit (`metrics.pointwise_loo`), from its pointwise
    log-likelihood, which is not kept: draws x observations, at a million rows it would be
    most of what is stored, twice (results and cache)."""
    from poolbench.densities import PointwiseLogLikelihood

    if not hasattr(sampler, "log_likelihood"):  # compiled once per model
        sampler.log_likelihood = PointwiseLogLikelihood(sampler.model)
    n_obs, n_draws = len(arrays["y"]), tree["posterior"].sizes["chain"] * tree["posterior"].sizes["draw"]
    with progress(log, f"log-likelihood of {n_obs} observations x {n_draws} draws"):
        log_likelihood = sampler.log_likelihood(tree, arrays)
    # ArviZ fits each observation's Pareto tail in Python: 1.5-4 ms each (docs/upstream.md).
    with progress(log, f"PSIS-LOO of {n_obs} observations"):
        return metrics.pointwise_loo(xr.DataTree.from_dict({"posterior": tree["posterior"].to_dataset(),
                                                           "log_likelihood": log_likelihood}))


def _with_predictive(tree: xr.DataTree, sampler: Sampler, arrays: dict, seed: int, replicate: bool):
    """What a fit on real data is judged by: its PSIS-LOO (`_pointwise_loo`) and, where
    `replicate`, replicated datasets from a thinned posterior (group `posterior_predictive`,
    for the predictive check). Returns the tree and the LOO result."""
    import pymc as pm

    loo = _pointwise_loo(tree, sampler, arrays)
    release_memory()  # the log-likelihood (draws x rows) before the replicates are drawn
    if replicate:
        posterior = tree["posterior"].to_dataset()
        step = max(1, posterior.sizes["chain"] * posterior.sizes["draw"] // PREDICTIVE_DRAWS)
        thinned = posterior.stack(sample=("chain", "draw")).isel(sample=slice(None, None, step))
        thinned = thinned.drop_vars(["sample", "chain", "draw"]).rename(sample="draw").expand_dims(chain=1)
        predictive = pm.sample_posterior_predictive(
            xr.DataTree.from_dict({"posterior": thinned}), model=sampler.model, var_names=[OBSERVED],
            random_seed=seed, progressbar=False,
        )
        replicated = predictive["posterior_predictive"].to_dataset()
        rows = replicated[OBSERVED].dims[-1]
        if replicated.sizes[rows] > PPC_POINTS:  # a documented cap: what the check draws, not every row
            keep = np.unique(np.linspace(0, replicated.sizes[rows] - 1, PPC_POINTS).round().astype(int))
            replicated = replicated.isel({rows: keep})
        tree["posterior_predictive"] = replicated
    return tree, loo

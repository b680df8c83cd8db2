"""Fit one model structure to a batch of datasets and target_accept values.

A fit job compiles its model once per number of groups and reuses it for every fit of the
batch: only the `pm.Data` values change. Finished fits are
kept in a content-addressed cache, so a rerun samples only fits whose inputs changed (a
new target_accept, a job killed half-way). A fit that raises becomes a record with
status "failed" instead of stopping the job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import xarray as xr
from pymc.exceptions import SamplingError

from poolbench.grid import ModelSpec, fit_seed
from poolbench.metrics import KEPT_SAMPLE_STATS, estimate_summary, group_estimates, sampler_diagnostics
from poolbench.models import build_model, model_data
from poolbench.simulate import Truth, read_dataset
from poolbench.storage import write_posterior

log = logging.getLogger(__name__)

# PyTensor's on-disk numba cache makes the numbers depend on the cache's state: a fit
# compiled cold and the same fit loaded from the cache sample different chains (PyTensor
# 3.3.8, nutpie 0.16.11: e.g. PyMC's sampler, one compile directory, first run 15
# divergences, second run 42). Same config => same numbers comes first, so every fit job
# compiles cold (~1.7 s more per model).
pytensor.config.numba__cache = False

# Modules whose code decides a fit's record: part of every cache key.
FIT_MODULES = ("grid.py", "simulate.py", "models.py", "fit.py", "nutpie_callbacks.py", "metrics.py")
# Columns that measure cost, not results: they differ between otherwise identical runs.
TIMING_COLUMNS = ["compile_seconds", "sampling_seconds", "ess_bulk_per_second"]
IDENTITY = ["scenario", "outliers", "seed", "model", "variant", "parameterisation", "backend", "target_accept"]


@dataclass(frozen=True)
class SamplerSettings:
    backend: str
    draws: int
    tune: int
    chains: int
    threads: int
    hdi_prob: float


@dataclass(frozen=True)
class FitTask:
    """One fit: a dataset at a target_accept, and where its posterior goes."""

    dataset: str
    truth: str
    target_accept: float
    posterior: str


class Sampler:
    """Compile once, then sample many datasets with the same number of groups."""

    def __init__(self, model: pm.Model, settings: SamplerSettings):
        self.model = model
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
    def __init__(self, model, settings):
        import nutpie

        from poolbench import nutpie_callbacks

        nutpie_callbacks.install()  # same draws, ~1.3 s less compile per model
        super().__init__(model, settings)
        self._nutpie = nutpie
        self.compiled = nutpie.compile_pymc_model(model)
        self.check_start = StartCheck(model)

    def sample(self, arrays, seed, target_accept):
        s = self.settings
        # PyMC's start check names the offending terms. It also keeps nutpie off its
        # failed-initialisation path, after which nutpie 0.16's worker threads outlive the
        # call and can crash the interpreter at exit (SIGSEGV).
        pm.set_data(arrays, model=self.model)
        self.check_start()
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
        )


class PymcSampler(Sampler):
    """Through pm.sample, which compiles on every call (cached on disk by PyTensor)."""

    nuts_sampler = "pymc"
    nuts_options: dict = {}

    def sample(self, arrays, seed, target_accept):
        s = self.settings
        with self.model:
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


@functools.cache
def code_version() -> str:
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for name in FIT_MODULES:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def file_digest(path: str) -> str:
    """SHA-256 of a file, read once per process (a dataset serves several fits)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class FitCache:
    """Finished fits by the hash of everything that decides them: the dataset's bytes,
    the model, its priors, the sampler settings (not threads), target_accept, the seed and
    the code. Entries are written atomically; failed fits are not cached, so a rerun
    tries them again."""

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory else None

    def key(self, task: FitTask, spec: ModelSpec, prior: dict, settings: SamplerSettings, seed: int) -> str:
        content = {
            "dataset": file_digest(task.dataset),
            "truth": file_digest(task.truth),
            "model": spec.name,
            "prior": prior,
            "settings": {k: v for k, v in asdict(settings).items() if k != "threads"},
            "target_accept": task.target_accept,
            "seed": seed,
            "code": code_version(),
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def _entry(self, key: str) -> Path:
        return self.directory / key[:2] / key

    def get(self, key: str) -> tuple[dict, list[dict], Path] | None:
        if self.directory is None:
            return None
        entry = self._entry(key)
        if not (entry / "record.json").exists():
            return None
        stored = json.loads((entry / "record.json").read_text())
        return stored["record"], stored["groups"], entry / "posterior.nc"

    def put(self, key: str, record: dict, groups: list[dict], posterior: Path) -> None:
        if self.directory is None:
            return
        entry = self._entry(key)
        partial = entry.with_name(entry.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        link_or_copy(posterior, partial / "posterior.nc")
        (partial / "record.json").write_text(json.dumps({"record": record, "groups": groups}))
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(partial, entry)


def link_or_copy(source: Path, target: Path) -> None:
    """Put `source` at `target` atomically, as a hard link where possible (posteriors are
    never modified in place: every write replaces the file)."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:  # another filesystem, or no hard links
        shutil.copyfile(source, partial)
    os.replace(partial, target)


def _with_data_groups(tree: xr.DataTree, arrays: dict) -> xr.DataTree:
    """Keep the sample stats ArviZ uses and make sure the data the fit saw travel with it."""
    stats = tree["sample_stats"].to_dataset()
    stats = stats[[v for v in KEPT_SAMPLE_STATS if v in stats.data_vars]]
    return xr.DataTree.from_dict(
        {
            "posterior": tree["posterior"].to_dataset(),
            "sample_stats": stats,
            "observed_data": xr.Dataset({"y_obs": ("obs", arrays["y"])}),
            "constant_data": xr.Dataset(
                {"x": ("obs", arrays["x"]), "group_idx": ("obs", arrays["group_idx"])}
            ),
        }
    )


def error_message(exc: BaseException) -> str:
    """One readable line for the tables: nutpie appends a native backtrace, which is noise here."""
    text = f"{type(exc).__name__}: {exc}".split("Stack backtrace:")[0]
    return " ".join(text.split())[:500]


def _sample_one(sampler: Sampler, task: FitTask, truth: Truth, data: pd.DataFrame, seed: int, settings: SamplerSettings, record: dict) -> list[dict]:
    """Sample one fit, write its posterior, fill `record`; return its per-group rows."""
    start = time.perf_counter()
    arrays = model_data(data)
    tree = sampler.sample(arrays, seed, task.target_accept)
    elapsed = time.perf_counter() - start
    # pm.sample compiles inside the call; its own clock covers the sampling alone.
    sampling_seconds = tree["posterior"].attrs.get("sampling_time", elapsed)
    record["compile_seconds"] += elapsed - sampling_seconds
    tree = _with_data_groups(tree, arrays)
    tree.attrs |= {
        "truth": json.dumps(asdict(truth)),
        "fit": json.dumps({k: v for k, v in record.items() if "seconds" not in k}),
    }
    groups = group_estimates(tree, truth, settings.hdi_prob)
    record |= {
        "status": "ok",
        "error": "",
        "sampling_seconds": sampling_seconds,
        **sampler_diagnostics(tree),
        **estimate_summary(groups, tree, truth, settings.hdi_prob),
    }
    record["ess_bulk_per_second"] = record["min_ess_bulk"] / max(sampling_seconds, 1e-9)
    write_posterior(tree, task.posterior)
    return groups


def fit_batch(
    spec: ModelSpec,
    tasks: list[FitTask],
    settings: SamplerSettings,
    prior: dict,
    master_seed: int,
    cache_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit every task; return the per-fit table and the per-group table.

    `prior` is the variant's block of `models/priors`.
    """
    for task in tasks:  # the job's directory output exists even if every fit fails
        Path(task.posterior).parent.mkdir(parents=True, exist_ok=True)
    truths = {path: Truth.read(path) for path in dict.fromkeys(t.truth for t in tasks)}
    datasets = {
        t.dataset: read_dataset(t.dataset, truths[t.truth].n_groups) for t in tasks
    }
    cache = FitCache(cache_dir)
    seeds = [fit_seed(master_seed, truths[t.truth], spec, t.target_accept) for t in tasks]
    keys = [cache.key(t, spec, prior, settings, s) for t, s in zip(tasks, seeds)]
    cached = [cache.get(k) for k in keys]
    n_to_fit = sum(hit is None for hit in cached)
    log.info("%s: %d fits, %d from the cache", spec.name, len(tasks), len(tasks) - n_to_fit)
    fresh: list[dict] = []  # records sampled by this job (not from the cache)

    # One sampler per number of groups, built when a fit first needs it.
    samplers: dict[int, Sampler | Exception] = {}
    compile_seconds = 0.0

    def sampler_for(truth: Truth, data: pd.DataFrame) -> Sampler:
        nonlocal compile_seconds
        if truth.n_groups not in samplers:
            start = time.perf_counter()
            try:
                model = build_model(spec, prior, data, truth.n_groups)
                samplers[truth.n_groups] = SAMPLERS[settings.backend](model, settings)
            except Exception as exc:  # a model that cannot compile fails all its fits
                samplers[truth.n_groups] = exc
            seconds = time.perf_counter() - start
            compile_seconds += seconds
            log.info("%s: model for %d groups ready in %.2f s (%s)", spec.name, truth.n_groups, seconds, settings.backend)
        sampler = samplers[truth.n_groups]
        if isinstance(sampler, Exception):
            raise sampler
        return sampler

    fit_rows, group_rows = [], []
    for i, (task, seed, key, hit) in enumerate(zip(tasks, seeds, keys, cached), start=1):
        truth = truths[task.truth]
        if hit is not None:
            record, groups, posterior = hit
            link_or_copy(posterior, Path(task.posterior))
        else:
            record = {
                "scenario": truth.scenario,
                "outliers": truth.outliers,
                "outlier_count": truth.outlier_count,
                "outlier_value": truth.outlier_value,
                "seed": truth.seed,
                "model": spec.name,
                "variant": spec.variant,
                "parameterisation": spec.parameterisation,
                "target_accept": task.target_accept,
                **{k: v for k, v in asdict(settings).items() if k != "threads"},
                "random_seed": seed,
                "compile_seconds": 0.0,  # plus this job's compile time, shared out below
            }
            start = time.perf_counter()
            try:
                sampler = sampler_for(truth, datasets[task.dataset])
                groups = _sample_one(sampler, task, truth, datasets[task.dataset], seed, settings, record)
                cache.put(key, record, groups, Path(task.posterior))
            except Exception as exc:
                log.exception("fit %d/%d failed: %s", i, len(tasks), task.dataset)
                groups = []
                record |= {
                    "status": "failed",
                    "error": error_message(exc),
                    "sampling_seconds": time.perf_counter() - start,
                }
            fresh.append(record)
        fit_rows.append(record)
        group_rows += [{**{k: record[k] for k in IDENTITY}, **row} for row in groups]
        log.info(
            "fit %d/%d %s %s seed=%s ta=%g: %s%s, %s divergences",
            i, len(tasks), truth.scenario, truth.outliers, truth.seed, task.target_accept,
            record["status"], " (cached)" if hit else "", record.get("n_divergent", "-"),
        )
    # The job's model compilation, shared out over the fits it served.
    for record in fresh:
        record["compile_seconds"] += compile_seconds / len(fresh)
    return pd.DataFrame(fit_rows), pd.DataFrame(group_rows)


"""Fit one model structure to a batch of datasets at one target_accept.

A fit job compiles its model once and reuses it for every dataset of the batch: the
datasets of a scenario share their shape, so only the `pm.Data` values change. A fit
that raises becomes a record with status "failed" instead of stopping the job.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from poolbench.grid import ModelSpec, derive_seed
from poolbench.metrics import estimate_summary, group_estimates, sampler_diagnostics
from poolbench.models import build_model, model_data
from poolbench.simulate import Truth, read_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplerSettings:
    backend: str
    target_accept: float
    draws: int
    tune: int
    chains: int
    threads: int
    hdi_prob: float


@dataclass(frozen=True)
class FitTask:
    """One dataset to fit, and where its posterior goes."""

    dataset: str
    truth: str
    posterior: str


class Sampler:
    """Compile once, then sample many datasets of the same shape."""

    def __init__(self, model: pm.Model, settings: SamplerSettings):
        self.model = model
        self.settings = settings

    def sample(self, arrays: dict, seed: int) -> xr.DataTree:
        """Posterior of one dataset (attrs["sampling_time"], where the sampler sets it,
        excludes per-call compilation)."""
        raise NotImplementedError


class NutpieSampler(Sampler):
    def __init__(self, model, settings):
        import nutpie

        super().__init__(model, settings)
        self._nutpie = nutpie
        self.compiled = nutpie.compile_pymc_model(model)

    def sample(self, arrays, seed):
        s = self.settings
        # PyMC's own start check, with a message naming the offending terms. It also keeps
        # nutpie off its failed-initialisation path, after which nutpie 0.16's worker threads
        # outlive the call and can crash the interpreter at exit (SIGSEGV).
        pm.set_data(arrays, model=self.model)
        self.model.check_start_vals(self.model.initial_point())
        tree = self._nutpie.sample(
            self.compiled.with_data(**arrays),
            draws=s.draws,
            tune=s.tune,
            chains=s.chains,
            cores=s.threads,
            seed=seed,
            target_accept=s.target_accept,
            save_warmup=False,
            progress_bar=False,
        )
        return tree


class PymcSampler(Sampler):
    def sample(self, arrays, seed):
        s = self.settings
        with self.model:
            pm.set_data(arrays)
            tree = pm.sample(
                draws=s.draws,
                tune=s.tune,
                chains=s.chains,
                cores=s.threads,
                random_seed=seed,
                target_accept=s.target_accept,
                nuts_sampler="pymc",
                progressbar=False,
                compute_convergence_checks=False,
            )
        return tree


SAMPLERS = {"nutpie": NutpieSampler, "pymc": PymcSampler}


def fit_seed(master_seed: int, truth: Truth, spec: ModelSpec, target_accept: float) -> int:
    return derive_seed(
        master_seed, "fit", truth.scenario, truth.outliers, truth.seed, spec.name, target_accept
    )


def _with_data_groups(tree: xr.DataTree, arrays: dict) -> xr.DataTree:
    """Keep numeric sample stats and make sure the data the fit saw travel with it."""
    stats = tree["sample_stats"].to_dataset()
    stats = stats[[v for v in stats.data_vars if stats[v].dtype.kind in "biuf"]]
    children = {name: tree[name].to_dataset() for name in ("posterior",)}
    children["sample_stats"] = stats
    children["observed_data"] = xr.Dataset({"y_obs": ("obs", arrays["y"])})
    children["constant_data"] = xr.Dataset(
        {"x": ("obs", arrays["x"]), "group_idx": ("obs", arrays["group_idx"])}
    )
    return xr.DataTree.from_dict(children)


def error_message(exc: BaseException) -> str:
    """One readable line for the tables: nutpie appends a native backtrace, which is noise here."""
    text = f"{type(exc).__name__}: {exc}".split("Stack backtrace:")[0]
    return " ".join(text.split())[:500]


def write_posterior(tree: xr.DataTree, path: str | Path) -> None:
    """Write NetCDF atomically: a crash mid-write never leaves a truncated file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".nc.partial")
    tree.to_netcdf(partial, engine="h5netcdf")
    os.replace(partial, path)


def fit_batch(
    spec: ModelSpec,
    tasks: list[FitTask],
    settings: SamplerSettings,
    prior: dict,
    master_seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit every task; return the per-fit table and the per-group table.

    `prior` is the variant's block of `models/priors`.
    """
    for task in tasks:  # the job's directory output exists even if every fit fails
        Path(task.posterior).parent.mkdir(parents=True, exist_ok=True)
    truths = [Truth.read(t.truth) for t in tasks]
    datasets = [read_dataset(t.dataset, truth.n_groups) for t, truth in zip(tasks, truths)]

    compile_error = None
    compile_start = time.perf_counter()
    try:
        model = build_model(spec, prior, datasets[0], truths[0].n_groups)
        sampler = SAMPLERS[settings.backend](model, settings)
    except Exception as exc:  # a model that cannot compile fails every fit of the job
        compile_error = exc
    compile_seconds = time.perf_counter() - compile_start
    log.info("%s: model ready in %.2f s (%s)", spec.name, compile_seconds, settings.backend)

    fit_rows, group_rows = [], []
    for i, (task, truth, data) in enumerate(zip(tasks, truths, datasets), start=1):
        seed = fit_seed(master_seed, truth, spec, settings.target_accept)
        record = {
            "scenario": truth.scenario,
            "outliers": truth.outliers,
            "outlier_count": truth.outlier_count,
            "outlier_value": truth.outlier_value,
            "seed": truth.seed,
            "model": spec.name,
            "variant": spec.variant,
            "parameterisation": spec.parameterisation,
            **{k: v for k, v in asdict(settings).items() if k not in ("threads",)},
            "random_seed": seed,
            "compile_seconds": compile_seconds / len(tasks),
        }
        start = time.perf_counter()
        try:
            if compile_error is not None:
                raise compile_error
            arrays = model_data(data)
            tree = sampler.sample(arrays, seed)
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
            group_rows += [{**_identity(record), **row} for row in groups]
        except Exception as exc:
            log.exception("fit %d/%d failed: %s", i, len(tasks), task.dataset)
            record |= {
                "status": "failed",
                "error": error_message(exc),
                "sampling_seconds": time.perf_counter() - start,
            }
        fit_rows.append(record)
        log.info(
            "fit %d/%d %s %s seed=%s ta=%g: %s, %s divergences",
            i, len(tasks), truth.scenario, truth.outliers, truth.seed,
            settings.target_accept, record["status"], record.get("n_divergent", "-"),
        )
    return pd.DataFrame(fit_rows), pd.DataFrame(group_rows)


IDENTITY = ["scenario", "outliers", "seed", "model", "variant", "parameterisation", "backend", "target_accept"]


def _identity(record: dict) -> dict:
    return {k: record[k] for k in IDENTITY}


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)


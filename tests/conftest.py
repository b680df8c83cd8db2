"""Shared helpers: the repository root, small configs and a Snakemake runner."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO / "src"))  # importable without installing (e.g. in a conda env)
BIN = Path(sys.executable).parent
TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())
# Where the tiny study writes (results/{study}/).
TINY_RESULTS = Path("results") / TINY["study"]["name"]

from poolbench.numerics import configure_pytensor  # noqa: E402

configure_pytensor()  # the same PyTensor settings as the workflow's jobs, for in-process fits


def tiny_config(**changes) -> dict:
    """A copy of tests/configs/tiny.yaml with top-level keys replaced."""
    config = copy.deepcopy(TINY)
    config.update(copy.deepcopy(changes))
    return config


def validated(config: dict) -> dict:
    """A copy of `config` as the workflow sees it: the schema's defaults filled in (Snakemake's
    `validate`), then poolbench's own checks passed."""
    from snakemake.utils import validate

    from poolbench import config as config_checks

    config = copy.deepcopy(config)
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    config_checks.check(config)
    return config


def write_config(directory: Path, config: dict, name: str = "config.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(
    workdir: Path,
    config: dict | Path | None,
    *args: str,
    cores: int = 2,
    check: bool = True,
    timeout: float = 900,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run the workflow in `workdir` with exactly `config` (not merged over the default)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--cores", str(cores)]
    if config is not None:
        path = config if isinstance(config, Path) else write_config(workdir, config)
        cmd += ["--configfile", str(path), "--replace-workflow-config"]
    result = subprocess.run(
        cmd + list(args), capture_output=True, text=True, timeout=timeout, cwd=workdir,
        env=None if env is None else os.environ | env,
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from Snakemake's "Job stats" table."""
    table = output.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


# Fixtures that run Snakemake or NUTS: a test needing one (directly or through another
# fixture) is marked `slow`, like the tests that call them in their own body (marked by
# hand), so that `pytest -m "not slow"` is the quick subset (README).
SLOW_FIXTURES = {"tiny_run", "real_run", "sbc_run", "trust_run", "cached_fits", "tutorial_fits", "robust_fits",
                 "right_and_wrong", "cluster"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One complete run of tests/configs/tiny.yaml, shared by the end-to-end tests."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir, tiny_config(), cores=2)
    return workdir


MASTER_SEED = DEFAULT["master_seed"]
TWO_OUTLIERS = {"count": 2, "value": 30.0}


def simulated_source(directory: Path, scenarios: dict[str, dict], seeds: list[int], levels: list[dict] = (TWO_OUTLIERS,),
                     master_seed: int = MASTER_SEED):
    """Simulate scenarios into dataset tables under `directory`, as the workflow's simulate
    jobs do, and return the fit jobs' view of them (poolbench.fit.DataSource)."""
    from poolbench import data, grid
    from poolbench.fit import DataSource
    from poolbench.simulate import simulate_scenario

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tables, truths = {}, {}
    for name, scenario in scenarios.items():
        frames, truth_list = simulate_scenario(
            name, scenario, {grid.outlier_label(level): level for level in levels}, list(seeds), master_seed
        )
        data.write_datasets(frames, directory / f"{name}.parquet")
        data.write_truths(truth_list, directory / f"{name}.truth.parquet")
        tables[name] = data.DatasetTable(directory / f"{name}.parquet")
        truths[name] = data.read_truths(directory / f"{name}.truth.parquet")
    return DataSource(tables, truths)


def fit_keys(scenario: str, seeds, target_accepts=(0.8,), level: dict = TWO_OUTLIERS):
    from poolbench.grid import SIMULATED, FitKey, outlier_label

    return [FitKey(SIMULATED, scenario, outlier_label(level), seed, ta) for seed in seeds for ta in target_accepts]


def fit(name: str, keys, source, directory: Path, *, likelihood="normal", draws=1000, tune=1000, chains=4,
        prior: dict | None = None, cache=None, backend="nutpie", master_seed=MASTER_SEED, hdi_prob=0.94):
    """Fit `keys` with one model, as a fit job would; return (fits, groups)."""
    from poolbench import grid, paths
    from poolbench.fit import FitBatch, FitTask
    from poolbench.samplers import SamplerSettings

    spec = grid.ModelSpec.from_name(name, likelihood)
    config = {"models": {"priors": DEFAULT["models"]["priors"], "likelihood_priors": {}, "prior_sets": {}}}
    priors = prior if prior is not None else grid.priors(config, spec)
    tasks = [
        FitTask(key, str(Path(directory) / f"{name}.{likelihood}" / paths.posterior_name(
            key.scenario, key.outliers, key.seed, grid.target_accept_label(key.target_accept))))
        for key in keys
    ]
    batch = FitBatch(spec, priors, SamplerSettings(backend, draws, tune, chains), hdi_prob, master_seed, source, cache)
    return batch.run(tasks)

"""Speed benchmark (issue #18): poolbench against the loops people write, the sampling
limit, the default run, planning at scale, and memory.

    .venv/bin/python benchmarks/run_benchmark.py                 # everything (~30 minutes)
    .venv/bin/python benchmarks/run_benchmark.py --skip-naive    # without the naive loop
    .venv/bin/python benchmarks/run_benchmark.py --only planning # one part: grid, default, planning
    .venv/bin/python benchmarks/run_benchmark.py --config config/studies/parameterisation_map.yaml --only default

Parts:
- grid: the default config's simulated grid (its scenarios, seeds, outlier levels, models,
  likelihoods, target_accepts and draws; no real data, no calibration), fitted three ways
  on the same datasets: poolbench (`snakemake --cores 2`, simulation to report); the best
  hand-written loop (`benchmarks/handwritten_loop.py`: one process, compile once per model
  with nutpie, `with_data`, `az.summary` and a NetCDF per fit; run a second time with numba's
  fastmath off, as poolbench runs, to show what that costs); and the naive loop (a fresh
  `pm.sample` process per fit, as the tutorial does; timed on an even sample of the fits and
  extrapolated). Also: poolbench's sampling-only wall time (the time its fits spend in the
  sampler, spread over the cores).
- default: the shipped config end to end from a cold compile cache, with the split of its
  job time (sampling, compile, process start and imports, per-fit bookkeeping, figures and
  report). `--config` times another config (a study) the same way.
- planning: `snakemake --dry-run` of grids of 1,000, 10,000 and 100,000 fits: seconds, fit
  jobs, and the SLURM jobs the cluster profile would submit (4 fit jobs per SLURM job).

Prints the figures and writes them to results/benchmarks/speed-*.json.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "src"))

from poolbench import grid  # noqa: E402
from poolbench.paths import Paths  # noqa: E402

SLURM_GROUP = 4  # profiles/slurm: group-components fits=4


def snakemake(workdir: Path, config: dict, cores: int, *args: str, flags: str | None = None) -> tuple[float, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    result = subprocess.run(
        [BIN / "snakemake", "--snakefile", REPO / "Snakefile", "--directory", workdir,
         "--configfile", path, "--replace-workflow-config", "--cores", str(cores), *args],
        capture_output=True, text=True, env=None if flags is None else pytensor_env(flags),
    )
    if result.returncode != 0:
        sys.exit(f"snakemake failed in {workdir}:\n{(result.stdout + result.stderr)[-5000:]}")
    return time.perf_counter() - start, result.stdout + result.stderr


def job_benchmarks(results: Path) -> pd.DataFrame:
    """Snakemake's per-job `benchmark:` records, with the rule they belong to."""
    rows = []
    for tsv in (results / "benchmarks").rglob("*.tsv"):
        frame = pd.read_csv(tsv, sep="\t")
        job = tsv.relative_to(results / "benchmarks")
        rows.append(frame.iloc[-1].to_dict() | {"rule": job.parts[0], "job": str(job.with_suffix(""))})
    return pd.DataFrame(rows)


def import_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pymc, nutpie, arviz, pandas, xarray"], check=True)
    return time.perf_counter() - start


def pytensor_env(flags: str) -> dict:
    """The environment with `flags` added to the user's own PYTENSOR_FLAGS (later ones win)."""
    return os.environ | {"PYTENSOR_FLAGS": ",".join(filter(None, [os.environ.get("PYTENSOR_FLAGS"), flags]))}


def run_poolbench(config: dict, cores: int, workdir: Path, flags: str | None = None) -> dict:
    wall, _ = snakemake(workdir, config, cores, "--quiet", flags=flags)
    results = workdir / Paths(config["study"]["name"]).root
    fits = pd.read_parquet(results / "tables/fits.parquet")
    sbc = pd.read_parquet(results / "tables/sbc_fits.parquet")
    everything = pd.concat([fits, sbc], ignore_index=True)
    jobs = job_benchmarks(results)
    fit_jobs = jobs[jobs["rule"] == "fit"]
    sampling = float(everything["sampling_seconds"].sum())
    compile_ = float(everything["compile_seconds"].sum())
    start_import = import_seconds() * len(fit_jobs)
    return {
        "fits": len(fits),
        "calibration_fits": len(sbc),
        "failed": int((everything["status"] != "ok").sum()),
        "fit_jobs": len(fit_jobs),
        "wall_seconds": wall,
        "job_seconds": float(jobs["s"].sum()),
        "sampling_only_wall_seconds": sampling / cores,
        "split_seconds": {
            "sampling": sampling,
            "model_compile": compile_,
            "process_start_and_import (est.)": start_import,
            "per_fit_bookkeeping (diagnostics, NetCDF, cache)": float(fit_jobs["s"].sum()) - sampling - compile_ - start_import,
            "non_fit_jobs (simulate, aggregate, figures, report)": float(jobs.loc[jobs["rule"] != "fit", "s"].sum()),
        },
        "sampling_seconds_per_fit": float(fits["sampling_seconds"].mean()),
        "calibration_sampling_seconds_per_fit": float(sbc["sampling_seconds"].mean()) if len(sbc) else None,
        "median_ess_bulk_per_second": float(fits["ess_bulk_per_second"].median()),
        "peak_mem_mb_per_fit_job": float(fit_jobs["max_rss"].max()),
        "peak_mem_fit_job": str(fit_jobs.loc[fit_jobs["max_rss"].idxmax(), "job"]),
        "fit_job_seconds_and_mb": {row.job: [round(row.s, 1), round(row.max_rss)] for row in fit_jobs.itertuples()},
        "declared_mem_mb_per_fit_job": 1500,
    }


def run_handwritten(config: dict, datasets: Path, workdir: Path, fastmath: bool = True) -> dict:
    """The hand-written loop from a cold compile cache of its own; `fastmath` is numba's
    setting for PyTensor's compiled functions (on by default; poolbench turns it off)."""
    name = "handwritten" if fastmath else "handwritten-nofastmath"
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    flags = f"base_compiledir={workdir / name / 'pytensor'},numba__fastmath={fastmath}"
    out = subprocess.run(
        [sys.executable, REPO / "benchmarks/handwritten_loop.py", path, datasets, workdir / name],
        check=True, capture_output=True, text=True, env=pytensor_env(flags),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_naive(config: dict, datasets: Path, workdir: Path, sample: int, sampler: str) -> dict:
    """The tutorial's way, a fresh Python process per fit, on an even sample of the grid's
    fits; the per-fit mean is extrapolated to the whole grid."""
    every = [(spec, key) for spec in grid.simulated_specs(config) for key in grid.fit_keys(config, spec)]
    step = max(1, len(every) // sample)
    chosen = every[::step][:sample]
    path = workdir / "naive.yaml"
    path.write_text(yaml.safe_dump(config))
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    records_ = []
    start = time.perf_counter()
    for i, (spec, key) in enumerate(chosen, 1):
        out = subprocess.run(
            [sys.executable, REPO / "benchmarks/naive_fit.py", path, datasets / f"{key.scenario}.parquet", key.outliers,
             str(key.seed), spec.name, spec.likelihood, str(key.target_accept), sampler],
            check=True, capture_output=True, text=True, env=env,
        )
        records_.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  naive {i}/{len(chosen)}", end="\r", flush=True)
    wall = time.perf_counter() - start
    per_fit = wall / len(chosen)
    return {
        "sampled_fits": len(chosen),
        "grid_fits": len(every),
        "sampler": sampler,
        "mean_seconds_per_fit": per_fit,
        "wall_seconds_extrapolated": per_fit * len(every),
        "median_ess_bulk_per_second": statistics.median(r["ess_bulk_per_second"] for r in records_),
        "peak_mem_mb_per_fit": max(r["peak_mem_mb"] for r in records_),
    }


def seconds_per_step(loop: dict) -> float:
    return loop["sampling_seconds"] / loop["leapfrog_steps"]


def grid_config(config: dict) -> dict:
    """The config's simulated grid alone: no real data, no calibration."""
    config = copy.deepcopy(config)
    config["study"] = config["study"] | {"name": "benchmark_grid"}
    config["datasets"] = {}
    config["sbc"] = config["sbc"] | {"simulations": 0}
    return config


def grid_part(args, config: dict, tmp: Path) -> dict:
    config = grid_config(config)
    print("grid: poolbench, snakemake --cores", args.cores, "...", flush=True)
    # poolbench and the hand-written loop start from a cold compile cache of their own: a
    # first run, end to end. (The naive loop uses the default one, warm after its first fit.)
    ours = run_poolbench(config, args.cores, tmp / "poolbench", flags=f"base_compiledir={tmp / 'pytensor-grid'}")
    datasets = tmp / "poolbench" / Paths(config["study"]["name"]).root / "datasets"
    print("grid: the hand-written compile-once loop ...", flush=True)
    handwritten = run_handwritten(config, datasets, tmp)
    print("grid: the hand-written loop again, with fastmath off as poolbench runs ...", flush=True)
    without_fastmath = run_handwritten(config, datasets, tmp, fastmath=False)
    naive = None
    if not args.skip_naive:
        print(f"grid: the naive loop on {args.naive_fits} fits ...", flush=True)
        naive = run_naive(config, datasets, tmp, args.naive_fits, args.naive_sampler)
    return {
        "poolbench": ours,
        "handwritten": handwritten,
        "naive": naive,
        "handwritten_fastmath_off": without_fastmath,
        # What poolbench's determinism (numba fastmath off, docs/performance.md) costs in
        # sampling: per leapfrog step, since the two settings sample different chains.
        "fastmath_off_cost_per_step": seconds_per_step(without_fastmath) / seconds_per_step(handwritten) - 1,
        "speedup_vs_handwritten": handwritten["wall_seconds"] / ours["wall_seconds"],
        "speedup_vs_naive": naive["wall_seconds_extrapolated"] / ours["wall_seconds"] if naive else None,
        "wall_over_sampling_only": ours["wall_seconds"] / ours["sampling_only_wall_seconds"],
    }


def default_part(args, config: dict, tmp: Path) -> dict:
    print(f"default: {config_label(args.config)} end to end, cold compile cache ...", flush=True)
    return run_poolbench(config, args.cores, tmp / "default", flags=f"base_compiledir={tmp / 'pytensor'}")


def planning_part(args, config: dict, tmp: Path) -> list[dict]:
    rows = []
    base = copy.deepcopy(config)
    base["datasets"] = {}
    base["sbc"]["simulations"] = 0
    per_seed = sum(len(grid.fit_keys(base | {"seeds": 1}, spec)) for spec in grid.simulated_specs(base))
    for fits in (1_000, 10_000, 100_000):
        seeds = max(1, math.ceil(fits / per_seed))
        planned = base | {"seeds": seeds}
        print(f"planning: {seeds * per_seed} fits ...", flush=True)
        seconds, output = snakemake(tmp / f"plan{fits}", planned, args.cores, "--dry-run", "--quiet", "rules")
        jobs = int(re.search(r"^fit\s+(\d+)$", output, re.M)[1])
        rows.append({"fits": seeds * per_seed, "seconds": seconds, "fit_jobs": jobs,
                     "slurm_jobs": math.ceil(jobs / SLURM_GROUP)})
    return rows


def config_label(path: Path) -> str:
    """The config's path as the records show it: relative to the repository, or as given
    for a config of one's own elsewhere."""
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def git_commit() -> str:
    out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def report(figures: dict) -> None:
    g = figures.get("grid")
    if g:
        ours, hand, naive = g["poolbench"], g["handwritten"], g["naive"]
        print(f"\ngrid: {ours['fits']} fits ({ours['failed']} failed) in {ours['fit_jobs']} fit jobs")
        if naive:
            print(f"  naive loop        {naive['wall_seconds_extrapolated']:8.1f} s  (extrapolated from {naive['sampled_fits']} fits, "
                  f"{naive['mean_seconds_per_fit']:.2f} s per fit)")
        print(f"  hand-written loop {hand['wall_seconds']:8.1f} s  (of which {hand['sampling_seconds']:.1f} s in nutpie.sample)")
        print(f"  poolbench         {ours['wall_seconds']:8.1f} s")
        off = g["handwritten_fastmath_off"]
        print(f"  fastmath off (poolbench's setting): the hand-written loop's sampling {hand['sampling_seconds']:.1f} -> "
              f"{off['sampling_seconds']:.1f} s, {1e9 * seconds_per_step(hand):.0f} -> {1e9 * seconds_per_step(off):.0f} ns "
              f"per leapfrog step ({100 * g['fastmath_off_cost_per_step']:+.0f} %)")
        print(f"  sampling only     {ours['sampling_only_wall_seconds']:8.1f} s  (poolbench's fits' sampler time / cores)")
        print(f"  speedup vs hand-written {g['speedup_vs_handwritten']:.2f}x (goal >= 2.5x)"
              + (f", vs naive {g['speedup_vs_naive']:.1f}x" if naive else ""))
        print(f"  wall / sampling-only    {g['wall_over_sampling_only']:.2f} (goal <= 1.5)")
    d = figures.get("default")
    if d:
        print(f"\n{figures['config']}: {d['wall_seconds']:.1f} s wall (the default config's goal: <= 300 s) for {d['fits']} fits and "
              f"{d['calibration_fits']} calibration fits in {d['fit_jobs']} fit jobs; job time {d['job_seconds']:.1f} s:")
        for part, seconds in d["split_seconds"].items():
            print(f"  {part:55s} {seconds:7.1f} s")
        print(f"  sampling per fit: grid {d['sampling_seconds_per_fit']:.3f} s, calibration "
              f"{d['calibration_sampling_seconds_per_fit'] or float('nan'):.3f} s")
        print(f"  peak memory per fit job {d['peak_mem_mb_per_fit_job']:.0f} MB (goal <= 600; declared {d['declared_mem_mb_per_fit_job']}), "
              f"in {d['peak_mem_fit_job']}")
    for row in figures.get("planning", []):
        print(f"planning {row['fits']:7d} fits: {row['seconds']:5.1f} s, {row['fit_jobs']} fit jobs, {row['slurm_jobs']} SLURM jobs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--only", choices=["grid", "default", "planning"], action="append")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive loop")
    parser.add_argument("--naive-fits", type=int, default=24, help="fits the naive loop times (extrapolated)")
    parser.add_argument("--naive-sampler", default="pymc", choices=["pymc", "nutpie"],
                        help="sampler of the naive loop (pymc: PyMC's own NUTS, as in the tutorial)")
    args = parser.parse_args()
    args.config = args.config.resolve()
    from snakemake.utils import validate

    config = yaml.safe_load(args.config.read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    parts = args.only or ["grid", "default", "planning"]
    figures = {"config": config_label(args.config), "commit": git_commit(), "cores": args.cores}
    with tempfile.TemporaryDirectory(prefix="poolbench-bench-") as tmp:
        tmp = Path(tmp)
        for name, part in (("grid", grid_part), ("default", default_part), ("planning", planning_part)):
            if name in parts:
                figures[name] = part(args, config, tmp)
    out = REPO / "results/benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    path = out / f"speed-{stamp}-{git_commit()}.json"
    path.write_text(json.dumps(figures, indent=2))
    report(figures)
    print(f"written: {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()

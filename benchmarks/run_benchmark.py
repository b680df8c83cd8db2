"""Speed benchmark: poolbench's workflow against the naive one-process-per-fit loop.

    .venv/bin/python benchmarks/run_benchmark.py            # both, on benchmarks/grid.yaml
    .venv/bin/python benchmarks/run_benchmark.py --scaling  # poolbench alone at 3 sizes

Prints the figures and writes them to results/benchmarks/speed-*.json so they can be
compared across commits. Both sides fit the same datasets with the same draws and seeds.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
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


def snakemake(workdir: Path, config: dict, cores: int, *args: str) -> float:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    subprocess.run(
        [BIN / "snakemake", "--snakefile", REPO / "Snakefile", "--directory", workdir,
         "--configfile", path, "--replace-workflow-config", "--cores", str(cores), "--quiet", *args],
        check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def job_benchmarks(workdir: Path) -> pd.DataFrame:
    """Snakemake's per-job `benchmark:` records, with the rule they belong to."""
    rows = []
    for tsv in (workdir / "results/benchmarks").rglob("*.tsv"):
        frame = pd.read_csv(tsv, sep="\t")
        rows.append(frame.iloc[-1].to_dict() | {"rule": tsv.relative_to(workdir / "results/benchmarks").parts[0]})
    return pd.DataFrame(rows)


def import_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pymc, nutpie, arviz"], check=True)
    return time.perf_counter() - start


def run_poolbench(config: dict, cores: int, workdir: Path) -> dict:
    wall = snakemake(workdir, config, cores)
    fits = pd.read_parquet(workdir / "results/tables/fits.parquet")
    jobs = job_benchmarks(workdir)
    fit_jobs = jobs[jobs["rule"] == "fit"]
    job_seconds = float(jobs["s"].sum())
    sampling = float(fits["sampling_seconds"].sum())
    compile_ = float(fits["compile_seconds"].sum())
    start_import = import_seconds() * len(fit_jobs)
    return {
        "fits": len(fits),
        "failed": int((fits["status"] != "ok").sum()),
        "fit_jobs": len(fit_jobs),
        "wall_seconds": wall,
        "job_seconds": job_seconds,
        "split_seconds": {
            "sampling": sampling,
            "model_compile": compile_,
            "process_start_and_import (est.)": start_import,
            "io_metrics_and_other_fit_work": float(fit_jobs["s"].sum()) - sampling - compile_ - start_import,
            "non_fit_jobs (simulate, aggregate, plots, report)": float(jobs.loc[jobs["rule"] != "fit", "s"].sum()),
        },
        "non_sampling_share": 1 - sampling / job_seconds,
        "median_ess_bulk_per_second": float(fits["ess_bulk_per_second"].median()),
        "peak_mem_mb_per_fit_job": float(fit_jobs["max_rss"].max()),
    }


def run_naive(config: dict, workdir: Path, sampler: str) -> dict:
    """The tutorial's way: a fresh Python process per fit, one after another."""
    tasks = [
        (dataset, truth, model, ta)
        for scenario in config["scenarios"]
        for outliers in grid.outlier_levels(config)
        for seed in grid.seeds(config)
        for dataset, truth in [(
            workdir / f"results/datasets/{scenario}/{outliers}/seed{seed}.csv",
            workdir / f"results/datasets/{scenario}/{outliers}/seed{seed}.truth.json",
        )]
        for model in (spec.name for spec in grid.model_specs(config))
        for ta in config["sampler"]["target_accept"]
    ]
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    records = []
    start = time.perf_counter()
    for i, (dataset, truth, model, ta) in enumerate(tasks, 1):
        out = subprocess.run(
            [sys.executable, REPO / "benchmarks/naive_fit.py", workdir / "config.yaml", dataset, truth, model, str(ta), sampler],
            check=True, capture_output=True, text=True, env=env,
        )
        records.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  naive {i}/{len(tasks)}", end="\r", flush=True)
    wall = time.perf_counter() - start
    return {
        "fits": len(tasks),
        "sampler": sampler,
        "wall_seconds": wall,
        "mean_seconds_per_fit": wall / len(tasks),
        "import_seconds_total": sum(r["import_seconds"] for r in records),
        "sampling_seconds_total": sum(r["sampling_seconds"] for r in records),
        "median_ess_bulk_per_second": statistics.median(r["ess_bulk_per_second"] for r in records),
        "peak_mem_mb_per_fit": max(r["peak_mem_mb"] for r in records),
    }


def git_commit() -> str:
    out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def write(figures: dict, name: str) -> Path:
    out = REPO / "results/benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    path = out / f"{name}-{stamp}-{git_commit()}.json"
    path.write_text(json.dumps(figures, indent=2))
    (out / f"{name}-latest.json").write_text(json.dumps(figures, indent=2))
    return path


def speed(args) -> None:
    config = yaml.safe_load(args.config.read_text())
    with tempfile.TemporaryDirectory(prefix="poolbench-bench-") as tmp:
        workdir = Path(tmp)
        print(f"poolbench: snakemake --cores {args.cores} on {args.config.name} ...", flush=True)
        ours = run_poolbench(config, args.cores, workdir / "poolbench")
        print(f"naive: one process per fit, pm.sample(nuts_sampler={args.naive_sampler!r}) ...", flush=True)
        # The naive loop fits the very datasets poolbench simulated.
        naive = run_naive(config, workdir / "poolbench", args.naive_sampler) if not args.skip_naive else None
    figures = {
        "grid": args.config.name,
        "commit": git_commit(),
        "cores": args.cores,
        "poolbench": ours,
        "naive": naive,
        "speedup_vs_naive": naive["wall_seconds"] / ours["wall_seconds"] if naive else None,
    }
    path = write(figures, "speed")
    print(f"\n{ours['fits']} fits ({ours['failed']} failed) in {ours['fit_jobs']} fit jobs")
    if naive:
        print(f"naive     {naive['wall_seconds']:8.1f} s  ({naive['mean_seconds_per_fit']:.2f} s per fit)")
    print(f"poolbench {ours['wall_seconds']:8.1f} s")
    if naive:
        print(f"speedup   {figures['speedup_vs_naive']:8.1f} x")
    print("poolbench job time split:")
    for part, seconds in ours["split_seconds"].items():
        print(f"  {part:55s} {seconds:7.1f} s")
    print(f"non-sampling share of job time: {ours['non_sampling_share']:.0%}")
    print(f"median ESS/s per fit: poolbench {ours['median_ess_bulk_per_second']:.0f}"
          + (f", naive {naive['median_ess_bulk_per_second']:.0f}" if naive else ""))
    print(f"peak memory per fit job: {ours['peak_mem_mb_per_fit_job']:.0f} MB"
          + (f" (naive process {naive['peak_mem_mb_per_fit']:.0f} MB)" if naive else ""))
    print(f"written: {path.relative_to(REPO)}")


def scaling(args) -> None:
    """How poolbench's cost grows with the number of fits and with observations per group."""
    base = yaml.safe_load(args.config.read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="poolbench-scale-") as tmp:
        for seeds in (5, 10, 20):
            config = copy.deepcopy(base) | {"seeds": seeds}
            result = run_poolbench(config, args.cores, Path(tmp) / f"seeds{seeds}")
            rows.append({"axis": "fits", "size": result["fits"], **_scaling_row(result)})
        for points in (5, 50, 500):
            config = copy.deepcopy(base)
            config["scenarios"] = {"hard": base["scenarios"]["hard"] | {"points_per_group": points}}
            config["plots"]["tutorial_scenario"] = "hard"
            result = run_poolbench(config, args.cores, Path(tmp) / f"points{points}")
            rows.append({"axis": "points_per_group", "size": points, "fits": result["fits"], **_scaling_row(result)})
    path = write({"commit": git_commit(), "cores": args.cores, "rows": rows}, "scaling")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"written: {path.relative_to(REPO)}")


def _scaling_row(result: dict) -> dict:
    return {
        "wall_seconds": result["wall_seconds"],
        "sampling_seconds": result["split_seconds"]["sampling"],
        "seconds_per_fit": result["wall_seconds"] / result["fits"],
        "peak_mem_mb": result["peak_mem_mb_per_fit_job"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "benchmarks/grid.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--naive-sampler", default="pymc", choices=["pymc", "nutpie"],
                        help="sampler of the naive loop (pymc: PyMC's own NUTS, as in the tutorial)")
    parser.add_argument("--skip-naive", action="store_true", help="time poolbench alone")
    parser.add_argument("--scaling", action="store_true", help="poolbench at 3 grid sizes and 3 group sizes")
    args = parser.parse_args()
    scaling(args) if args.scaling else speed(args)


if __name__ == "__main__":
    main()

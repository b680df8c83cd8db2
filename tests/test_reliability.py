"""Nothing lost under interruption, parallel load and bad input; provenance recorded."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from conftest import job_counts, BIN, REPO, snakemake, tiny_config, write_config
from poolbench.fit import TIMING_COLUMNS
from poolbench.storage import read_posterior, read_provenance


def fits_table(workdir: Path) -> pd.DataFrame:
    return pd.read_parquet(workdir / "results/tables/fits.parquet").drop(columns=TIMING_COLUMNS)


def start_snakemake(workdir: Path, config: dict, cores: int = 2) -> subprocess.Popen:
    path = write_config(workdir, config)
    return subprocess.Popen(
        [BIN / "snakemake", "--snakefile", REPO / "Snakefile", "--directory", workdir, "--cores", str(cores),
         "--configfile", path, "--replace-workflow-config"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def wait_for(condition, timeout=300, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def assert_no_partial_or_broken_files(workdir: Path) -> None:
    assert not list(workdir.rglob("*.partial")), "a .partial file was left behind"
    for nc in (workdir / "results/fits").rglob("*.nc"):
        read_posterior(nc)
    for parquet in (workdir / "results").rglob("*.parquet"):
        pd.read_parquet(parquet)


def fit_jobs_finished_in_log(workdir: Path) -> int:
    """Fit jobs Snakemake's own log reports finished (its word on what is complete)."""
    logs = list((workdir / ".snakemake/log").glob("*.snakemake.log"))
    return sum(log.read_text().count("(Rule: fit)") for log in logs)


def test_sigint_mid_run_then_rerun_redoes_only_unfinished_jobs(tmp_path, tiny_run):
    process = start_snakemake(tmp_path, tiny_config())
    wait_for(lambda: fit_jobs_finished_in_log(tmp_path) >= 1, what="a finished fit job")
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    done_before = fit_jobs_finished_in_log(tmp_path)
    assert 1 <= done_before < 4, "interrupt came too late to test anything"
    rerun = snakemake(tmp_path, tiny_config())
    log = rerun.stdout + rerun.stderr
    assert job_counts(log)["fit"] == 4 - done_before  # only the unfinished fit jobs
    assert_no_partial_or_broken_files(tmp_path)
    pd.testing.assert_frame_equal(fits_table(tmp_path), fits_table(tiny_run))


def slow_config() -> dict:
    """Two fit jobs whose fits take long enough to be killed in the middle of a job."""
    config = tiny_config(scenarios={"hard": tiny_config()["scenarios"]["hard"]})
    config["models"]["variants"] = ["hierarchical"]
    config["sampler"] |= {"draws": 3000, "tune": 1000}
    config["plots"]["tutorial_scenario"] = "hard"
    return config


def test_sigkill_of_a_fit_process_fails_that_job_only_and_a_rerun_completes(tmp_path):
    run = tmp_path / "killed"
    run.mkdir()
    process = start_snakemake(run, slow_config())

    def running_fits():
        return [
            p for p in psutil.Process(process.pid).children(recursive=True)
            if p.name().startswith("python") and any(".fit.py" in part for part in p.cmdline())
        ]

    def in_progress():  # a job with some fits done and more to go
        return [
            log for log in (run / "results/logs/fit").rglob("*.log")
            if re.search(r"fit [2-6]/8", log.read_text())
            and not (run / "results/fits" / log.relative_to(run / "results/logs/fit").with_suffix("") / "fits.parquet").exists()
        ] if (run / "results/logs/fit").exists() else []

    wait_for(lambda: in_progress() and running_fits(), what="a fit job half-way")
    killed = in_progress()
    for victim in running_fits():
        victim.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert process.returncode != 0 and "Error in rule fit" in output
    assert "(Rule: aggregate)" not in output  # nothing is built on a broken job
    assert not list(run.rglob("*.partial"))

    rerun = snakemake(run, slow_config())
    assert 1 <= job_counts(rerun.stdout + rerun.stderr)["fit"] <= 2
    # The killed job's finished fits came back from the cache: only the rest were sampled.
    for log in killed:
        reused = re.findall(r"8 fits, (\d) from the cache", log.read_text())[-1]
        assert int(reused) >= 1, log.read_text()
    assert_no_partial_or_broken_files(run)
    uninterrupted = tmp_path / "uninterrupted"
    snakemake(uninterrupted, slow_config())
    pd.testing.assert_frame_equal(fits_table(run), fits_table(uninterrupted))


def test_eight_parallel_fit_jobs_on_a_fresh_compile_cache_give_the_same_numbers_as_one_core(tmp_path):
    """--cores 8 on 2 CPUs starts all 8 fit jobs (4 models x nutpie and PyMC's sampler, which
    compiles C code under PyTensor's compile lock) at once, each compiling into an empty
    PyTensor/numba cache; --cores 1 runs them one by one. Same numbers either way."""
    config = tiny_config(seeds=[0])
    config["sampler"] |= {"backends": ["nutpie", "pymc"], "target_accept": [0.8], "draws": 200, "tune": 200}
    fresh_caches = {
        "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'pytensor'}",
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
    }
    parallel = snakemake(tmp_path / "parallel", config, cores=8, env=fresh_caches)
    assert job_counts(parallel.stdout + parallel.stderr)["fit"] == 8
    assert (tmp_path / "pytensor").is_dir()  # the jobs really compiled into the fresh cache
    snakemake(tmp_path / "serial", config, cores=1)
    pd.testing.assert_frame_equal(fits_table(tmp_path / "parallel"), fits_table(tmp_path / "serial"))
    # Threads pinned: every fit job ran single-threaded BLAS/OpenMP.
    for log in (tmp_path / "parallel/results/logs/fit").rglob("*.log"):
        threads = re.search(r"BLAS/OpenMP threads: (.*)", log.read_text())[1]
        assert re.findall(r"'\w+', (\d+)", threads) and set(re.findall(r"'\w+', (\d+)", threads)) == {"1"}


def test_full_runs_with_one_and_two_cores_give_identical_tables(tmp_path, tiny_run):
    snakemake(tmp_path, tiny_config(), cores=1)
    pd.testing.assert_frame_equal(fits_table(tmp_path), fits_table(tiny_run))  # tiny_run: --cores 2
    groups = [pd.read_parquet(d / "results/tables/groups.parquet") for d in (tmp_path, tiny_run)]
    pd.testing.assert_frame_equal(*groups)


def test_plot_and_report_code_never_imports_pymc():
    modules = ["poolbench.plots", "poolbench.report", "poolbench.aggregate", "poolbench.storage"]
    check = f"import sys, {', '.join(modules)}; print('pymc' in sys.modules, 'pytensor' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_declared_fit_memory_covers_the_measured_peak(tiny_run):
    planned = snakemake(tiny_run, tiny_config(), "--dry-run", "--forcerun", "fit").stdout
    declared = int(re.search(r"rule fit:\n(?:.*\n)*?\s+resources: .*mem_mb=(\d+)", planned)[1])
    peaks = [pd.read_csv(t, sep="\t")["max_rss"].max() for t in (tiny_run / "results/benchmarks/fit").rglob("*.tsv")]
    assert peaks and max(peaks) < declared


@pytest.fixture
def finished_copy(tmp_path, tiny_run) -> Path:
    """A private copy of the finished tiny run, to break things in."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, symlinks=True)
    return copy


def mtimes(paths):
    return {p: p.stat().st_mtime_ns for p in paths}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.assign(y=d["y"].where(d.index != 3)), "NaN values in column(s) ['y']"),
        (lambda d: d.drop(columns="x"), "missing column(s) ['x']"),
    ],
    ids=["nan", "missing-column"],
)
def test_a_broken_dataset_fails_its_job_naming_the_file_and_keeps_other_results(finished_copy, edit, message):
    dataset = finished_copy / "results/datasets/hard/2at30/seed1.csv"
    edit(pd.read_csv(dataset)).to_csv(dataset, index=False)
    others = mtimes([*(finished_copy / "results/tables").glob("*"), finished_copy / "results/report.html"])
    cached = sorted((finished_copy / "results/cache/fits").rglob("record.json"))
    result = snakemake(finished_copy, tiny_config(), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "results/datasets/hard/2at30/seed1.csv" in output and message in output
    assert mtimes(others) == others  # good results untouched
    assert sorted((finished_copy / "results/cache/fits").rglob("record.json")) == cached


def test_a_truncated_posterior_gives_a_clear_error_naming_the_file(finished_copy):
    posterior = finished_copy / "results/fits/unpooled/nutpie/posterior/tutorial/2at30_seed0_ta0.99.nc"
    posterior.write_bytes(posterior.read_bytes()[:1000])
    result = snakemake(finished_copy, tiny_config(), "--forcerun", "plot_posterior", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{posterior.relative_to(finished_copy)}: cannot read this NetCDF posterior" in output
    assert (finished_copy / "results/report.html").exists()


def test_an_unknown_model_on_the_command_line_is_refused_naming_it(finished_copy):
    result = snakemake(finished_copy, tiny_config(), "results/fits/partial/nutpie/fits.parquet", check=False)
    assert result.returncode != 0
    assert "results/fits/partial/nutpie/fits.parquet" in result.stdout + result.stderr
    result = snakemake(finished_copy, tiny_config(), "--config", "models={'variants': ['partial']}", check=False)
    assert result.returncode != 0 and "'partial' is not one of" in result.stdout + result.stderr


def test_tables_and_report_record_their_provenance(tiny_run):
    from poolbench.grid import experiment_hash

    expected = experiment_hash(tiny_config())
    for table in ("fits", "groups", "summary"):
        parquet = tiny_run / f"results/tables/{table}.parquet"
        provenance = read_provenance(parquet)
        assert provenance["experiment_hash"] == expected
        assert provenance["packages"]["pymc"] == "6.4.0" and provenance["git_commit"]
        assert set(pd.read_parquet(parquet)["experiment"]) == {expected}
    html = (tiny_run / "results/report.html").read_text()
    assert expected in html and "pymc</td><td>6.4.0" in html


def test_a_new_target_accept_samples_only_the_new_fits(finished_copy):
    config = tiny_config()
    config["sampler"]["target_accept"] = [0.8, 0.9, 0.99]
    snakemake(finished_copy, config)
    logs = [p.read_text() for p in (finished_copy / "results/logs/fit").rglob("*.log")]
    # Each job: 8 datasets x 3 target_accepts, 16 of them already sampled.
    assert len(logs) == 4 and all("24 fits, 16 from the cache" in log for log in logs)
    fits = pd.read_parquet(finished_copy / "results/tables/fits.parquet")
    assert sorted(fits["target_accept"].unique()) == [0.8, 0.9, 0.99] and len(fits) == 96

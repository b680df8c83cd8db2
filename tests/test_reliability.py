"""Nothing lost under interruption, parallel load, bad input, a full disk or a damaged
cache; nothing wrong reused silently; provenance recorded (docs/reliability.md)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import xarray as xr

from conftest import (
    BIN, DEFAULT, REPO, TINY_RESULTS, fit, fit_keys, job_counts, simulated_source, snakemake, tiny_config,
    write_config,
)
from poolbench import records, storage
from poolbench.storage import read_posterior, read_provenance

R = TINY_RESULTS


def fits_table(workdir: Path, results: Path = R) -> pd.DataFrame:
    return pd.read_parquet(workdir / results / "tables/fits.parquet").drop(columns=records.TIMING)


def start_snakemake(workdir: Path, config: dict, cores: int = 2, *args) -> subprocess.Popen:
    path = write_config(workdir, config)
    return subprocess.Popen(
        [BIN / "snakemake", "--snakefile", REPO / "Snakefile", "--directory", workdir, "--cores", str(cores),
         "--configfile", path, "--replace-workflow-config", *args],
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
    for nc in workdir.glob("results/*/fits/**/*.nc"):
        read_posterior(nc)
    for parquet in (workdir / "results").rglob("*.parquet"):
        pd.read_parquet(parquet)


def fit_jobs_finished_in_log(workdir: Path) -> int:
    """Fit jobs Snakemake's own log reports finished (its word on what is complete)."""
    logs = list((workdir / ".snakemake/log").glob("*.snakemake.log"))
    return sum(log.read_text().count("(Rule: fit)") for log in logs)


@pytest.mark.slow
def test_sigint_mid_run_then_rerun_redoes_only_unfinished_jobs(tmp_path, tiny_run):
    process = start_snakemake(tmp_path, tiny_config())
    wait_for(lambda: fit_jobs_finished_in_log(tmp_path) >= 1, what="a finished fit job")
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    done_before = fit_jobs_finished_in_log(tmp_path)
    assert 1 <= done_before < 4, "interrupt came too late to test anything"
    rerun = snakemake(tmp_path, tiny_config(), "--until", "aggregate")  # the tables are compared
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


@pytest.fixture(scope="module")
def uninterrupted_slow_run(tmp_path_factory) -> Path:
    """The tables of `slow_config` run without interruption, which the interrupted runs must
    reproduce (up to the tables: the figures are not what is compared)."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    snakemake(workdir, slow_config(), "--until", "aggregate")
    return workdir


def running_fits(process):
    return [
        p for p in psutil.Process(process.pid).children(recursive=True)
        if p.name().startswith("python") and any(".fit.py" in part for part in p.cmdline())
    ]


def jobs_half_way(run: Path) -> list[Path]:
    """Fit job logs with some fits done and more to go."""
    logs = run / R / "logs/fit"
    if not logs.exists():
        return []
    return [
        log for log in logs.rglob("*.log")
        if re.search(r"fit [2-6]/8", log.read_text())
        and not (run / R / "fits" / log.relative_to(logs).with_suffix("") / "fits.parquet").exists()
    ]


@pytest.mark.slow
def test_sigkill_of_a_fit_process_fails_that_job_only_and_a_rerun_completes(tmp_path, uninterrupted_slow_run):
    run = tmp_path / "killed"
    run.mkdir()
    process = start_snakemake(run, slow_config())
    wait_for(lambda: jobs_half_way(run) and running_fits(process), what="a fit job half-way")
    killed = jobs_half_way(run)
    for victim in running_fits(process):
        victim.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert process.returncode != 0 and "Error in rule fit" in output
    assert "(Rule: aggregate)" not in output  # nothing is built on a broken job

    rerun = snakemake(run, slow_config(), "--until", "aggregate")  # the tables are compared
    assert 1 <= job_counts(rerun.stdout + rerun.stderr)["fit"] <= 2
    # The killed job's finished fits came back from the cache: only the rest were sampled.
    for log in killed:
        reused = re.findall(r"8 fits, (\d) from the cache", log.read_text())[-1]
        assert int(reused) >= 1, log.read_text()
    assert_no_partial_or_broken_files(run)
    pd.testing.assert_frame_equal(fits_table(run), fits_table(uninterrupted_slow_run))


@pytest.mark.slow
def test_sigkill_of_snakemake_itself_stops_its_jobs_and_a_rerun_completes(tmp_path, uninterrupted_slow_run):
    """Issue #12, item 9: SIGKILL of the top-level Snakemake. Its fit jobs notice and stop
    (no orphan races the rerun); the rerun after `--unlock` completes with the tables of an
    uninterrupted run and leaves no '.partial' file."""
    run = tmp_path / "killed"
    run.mkdir()
    process = start_snakemake(run, slow_config())
    wait_for(lambda: jobs_half_way(run) and running_fits(process), what="a fit job half-way")
    orphans = running_fits(process)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    gone, alive = psutil.wait_procs(orphans, timeout=30)
    assert not alive, f"fit jobs outlived Snakemake: {alive}"
    logs = [log.read_text() for log in (run / R / "logs/fit").rglob("*.log")]
    assert any("is gone: stopping this job" in log for log in logs)
    snakemake(run, slow_config(), "--unlock")
    snakemake(run, slow_config(), "--until", "aggregate")  # the tables are compared
    assert_no_partial_or_broken_files(run)
    assert not list((run / "results/cache").rglob("*.partial"))
    pd.testing.assert_frame_equal(fits_table(run), fits_table(uninterrupted_slow_run))


@pytest.mark.slow
def test_parallel_fit_jobs_on_a_fresh_compile_cache_give_the_same_numbers_and_lambda_as_one_core(tmp_path):
    """--cores 8 on 2 CPUs starts all 6 fit jobs (the centered, non-centered and partially
    centered model x nutpie and PyMC's sampler, which compiles C code under PyTensor's
    compile lock) at once, each compiling into an empty PyTensor/numba cache; --cores 1 runs
    them one by one. Same numbers either way, and the same lambda of every group (issue #28)."""
    config = tiny_config(seeds=[0])
    config["models"] |= {"variants": ["hierarchical"], "parameterisations": ["centered", "noncentered", "partial"]}
    config["sampler"] |= {"backends": ["nutpie", "pymc"], "target_accept": [0.8], "draws": 100, "tune": 100}
    fresh_caches = {
        "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'pytensor'}",
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
    }
    parallel = snakemake(tmp_path / "parallel", config, cores=8, env=fresh_caches)
    assert job_counts(parallel.stdout + parallel.stderr)["fit"] == 6
    assert (tmp_path / "pytensor").is_dir()  # the jobs really compiled into the fresh cache
    snakemake(tmp_path / "serial", config, "--until", "aggregate", cores=1)  # the tables are compared
    pd.testing.assert_frame_equal(fits_table(tmp_path / "parallel"), fits_table(tmp_path / "serial"))
    groups = [pd.read_parquet(tmp_path / run / R / "tables/groups.parquet") for run in ("parallel", "serial")]
    pd.testing.assert_frame_equal(*groups)
    partial = groups[0][groups[0]["model"] == "hierarchical_partial"]
    assert len(partial) and partial["slope_centeredness"].between(0, 1).all()
    # The same two-backend run's report states each finding per backend, never pooled.
    findings = re.findall(r"<li>(.*?)</li>", (tmp_path / "parallel" / R / "report.html").read_text(), re.S)
    prefixed = [text for text in findings if text.startswith(("[nutpie] ", "[pymc] "))]
    assert any(t.startswith("[nutpie] ") for t in prefixed) and any(t.startswith("[pymc] ") for t in prefixed)
    assert not [t for t in findings if t.startswith(("In the ", "Trap:"))]  # no unprefixed simulated finding
    table = pd.read_parquet(tmp_path / "parallel" / R / "tables/findings.parquet")
    kinds = table[table["kind"].isin(["trust", "funnel", "centering"])].groupby("backend")["kind"].agg(set)
    assert kinds.to_dict() == {"nutpie": {"trust", "funnel", "centering"}, "pymc": {"trust", "funnel", "centering"}}, kinds
    # Threads pinned: every fit job ran single-threaded BLAS/OpenMP.
    for log in (tmp_path / "parallel" / R / "logs/fit").rglob("*.log"):
        threads = re.search(r"BLAS/OpenMP threads: (.*)", log.read_text())[1]
        assert re.findall(r"'\w+', (\d+)", threads) and set(re.findall(r"'\w+', (\d+)", threads)) == {"1"}


@pytest.mark.slow
def test_full_runs_with_one_and_two_cores_give_identical_tables(tmp_path, tiny_run):
    snakemake(tmp_path, tiny_config(), "--until", "aggregate", cores=1)  # the tables are compared
    pd.testing.assert_frame_equal(fits_table(tmp_path), fits_table(tiny_run))  # tiny_run: --cores 2
    groups = [pd.read_parquet(d / R / "tables/groups.parquet") for d in (tmp_path, tiny_run)]
    pd.testing.assert_frame_equal(*groups)


@pytest.mark.slow
def test_plot_and_report_code_never_imports_pymc():
    modules = ["poolbench.plots", "poolbench.report", "poolbench.aggregate", "poolbench.storage",
               "poolbench.metrics", "poolbench.variants", "poolbench.figures", "poolbench.config"]
    check = f"import sys, {', '.join(modules)}; print('pymc' in sys.modules, 'pytensor' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True,
                         env=os.environ | {"PYTHONPATH": str(REPO / "src")})
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_declared_fit_memory_covers_the_measured_peak(tiny_run):
    planned = snakemake(tiny_run, tiny_config(), "--dry-run", "--forcerun", "fit").stdout
    declared = int(re.search(r"rule fit:\n(?:.*\n)*?\s+resources: .*mem_mb=(\d+)", planned)[1])
    peaks = [pd.read_csv(t, sep="\t")["max_rss"].max() for t in (tiny_run / R / "benchmarks/fit").rglob("*.tsv")]
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
@pytest.mark.slow
def test_a_broken_dataset_fails_its_jobs_naming_the_file_and_keeps_other_results(finished_copy, edit, message):
    dataset = finished_copy / R / "datasets/hard.parquet"
    edit(pd.read_parquet(dataset)).to_parquet(dataset)
    others = mtimes([*(finished_copy / R / "tables").glob("*"), finished_copy / R / "report.html"])
    cached = sorted((finished_copy / "results/cache/fits").rglob("entry.json"))
    result = snakemake(finished_copy, tiny_config(), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{R}/datasets/hard.parquet" in output and message in output
    assert mtimes(others) == others  # good results untouched
    assert sorted((finished_copy / "results/cache/fits").rglob("entry.json")) == cached


def showcase_posterior(run: Path, model="unpooled") -> Path:
    return next((run / R / "fits" / model).rglob("posterior/tutorial/2at30_seed0_ta0.99.nc"))


@pytest.mark.slow
def test_a_truncated_posterior_gives_a_clear_error_whose_advice_works(finished_copy):
    """Issue #12, item 1: a damaged result never damages the cache (it has its own bytes),
    and following the error's advice brings the good posterior back."""
    posterior = showcase_posterior(finished_copy)
    entry = next(e for e in (finished_copy / "results/cache/fits").rglob("posterior.nc")
                 if storage.file_sha256(e) == storage.file_sha256(posterior))
    assert entry.stat().st_ino != posterior.stat().st_ino
    posterior.write_bytes(posterior.read_bytes()[:1000])
    result = snakemake(finished_copy, tiny_config(), "--forcerun", "plot_posterior", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    relative = posterior.relative_to(finished_copy)
    assert f"{relative}: cannot read this NetCDF posterior" in output
    advice = re.search(r"`snakemake (--forcerun \S+)`", output)[1].split()
    snakemake(finished_copy, tiny_config(), *advice, "--until", "plot_posterior")  # the advice, up to the figure
    read_posterior(posterior)
    assert storage.file_sha256(posterior) == storage.file_sha256(entry)
    assert (finished_copy / R / "figures/posterior/unpooled.png").exists()


@pytest.mark.slow
def test_a_swapped_posterior_in_results_is_refused_not_shown_as_another_fit(finished_copy):
    """A posterior file copied over another one (same model, other dataset) is refused by
    the figure that reads it, naming both fits."""
    target = showcase_posterior(finished_copy, "hierarchical_centered")
    other = target.with_name("0at30_seed0_ta0.99.nc")
    shutil.copyfile(target.parent.parent / "tutorial" / other.name, target)
    result = snakemake(finished_copy, tiny_config(), "--forcerun", "plot_posterior", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "holds another fit: outliers='0at30' (expected '2at30')" in output


@pytest.fixture
def cached_fits(tmp_path):
    """Two hierarchical fits of the hard scenario (0 and 2 outliers) in a fresh cache."""
    scenarios = {"hard": DEFAULT["scenarios"]["hard"]}
    levels = [{"count": 0, "value": 30.0}, {"count": 2, "value": 30.0}]
    source = simulated_source(tmp_path / "data", scenarios, [0], levels)
    keys = fit_keys("hard", [0], level=levels[0]) + fit_keys("hard", [0], level=levels[1])
    cache = tmp_path / "cache"
    fits, _ = fit("hierarchical_centered", keys, source, tmp_path / "first", draws=100, tune=100, cache=cache)
    return source, keys, cache, fits


def refit(cached_fits, tmp_path, caplog):
    source, keys, cache, _ = cached_fits
    caplog.clear()
    caplog.set_level("INFO", logger="poolbench")
    return fit("hierarchical_centered", keys, source, tmp_path / "again", draws=100, tune=100, cache=cache)[0]


def entries(cache: Path) -> list[Path]:
    return sorted(p.parent for p in cache.rglob("entry.json"))


def test_a_truncated_cache_entry_is_reported_discarded_and_sampled_again(cached_fits, tmp_path, caplog):
    """Issue #12, item 2."""
    first = entries(cached_fits[2])[0]
    (first / "posterior.nc").write_bytes((first / "posterior.nc").read_bytes()[:1000])
    fits = refit(cached_fits, tmp_path, caplog)
    assert f"discarding {first}: its posterior.nc does not match its checksum" in caplog.text
    assert "2 fits, 1 from the cache" in caplog.text
    pd.testing.assert_frame_equal(fits.drop(columns=records.TIMING), cached_fits[3].drop(columns=records.TIMING))


def test_swapped_cache_entries_are_refused_by_identity(cached_fits, tmp_path, caplog):
    one, two = entries(cached_fits[2])
    for name in ("posterior.nc", "entry.json"):  # swap the contents of the two entries
        a, b = (one / name).read_bytes(), (two / name).read_bytes()
        (one / name).write_bytes(b)
        (two / name).write_bytes(a)
    fits = refit(cached_fits, tmp_path, caplog)
    assert caplog.text.count("it was stored under another key") == 2
    assert "2 fits, 0 from the cache" in caplog.text
    pd.testing.assert_frame_equal(fits.drop(columns=records.TIMING), cached_fits[3].drop(columns=records.TIMING))
    for record, posterior in zip(fits.itertuples(), sorted((tmp_path / "again").rglob("*.nc"))):
        assert json.loads(read_posterior(posterior).attrs["truth"])["outliers"] in posterior.name


def test_an_entry_holding_another_fit_is_refused(cached_fits, tmp_path, caplog):
    """An entry whose key is right but whose identity names another fit (edited by hand)."""
    first = entries(cached_fits[2])[0]
    stored = json.loads((first / "entry.json").read_text())
    stored["identity"]["outliers"] = "9at30"
    (first / "entry.json").write_text(json.dumps(stored))
    refit(cached_fits, tmp_path, caplog)
    assert f"discarding {first}: it holds another fit" in caplog.text


def test_garbage_in_a_cache_entry_is_reported_by_path_and_sampled_again(cached_fits, tmp_path, caplog):
    first = entries(cached_fits[2])[0]
    (first / "entry.json").write_text("{ not json")
    refit(cached_fits, tmp_path, caplog)
    assert f"discarding {first}: its entry.json is not readable JSON" in caplog.text
    assert "2 fits, 1 from the cache" in caplog.text


def test_an_edited_record_in_a_cache_entry_is_refused_by_its_checksum(cached_fits, tmp_path, caplog):
    """Valid JSON, right key and identity, but a number changed by hand: what goes into the
    tables is covered by the entry's own checksum."""
    first = entries(cached_fits[2])[0]
    stored = json.loads((first / "entry.json").read_text())
    stored["record"]["max_rhat"] = 1.0
    del stored["groups"]
    (first / "entry.json").write_text(json.dumps(stored))
    fits = refit(cached_fits, tmp_path, caplog)
    assert f"discarding {first}: its entry.json does not match its checksum" in caplog.text
    assert "2 fits, 1 from the cache" in caplog.text
    pd.testing.assert_frame_equal(fits.drop(columns=records.TIMING), cached_fits[3].drop(columns=records.TIMING))


@pytest.mark.slow
def test_an_environment_error_fails_the_job_instead_of_the_fit(tmp_path, monkeypatch):
    """Issue #12, item 3, in-process: a full disk while storing a fit stops the job with the
    path and the cause; nothing is recorded as a failed fit."""
    import errno

    def full_disk(tree, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    source = simulated_source(tmp_path, {"hard": DEFAULT["scenarios"]["hard"]}, [0])
    monkeypatch.setattr(storage, "write_posterior", full_disk)
    with pytest.raises(storage.EnvironmentFault) as error:
        fit("pooled", fit_keys("hard", [0]), source, tmp_path / "out", draws=100, tune=100, cache=tmp_path / "cache")
    assert "No space left on device" in str(error.value) and "pooled.normal" in str(error.value)
    assert not list(tmp_path.rglob("*.partial"))


def small_config() -> dict:
    config = tiny_config(seeds=[0], scenarios={"hard": tiny_config()["scenarios"]["hard"]})
    config["models"] |= {"variants": ["pooled", "hierarchical"], "parameterisations": ["noncentered"]}
    config["sampler"] |= {"target_accept": [0.8, 0.9, 0.99], "draws": 100, "tune": 100}
    config["plots"]["tutorial_scenario"] = "hard"
    return config


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def mount_tmpfs_or_skip(path: Path, size: str) -> None:
    """A tiny filesystem at `path`, or the test skipped with the reason: it needs root."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tiny tmpfs")
    if not mount_tmpfs(path, size):
        pytest.skip("cannot mount tmpfs here")


@pytest.mark.slow
def test_a_posterior_written_onto_a_full_disk_fails_naming_the_disk(tmp_path):
    """netCDF-C reports a full disk as "NetCDF: HDF error", without its cause
    (docs/upstream.md), so write_posterior serialises in memory and writes the bytes
    itself: the error names the full disk and counts as the machine's, not the fit's."""
    import errno

    import numpy as np
    import xarray as xr

    disk = tmp_path / "disk"
    mount_tmpfs_or_skip(disk, "300k")
    try:
        tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"slope": (("chain", "draw"), np.zeros((4, 50_000)))})})
        with pytest.raises(OSError) as error:
            storage.write_posterior(tree, disk / "fit.nc")
        assert error.value.errno == errno.ENOSPC and storage.is_environment_error(error.value)
        assert not list(disk.iterdir())  # nothing half-written left behind
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow
def test_a_full_disk_fails_the_run_loudly_and_a_rerun_after_freeing_space_completes(tmp_path):
    """Issue #12, item 3, end to end: the fit cache on a tiny filesystem."""
    run = tmp_path / "run"
    cache = run / "results/cache"
    mount_tmpfs_or_skip(cache, "100k")
    try:
        result = snakemake(run, small_config(), check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "No space left on device" in output and "results/cache/fits" in output
        assert "This is the machine, not the model" in output
        assert not (run / "results/tiny/tables/fits.parquet").exists()  # no fit recorded as failed
        subprocess.run(["umount", str(cache)], check=True)
        assert mount_tmpfs(cache, "100m")  # space freed (an empty cache, as after a cleanup)
        snakemake(run, small_config(), "--until", "aggregate")  # the tables are compared
    finally:
        subprocess.run(["umount", str(cache)], capture_output=True)
    fits = pd.read_parquet(run / "results/tiny/tables/fits.parquet")
    assert (fits["status"] == "ok").all()
    assert_no_partial_or_broken_files(run)
    clean = tmp_path / "clean"
    snakemake(clean, small_config(), "--until", "aggregate")  # the tables are compared
    pd.testing.assert_frame_equal(fits_table(run), fits_table(clean))


@pytest.mark.slow
def test_when_every_fit_fails_the_tables_figures_and_report_are_still_written(tmp_path):
    """Issue #12, item 4."""
    config = small_config()
    broken = {"noise_rate": 1e300}  # an initial noise of ~1e-300: the log density is -inf
    config["models"]["priors"] = {variant: block | broken for variant, block in config["models"]["priors"].items()}
    snakemake(tmp_path, config)
    fits = pd.read_parquet(tmp_path / R / "tables/fits.parquet")
    # 2 outlier levels x 2 models x 3 target_accepts, every one failed
    assert len(fits) == 12 and (fits["status"] == "failed").all() and not fits["trusted"].any()
    html = (tmp_path / R / "report.html").read_text()
    assert html.count("Initial evaluation of model at starting point failed") == 12
    assert re.search(r'data-key="failed:count" data-value="12.0"', html)
    for png in ("trust", "divergences", "shrinkage", "estimates", "cost", "backends"):
        assert (tmp_path / R / f"figures/{png}.png").stat().st_size > 1000


def test_copying_a_file_twice_leaves_no_partial(tmp_path):
    """Issue #12, item 9: the old hard-link copy left `dst.partial` when run twice."""
    source, target = tmp_path / "a.nc", tmp_path / "b.nc"
    source.write_bytes(b"x" * 100)
    storage.copy_file(source, target)
    storage.copy_file(source, target)
    assert target.read_bytes() == source.read_bytes() and not list(tmp_path.glob("*.partial"))


def test_a_stale_partial_of_a_dead_writer_is_removed_by_the_next_job(tmp_path):
    stale = tmp_path / "fits.parquet.999999999.partial"
    stale.write_text("left by a killed writer")
    live = storage.partial_path(tmp_path / "groups.parquet")
    live.write_text("being written by this process")
    assert storage.remove_stale_partials(tmp_path) == 1
    assert not stale.exists() and live.exists()


@pytest.mark.slow
def test_an_unknown_model_on_the_command_line_is_refused_naming_it(finished_copy):
    target = f"{R}/fits/partial/normal/default/nutpie/simulated-p0/fits.parquet"
    result = snakemake(finished_copy, tiny_config(), target, check=False)
    assert result.returncode != 0
    assert target in result.stdout + result.stderr
    result = snakemake(finished_copy, tiny_config(), "--config", "models={'variants': ['partial']}", check=False)
    assert result.returncode != 0 and "'partial' is not one of" in result.stdout + result.stderr


def test_tables_and_report_record_their_provenance(tiny_run):
    from poolbench.grid import experiment_hash

    expected = experiment_hash(
        {k: v for k, v in _resolved_config(tiny_run).items()}
    )
    for table in ("fits", "groups", "summary"):
        parquet = tiny_run / R / f"tables/{table}.parquet"
        provenance = read_provenance(parquet)
        assert provenance["experiment_hash"] == expected
        assert provenance["packages"]["pymc"] == "6.4.0" and provenance["git_commit"]
        assert set(pd.read_parquet(parquet)["experiment"]) == {expected}
    html = (tiny_run / R / "report.html").read_text()
    assert expected in html and "pymc</td><td>6.4.0" in html


def _resolved_config(run: Path) -> dict:
    """The config as the workflow saw it: validated, with the schema's defaults filled in."""
    from snakemake.utils import validate

    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    return config


@pytest.mark.slow
def test_a_new_target_accept_samples_only_the_new_fits(finished_copy):
    config = tiny_config()
    config["sampler"]["target_accept"] = [0.8, 0.9, 0.99]
    snakemake(finished_copy, config, "--until", "aggregate")  # the fit jobs and their table
    logs = [p.read_text() for p in (finished_copy / R / "logs/fit").rglob("*.log")]
    # Each job: 8 datasets x 3 target_accepts, 16 of them already sampled.
    assert len(logs) == 4 and all("24 fits, 16 from the cache" in log for log in logs)
    fits = pd.read_parquet(finished_copy / R / "tables/fits.parquet")
    assert sorted(fits["target_accept"].unique()) == [0.8, 0.9, 0.99] and len(fits) == 96


# Issue #24: what the cache key does not cover must still never leave stale numbers.

@pytest.mark.slow
def test_a_changed_hdi_prob_recomputes_the_intervals_from_the_cached_draws(tmp_path, caplog):
    """Item 1: `hdi_prob` is not in the cache key (the draws do not depend on it), so the
    fit comes back from the cache, but its intervals and coverage are those of the new
    probability, computed from the same draws."""
    import arviz as az

    caplog.set_level("INFO", logger="poolbench")
    source = simulated_source(tmp_path / "data", {"hard": DEFAULT["scenarios"]["hard"]}, [0])
    keys, cache = fit_keys("hard", [0]), tmp_path / "cache"
    wide, wide_groups = fit("hierarchical_noncentered", keys, source, tmp_path / "a", draws=300, cache=cache)
    caplog.clear()
    narrow, narrow_groups = fit("hierarchical_noncentered", keys, source, tmp_path / "b", draws=300, cache=cache,
                                hdi_prob=0.5)
    assert "1 fits, 1 from the cache" in caplog.text
    tree = read_posterior(next((tmp_path / "b").rglob("*.nc")))
    hdi = az.hdi(tree, prob=0.5, var_names=["mu_slope", "slope"]).to_dataset()
    assert narrow.loc[0, "hdi_prob"] == 0.5
    assert narrow.loc[0, "mu_slope_hdi_lower"] == float(hdi["mu_slope"].sel(ci_bound="lower"))
    assert narrow.loc[0, "mu_slope_hdi_upper"] == float(hdi["mu_slope"].sel(ci_bound="upper"))
    assert list(narrow_groups["slope_hdi_lower"]) == list(hdi["slope"].sel(ci_bound="lower").values)
    assert narrow.loc[0, "mu_slope_hdi_upper"] - narrow.loc[0, "mu_slope_hdi_lower"] < (
        wide.loc[0, "mu_slope_hdi_upper"] - wide.loc[0, "mu_slope_hdi_lower"])
    # The draws are the cached ones: the means did not move.
    assert narrow.loc[0, "mu_slope_mean"] == wide.loc[0, "mu_slope_mean"]
    pd.testing.assert_series_equal(narrow_groups["slope_mean"], wide_groups["slope_mean"])


@pytest.mark.slow
def test_a_changed_thin_gives_the_ranks_of_the_new_thinning(tmp_path, caplog):
    """Item 2: a calibration entry keeps no draws, so a changed `sbc/thin` samples again;
    the ranks are those a fresh run with that thinning gives, never the old ones."""
    from poolbench import grid
    from poolbench.samplers import SamplerSettings
    from poolbench.sbc import SbcBatch

    spec = grid.ModelSpec.from_name("pooled")
    config = {"models": {"priors": DEFAULT["models"]["priors"], "likelihood_priors": {}, "prior_sets": {}}}
    keys = [grid.SbcKey("hard", i, 0.8) for i in range(2)]

    def ranks(thin, cache):
        batch = SbcBatch(spec=spec, fit_prior=grid.priors(config, spec), settings=SamplerSettings("nutpie", 100, 100, 2),
                         scenarios={"hard": DEFAULT["scenarios"]["hard"] | {"minority_points": 5}}, master_seed=5,
                         thin=thin, cache_dir=str(cache) if cache else None)
        caplog.clear()
        return batch.run(keys)[1]

    caplog.set_level("INFO", logger="poolbench")
    assert set(ranks(10, tmp_path / "cache")["n_ranks"]) == {20}
    rethinned = ranks(50, tmp_path / "cache")
    assert "2 simulations, 0 from the cache" in caplog.text
    assert set(rethinned["n_ranks"]) == {4}
    pd.testing.assert_frame_equal(rethinned, ranks(50, None))
    ranks(50, tmp_path / "cache")
    assert "2 simulations, 2 from the cache" in caplog.text


@pytest.mark.slow
def test_relabelled_groups_reach_the_groups_table_from_the_cache(tmp_path, caplog):
    """Item 3: renaming a CSV's groups (same order) leaves x, y and the group index, and so
    the cache key, unchanged: the fit is reused, with the new labels."""
    from poolbench import data, grid
    from poolbench.fit import DataSource

    caplog.set_level("INFO", logger="poolbench")
    rows = pd.DataFrame({"x": [0.1, 0.5, 0.9, 1.3] * 3, "y": [0.2, 0.9, 1.1, 2.0, 0.1, 0.4, 1.0, 1.2, 0.3, 0.8, 1.6, 2.4],
                         "site": ["a"] * 4 + ["b"] * 4 + ["c"] * 4})

    def groups_with(labels, directory):
        csv = tmp_path / f"{directory}.csv"
        rows.assign(site=rows["site"].map(dict(zip("abc", labels)))).to_csv(csv, index=False)
        table = tmp_path / f"{directory}.parquet"
        data.write_datasets([data.read_user_csv(csv, "x", "y", "site")], table)
        source = DataSource({"sites": data.DatasetTable(table)}, {})
        key = grid.FitKey(grid.REAL, "sites", grid.OBSERVED, 0, 0.9)
        caplog.clear()
        return fit("unpooled_intercepts", [key], source, tmp_path / directory, draws=100, tune=100, chains=2,
                   cache=tmp_path / "cache", prior={"intercept_sd": 10.0, "slope_sd": 10.0, "noise_rate": 1.0})[1]

    before = groups_with(["north", "south", "west"], "first")
    after = groups_with(["n-2", "s-2", "w-2"], "renamed")
    assert "1 fits, 1 from the cache" in caplog.text
    assert list(before["group_label"]) == ["north", "south", "west"]
    assert list(after["group_label"]) == ["n-2", "s-2", "w-2"]
    pd.testing.assert_frame_equal(after.drop(columns="group_label"), before.drop(columns="group_label"))


@pytest.mark.parametrize(
    "rule, model, scenario, figure",
    [("plot_posterior", "unpooled", "tutorial", "posterior/unpooled.png"),
     ("plot_funnel", "hierarchical_centered", "hard", "funnel/hard.png")],
)
@pytest.mark.slow
def test_a_deleted_posterior_of_a_good_fit_is_an_error_naming_it_not_a_failed_fit(finished_copy, rule, model, scenario,
                                                                                     figure):
    """Item 4: a figure whose fit succeeded but whose posterior is gone stops with the file's
    name and how to get it back, instead of drawing "this fit failed"; the advice works."""
    posterior = next((finished_copy / R / "fits" / model).rglob(f"posterior/{scenario}/2at30_seed0_ta0.99.nc"))
    posterior.unlink()
    result = snakemake(finished_copy, tiny_config(), "--forcerun", rule, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{posterior.relative_to(finished_copy)}: missing, though the fit it belongs to succeeded" in output
    advice = re.search(r"`snakemake (--forcerun \S+)`", output)[1].split()
    snakemake(finished_copy, tiny_config(), *advice, "--until", rule)  # the advice, up to the figure
    read_posterior(posterior)
    assert (finished_copy / R / "figures" / figure).exists()


def test_a_file_of_a_failed_fit_is_not_expected_and_one_of_a_good_fit_is(tmp_path):
    """The rule behind item 4, for every reader of posteriors (figures, LOO): a failed fit
    has no files; a succeeded one must have them; a fit the table does not know is refused."""
    posterior = tmp_path / "results/s/fits/pooled/normal/default/nutpie/simulated-p0/posterior/hard/0at30_seed1_ta0.8.nc"
    fits = pd.DataFrame([{"scenario": "hard", "outliers": "0at30", "seed": 1, "model": "pooled", "likelihood": "normal",
                          "prior": "default", "backend": "nutpie", "target_accept": 0.8, "status": "failed"}])
    assert storage.expect_file(posterior, fits) is False
    with pytest.raises(FileNotFoundError, match=r"0at30_seed1_ta0\.8\.nc: missing, though the fit it belongs to "
                                                r"succeeded.*--forcerun \S*results/s/fits/pooled/normal/default/nutpie/"
                                                r"simulated-p0/fits\.parquet"):
        storage.expect_file(posterior, fits.assign(status="ok"))
    posterior.parent.mkdir(parents=True)
    posterior.write_bytes(b"")
    assert storage.expect_file(posterior, fits.assign(status="ok")) is True
    with pytest.raises(ValueError, match="the fits table holds no record of this fit"):
        storage.expect_file(posterior, fits.assign(seed=2))


@pytest.mark.slow
def test_a_real_data_fit_keeps_its_loo_terms_not_its_log_likelihood_and_recomputes_them_from_the_cache(
        tmp_path, caplog, monkeypatch):
    """Item 10: what a real-data fit stores is proportionate: its pointwise PSIS-LOO (a row
    per observation), no log-likelihood (draws x observations), replicated datasets only of
    the rows the predictive check draws (capped here at 5 of 40). A change to the metrics
    code recomputes the LOO from the cached draws, without sampling, to the same values."""
    from poolbench import cache as fit_cache
    from poolbench import data, fit as fit_module, grid
    from poolbench.fit import DataSource, FitBatch, FitTask
    from poolbench.paths import loo_path
    from poolbench.samplers import SamplerSettings

    monkeypatch.setattr(fit_module, "PPC_POINTS", 5)
    caplog.set_level("INFO", logger="poolbench")
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"x": rng.normal(size=40), "site": np.repeat(["a", "b", "c", "d"], 10)})
    rows["y"] = 1 + 0.5 * rows["x"] + rng.normal(0, 0.3, 40)
    rows.to_csv(tmp_path / "sites.csv", index=False)
    data.write_datasets([data.read_user_csv(tmp_path / "sites.csv", "x", "y", "site")], tmp_path / "sites.parquet")
    source = DataSource({"sites": data.DatasetTable(tmp_path / "sites.parquet")}, {})
    key = grid.FitKey(grid.REAL, "sites", grid.OBSERVED, 0, 0.9)
    spec = grid.ModelSpec.from_name("pooled_intercept")

    def run(directory):
        posterior = tmp_path / directory / "posterior/sites/observed_seed0_ta0.9.nc"
        batch = FitBatch(spec, {"intercept_sd": 10.0, "slope_sd": 10.0, "noise_rate": 1.0},
                         SamplerSettings("nutpie", 100, 100, 2), 0.94, 3, source, tmp_path / "cache", check_target_accept=0.9)
        caplog.clear()
        assert batch.run([FitTask(key, str(posterior))])[0].loc[0, "status"] == "ok"
        return read_posterior(posterior), pd.read_parquet(loo_path(str(posterior)))

    tree, loo = run("first")
    assert "log_likelihood" not in tree.children
    assert tree["posterior_predictive"]["y_obs"].shape == (1, 40, 5)
    assert len(loo) == 40 and loo["elpd_i"].notna().all() and loo["pareto_k"].notna().all()
    monkeypatch.setattr(fit_cache, "metrics_code_version", lambda: "a newer metrics module")
    again, recomputed = run("second")
    assert "1 fits, 1 from the cache" in caplog.text and "PSIS-LOO of 40 observations" in caplog.text
    pd.testing.assert_frame_equal(recomputed, loo)
    xr.testing.assert_identical(again["posterior"], tree["posterior"])
    assert '"loo_version": "a newer metrics module"' in next((tmp_path / "cache").rglob("entry.json")).read_text()
    run("third")  # now current: copied from the cache, not computed
    assert "1 fits, 1 from the cache" in caplog.text and "PSIS-LOO" not in caplog.text


def test_progress_says_a_long_step_is_alive_and_how_long_it_took(caplog):
    from poolbench.runtime import progress

    caplog.set_level("INFO")
    logger = logging.getLogger("poolbench.test")
    with progress(logger, "a long step", every=0.05):
        time.sleep(0.18)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "a long step ..." and re.fullmatch(r"a long step: 0\.\d s", lines[-1])
    assert 2 <= sum("a long step: still running after" in line for line in lines) <= 4


def test_the_predictive_checks_density_takes_at_most_ppc_points_evenly_spaced_quantiles():
    from poolbench import figures, plots

    small = np.arange(10.0)
    assert list(plots.ppc_points(small)) == list(small)
    values = np.random.default_rng(0).normal(size=figures.PPC_POINTS * 5 + 3)
    kept = plots.ppc_points(values)
    assert len(kept) == figures.PPC_POINTS and kept[0] == values.min() and kept[-1] == values.max()
    assert np.all(np.diff(kept) >= 0) and abs(np.median(kept) - np.median(values)) < 1e-3

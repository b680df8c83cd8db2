"""The workflow as users run it: lint, formatting, planning, determinism, failures."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import BIN, DEFAULT, REPO, TINY_RESULTS, job_counts, snakemake, tiny_config, validated, write_config
from poolbench.plan import Plan

R = TINY_RESULTS


@pytest.mark.slow
def test_snakemake_lint_is_clean():
    result = subprocess.run(
        [BIN / "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


@pytest.mark.slow
def test_snakefmt_check_passes():
    result = subprocess.run([BIN / "snakefmt", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def planned_priorities(output: str) -> dict[str, dict[str, float]]:
    """Each rule's planned jobs from a dry run's output: wildcards -> priority."""
    priorities: dict[str, dict[str, float]] = {}
    for block in output.split("\n\n"):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        priority = re.search(r"^\s+priority: (-?[\d.e+-]+)$", block, re.M)
        if rule and priority:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            priorities.setdefault(rule[1], {})[wildcards[1] if wildcards else ""] = float(priority[1])
    return priorities


@pytest.mark.slow
def test_snakemake_plans_the_whole_grid_as_the_plan_does(tmp_path):
    # A simulate job per scenario (each writing 2 outlier levels x 2 seeds datasets into one
    # table) and one prepare job for radon; the plan's fit jobs (tests/test_plan.py), with its
    # priorities; one job for all plate diagrams and one per figure family.
    result = snakemake(tmp_path, REPO / "config/config.yaml", "--dry-run")
    counts = job_counts(result.stdout)
    assert counts["simulate"] == 2 and counts["prepare_dataset"] == 1
    assert counts["fit"] == 14 and "sbc" not in counts  # calibration runs in the fit jobs
    assert counts["model_graph"] == 1 and counts["plot_posterior"] == 1 and counts["plot_funnel"] == 1
    assert counts["aggregate"] == 1 and counts["html_report"] == 1
    planned = set(re.findall(r"results/tutorial/datasets/\S+?\.parquet", result.stdout))
    assert planned == {f"results/tutorial/datasets/{name}.parquet" for name in ("tutorial", "hard", "radon")} | {
        f"results/tutorial/datasets/{name}.truth.parquet" for name in ("tutorial", "hard")
    }
    plan = Plan(validated(DEFAULT))
    priorities = planned_priorities(result.stdout)
    expected = {", ".join(f"{k}={v}" for k, v in job.wildcards.items()): plan.fit_priority(job) for job in plan.jobs.values()}
    assert priorities["fit"] == pytest.approx(expected)
    assert set(priorities["simulate"].values()) == set(priorities["prepare_dataset"].values()) == {plan.data_priority}
    assert set(priorities["loo"].values()) == {plan.loo_priority}


@pytest.mark.slow
def test_planning_a_hundred_thousand_fits_takes_seconds_and_a_bounded_number_of_jobs(tmp_path):
    """Issue #18, item 4: fits are batched into jobs of at most `fits_per_job`, so the DAG
    stays small however many seeds (the benchmark times it at three sizes)."""
    config = tiny_config(seeds=25_000, scenarios={"hard": tiny_config()["scenarios"]["hard"]})
    config["models"] |= {"variants": ["hierarchical"]}
    config["sampler"] |= {"target_accept": [0.8], "fits_per_job": 1000}
    config["plots"]["tutorial_scenario"] = "hard"
    result = snakemake(tmp_path, config, "--dry-run", "--quiet", "rules", timeout=300)
    counts = job_counts(result.stdout)
    # 25,000 seeds x 2 outlier levels x 2 parameterisations = 100,000 fits in 100 fit jobs.
    assert counts["fit"] == 100


@pytest.mark.slow
def test_simulate_is_bit_for_bit_identical_across_runs_and_cores(tmp_path):
    config = tiny_config()
    one, two = tmp_path / "cores1", tmp_path / "cores2"
    snakemake(one, config, "--until", "simulate", cores=1)
    snakemake(two, config, "--until", "simulate", cores=2)
    files = sorted(p.relative_to(one) for p in (one / R / "datasets").rglob("*.*"))
    assert len(files) == 2 * 2  # scenarios x (datasets, truth)
    match, mismatch, errors = filecmp.cmpfiles(one, two, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors


@pytest.mark.slow
def test_a_failed_fit_is_recorded_and_the_workflow_completes(tmp_path):
    config = tiny_config(
        seeds=1,
        outlier_levels=[{"count": 2, "value": 30.0}],
        scenarios={"hard": tiny_config()["scenarios"]["hard"]},
        models={
            "variants": ["pooled", "hierarchical"],
            "parameterisations": ["centered"],
            # An initial noise of ~1e-300 makes the log density -inf: initialisation fails.
            "likelihoods": ["normal"],
            "priors": tiny_config()["models"]["priors"]
            | {"hierarchical": {"mu_sd": 1.0, "sigma_rate": 13.0, "noise_rate": 1e300}},
        },
    )
    config["sampler"]["target_accept"] = [0.8]
    config["plots"]["tutorial_scenario"] = "hard"
    snakemake(tmp_path, config)
    fits = pd.read_parquet(tmp_path / R / "tables/fits.parquet").set_index("model")
    assert fits.loc["pooled", "status"] == "ok"
    assert fits.loc["hierarchical_centered", "status"] == "failed"
    assert "starting point failed" in fits.loc["hierarchical_centered", "error"]
    summary = pd.read_csv(tmp_path / R / "tables/summary.csv", keep_default_na=False, na_values=[""]).set_index("model")
    assert summary.loc["hierarchical_centered", "n_failed"] == 1
    # Rerunning does no work: everything is up to date, failed fits included.
    rerun = snakemake(tmp_path, config)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_reordering_config_keys_reruns_no_computation(tiny_run):
    """Keys in another order (scenarios keep theirs: it is the order of the datasets) rerun
    at most the HTML report, which shows the config as written."""

    def reorder(node, key=None):
        if not isinstance(node, dict):
            return node
        items = list(node.items()) if key == "scenarios" else list(reversed(node.items()))
        return {k: reorder(v, k) for k, v in items}

    planned = snakemake(tiny_run, reorder(tiny_config()), "--dry-run")
    output = planned.stdout + planned.stderr
    assert "Nothing to be done" in output or set(job_counts(output)) <= {"html_report", "all", "total"}
    snakemake(tiny_run, tiny_config(), "--dry-run")  # leave tiny_run's config as it was


@pytest.mark.slow
def test_setup_puts_the_environment_of_a_checkout_with_a_space_where_there_is_none(tmp_path):
    """Issue #12, item 8: Snakemake runs scripts with the interpreter's path unquoted."""
    checkout = tmp_path / "probe space" / "poolbench"
    (checkout / "bin").mkdir(parents=True)
    shutil.copy(REPO / "bin/setup", checkout / "bin/setup")
    home = tmp_path / "home"
    env = os.environ | {"HOME": str(home)}
    env.pop("XDG_CACHE_HOME", None)
    env.pop("POOLBENCH_VENV", None)
    where = subprocess.run([checkout / "bin/setup", "--where"], capture_output=True, text=True, env=env, check=True)
    venv = where.stdout.strip()
    assert " " not in venv and venv.startswith(str(home / ".cache/poolbench/venv-"))
    plain = subprocess.run([REPO / "bin/setup", "--where"], capture_output=True, text=True, env=env, check=True)
    assert plain.stdout.strip() == ".venv"


@pytest.mark.slow
def test_a_python_with_a_space_in_its_path_is_refused_with_the_reason(tmp_path):
    """Where the interpreter's path has a space anyway, the run stops before any job with
    the reason, not with bash's "Is a directory" in every job."""
    spaced = tmp_path / "probe space" / "venv"
    (spaced / "bin").mkdir(parents=True)
    os.symlink(os.path.realpath(sys.executable), spaced / "bin/python")
    shutil.copy(Path(sys.prefix) / "pyvenv.cfg", spaced / "pyvenv.cfg")
    os.symlink(Path(sys.prefix) / "lib", spaced / "lib")
    config = write_config(tmp_path, tiny_config())
    result = subprocess.run(
        [spaced / "bin/python", "-m", "snakemake", "--snakefile", REPO / "Snakefile", "--directory", tmp_path / "run",
         "--configfile", config, "--replace-workflow-config", "--cores", "1"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "has a space in its path" in result.stdout + result.stderr and "snakemake/snakemake#2645" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_checkout_and_working_directory_with_spaces_run(tmp_path):
    checkout = tmp_path / "probe space" / "poolbench"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".venv", "results", ".git", ".snakemake", "__pycache__"))
    run = checkout / "my run"
    result = subprocess.run(
        [BIN / "snakemake", "--snakefile", checkout / "Snakefile", "--directory", run, "--configfile",
         write_config(tmp_path, tiny_config()), "--replace-workflow-config", "--cores", "1", "--until", "simulate"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run / R / "datasets/hard.parquet").exists()

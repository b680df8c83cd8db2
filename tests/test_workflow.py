"""The workflow as users run it: lint, formatting, planning, determinism, failures."""

from __future__ import annotations

import filecmp
import re
import subprocess

import pandas as pd

from conftest import job_counts, BIN, REPO, snakemake, tiny_config


def test_snakemake_lint_is_clean():
    result = subprocess.run(
        [BIN / "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_check_passes():
    result = subprocess.run([BIN / "snakefmt", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_of_the_default_config_plans_the_whole_grid(tmp_path):
    # A simulate job per scenario, each writing 2 outlier levels x 5 seeds datasets; a fit
    # job per model structure (pooled, unpooled, hierarchical centered and non-centered) and
    # backend, each fitting all 20 datasets at 4 target_accepts; one job for all plate
    # diagrams and one for all tutorial figures.
    result = snakemake(tmp_path, REPO / "config/config.yaml", "--dry-run")
    counts = job_counts(result.stdout)
    assert counts["simulate"] == 2
    assert counts["fit"] == 4
    assert counts["model_graph"] == 1
    assert counts["plot_posterior"] == 1
    assert counts["aggregate"] == 1
    planned = set(re.findall(r"results/datasets/\S+?\.csv", result.stdout))
    assert planned == {
        f"results/datasets/{scenario}/{outliers}/seed{seed}.csv"
        for scenario in ("tutorial", "hard") for outliers in ("0at30", "2at30") for seed in range(5)
    }


def test_simulate_is_bit_for_bit_identical_across_runs_and_cores(tmp_path):
    config = tiny_config()
    one, two = tmp_path / "cores1", tmp_path / "cores2"
    snakemake(one, config, "--until", "simulate", cores=1)
    snakemake(two, config, "--until", "simulate", cores=2)
    files = sorted(p.relative_to(one) for p in (one / "results/datasets").rglob("*.*"))
    assert len(files) == 2 * 2 * 2 * 2  # scenarios x levels x seeds x (csv, truth)
    match, mismatch, errors = filecmp.cmpfiles(one, two, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors


def test_a_failed_fit_is_recorded_and_the_workflow_completes(tmp_path):
    config = tiny_config(
        seeds=1,
        outlier_levels=[{"count": 2, "value": 30.0}],
        scenarios={"hard": tiny_config()["scenarios"]["hard"]},
        models={
            "variants": ["pooled", "hierarchical"],
            "parameterisations": ["centered"],
            # An initial noise of ~1e-300 makes the log density -inf: initialisation fails.
            "priors": tiny_config()["models"]["priors"]
            | {"hierarchical": {"mu_sd": 1.0, "sigma_rate": 13.0, "noise_rate": 1e300}},
        },
    )
    config["sampler"]["target_accept"] = [0.8]
    config["plots"]["tutorial_scenario"] = "hard"
    snakemake(tmp_path, config)
    fits = pd.read_parquet(tmp_path / "results/tables/fits.parquet").set_index("model")
    assert fits.loc["pooled", "status"] == "ok"
    assert fits.loc["hierarchical_centered", "status"] == "failed"
    assert "starting point failed" in fits.loc["hierarchical_centered", "error"]
    summary = pd.read_csv(tmp_path / "results/tables/summary.csv").set_index("model")
    assert summary.loc["hierarchical_centered", "n_failed"] == 1
    # Rerunning does no work: everything is up to date, failed fits included.
    rerun = snakemake(tmp_path, config)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


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

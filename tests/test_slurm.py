"""Cluster submission on a real SLURM controller started on this machine.

Needs root and apt-get (or slurm-wlm and munge already installed); elsewhere it is skipped
with the reason printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import REPO, TINY_RESULTS, snakemake, tiny_config
from poolbench.records import TIMING as TIMING_COLUMNS

SCRIPTS = REPO / "tests/slurm"


def why_no_slurm() -> str | None:
    if os.geteuid() != 0:
        return "not root: cannot start SLURM daemons"
    if not (shutil.which("slurmctld") or shutil.which("apt-get")):
        return "neither slurm-wlm installed nor apt-get to install it"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_no_slurm()
    if reason:
        print(f"SKIPPED SLURM test: {reason}")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([SCRIPTS / "start-cluster.sh", state], capture_output=True, text=True)
    if started.returncode != 0:
        subprocess.run([SCRIPTS / "stop-cluster.sh", state])
        pytest.fail(f"could not start SLURM:\n{started.stdout}\n{started.stderr}")
    yield {"SLURM_CONF": str(state / "slurm.conf")}
    subprocess.run([SCRIPTS / "stop-cluster.sh", state])


def slurm_jobs(env: dict) -> list[dict]:
    """Every job the controller still remembers (MinJobAge keeps finished ones 10 minutes)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, env=os.environ | env, check=True
    ).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_slurm_profile_runs_the_workflow_through_slurm(cluster, tmp_path, tiny_run):
    # The profile's first status check waits 40 s (the plugin's default, kind to a shared
    # controller); this private one is asked after 5 s, so the test does not idle.
    result = snakemake(
        tmp_path, tiny_config(), "--profile", str(REPO / "profiles/slurm"),
        "--slurm-init-seconds-before-status-checks", "5", "--until", "aggregate", env=cluster, timeout=1500,
    )  # up to the tables it compares: figures and the report are local rules, as off the cluster
    log = result.stdout + result.stderr
    jobs = slurm_jobs(cluster)
    completed = [job for job in jobs if job.get("JobState") == "COMPLETED"]
    # The 4 fit jobs, grouped 4 per SLURM job by the profile, make one SLURM job; simulate
    # and aggregate run locally.
    assert len(completed) == 1 and len(jobs) == 1, log
    assert completed[0]["Partition"] == "debug"
    assert f"submitted with SLURM jobid {completed[0]['JobId']}" in log
    assert "group_fits_fit" in log
    local = pd.read_parquet(tiny_run / TINY_RESULTS / "tables/fits.parquet").drop(columns=TIMING_COLUMNS)
    remote = pd.read_parquet(tmp_path / TINY_RESULTS / "tables/fits.parquet").drop(columns=TIMING_COLUMNS)
    pd.testing.assert_frame_equal(remote, local)

"""What a job needs, declared to Snakemake (and through it to SLURM), from the size of its
data: a real data set of a million rows needs gigabytes where radon needs megabytes.

The coefficients are measured peaks (docs/performance.md, "Big data"); the tests check
that the declarations cover what the jobs of the test runs measure. Nothing heavy is
imported here: Snakemake calls these while planning.
"""

from __future__ import annotations

import math
from pathlib import Path

# A fit job of simulated data or of a small real data set: the measured peak is ~580 MB
# (docs/performance.md), set by PyMC, PyTensor and nutpie themselves.
FIT_JOB_BASE_MB = 1500
# A real-data fit holds its pointwise log-likelihood (draws x observations, float64),
# PSIS-LOO's log weights and temporaries beside it, and its replicated datasets. Measured
# at 200 draws: 922 MB at 100,000 rows, 1,528 MB at 300,000, i.e. ~620 MB and ~15 bytes per
# draw and row; declared with a margin of about two.
FIT_BYTES_PER_DRAW_AND_ROW = 20
# Per observation, whatever the draws: the data, its tables and the per-row LOO terms.
BYTES_PER_ROW = 1_000
# The collecting and comparing jobs: a Python with pandas and ArviZ, plus per-row terms.
LOO_JOB_BASE_MB = 1000
# The real-data figures: the stored replicated datasets and the observed data.
PLOT_BASE_MB = 1000
# Minutes: the job's start (imports, compiles), each simulated fit (~1-2 s of sampling and
# diagnostics on the default grid; 5 s with a margin) and calibration simulation (~0.5 s;
# 1 s), then per real-data fit: PSIS-LOO (ArviZ fits each observation's Pareto tail in
# Python: 1.5-4 ms per observation on a 2-core machine, docs/upstream.md) and sampling
# with the log-likelihood (varying intercepts at 100,000 rows: 194 s for 200 draws, ~10
# microseconds per draw and row; pooled: 1-3 s), with a margin of two.
FIT_JOB_BASE_MINUTES = 15
SECONDS_PER_FIT = 5
SECONDS_PER_SIMULATION = 1
SECONDS_PER_ROW = 0.006
SECONDS_PER_DRAW_AND_ROW = 2e-5


def dataset_rows(path: str | Path) -> int:
    """Rows of a dataset table, from its Parquet footer (no data read); 0 if it is not
    there yet (Snakemake asks again when the job is ready to run) or cannot be read (a
    planning error here would stop every job; the job reading it names the file)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # missing, or damaged: the job that reads it fails naming the file
        return 0


def _mb(n_bytes: float) -> int:
    return math.ceil(n_bytes / 1e6)


def fit_job_mem_mb(real_rows: int, draws: int) -> int:
    """A fit job's memory: the base, plus for its largest real data set (`real_rows`, 0 for
    simulated data) what one fit of it holds at once (`draws`: over all chains)."""
    return FIT_JOB_BASE_MB + _mb(real_rows * (draws * FIT_BYTES_PER_DRAW_AND_ROW + BYTES_PER_ROW))


def fit_job_minutes(real_rows: int, draws: int, n_fits: int, n_simulations: int = 0) -> int:
    """A fit job's runtime limit, in minutes: `n_fits` fits (of `real_rows` rows each where
    the job's data are real, 0 for simulated data) and `n_simulations` calibration fits."""
    per_fit = SECONDS_PER_FIT + real_rows * (SECONDS_PER_ROW + draws * SECONDS_PER_DRAW_AND_ROW)
    return FIT_JOB_BASE_MINUTES + math.ceil((n_fits * per_fit + n_simulations * SECONDS_PER_SIMULATION) / 60)


def loo_job_mem_mb(total_rows: int) -> int:
    """The LOO-collecting or comparing job: the per-row terms of the fits it reads (`total_rows`
    summed over them)."""
    return LOO_JOB_BASE_MB + _mb(total_rows * BYTES_PER_ROW)


def plot_real_mem_mb(largest_rows: int, replicated_draws: int) -> int:
    """The real-data figures' job: one fit's replicated datasets and observed data at a time."""
    return PLOT_BASE_MB + _mb(largest_rows * (8 * (replicated_draws + 1) + BYTES_PER_ROW))


# Reading a CSV as text: pandas' Python strings take this many bytes per byte of the file.
CSV_TEXT_FACTOR = 25
PREPARE_BASE_MB = 500


def prepare_mem_mb(csv_bytes: int) -> int:
    """Checking and converting a user's CSV."""
    return PREPARE_BASE_MB + _mb(csv_bytes * CSV_TEXT_FACTOR)

"""Collect per-fit records into tidy tables and summarise them over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# One summary row per cell of the grid, pooled over seeds. (outlier_count is part of the
# outliers label; it is kept as a number for readers of the summary.)
CELL = [
    "scenario", "outliers", "outlier_count", "variant", "parameterisation", "model", "backend",
    "target_accept",
]
# Spread across seeds: the central 90 % of the seed-level values.
SPREAD = (0.05, 0.95)


def collect(paths: list[str | Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    order = [c for c in CELL + ["seed", "group"] if c in table.columns]
    return table.sort_values(order, kind="stable").reset_index(drop=True)


def _with_spread(ok: pd.DataFrame, column: str) -> pd.DataFrame:
    grouped = ok.groupby(CELL)[column]
    return pd.DataFrame(
        {
            f"{column}_mean": grouped.mean(),
            f"{column}_lower": grouped.quantile(SPREAD[0]),
            f"{column}_upper": grouped.quantile(SPREAD[1]),
        }
    )


def summarise(fits: pd.DataFrame) -> pd.DataFrame:
    """Per grid cell: divergences, errors with their spread over seeds, coverage, cost, failures."""
    cells = fits.groupby(CELL)
    counts = pd.DataFrame(
        {
            "n_fits": cells.size(),
            "n_failed": cells["status"].agg(lambda s: int((s != "ok").sum())),
        }
    )
    ok = fits[fits["status"] == "ok"]
    by_cell = ok.groupby(CELL)
    stats = pd.DataFrame(
        {
            "divergences_mean": by_cell["n_divergent"].mean(),
            "divergence_rate_mean": by_cell["divergence_rate"].mean(),
            "share_with_divergences": by_cell["n_divergent"].agg(lambda s: float((s > 0).mean())),
            "hdi_coverage_mean": by_cell["hdi_coverage"].mean(),
            "max_rhat": by_cell["max_rhat"].max(),
            "min_ess_bulk": by_cell["min_ess_bulk"].min(),
            "ess_bulk_per_second_median": by_cell["ess_bulk_per_second"].median(),
            "sampling_seconds_mean": by_cell["sampling_seconds"].mean(),
            "mu_slope_mean": by_cell["mu_slope_mean"].mean(),
        }
    )
    spreads = [_with_spread(ok, c) for c in ("slope_rmse", "minority_error")]
    summary = counts.join([stats, *spreads], how="left")
    summary["failed_share"] = summary["n_failed"] / summary["n_fits"]
    return summary.reset_index().replace({np.inf: np.nan})


def with_provenance(frame: pd.DataFrame, provenance: dict) -> pd.DataFrame:
    """Stamp a table with the experiment it comes from; Parquet also carries the full
    provenance (package versions, commit) in its metadata."""
    frame = frame.assign(experiment=provenance["experiment_hash"])
    frame.attrs["provenance"] = provenance
    return frame

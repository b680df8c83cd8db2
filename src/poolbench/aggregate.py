"""Collect per-fit records into tidy tables, judge every fit, and summarise over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from poolbench import metrics, records
from poolbench.grid import target_accept_label
from poolbench.variants import PARAMETERISATIONS, PURE_PARAMETERISATIONS

# One summary row per cell of the grid, pooled over seeds.
CELL = [
    "source", "scenario", "outliers", "outlier_count", "variant", "parameterisation", "model",
    "likelihood", "prior", "backend", "target_accept",
]
# The design of a cell's data (constant within a cell), kept for the study figures.
CELL_DESIGN = ["n_groups", "points_per_group", "minority_points", "noise"]
# Spread across seeds: the central 90 % of the seed-level values.
SPREAD = (0.05, 0.95)
# Errors compared in headlines and figures; computed over trusted fits only.
ERRORS = ["slope_rmse", "minority_abs_error", "minority_bias", "mu_slope_error", "sigma_slope_error", "intercept_rmse"]


def collect(paths: list[str | Path], columns: list[str]) -> pd.DataFrame:
    """The job tables stacked, in the grid's order, with exactly the declared columns."""
    frames = [pd.read_parquet(p) for p in paths]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return records.frame([], columns)
    table = pd.concat(frames, ignore_index=True).reindex(columns=columns)
    order = [c for c in CELL + ["seed", "simulation", "group", "parameter"] if c in table.columns]
    # Simulated fits first, then real data sets; within each, the grid's order.
    key = {"source": lambda s: s.map({"simulated": 0, "real": 1})}
    return table.sort_values(order, kind="stable", key=lambda c: key.get(c.name, lambda s: s)(c)).reset_index(drop=True)


def _reasons(because: pd.Series) -> str:
    """How often each check failed in a cell, most frequent first: 'rhat 3, ess_bulk 2'."""
    counts = because[because != ""].str.split(",").explode().value_counts()
    return ", ".join(f"{reason} {count}" for reason, count in counts.items())


def summarise(fits: pd.DataFrame) -> pd.DataFrame:
    """Per grid cell: how many fits, failed and trusted (and why not), divergences and
    diagnostics over every fit that sampled, errors and their spread over trusted fits."""
    if fits.empty:
        return pd.DataFrame(columns=CELL + ["n_fits"])
    cells = fits.groupby(CELL, dropna=False, sort=False)  # in the tables' order
    counts = pd.DataFrame(
        {
            "n_fits": cells.size(),
            "n_failed": cells["status"].agg(lambda s: int((s != "ok").sum())),
            "n_trusted": cells["trusted"].sum().astype(int),
            "untrusted_reasons": cells["untrusted_because"].agg(_reasons),
            **{column: cells[column].first() for column in CELL_DESIGN},
        }
    )
    counts["share_trusted"] = counts["n_trusted"] / counts["n_fits"]
    counts["failed_share"] = counts["n_failed"] / counts["n_fits"]
    ok = fits[fits["status"] == "ok"]
    by_cell = ok.groupby(CELL, dropna=False, sort=False)
    stats = pd.DataFrame(
        {
            "divergences_mean": by_cell["n_divergent"].mean(),
            "share_with_divergences": by_cell["n_divergent"].agg(lambda s: float((s > 0).mean())),
            "max_rhat": by_cell["max_rhat"].max(),
            "min_ess_bulk": by_cell["min_ess_bulk"].min(),
            "min_bfmi": by_cell["min_bfmi"].min(),
            "ess_bulk_per_second_median": by_cell["ess_bulk_per_second"].median(),
            "sampling_seconds_mean": by_cell["sampling_seconds"].mean(),
        }
    )
    trusted = ok[ok["trusted"]]
    spreads = [_with_spread(trusted, column) for column in ERRORS]
    by_trusted = trusted.groupby(CELL, dropna=False, sort=False)
    extra = pd.DataFrame(
        {
            "hdi_coverage_mean": by_trusted["hdi_coverage"].mean(),
            "mu_slope_mean": by_trusted["mu_slope_mean"].mean(),
            "sigma_slope_mean": by_trusted["sigma_slope_mean"].mean(),
            "ess_bulk_per_second_trusted_median": by_trusted["ess_bulk_per_second"].median(),
            "elpd_loo": by_trusted["elpd_loo"].mean(),
        }
    )
    summary = counts.join([stats, extra, *spreads, _model_checks(trusted)], how="left")
    return summary.reset_index().replace({np.inf: np.nan})


def _flag_kind(flag: str) -> str:
    """A model flag without its numbers: "sigma_slope: prior-data conflict (prior 0.45,
    ...)" -> "sigma_slope prior-data conflict"; "prior predictive: 3 of 16 ..." -> "prior predictive"."""
    subject, _, what = flag.partition(": ")
    return subject if subject == "prior predictive" else f"{subject} {what.split(' (')[0]}"


def _model_checks(trusted: pd.DataFrame) -> pd.DataFrame:
    """Per cell, over its trusted fits: how many passed the model check, what the others
    were flagged for (counted like `untrusted_reasons`), and per checked variable the share
    of fits whose posterior follows its prior (prior-data conflict or prior-dominated)."""
    if "model_ok" not in trusted:
        return pd.DataFrame()
    cells = trusted.groupby(CELL, dropna=False, sort=False)
    kinds = trusted["model_flags"].str.split("; ").map(lambda flags: ",".join(_flag_kind(f) for f in flags if f))
    out = {
        "n_model_ok": cells["model_ok"].sum().astype(int),
        "share_model_ok": cells["model_ok"].mean(),
        "model_flag_reasons": kinds.groupby([trusted[c] for c in CELL], dropna=False, sort=False).agg(_reasons),
    }
    for name in records.CHECKED:
        diagnosis = trusted[f"{name}_diagnosis"]
        follows = diagnosis.isin([metrics.CONFLICT, metrics.PRIOR_DOMINATED]).where(
            trusted[f"{name}_prior_sensitivity"].notna())
        out[f"{name}_prior_flag_share"] = follows.groupby([trusted[c] for c in CELL], dropna=False, sort=False).mean()
    return pd.DataFrame(out)


def _with_spread(table: pd.DataFrame, column: str) -> pd.DataFrame:
    grouped = table.groupby(CELL, dropna=False, sort=False)[column]
    return pd.DataFrame(
        {
            f"{column}_mean": grouped.mean(),
            f"{column}_lower": grouped.quantile(SPREAD[0]),
            f"{column}_upper": grouped.quantile(SPREAD[1]),
        }
    )


def parameterisation_table(fits: pd.DataFrame) -> pd.DataFrame:
    """The parameterisations side by side, per design cell (scenario, outliers, likelihood,
    prior, backend, target_accept): each one's share of trusted fits and of fits with
    divergences, its median min-ESS per second over trusted fits; centered against
    non-centered (`ess_ratio`), and each partially centered form (partial, mixed, learned)
    against the better of the two (`better_pure`; `{form}_trusted_gain` in share of
    trusted fits, `{form}_ess_vs_better_pure` the ratio of ESS per second)."""
    hierarchical = fits[fits["parameterisation"].isin(PARAMETERISATIONS) & (fits["source"] == "simulated")]
    if hierarchical.empty:
        return pd.DataFrame()
    keys = ["scenario", "outliers", "variant", "likelihood", "prior", "backend", "target_accept", *CELL_DESIGN]
    rows = []
    for cell, table in hierarchical.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, cell))
        for parameterisation in PARAMETERISATIONS:
            side = table[table["parameterisation"] == parameterisation]
            trusted = side[side["trusted"]]
            row |= {
                f"{parameterisation}_fits": len(side),
                f"{parameterisation}_trusted": len(trusted),
                f"{parameterisation}_share_trusted": len(trusted) / len(side) if len(side) else np.nan,
                f"{parameterisation}_share_divergent": float((side["n_divergent"] > 0).mean()) if len(side) else np.nan,
                f"{parameterisation}_ess_per_second": trusted["ess_bulk_per_second"].median() if len(trusted) else np.nan,
            }
        row["ess_ratio"] = row["centered_ess_per_second"] / row["noncentered_ess_per_second"]
        # Each partially centered form against the better pure form of the cell (trusted
        # more often; at equal shares, the faster).
        better = max(PURE_PARAMETERISATIONS, key=lambda p: (np.nan_to_num(row[f"{p}_share_trusted"], nan=-1.0),
                                                            np.nan_to_num(row[f"{p}_ess_per_second"], nan=-1.0)))
        row["better_pure"] = better
        for form in (p for p in PARAMETERISATIONS if p not in PURE_PARAMETERISATIONS):
            row[f"{form}_trusted_gain"] = row[f"{form}_share_trusted"] - row[f"{better}_share_trusted"]
            row[f"{form}_ess_vs_better_pure"] = row[f"{form}_ess_per_second"] / row[f"{better}_ess_per_second"]
        rows.append(row)
    return pd.DataFrame(rows)


LOO_KEYS = ["scenario", "model", "likelihood", "prior", "backend", "target_accept_label"]


def with_loo(fits: pd.DataFrame, loo: pd.DataFrame) -> pd.DataFrame:
    """The real-data fits' PSIS-LOO columns (`poolbench.records.LOO`), computed by the fit
    jobs and collected by the `loo` job (which knows them by their paths), joined to their records."""
    if loo.empty:
        return fits
    labelled = fits.drop(columns=records.LOO).assign(
        target_accept_label=fits["target_accept"].map(target_accept_label)
    )
    merged = labelled.merge(loo[LOO_KEYS + records.LOO], on=LOO_KEYS, how="left")
    return merged[fits.columns]


def with_provenance(frame: pd.DataFrame, provenance: dict) -> pd.DataFrame:
    """Stamp a table with the experiment it comes from; Parquet also carries the full
    provenance (package versions, commit) in its metadata."""
    frame = frame.assign(experiment=provenance["experiment_hash"])
    frame.attrs["provenance"] = provenance
    return frame

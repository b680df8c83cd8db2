"""Figures from the tables (seaborn) and from posteriors (ArviZ). No PyMC here."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from poolbench.grid import COMMON_SLOPE, MU, SIGMA, SLOPE, ModelSpec

# Spread over seeds drawn around each point: the central 90 % of seed-level values.
SEED_SPREAD = ("pi", 90)


def set_style(context: str) -> None:
    sns.set_theme(context=context, style="whitegrid", palette="colorblind")


def save(figure, png: str | Path, svg: str | Path, dpi: int) -> None:
    """Write a figure as PNG and SVG. `figure` is a matplotlib Figure or a seaborn grid."""
    figure = getattr(figure, "figure", figure)
    figure.savefig(png, dpi=dpi, bbox_inches="tight")
    figure.savefig(svg, bbox_inches="tight")
    plt.close(figure)


def ok_fits(fits: pd.DataFrame) -> pd.DataFrame:
    return fits[fits["status"] == "ok"]


def divergence_figure(fits: pd.DataFrame):
    """Divergences against target_accept, centered vs non-centered, a panel per
    scenario and outlier level."""
    hierarchical = ok_fits(fits)[fits["variant"] == "hierarchical"]
    if hierarchical.empty:
        return message_figure("No successful hierarchical fits: nothing to show.")
    grid = sns.relplot(
        data=hierarchical,
        x="target_accept",
        y="n_divergent",
        hue="parameterisation",
        style="parameterisation",
        row="scenario",
        col="outliers",
        kind="line",
        markers=True,
        errorbar=SEED_SPREAD,
        height=3,
        aspect=1.3,
        facet_kws={"sharey": False},
    )
    grid.set_axis_labels("target_accept", "divergences per fit")
    grid.set_titles("{row_name} · outliers {col_name}")
    return grid


def _melt(frame: pd.DataFrame, metrics: dict[str, str], keys: list[str]) -> pd.DataFrame:
    return frame.melt(id_vars=keys, value_vars=list(metrics), var_name="metric").replace(
        {"metric": metrics}
    )


def _dodge(frame: pd.DataFrame, hue: str) -> float | bool:
    # seaborn 0.13 divides by (hue levels - 1) when dodge is a number.
    return 0.3 if frame[hue].nunique() > 1 else False


def _metric_grid(fits: pd.DataFrame, metrics: dict[str, str], x: str, hue: str, log: bool = False):
    """Point plots of several per-fit metrics: a row per metric, a column per scenario;
    points are means over seeds (and whatever else is not on the axes)."""
    ok = ok_fits(fits)
    if ok.empty:
        return message_figure("No successful fits: nothing to show.")
    long = _melt(ok, metrics, ["scenario", "seed", x, hue])
    grid = sns.catplot(
        data=long,
        x=x,
        y="value",
        hue=hue,
        row="metric",
        col="scenario",
        kind="point",
        dodge=_dodge(long, hue),
        errorbar=SEED_SPREAD,
        height=3,
        aspect=1.5,
        sharey=False,
    )
    if log:
        grid.set(yscale="log")
    grid.set_titles("{col_name} · {row_name}")
    return grid


def shrinkage_figure(fits: pd.DataFrame):
    """Group-slope RMSE and minority-group error by model and outlier level, over seeds."""
    metrics = {"slope_rmse": "group-slope RMSE", "minority_abs_error": "|minority slope error|"}
    fits = fits.assign(minority_abs_error=fits["minority_error"].abs())
    grid = _metric_grid(fits, metrics, x="model", hue="outliers")
    if isinstance(grid, sns.FacetGrid):
        grid.set_axis_labels("", "error vs true slopes")
        grid.tick_params(axis="x", rotation=20)
    return grid


def estimates_figure(groups: pd.DataFrame, fits: pd.DataFrame):
    """Posterior mean and HDI of every group's slope, model by model, against the truth:
    the shrinkage picture. `groups`/`fits` hold one dataset per scenario."""
    if groups.empty:
        return message_figure("No successful fit of the showcase dataset: nothing to show.")
    scenarios = list(dict.fromkeys(groups["scenario"]))
    models = list(dict.fromkeys(groups["model"]))
    palette = dict(zip(models, sns.color_palette(n_colors=len(models))))
    fig, axes = plt.subplots(
        1, len(scenarios), figsize=(6.5 * len(scenarios), 4.2), squeeze=False, sharey=False
    )
    width = 0.8 / max(len(models), 1)
    for ax, scenario in zip(axes[0], scenarios):
        panel = groups[groups["scenario"] == scenario]
        for i, model in enumerate(models):
            rows = panel[panel["model"] == model]
            x = rows["group"] + (i - (len(models) - 1) / 2) * width
            ax.errorbar(
                x,
                rows["slope_mean"],
                yerr=[
                    rows["slope_mean"] - rows["slope_hdi_lower"],
                    rows["slope_hdi_upper"] - rows["slope_mean"],
                ],
                fmt="o",
                ms=4,
                capsize=2,
                color=palette[model],
                label=model,
            )
        truth = panel.drop_duplicates("group")
        ax.scatter(truth["group"], truth["true_slope"], marker="_", s=400, color="black", zorder=5, label="true slope")
        mu = fits.loc[(fits["scenario"] == scenario) & fits["mu_slope_mean"].notna()]
        if not mu.empty:
            ax.axhline(mu["mu_slope_mean"].iloc[0], ls="--", lw=1, color="grey", label="hierarchical mu")
        label = panel.iloc[0]
        ax.set_title(f"{scenario} · seed {label['seed']} · outliers {label['outliers']}")
        ax.set_xlabel("group (last = minority)")
        ax.set_ylabel("slope (mean, HDI)")
        ax.set_xticks(sorted(panel["group"].unique()))
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def cost_figure(fits: pd.DataFrame):
    """ESS per second and sampling time by model and target_accept."""
    metrics = {
        "ess_bulk_per_second": "min bulk ESS per second",
        "sampling_seconds": "sampling seconds per fit",
    }
    grid = _metric_grid(fits, metrics, x="target_accept", hue="model", log=True)
    if isinstance(grid, sns.FacetGrid):
        grid.set_axis_labels("target_accept", "")
    return grid


def backend_figure(fits: pd.DataFrame):
    """Minimum bulk ESS per second of sampling, by sampler backend and model."""
    ok = ok_fits(fits)
    if ok.empty:
        return message_figure("No successful fits: nothing to show.")
    grid = sns.catplot(
        data=ok,
        x="backend",
        y="ess_bulk_per_second",
        hue="model",
        col="scenario",
        kind="point",
        dodge=_dodge(ok, "model"),
        errorbar=SEED_SPREAD,
        height=3.2,
        aspect=1.3,
    )
    grid.set(yscale="log")
    grid.set_titles("{col_name}")
    grid.set_axis_labels("sampler backend", "min bulk ESS per second")
    return grid


def posterior_figure(tree, model: str, hdi_prob: float):
    """The tutorial's own figures, from a pipeline fit: the pooled slope's posterior,
    the forest plot of unpooled slopes, the hierarchical model's posteriors."""
    variant = ModelSpec.from_name(model).variant
    if variant == "unpooled":
        collection = az.plot_forest(
            tree, var_names=[SLOPE], combined=True, ci_kind="hdi", ci_probs=[0.5, hdi_prob],
            backend="matplotlib",
        )
    else:
        names = [COMMON_SLOPE] if variant == "pooled" else [MU, SIGMA, SLOPE]
        collection = az.plot_dist(
            tree, var_names=names, kind="kde", ci_kind="hdi", ci_prob=hdi_prob,
            backend="matplotlib", figure_kwargs={"figsize": (13, 10) if len(names) > 1 else (6, 3.5)},
        )
    figure = collection.viz["figure"].item()
    figure.suptitle(f"{model}: posterior ({hdi_prob:.0%} HDI)")
    return figure


def message_figure(message: str):
    """Stands in for a figure that has nothing to show (its fits failed), saying why."""
    fig, ax = plt.subplots(figsize=(8, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message[:300], ha="center", va="center", wrap=True, color="firebrick")
    return fig


def showcase(table: pd.DataFrame, seed: int, outliers: str, target_accept: float) -> pd.DataFrame:
    """The rows of one dataset per scenario, at one target_accept."""
    chosen = (table["seed"] == seed) & (table["outliers"] == outliers)
    return table[chosen & np.isclose(table["target_accept"], target_accept)]

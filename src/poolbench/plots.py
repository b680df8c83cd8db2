"""Figures from the tables (seaborn) and from posteriors (ArviZ). No PyMC here.

Each summary figure of `poolbench.figures.SUMMARY` is drawn by `<name>_figure(fits,
groups, summary, showcase)`; the figure families by their own functions below. Errors are
compared over trusted fits only; every figure that mixes likelihoods, prior sets or sampler
backends tells them apart (`fit_label`), so nothing is averaged over both silently.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI

import arviz as az
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator
import numpy as np
import pandas as pd
import seaborn as sns

from poolbench import upstream
from poolbench.grid import DEFAULT_PRIOR
from poolbench.variants import (
    CENTERED, DEFAULT_FAMILIES, HIERARCHICAL, INTERCEPT, LIKELIHOODS, PARAMETERISATIONS, POOLED, SIGMA, SLOPE,
    UNPOOLED, VARIANTS, standardised,
)

upstream.drop_unloaded_lazy_proxies()  # else SciPy loads JAX here (docs/upstream.md)
log = logging.getLogger(__name__)
# Spread over seeds drawn around each point: the central 90 % of seed-level values.
SEED_SPREAD = ("pi", 90)


def set_style(context: str) -> None:
    sns.set_theme(context=context, style="whitegrid", palette="colorblind")


def family_directory(snakemake) -> tuple[dict, Path]:
    """What a figure-family job starts with: its `plots` settings applied (style) and its
    directory output created."""
    settings = snakemake.params.plots
    set_style(settings["context"])
    figures = Path(snakemake.output.figures)
    figures.mkdir(parents=True, exist_ok=True)
    return settings, figures


def _drawn_tick_labels(axis) -> list:
    """The tick labels an axis really draws: visible, non-empty, inside the view limits."""
    low, high = sorted(axis.get_view_interval())
    return [
        tick.label1 for tick in axis.get_major_ticks()
        if tick.label1.get_visible() and tick.label1.get_text().strip() and low <= tick.get_loc() <= high
    ]


def text_overlaps(figure) -> list[tuple[str, str]]:
    """Texts that cover one another once the figure is laid out: titles (the figure's and
    each panel's) over any other drawn text (a title, an axis label, a tick label, a note);
    axis labels over one another; notes (`ax.text`, `ax.annotate`) over labels and ticks;
    and neighbouring tick labels of one axis over each other (unrotated ones: a rotated label's box is not its outline).
    What makes a figure unreadable at the report's width."""
    figure = getattr(figure, "figure", figure)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    titles, labels, notes, ticks = [], [], [], []
    if figure._suptitle is not None and figure._suptitle.get_text().strip():
        titles.append(("suptitle", figure._suptitle))
    for i, ax in enumerate(figure.axes):
        titles += [(f"axes {i} {kind}", t) for kind, t in
                   (("title", ax.title), ("left title", ax._left_title), ("right title", ax._right_title))]
        labels += [(f"axes {i} xlabel", ax.xaxis.label), (f"axes {i} ylabel", ax.yaxis.label)]
        notes += [(f"axes {i} note {t.get_text()[:30]!r}", t) for t in ax.texts]
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            ticks.append([(f"axes {i} {name} tick {t.get_text()}", t) for t in _drawn_tick_labels(axis)])

    def boxes(texts):
        return [(name, text.get_window_extent(renderer), text.get_rotation()) for name, text in texts
                if text.get_visible() and text.get_text().strip()]

    titles, labels, notes = boxes(titles), boxes(labels), boxes(notes)
    ticks = [boxes(axis) for axis in ticks]
    every_tick = [tick for axis in ticks for tick in axis]
    overlaps = []
    for i, (name, box, _) in enumerate(titles):
        overlaps += [(name, other) for other, other_box, _ in titles[i + 1:] + labels + notes + every_tick
                     if box.overlaps(other_box)]
    for i, (name, box, _) in enumerate(labels):  # a long label runs into its neighbour's
        overlaps += [(name, other) for other, other_box, _ in labels[i + 1:] if box.overlaps(other_box)]
    for name, box, _ in notes:
        overlaps += [(name, other) for other, other_box, _ in labels + every_tick if box.overlaps(other_box)]
    for axis in ticks:
        flat = [(name, box) for name, box, rotation in axis if rotation % 180 == 0]
        overlaps += [(a, b) for (a, box), (b, other_box) in zip(flat, flat[1:]) if box.overlaps(other_box)]
    return overlaps


def save(figure, png: str | Path, svg: str | Path | None, dpi: int, note: str = "") -> None:
    """Write a figure as PNG (and SVG). `figure` is a matplotlib Figure or a seaborn grid;
    `note` goes under it. Overlapping texts are reported in the job's log."""
    figure = getattr(figure, "figure", figure)
    if note:
        figure.text(0.5, 0, f"Showing {note}.", ha="center", va="top", fontsize=9, color="dimgrey")
    overlaps = text_overlaps(figure)
    if overlaps:
        log.warning("%s: overlapping texts: %s", png, overlaps[:5])
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=dpi, bbox_inches="tight")
    if svg is not None:
        figure.savefig(svg, bbox_inches="tight")
    plt.close(figure)


def message_figure(message: str):
    """Stands in for a figure that has nothing to show (its fits failed), saying why."""
    fig, ax = plt.subplots(figsize=(8, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message[:300], ha="center", va="center", wrap=True, color="firebrick")
    return fig


def ok_fits(fits: pd.DataFrame) -> pd.DataFrame:
    return fits[fits["status"] == "ok"]


def fit_label(table: pd.DataFrame) -> pd.Series:
    """The model's name, with its likelihood, prior set and sampler backend where the table
    has several."""
    label = table["model"].astype(str)
    for column in ("likelihood", "prior", "backend"):
        if column in table and table[column].nunique() > 1:
            label = label + " · " + table[column].astype(str)
    return label


def simulated(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["source"] == "simulated"] if "source" in table else table


def _metric_grid(frame: pd.DataFrame, metrics: dict[str, str], x: str, hue: str, log_scale: bool = False, empty: str = ""):
    """Point plots of several per-fit metrics: a row per metric, a column per scenario;
    points are means over seeds (and whatever else is not on the axes)."""
    if frame.empty:
        return message_figure(empty or "No fits to show.")
    long = frame.melt(id_vars=["scenario", "seed", x, hue], value_vars=list(metrics), var_name="metric")
    long = long.replace({"metric": metrics}).dropna(subset=["value"])
    if long.empty:
        return message_figure(empty or "No fits to show.")
    grid = sns.catplot(
        data=long, x=x, y="value", hue=hue, row="metric", col="scenario", kind="point",
        dodge=0.3 if long[hue].nunique() > 1 else False,  # seaborn 0.13 divides by levels - 1
        errorbar=SEED_SPREAD, height=3, aspect=1.5, sharey=False,
    )
    if log_scale:
        grid.set(yscale="log")
    grid.set_titles("{col_name} · {row_name}")
    return grid


# The overview's colour: the share of a cell's fits that are trusted.
OVERVIEW_CMAP = "RdYlGn"
OVERVIEW_MAX_WIDTH = 18  # inches
OVERVIEW_LABELLED = 24  # columns at most with the error written in each cell


def overview_table(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The overview's cells: rows model (with likelihood, prior set, backend where several),
    columns scenario · outliers · target_accept; the trusted share of each cell and its
    label: the group-slope RMSE over trusted fits ("–" where none is trusted), marked "!"
    where most trusted fits fail the model check."""
    table = simulated(summary)
    table = table.assign(
        row=fit_label(table),
        column=table["scenario"].astype(str) + " · " + table["outliers"].astype(str) + " · "
        + table["target_accept"].map(lambda ta: f"{ta:g}"),
    )
    flagged = table["share_model_ok"] < 0.5 if "share_model_ok" in table else pd.Series(False, index=table.index)
    error = table["slope_rmse_mean"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}")
    table = table.assign(label=error.where(~flagged.fillna(False), error + "!"))
    # Scenarios in the grid's order (the table's), then outlier levels and target_accept.
    scenario_order = {name: i for i, name in enumerate(dict.fromkeys(table["scenario"]))}
    ordered = table.assign(_scenario=table["scenario"].map(scenario_order))
    order = list(dict.fromkeys(ordered.sort_values(["_scenario", "outlier_count", "target_accept"], kind="stable")["column"]))
    rows = list(dict.fromkeys(table["row"]))
    share = table.pivot(index="row", columns="column", values="share_trusted").reindex(index=rows, columns=order)
    labels = table.pivot(index="row", columns="column", values="label").reindex(index=rows, columns=order)
    return share, labels


def overview_figure(fits, groups, summary, showcase):
    """The verdict matrix: every model against every simulated cell, coloured by the share
    of trusted fits, labelled with the group-slope RMSE over them ("!": the model check
    flags most of them)."""
    if simulated(summary).empty:
        return message_figure("No simulated fits: nothing to show.")
    share, labels = overview_table(summary)
    columns = share.shape[1]
    # Wide grids keep a width the report can show: smaller labels, and none past
    # OVERVIEW_LABELLED columns (the colour still says the trusted share; the tables the rest).
    labelled = columns <= OVERVIEW_LABELLED
    figure, ax = plt.subplots(figsize=(min(2.2 + 0.85 * columns, OVERVIEW_MAX_WIDTH), 1.4 + 0.42 * share.shape[0]))
    sns.heatmap(share, annot=labels.fillna("") if labelled else False, fmt="", cmap=OVERVIEW_CMAP, vmin=0, vmax=1,
                linewidths=0.5, linecolor="white", cbar_kws={"label": "share of trusted fits", "shrink": 0.8},
                annot_kws={"fontsize": 8 if columns <= 14 else 6}, ax=ax)
    ax.set_xlabel("scenario · outliers · target_accept")
    ax.set_ylabel("")
    ax.tick_params(axis="x", labelrotation=45)
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.set_title("Trusted share (colour) and group-slope RMSE over trusted fits (! model check flags most)" if labelled
                 else f"Trusted share (colour; {columns} cells: errors in tables/summary.csv)", fontsize=9)
    figure.tight_layout()
    return figure


def trust_figure(fits, groups, summary, showcase):
    """Share of trusted fits per model and target_accept, a panel per scenario and outlier level."""
    table = simulated(summary)
    if table.empty:
        return message_figure("No simulated fits: nothing to show.")
    table = table.assign(label=fit_label(table))
    grid = sns.relplot(
        data=table, x="target_accept", y="share_trusted", hue="label", style="label",
        row="scenario", col="outliers", kind="line", markers=True, height=3, aspect=1.3,
        facet_kws={"sharey": True},
    )
    grid.set(ylim=(-0.05, 1.05))
    grid.set_axis_labels("target_accept", "share of trusted fits")
    grid.set_titles("{row_name} · outliers {col_name}")
    grid.legend.set_title("model")
    return grid


def divergences_figure(fits, groups, summary, showcase):
    """Divergences against target_accept, centered vs non-centered, a panel per scenario
    and outlier level."""
    hierarchical = simulated(ok_fits(fits))
    hierarchical = hierarchical[hierarchical["parameterisation"].isin(PARAMETERISATIONS)]
    if hierarchical.empty:
        return message_figure("No successful hierarchical fits: nothing to show.")
    hierarchical = hierarchical.assign(label=fit_label(hierarchical))
    grid = sns.relplot(
        data=hierarchical, x="target_accept", y="n_divergent", hue="label", style="label",
        row="scenario", col="outliers", kind="line", markers=True, errorbar=SEED_SPREAD,
        height=3, aspect=1.3, facet_kws={"sharey": False},
    )
    grid.set_axis_labels("target_accept", "divergences per fit")
    grid.set_titles("{row_name} · outliers {col_name}")
    grid.legend.set_title("model")
    return grid


def shrinkage_figure(fits, groups, summary, showcase):
    """Group-slope RMSE and the minority slope's absolute error, by model and outlier
    level, over trusted fits: a row per model (their names read across, however many),
    a column per scenario and error."""
    fitted = simulated(fits)
    labels = fit_label(fitted)
    order = sorted(dict.fromkeys(labels))  # every model, in the same rows in every panel
    trusted = fitted[fitted["trusted"].astype(bool)]
    if trusted.empty:
        return message_figure("No trusted fits: no error is worth showing.")
    trusted = trusted.assign(label=labels.loc[trusted.index])
    metrics = {"slope_rmse": "group-slope RMSE", "minority_abs_error": "|minority slope error|"}
    long = trusted.melt(id_vars=["scenario", "seed", "label", "outliers"], value_vars=list(metrics), var_name="metric")
    long = long.replace({"metric": metrics}).dropna(subset=["value"])
    if long.empty:
        return message_figure("No trusted fits: no error is worth showing.")
    n_models = len(order)
    grid = sns.catplot(
        data=long, x="value", y="label", order=order, hue="outliers", col="metric", row="scenario", kind="point",
        orient="h", linestyle="none", dodge=0.4 if long["outliers"].nunique() > 1 else False,
        errorbar=SEED_SPREAD, height=1.2 + 0.32 * n_models, aspect=max(1.2, 5.5 / (1.2 + 0.32 * n_models)),
        sharex=False,
    )
    grid.set_titles("{row_name} · {col_name}")
    grid.set_axis_labels("error against the true slopes", "")
    return grid


def estimates_figure(fits, groups, summary, showcase):
    """Posterior mean and HDI of every group's slope, model by model, against the truth
    (one dataset per scenario), with each hierarchical model's population mean and spread
    against the scenario's."""
    groups, fits = showcase(simulated(groups)), showcase(simulated(fits))
    if groups.empty:
        return message_figure("No successful fit of the showcase dataset: nothing to show.")
    groups = groups.assign(label=fit_label(groups))
    fits = fits.assign(label=fit_label(fits))
    scenarios = list(dict.fromkeys(groups["scenario"]))
    labels = list(dict.fromkeys(groups["label"]))
    palette = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(6.5 * len(scenarios), 5.2 + 0.12 * len(labels)), squeeze=False,
                             layout="constrained")
    width = 0.8 / max(len(labels), 1)
    for ax, scenario in zip(axes[0], scenarios):
        panel = groups[groups["scenario"] == scenario]
        for i, label in enumerate(labels):
            rows = panel[panel["label"] == label]
            x = rows["group"] + (i - (len(labels) - 1) / 2) * width
            ax.errorbar(
                x, rows["slope_mean"],
                yerr=[rows["slope_mean"] - rows["slope_hdi_lower"], rows["slope_hdi_upper"] - rows["slope_mean"]],
                fmt="o", ms=4, capsize=2, color=palette[label], label=label,
            )
        truth = panel.drop_duplicates("group")
        ax.scatter(truth["group"], truth["true_slope"], marker="_", s=400, color="black", zorder=5, label="true slope")
        cell = fits[(fits["scenario"] == scenario) & fits["mu_slope_mean"].notna()]
        true_mean = cell["mu_slope_mean"] - cell["mu_slope_error"]
        if not cell.empty:
            ax.axhline(true_mean.iloc[0], ls=":", lw=1.2, color="black", label="true slope mean")
            for row in cell.itertuples():
                ax.axhline(row.mu_slope_mean, ls="--", lw=1, color=palette.get(row.label, "grey"))
            # A line per model: with several likelihoods or backends one line would run
            # past its panel into the next.
            spread = "\n".join(f"{row.label}: σ {row.sigma_slope_mean:.2f}" for row in cell.itertuples())
            true_sd = cell["sigma_slope_mean"].iloc[0] - cell["sigma_slope_error"].iloc[0]
            # Below the panel, not on it: inside, the notes covered groups' intervals.
            ax.annotate(f"population sd σ: true {true_sd:.2f}\n{spread}", xy=(0, 0),
                        xycoords=("axes fraction", ax.xaxis.label), xytext=(0, -4), textcoords="offset points",
                        fontsize=7, va="top")
        first = panel.iloc[0]
        ax.set_title(f"{scenario} · seed {first['seed']} · outliers {first['outliers']}", fontsize=9)
        ax.set_xlabel("group (last = minority); dashed: each model's mu")
        ax.set_ylabel("slope (mean, HDI)")
        ax.set_xticks(sorted(panel["group"].unique()))
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    return fig


# The prior predictive check's columns of the groups table: each group's observed mean and
# sd of y against the central interval of their prior predictive distribution.
PRIOR_PREDICTIVE_STATISTICS = {
    "mean": ("observed_mean", "prior_mean_lower", "prior_mean_upper"),
    "sd": ("observed_sd", "prior_sd_lower", "prior_sd_upper"),
}
# Ranges side by side per group in a panel of the prior predictive figure: at most this
# many model variants × prior sets (× likelihoods) of that panel's dataset, the first in
# the grid's order; more would be unreadable. Per panel, so that a real data set's own
# models are never crowded out by the simulated ones (the default study draws 7 and 3).
MAX_PRIOR_PREDICTIVE_LABELS = 8


def prior_predictive_rows(groups: pd.DataFrame, showcase) -> pd.DataFrame:
    """The groups rows the prior predictive figure draws: the showcase dataset of each
    simulated scenario and each real data set at its highest target_accept, one fit per
    model variant, likelihood and prior set. The centered and non-centered forms of a
    model share its prior predictive distribution and the sampler backend does not enter
    it, so the first parameterisation and the first backend stand for the others."""
    real = groups[groups["source"] == "real"] if "source" in groups else groups.iloc[:0]
    real = real[real["target_accept"] == real.groupby("scenario")["target_accept"].transform("max")]
    rows = pd.concat([showcase(simulated(groups)), real])
    rows = rows.dropna(subset=[c for columns in PRIOR_PREDICTIVE_STATISTICS.values() for c in columns], how="all")
    if rows.empty:
        return rows
    rows = rows[rows["backend"] == rows["backend"].iloc[0]]
    cell = ["scenario", "variant", "likelihood", "prior"]
    return rows[rows["model"] == rows.groupby(cell, sort=False)["model"].transform("first")]


def _linear_then_log(ax, largest: float) -> None:
    """A y axis linear up to `largest` (rounded up to a power of ten) and logarithmic
    beyond, ticked evenly in the linear part and at powers of ten beyond: a vague prior's
    interval can be orders of magnitude wider than the data, and both must stay readable."""
    linear = 10.0 ** np.ceil(np.log10(largest)) if np.isfinite(largest) and largest > 0 else 1.0
    ax.set_yscale("symlog", linthresh=linear, linscale=2)
    low, high = ax.get_ylim()
    decades = range(1, int(np.ceil(np.log10(max(abs(low), abs(high), linear) / linear))) + 1)
    # Fewer ticks in the linear part where the logarithmic part takes most of the axis.
    inner = MaxNLocator(nbins=2 if decades else 4, steps=[1, 2, 5, 10]).tick_values(max(low, -linear), min(high, linear))
    powers = [linear * 10.0**k for k in decades[:: max(1, -(-len(decades) // 4))]]  # at most 4 a side
    ax.yaxis.set_major_locator(FixedLocator(sorted(t for t in [*inner, *powers, *(-p for p in powers)] if low <= t <= high)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def prior_predictive_figure(fits, groups, summary, showcase):
    """Per group of the showcase datasets (and real data sets): the central interval of
    the prior predictive distribution of the group's mean of y (top row) and sd of y
    (bottom row) as a range per model variant and prior set, the observed value as a
    point. A column per dataset."""
    needed = [c for columns in PRIOR_PREDICTIVE_STATISTICS.values() for c in columns]
    missing = [c for c in needed if c not in groups]
    if missing:
        return message_figure(f"The groups table has no prior predictive check ({', '.join(missing)}): nothing to show.")
    rows = prior_predictive_rows(groups, showcase)
    if rows.empty:
        return message_figure("No prior predictive check of the showcase datasets or real data sets: nothing to show.")
    rows = rows.assign(label=fit_label(rows.assign(model=rows["variant"])))
    datasets = list(dict.fromkeys(zip(rows["source"], rows["scenario"])))
    in_panel = [rows[(rows["source"] == source) & (rows["scenario"] == name)] for source, name in datasets]
    panel_labels = [list(dict.fromkeys(panel["label"])) for panel in in_panel]
    panel_shown = [labels[:MAX_PRIOR_PREDICTIVE_LABELS] for labels in panel_labels]
    shown = list(dict.fromkeys(label for labels in panel_shown for label in labels))
    palette = dict(zip(shown, sns.color_palette("tab10" if len(shown) <= 10 else "husl", n_colors=len(shown))))
    # Wider panels for data sets with many groups, up to three times the width.
    sizes = [rows.loc[(rows["source"] == source) & (rows["scenario"] == name), "group"].nunique() for source, name in datasets]
    widths = [float(np.clip(size / 16, 1, 3)) for size in sizes]
    fig, axes = plt.subplots(
        len(PRIOR_PREDICTIVE_STATISTICS), len(datasets), figsize=(5.5 * sum(widths) + 2, 7.2), squeeze=False,
        gridspec_kw={"width_ratios": widths}, layout="constrained",
    )
    for col, ((source, name), panel, labels) in enumerate(zip(datasets, in_panel, panel_shown)):
        first = panel.iloc[0]
        width = 0.8 / len(labels)
        for row, (statistic, (observed, lower, upper)) in enumerate(PRIOR_PREDICTIVE_STATISTICS.items()):
            ax = axes[row][col]
            for i, label in enumerate(labels):
                ranges = panel[panel["label"] == label].dropna(subset=[lower, upper])
                x = ranges["group"] + (i - (len(labels) - 1) / 2) * width
                ax.vlines(x, ranges[lower], ranges[upper], color=palette[label], lw=2.2, label=label)
            points = panel.drop_duplicates("group").dropna(subset=[observed])
            ax.scatter(points["group"], points[observed], s=14, color="black", zorder=5, label="observed")
            _linear_then_log(ax, float(np.nanmax(np.abs(points[observed]))) if len(points) else np.nan)
            ax.set_ylabel(f"group {statistic} of y")
            if source == "real":
                title = f"{name} · real data · target_accept {first['target_accept']:g}"
                ax.set_xlabel("group")
            else:
                title = f"{name} · seed {first['seed']} · outliers {first['outliers']}"
                ax.set_xlabel("group (last = minority)")
            ax.set_title(f"{title} · {statistic}", fontsize=9)
            if panel["group"].nunique() <= 20:
                ax.set_xticks(sorted(panel["group"].unique()))
    # Every colour in the legend, whichever panels it was drawn in.
    handles = [Line2D([], [], color=palette[label], lw=2.2, label=label) for label in shown]
    handles.append(Line2D([], [], color="black", marker="o", ls="", ms=4, label="observed"))
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    most = max(len(labels) for labels in panel_labels)
    if most > MAX_PRIOR_PREDICTIVE_LABELS:
        fig.suptitle(f"Prior predictive ranges of each dataset's first {MAX_PRIOR_PREDICTIVE_LABELS} models × prior "
                     f"sets (of up to {most})", fontsize=10)
    return fig


def cost_figure(fits, groups, summary, showcase):
    """ESS per second and sampling time by model and target_accept."""
    ok = simulated(ok_fits(fits))
    ok = ok.assign(label=fit_label(ok))
    metrics = {"ess_bulk_per_second": "min bulk ESS per second", "sampling_seconds": "sampling seconds per fit"}
    grid = _metric_grid(ok, metrics, x="target_accept", hue="label", log_scale=True, empty="No successful fits: nothing to show.")
    if isinstance(grid, sns.FacetGrid):
        grid.set_axis_labels("target_accept", "")
        _model_legend(grid)
    return grid


def backends_figure(fits, groups, summary, showcase):
    """Minimum bulk ESS per second of sampling, by sampler backend and model."""
    ok = simulated(ok_fits(fits))
    if ok.empty:
        return message_figure("No successful fits: nothing to show.")
    ok = ok.assign(label=fit_label(ok.drop(columns="backend")))  # the backend is the x axis
    grid = sns.catplot(
        data=ok, x="backend", y="ess_bulk_per_second", hue="label", col="scenario", kind="point",
        dodge=0.3 if ok["label"].nunique() > 1 else False, errorbar=SEED_SPREAD, height=3.2, aspect=1.3,
    )
    grid.set(yscale="log")
    grid.set_titles("{col_name}")
    grid.set_axis_labels("sampler backend", "min bulk ESS per second")
    _model_legend(grid)
    return grid


def _model_legend(grid: sns.FacetGrid) -> None:
    """The legend of a grid coloured by `fit_label` names what it shows: the model."""
    if grid.legend is not None:
        grid.legend.set_title("model")


def posterior_figure(tree, model: str, hdi_prob: float):
    """The tutorial's own figures, from a pipeline fit: a forest plot of per-group
    coefficients, or the posterior densities of the variables the registry lists."""
    from poolbench.grid import ModelSpec

    variant = VARIANTS[ModelSpec.from_name(model).variant]
    names = list(variant.figure_vars)
    if variant.figure == "forest":
        collection = az.plot_forest(
            tree, var_names=names, combined=True, ci_kind="hdi", ci_probs=[0.5, hdi_prob],
            backend="matplotlib", figure_kwargs={"layout": "constrained"},
        )
    else:
        size = (13, 10) if len(names) > 1 else (6, 3.5)
        collection = az.plot_dist(
            tree, var_names=names, kind="kde", ci_kind="hdi", ci_prob=hdi_prob, backend="matplotlib",
            figure_kwargs={"figsize": size, "layout": "constrained"},
        )
    figure = collection.viz["figure"].item()
    figure.suptitle(f"{model}: posterior ({hdi_prob:.0%} HDI)")
    return figure


def funnel_points(tree, parameterisation: str, group: int) -> pd.DataFrame:
    """The draws the funnel figure plots: log(sigma_slope) against one group's slope
    (centered) or its offset z (non-centered), and whether each draw diverged."""
    posterior = tree["posterior"]
    x_name = SLOPE if parameterisation == CENTERED else standardised(SLOPE)
    return pd.DataFrame(
        {
            "chain": np.repeat(posterior["chain"].values, posterior.sizes["draw"]),
            "x_variable": f"{x_name}[{group}]",
            "x": posterior[x_name].isel(group=group).values.ravel(),
            "log_sigma": np.log(posterior[SIGMA].values.ravel()),
            "diverging": tree["sample_stats"]["diverging"].values.ravel().astype(bool),
        }
    )


def funnel_figure(points: dict[tuple[str, str], pd.DataFrame], scenario: str):
    """Betancourt's funnel from this pipeline's posteriors: a panel per parameterisation
    (rows) and target_accept (columns); divergent draws in red."""
    rows = list(dict.fromkeys(p for p, _ in points))
    cols = list(dict.fromkeys(ta for _, ta in points))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.2 * len(cols), 3.6 * len(rows)), squeeze=False,
                             sharey=True, layout="constrained")
    for (parameterisation, ta), frame in points.items():
        ax = axes[rows.index(parameterisation)][cols.index(ta)]
        if frame.empty:
            ax.text(0.5, 0.5, "this fit failed", ha="center", va="center", transform=ax.transAxes, color="firebrick")
            ax.set_title(f"{parameterisation} · target_accept {ta}", fontsize=10)
            continue
        diverging = frame["diverging"].astype(bool).to_numpy()
        calm, wild = frame[~diverging], frame[diverging]
        ax.scatter(calm["x"], calm["log_sigma"], s=3, alpha=0.25, color="tab:blue", label="draws", rasterized=True)
        ax.scatter(wild["x"], wild["log_sigma"], s=9, color="tab:red", label=f"divergent ({len(wild)})")
        ax.set_title(f"{parameterisation} · target_accept {ta}", fontsize=10)
        ax.set_xlabel(frame["x_variable"].iloc[0] if len(frame) else "")
        ax.legend(loc="lower right", fontsize=7, frameon=True)
    for row in axes:
        row[0].set_ylabel("log(sigma_slope)")
    fig.suptitle(f"The funnel · {scenario}")
    return fig


def calibration_figure(pit, title: str):
    """ECDF-PIT difference plot of a calibration cell (ArviZ's `plot_ecdf_pit`): each
    parameter's ECDF of PIT values minus the uniform's, with its simultaneous band."""
    import arviz_plots as azp

    n = len(pit["prior_sbc"].data_vars)
    collection = azp.plot_ecdf_pit(
        pit, group="prior_sbc", method="pot_c", envelope_prob=0.95, backend="matplotlib",
        col_wrap=min(4, n), figure_kwargs={"figsize": (3.2 * min(4, n), 2.6 * -(-n // 4)), "sharey": False,
                                           "layout": "constrained"},
    )
    figure = collection.viz["figure"].item()
    figure.suptitle(title, fontsize=10)
    return figure


def ppc_figure(observed: np.ndarray, replicated: dict[str, np.ndarray], title: str, discrete: bool = False):
    """Posterior predictive check, a panel per model: the observed responses' density
    against replicated datasets' (thin lines); for binomial and count data (`discrete`),
    the observed frequency of each value (bars) against the replicated datasets' median
    frequency and central 90 % (points and lines), up to the observed 99th percentile."""
    labels = list(replicated)
    cols = min(3, len(labels)) or 1
    fig, axes = plt.subplots(-(-len(labels) // cols) or 1, cols, figsize=(4.3 * cols, 3.2 * (-(-len(labels) // cols) or 1)),
                             squeeze=False, sharex=True, layout="constrained")
    grid = np.linspace(*np.percentile(observed, [0.5, 99.5]), 200)
    values = np.arange(0, int(np.ceil(np.percentile(observed, 99))) + 1)
    for ax, label in zip(axes.flat, labels):
        if discrete:
            frequencies = np.array([_frequencies(draw, values) for draw in replicated[label]])
            low, median, high = np.percentile(frequencies, [5, 50, 95], axis=0)
            ax.bar(values, _frequencies(observed, values), color="0.8", edgecolor="black", lw=0.6, label="observed")
            ax.errorbar(values, median, yerr=[median - low, high - median], fmt="o", ms=3, color="tab:blue", lw=1,
                        label="replicated (90 %)")
            ax.set_ylabel("share of rows")
        else:
            for draw in replicated[label]:
                ax.plot(grid, _kde(draw, grid), color="tab:blue", alpha=0.15, lw=0.7)
            ax.plot(grid, _kde(observed, grid), color="black", lw=1.8, label="observed")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("y")
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def ppc_points(values: np.ndarray) -> np.ndarray:
    """At most `figures.PPC_POINTS` of a dataset's values for its density in the
    predictive check: evenly spaced quantiles of the sorted values, so that the density
    keeps the data's shape and depends on the data alone."""
    from poolbench.figures import PPC_POINTS

    values = np.asarray(values, dtype=float)
    if values.size <= PPC_POINTS:
        return values
    return np.sort(values)[np.linspace(0, values.size - 1, PPC_POINTS).round().astype(int)]


def _frequencies(values: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The share of `values` equal to each integer of `support`."""
    return (np.rint(np.asarray(values))[:, None] == support[None, :]).mean(axis=0)


def _kde(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    from scipy.stats import gaussian_kde

    return gaussian_kde(values)(grid)


# How each coefficient is pooled, in the order the shrinkage picture shows them.
POOLING_ROLES = {UNPOOLED: "no pooling", HIERARCHICAL: "partial pooling", POOLED: "complete pooling"}


def shrinkage_fits(groups: pd.DataFrame, fits: pd.DataFrame) -> dict[str, pd.Series]:
    """The fits a real data set's shrinkage picture is about: one per way of pooling
    (POOLING_ROLES), under one likelihood (its outcome's default where it was fitted) and the default
    priors. Where several fits pool the same way (the centered and non-centered forms), the
    trusted one, then the one that failed fewest trust checks, then the one with fewest
    divergences, then the first. Returns the kind of pooling -> that fit's row of `fits`."""
    shown = fits[fits["status"] == "ok"] if "status" in fits else fits
    shown = shown[shown["model"].isin(groups["model"].unique())]
    if shown.empty:
        return {}
    # The default family of the data's outcome (normal; binomial; Poisson), where it was fitted.
    default = DEFAULT_FAMILIES[LIKELIHOODS[shown["likelihood"].iloc[0]].outcome]
    likelihood = default if (shown["likelihood"] == default).any() else shown["likelihood"].iloc[0]
    shown = shown[shown["likelihood"] == likelihood]
    if (shown["prior"] == DEFAULT_PRIOR).any():
        shown = shown[shown["prior"] == DEFAULT_PRIOR]
    failed_checks = shown["untrusted_because"].fillna("").astype(str).map(lambda text: len([c for c in text.split(",") if c]))
    shown = shown.assign(_failed_checks=failed_checks)
    out = {}
    for fit in shown.sort_values(["trusted", "_failed_checks", "n_divergent"], ascending=[False, True, True],
                                 kind="stable").itertuples():
        kinds = set(VARIANTS[fit.variant].terms.values())
        # A model pools one way when all its coefficients do (varying intercepts and slopes:
        # partial); one that mixes ways is not any of the three.
        if len(kinds) == 1 and (kind := kinds.pop()) in POOLING_ROLES:
            out.setdefault(kind, pd.Series(fit._asdict()))
    return {kind: out[kind] for kind in POOLING_ROLES if kind in out}


def _jittered_sizes(rows: pd.DataFrame) -> np.ndarray:
    """Group sizes spread a little apart on the log axis (deterministically, by group), so
    that groups of the same size do not hide each other."""
    offsets = (rows["group"].to_numpy() * 0.618034) % 1 - 0.5
    return rows["n_obs"].to_numpy() * np.exp(0.12 * offsets)


def real_shrinkage_figure(groups: pd.DataFrame, fits: pd.DataFrame, title: str):
    """Partial pooling as Gelman & Hill draw it (Data Analysis Using Regression and
    Multilevel/Hierarchical Models, 2007, ch. 12): per coefficient that varies by group, each
    group's unpooled estimate (open circle) joined to its partially pooled one (filled)
    against the group's size, the completely pooled estimate as a dashed line. Only those
    three fits (`shrinkage_fits`); each is named in the legend with its trust verdict."""
    chosen = shrinkage_fits(groups, fits)
    varying = [c for c in (INTERCEPT, SLOPE)
               if any(VARIANTS[f["variant"]].terms.get(c) in (UNPOOLED, HIERARCHICAL) for f in chosen.values())]
    if not varying:
        return message_figure(f"{title}: no successful fit with group-level coefficients to compare")
    fig, axes = plt.subplots(1, len(varying), figsize=(6.2 * len(varying), 4.6), squeeze=False, layout="constrained")
    styles = {UNPOOLED: {"marker": "o", "facecolors": "none", "edgecolors": "tab:blue"},
              HIERARCHICAL: {"marker": "o", "color": "tab:orange"}}
    estimates = {
        kind: groups[(groups["model"] == fit["model"]) & (groups["likelihood"] == fit["likelihood"])
                     & (groups["prior"] == fit["prior"])].sort_values("group")
        for kind, fit in chosen.items()
    }
    label = {kind: f"{POOLING_ROLES[kind]}: {fit['model']}" + ("" if fit["trusted"] else " (NOT trusted)")
             for kind, fit in chosen.items()}
    for ax, coefficient in zip(axes[0], varying):
        if UNPOOLED in estimates and HIERARCHICAL in estimates:
            joined = estimates[UNPOOLED].merge(estimates[HIERARCHICAL], on="group", suffixes=("_no", "_partial"))
            x = _jittered_sizes(joined.rename(columns={"n_obs_no": "n_obs"}))
            ax.vlines(x, joined[f"{coefficient}_mean_no"], joined[f"{coefficient}_mean_partial"], color="0.6",
                      linewidth=0.8, zorder=1)
        for kind in (UNPOOLED, HIERARCHICAL):
            if kind in estimates:
                rows = estimates[kind]
                ax.scatter(_jittered_sizes(rows), rows[f"{coefficient}_mean"], s=18, zorder=2, label=label[kind],
                           **styles[kind])
        if POOLED in estimates and estimates[POOLED][f"{coefficient}_mean"].notna().any():
            ax.axhline(estimates[POOLED][f"{coefficient}_mean"].mean(), color="black", linestyle="--", linewidth=1.2,
                       label=label[POOLED])
        ax.set_xscale("log")
        ax.set_xlabel("observations in the group (log scale)")
        ax.set_ylabel(f"{coefficient} (posterior mean)")
        ax.set_title(coefficient)
    # One legend for the panels, below them: inside, it would hide groups' estimates.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    likelihood = next(iter(chosen.values()))["likelihood"]
    fig.suptitle(f"{title} ({LIKELIHOODS[likelihood].label} likelihood)")
    return fig


def map_figure(table: pd.DataFrame, values: dict[str, str], title: str, center: float | None = None,
               log_ratio: bool = False):
    """Heatmaps over points per group (x) and noise (y): a row per value, a column per
    target_accept. Cells without a number (no trusted fit) stay blank."""
    tas = sorted(table["target_accept"].unique())
    fig, axes = plt.subplots(len(values), len(tas), figsize=(5.4 * len(tas), 3.9 * len(values)), squeeze=False,
                             layout="constrained")
    for row, (value, label) in enumerate(values.items()):
        for col, ta in enumerate(tas):
            ax = axes[row][col]
            grid = table[table["target_accept"] == ta].pivot_table(
                index="noise", columns="points_per_group", values=value, dropna=False
            )
            data = np.log2(grid) if log_ratio else grid
            sns.heatmap(
                data, ax=ax, annot=grid.round(2), fmt="", cmap="RdBu" if center is not None else "viridis",
                center=center, vmin=None if center is not None else 0, vmax=None if center is not None else 1,
                cbar_kws={"label": f"log2 {label}" if log_ratio else label},
            )
            ax.invert_yaxis()
            ax.set_title(f"{label} · target_accept {ta}", fontsize=9)
            ax.set_xlabel("points per group")
            ax.set_ylabel("noise sd")
    fig.suptitle(title)
    return fig


MAP_FIGURES = {
    "ess_ratio": ({"ess_ratio": "ESS/s centered ÷ non-centered"}, "ESS per second, centered against non-centered (trusted fits; > 1: centered faster)", 0.0, True),
    "divergences": ({"centered_share_divergent": "centered: share with divergences",
                     "noncentered_share_divergent": "non-centered: share with divergences"}, "Fits with divergences", None, False),
    "trusted": ({"centered_share_trusted": "centered: share trusted",
                 "noncentered_share_trusted": "non-centered: share trusted"}, "Trusted fits", None, False),
}


def map_item_figure(table: pd.DataFrame, name: str, prior: str):
    """One figure of the parameterisation map, for one prior set."""
    if table.empty:
        return message_figure(f"No hierarchical fits with prior set {prior}: nothing to map.")
    values, title, center, log_ratio = MAP_FIGURES[name]
    return map_figure(table, values, f"{title} · priors: {prior}", center=center, log_ratio=log_ratio)


# Summary figures facet by scenario; a study with a grid of scenarios shows the first few
# there (its heatmaps cover them all).
MAX_SCENARIOS = 6


def first_scenarios(*tables: pd.DataFrame) -> tuple[list[pd.DataFrame], str]:
    """The tables restricted to the first MAX_SCENARIOS simulated scenarios and the first
    MAX_SCENARIOS real data sets, and a note saying so. Counted apart: real data sets come
    after every scenario in the tables, and the prior predictive figure shows them."""
    first = tables[0]
    real = first["source"] == "real" if "source" in first else pd.Series(False, index=first.index)
    kinds = {"scenarios": list(dict.fromkeys(first.loc[~real, "scenario"])),
             "real data sets": list(dict.fromkeys(first.loc[real, "scenario"]))}
    cut = {kind: names for kind, names in kinds.items() if len(names) > MAX_SCENARIOS}
    if not cut:
        return list(tables), ""
    kept = {name for names in kinds.values() for name in names[:MAX_SCENARIOS]}
    note = " and ".join(f"the first {MAX_SCENARIOS} of {len(names)} {kind}" for kind, names in cut.items())
    return [t[t["scenario"].isin(kept)] for t in tables], f"{note} (all of them are in the tables)"


def showcase(table: pd.DataFrame, seed: int, outliers: str, target_accept: float) -> pd.DataFrame:
    """The rows of one dataset per scenario, at one target_accept."""
    chosen = (table["seed"] == seed) & (table["outliers"] == outliers)
    return table[chosen & np.isclose(table["target_accept"], target_accept)]

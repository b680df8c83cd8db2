"""Every figure of the report, declared once: file name, title, caption, report category.

The rules build their outputs from these tables, the plot scripts draw one figure per
entry (`poolbench.plots.<name>_figure`), and the HTML report shows them in this order with
the same captions (`workflow/report/<caption>`) as Snakemake's report. No heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str  # file stem; the plotting function is poolbench.plots.<name>_figure
    title: str
    caption: str  # file under workflow/report/
    category: str
    subcategory: str
    section: str = "figures"  # where the HTML report shows it: one of FIGURE_SECTIONS, or OVERVIEW


# The HTML report's sections, in order: id -> (its link in the navigation, its heading). The
# navigation and the headings come from here; the page lays them out in this order.
REPORT_SECTIONS = {
    "findings": ("Findings", "Headline findings"),
    "failed": ("Failed fits", "Failed fits"),
    "summary": ("Summary", "Summary over seeds"),
    "model-checks": ("Model checks", "Model checks"),
    "figures": ("Figures", "Figures"),
    "calibration": ("Calibration", "Simulation-based calibration"),
    "real": ("Real data", "Real data"),
    "map": ("Parameterisation map", "Parameterisation map"),
    "provenance": ("Provenance", "Provenance"),
}
# Sections shown only when the run has something for them (the others always are).
OPTIONAL_SECTIONS = ("model-checks", "calibration", "real", "map")
# The sections that show figures, each below its own tables and findings; the overview
# figure stands above them all, on the first screen.
FIGURE_SECTIONS = ("figures", "calibration", "real", "map")
OVERVIEW = "overview"


# Drawn from the tables alone, one file each (PNG and SVG).
SUMMARY = [
    Figure("overview", "Overview: trusted share and error, cell by cell", "overview.rst", "Figures", "Overview",
           section=OVERVIEW),
    Figure("trust", "Which fits can be trusted", "trust.rst", "Figures", "Trust"),
    Figure("divergences", "Divergences against target_accept", "divergences.rst", "Figures", "Sampler"),
    Figure("shrinkage", "Shrinkage error by model and outlier level (trusted fits)", "shrinkage.rst", "Figures", "Shrinkage"),
    Figure("estimates", "Estimates against the truth, group by group", "estimates.rst", "Figures", "Shrinkage"),
    Figure("prior_predictive", "Prior predictive check", "prior_predictive.rst", "Figures", "Model checks"),
    Figure("cost", "Cost: ESS per second and sampling time", "cost.rst", "Figures", "Cost"),
    Figure("backends", "Cost by sampler backend", "backends.rst", "Figures", "Cost"),
]

# Families drawn from posteriors or per-item tables: a directory each, one file per item,
# `{item}` being the wildcard Snakemake's report fills in.
FAMILIES = {
    "posterior": Figure("posterior", "Tutorial figure: {item} posterior", "posterior.rst", "Tutorial figures", "{item}"),
    "funnel": Figure("funnel", "The funnel: {item} scenario", "funnel.rst", "Figures", "Funnel"),
    "calibration": Figure("calibration", "Calibration: {item}", "calibration.rst", "Calibration", "{item}",
                          section="calibration"),
    "real": Figure("real", "Real data: {item}", "real.rst", "Real data", "{item}", section="real"),
    "map": Figure("map", "Parameterisation map: {item}", "map.rst", "Parameterisation map", "{item}", section="map"),
    "models": Figure("models", "Plate diagram: {item}", "model_graph.rst", "Models", "{item}"),
}

# A real data set's figures: `{dataset}_{kind}` in the `real` family.
REAL_KINDS = ("ppc", "shrinkage")

# The parameterisation map's figures (per prior set), drawn by poolbench.plots.map_item_figure.
MAP = ("ess_ratio", "divergences", "trusted")

# Replicated datasets drawn in a real data set's posterior predictive check, per model:
# the fit jobs store exactly these (each is a copy of y), so what is stored stays in
# proportion to what is shown.
PPC_DRAWS = 40
# Observations at most in each density of that check: a kernel density of a million
# points per line would cost minutes and gigabytes and look the same. The fit jobs store
# the replicated values of this many evenly spaced rows; the observed density takes as many
# evenly spaced quantiles of y. Both depend on the data alone.
PPC_POINTS = 20_000

from poolbench.runtime import configure_logging

configure_logging(snakemake)

import pandas as pd

from poolbench import plots

settings = snakemake.params.plots
plots.set_style(settings["context"])
fits = pd.read_parquet(snakemake.input.fits)
groups = pd.read_parquet(snakemake.input.groups)
showcase = dict(
    seed=settings["showcase_seed"],
    outliers=snakemake.params.showcase_outliers,
    target_accept=snakemake.params.showcase_target_accept,
)
figures = {
    "divergences": plots.divergence_figure(fits),
    "shrinkage": plots.shrinkage_figure(fits),
    "estimates": plots.estimates_figure(
        plots.showcase(groups, **showcase), plots.showcase(fits, **showcase)
    ),
    "cost": plots.cost_figure(fits),
    "backends": plots.backend_figure(fits),
}
for name, figure in figures.items():
    plots.save(
        figure, snakemake.output[name], snakemake.output[f"{name}_svg"], settings["dpi"]
    )

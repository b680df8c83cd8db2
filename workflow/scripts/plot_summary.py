from poolbench.runtime import start_job

start_job(snakemake)

from functools import partial

import pandas as pd

from poolbench import figures, plots

settings = snakemake.params.plots
plots.set_style(settings["context"])
(fits, groups, summary), note = plots.first_scenarios(
    pd.read_parquet(snakemake.input.fits),
    pd.read_parquet(snakemake.input.groups),
    pd.read_parquet(snakemake.input.summary),
)
showcase = partial(
    plots.showcase,
    seed=settings["showcase_seed"],
    outliers=snakemake.params.showcase_outliers,
    target_accept=snakemake.params.showcase_target_accept,
)
for figure in figures.SUMMARY:
    draw = getattr(plots, f"{figure.name}_figure")
    plots.save(
        draw(fits, groups, summary, showcase),
        snakemake.output[figure.name],
        snakemake.output[f"{figure.name}_svg"],
        settings["dpi"],
        note,
    )

from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench import plots
from poolbench.aggregate import parameterisation_table

settings, figures = plots.family_directory(snakemake)
table = parameterisation_table(pd.read_parquet(snakemake.input.fits))
for item in snakemake.params.figures:
    name, prior = item.split(".", 1)
    rows = table[table["prior"] == prior]
    plots.save(plots.map_item_figure(rows, name, prior), figures / f"{item}.png", figures / f"{item}.svg", settings["dpi"])

from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench import plots
from poolbench.grid import calibration_label
from poolbench.metrics import pit_tree

settings, figures = plots.family_directory(snakemake)
ranks = pd.read_parquet(snakemake.input.ranks)
for cell, table in ranks.groupby(["model", "likelihood", "prior", "backend", "scenario", "target_accept"], sort=False):
    label = calibration_label(*cell)
    title = f"{label}: {table['simulation'].nunique()} simulations"
    plots.save(plots.calibration_figure(pit_tree(table), title), figures / f"{label}.png", figures / f"{label}.svg", settings["dpi"])

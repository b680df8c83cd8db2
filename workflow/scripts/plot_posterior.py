from poolbench.runtime import configure_logging

configure_logging(snakemake)

from pathlib import Path

import pandas as pd

from poolbench import plots
from poolbench.storage import read_posterior

settings = snakemake.params.plots
plots.set_style(settings["context"])
fits = pd.read_parquet(snakemake.input.fits)
figures = Path(snakemake.output.figures)
figures.mkdir(parents=True, exist_ok=True)
for model, posterior in snakemake.params.posterior.items():
    if Path(posterior).exists():
        figure = plots.posterior_figure(read_posterior(posterior), model, snakemake.params.hdi_prob)
    else:  # the fit failed: show its error instead of the figure
        errors = fits.loc[(fits["model"] == model) & (fits["status"] != "ok"), "error"]
        reason = errors.iloc[0] if len(errors) else f"{posterior} is missing"
        figure = plots.message_figure(f"Fit failed: {reason}")
    plots.save(figure, figures / f"{model}.png", figures / f"{model}.svg", settings["dpi"])

from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench import plots
from poolbench.storage import expect_file, read_fit_posterior

settings, figures = plots.family_directory(snakemake)
fits = pd.read_parquet(snakemake.input.fits)
for model, posterior in snakemake.params.posteriors.items():
    if posterior and expect_file(posterior, fits):
        tree = read_fit_posterior(posterior)
        figure = plots.posterior_figure(tree, model, snakemake.params.hdi_prob)
    else:  # the fit failed: show its error instead of the figure
        errors = fits.loc[(fits["model"] == model) & (fits["status"] != "ok"), "error"]
        figure = plots.message_figure(f"Fit failed: {errors.iloc[0] if len(errors) else 'no fit of this model'}")
    plots.save(figure, figures / f"{model}.png", figures / f"{model}.svg", settings["dpi"])

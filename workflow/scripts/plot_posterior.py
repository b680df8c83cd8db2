from poolbench.runtime import configure_logging

configure_logging(snakemake)

from pathlib import Path

import arviz as az
import pandas as pd

from poolbench import plots

settings = snakemake.params.plots
plots.set_style(settings["context"])
posterior = Path(snakemake.params.posterior)
if posterior.exists():
    figure = plots.posterior_figure(
        az.from_netcdf(posterior), snakemake.wildcards.model, snakemake.params.hdi_prob
    )
else:  # the fit failed: show its error instead of the figure
    fits = pd.read_parquet(snakemake.input.fits)
    errors = fits.loc[fits["status"] != "ok", "error"]
    reason = errors.iloc[0] if len(errors) else f"{posterior} is missing"
    figure = plots.message_figure(f"Fit failed: {reason}")
plots.save(figure, snakemake.output.png, snakemake.output.svg, settings["dpi"])

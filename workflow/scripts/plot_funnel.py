from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench import plots
from poolbench.grid import target_accept_label
from poolbench.storage import expect_file, read_fit_posterior

settings, figures = plots.family_directory(snakemake)
fits = pd.read_parquet(snakemake.input.fits)
by_scenario = {}
for panel in snakemake.params.panels:
    scenario, parameterisation, posterior = panel["scenario"], panel["parameterisation"], panel["posterior"]
    ta = target_accept_label(panel["target_accept"])  # as the panel's title shows it
    if posterior and expect_file(posterior, fits):
        tree = read_fit_posterior(posterior)
        points = plots.funnel_points(tree, parameterisation, settings["funnel_group"])
    else:  # that fit failed: its panel stays empty
        points = pd.DataFrame(columns=["chain", "x_variable", "x", "log_sigma", "diverging"])
    by_scenario.setdefault(scenario, {})[parameterisation, ta] = points.assign(
        parameterisation=parameterisation, target_accept=panel["target_accept"]
    )
for scenario, points in by_scenario.items():
    # The data behind the figure, for readers (and tests) that want the numbers.
    pd.concat(points.values(), ignore_index=True).to_csv(figures / f"{scenario}.csv", index=False)
    plots.save(plots.funnel_figure(points, scenario), figures / f"{scenario}.png", figures / f"{scenario}.svg", settings["dpi"])

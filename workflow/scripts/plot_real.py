from poolbench.runtime import start_job

logger = start_job(snakemake)

import numpy as np
import pandas as pd

from poolbench import plots
from poolbench.figures import PPC_DRAWS
from poolbench.storage import expect_file, read_fit_posterior
from poolbench.variants import LIKELIHOODS, OBSERVED

settings, figures = plots.family_directory(snakemake)
fits = pd.read_parquet(snakemake.input.fits)
groups = pd.read_parquet(snakemake.input.groups)
by_dataset, discrete = {}, {}
for fit in snakemake.params.real_fits:
    # A data set's families share its outcome (binomial and count data are drawn as bars).
    discrete[fit["dataset"]] = LIKELIHOODS[fit["likelihood"]].discrete
    model = " · ".join((fit["model"], fit["likelihood"], fit["prior"]))
    by_dataset.setdefault(fit["dataset"], {})[model] = fit["posterior"]
for dataset, models in by_dataset.items():
    observed, replicated = None, {}
    for model, path in models.items():
        if not (path and expect_file(path, fits)):
            continue
        tree = read_fit_posterior(path, groups=("observed_data", "posterior_predictive"))
        observed = plots.ppc_points(tree["observed_data"][OBSERVED].values)
        draws = tree["posterior_predictive"][OBSERVED].values
        replicated[model] = [plots.ppc_points(draw) for draw in draws.reshape(-1, draws.shape[-1])[:PPC_DRAWS]]
        del tree
        logger.info("%s: predictive check of %s read (%d observations)", dataset, model, draws.shape[-1])
    figure = (
        plots.ppc_figure(observed, replicated, f"{dataset}: observed and replicated data", discrete[dataset])
        if replicated
        else plots.message_figure(f"{dataset}: no fit at the highest target_accept succeeded")
    )
    plots.save(figure, figures / f"{dataset}_ppc.png", figures / f"{dataset}_ppc.svg", settings["dpi"])
    # The first backend's fits at the highest target_accept, as in the predictive check and
    # the comparison (groups hold only successful fits: none may mean none succeeded there).
    def shown(table):
        return table[
            (table["scenario"] == dataset)
            & (table["backend"] == snakemake.params.backend)
            & np.isclose(table["target_accept"], snakemake.params.target_accept)
        ]

    rows = shown(groups)
    figure = (
        plots.real_shrinkage_figure(rows, shown(fits), f"{dataset}: no, partial and complete pooling")
        if not rows.empty
        else plots.message_figure(f"{dataset}: no successful fit")
    )
    plots.save(figure, figures / f"{dataset}_shrinkage.png", figures / f"{dataset}_shrinkage.svg", settings["dpi"])

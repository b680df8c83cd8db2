from poolbench.runtime import release_memory, start_job

start_job(snakemake)

import pandas as pd

from poolbench.metrics import compare_real, pointwise_loo
from poolbench.storage import read_fit_posterior, write_table

fits = pd.read_parquet(snakemake.input.fits)
# One posterior in memory at a time: the comparison needs only each fit's pointwise LOO.
loo_results = {}
for label, path in snakemake.params.posteriors.items():
    if path:
        loo_results[label] = pointwise_loo(read_fit_posterior(path, groups=("posterior", "log_likelihood")))
        release_memory()
table = compare_real(fits, loo_results)
write_table(table, snakemake.output.comparison_parquet, snakemake.output.comparison)

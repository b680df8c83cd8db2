from poolbench.runtime import release_memory, start_job

start_job(snakemake)

import pandas as pd

from poolbench.metrics import compare_real, pointwise_loo
from poolbench.storage import read_fit_posterior, write_table

fits = pd.read_parquet(snakemake.input.fits)
# One posterior in memory at a time: the comparison needs only each fit's pointwise LOO.
loo_results = {}
for label, path in snakemake.params.posteriors.items():
    # A failed fit has no posterior; it is listed untrusted, unranked.
    try:
        tree = read_fit_posterior(path, groups=("posterior", "log_likelihood"))
    except FileNotFoundError:
        continue
    loo_results[label] = pointwise_loo(tree)
    del tree
    release_memory()
table = compare_real(fits, loo_results)
write_table(table, snakemake.output.comparison_parquet, snakemake.output.comparison)

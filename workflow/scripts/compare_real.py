from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench.metrics import compare_real, pointwise_loo
from poolbench.storage import from_each_fit_posterior, write_table

fits = pd.read_parquet(snakemake.input.fits)
# The comparison needs only each fit's pointwise LOO. A failed fit has no posterior; it is
# listed untrusted, unranked.
posteriors = snakemake.params.posteriors
computed = from_each_fit_posterior(posteriors.values(), pointwise_loo, groups=("posterior", "log_likelihood"))
table = compare_real(fits, {label: computed[path] for label, path in posteriors.items() if path in computed})
write_table(table, snakemake.output.comparison_parquet, snakemake.output.comparison)

from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench.metrics import compare_real
from poolbench.storage import read_fit_posterior, write_table

fits = pd.read_parquet(snakemake.input.fits)
posteriors = {label: read_fit_posterior(path, groups=("posterior", "log_likelihood")) for label, path in snakemake.params.posteriors.items() if path}
table = compare_real(fits, posteriors)
write_table(table, snakemake.output.comparison_parquet, snakemake.output.comparison)

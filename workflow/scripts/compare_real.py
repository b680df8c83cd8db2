from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench.metrics import compare_real, loo_from_table
from poolbench.storage import write_table

fits = pd.read_parquet(snakemake.input.fits)
# Each fit's pointwise LOO, as the `loo` job computed it. A failed fit has none: it is
# listed untrusted, unranked.
pointwise = pd.read_parquet(snakemake.input.pointwise)
by_path = dict(list(pointwise.groupby("posterior", sort=False))) if len(pointwise) else {}
compared = {label: loo_from_table(by_path[path]) for label, path in snakemake.params.posteriors.items() if path in by_path}
table = compare_real(fits, compared, snakemake.params.backend)
write_table(table, snakemake.output.comparison_parquet, snakemake.output.comparison)

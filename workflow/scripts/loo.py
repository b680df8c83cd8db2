from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench.metrics import loo_summary
from poolbench.paths import posterior_identity
from poolbench.storage import read_fit_posterior, write_table

rows = []
for path in snakemake.params.posteriors:
    identity = posterior_identity(path)
    # A failed fit has no posterior; its record stays without LOO.
    try:
        tree = read_fit_posterior(path)
    except FileNotFoundError:
        continue
    rows.append(identity | loo_summary(tree))
write_table(pd.DataFrame(rows), snakemake.output.loo)

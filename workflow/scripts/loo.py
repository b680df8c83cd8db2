from poolbench.runtime import release_memory, start_job

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
        tree = read_fit_posterior(path, groups=("posterior", "log_likelihood"))
    except FileNotFoundError:
        continue
    rows.append(identity | loo_summary(tree))
    del tree
    release_memory()  # one draws x rows log-likelihood at a time
write_table(pd.DataFrame(rows), snakemake.output.loo)

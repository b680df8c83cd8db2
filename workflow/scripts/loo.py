from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench.metrics import loo_summary, loo_table, pointwise_loo
from poolbench.paths import posterior_identity
from poolbench.storage import from_each_fit_posterior, write_table

# A failed fit has no posterior; its record stays without LOO.
computed = from_each_fit_posterior(snakemake.params.posteriors, pointwise_loo, groups=("posterior", "log_likelihood"))
write_table(
    pd.DataFrame([posterior_identity(path) | loo_summary(loo) for path, loo in computed.items()]),
    snakemake.output.loo,
)
# The comparison reads these pointwise terms instead of computing LOO again.
pointwise = [loo_table(loo).assign(posterior=path) for path, loo in computed.items()]
write_table(pd.concat(pointwise, ignore_index=True) if pointwise else pd.DataFrame(), snakemake.output.pointwise)

from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench.metrics import loo_summary
from poolbench.paths import posterior_identity
from poolbench.storage import from_each_fit_posterior, write_table

# A failed fit has no posterior; its record stays without LOO.
summaries = from_each_fit_posterior(snakemake.params.posteriors, loo_summary, groups=("posterior", "log_likelihood"))
rows = [posterior_identity(path) | summary for path, summary in summaries.items()]
write_table(pd.DataFrame(rows), snakemake.output.loo)

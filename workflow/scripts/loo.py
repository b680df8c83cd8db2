from poolbench.runtime import start_job

logger = start_job(snakemake)

import pandas as pd

from poolbench.metrics import loo_from_table, loo_summary
from poolbench.paths import loo_path, posterior_identity
from poolbench.storage import expect_file, write_table

# The fit jobs computed each real-data fit's pointwise PSIS-LOO beside its posterior; this
# job collects them. A failed fit has none (its record stays without LOO); a succeeded one
# whose file is missing stops the job, naming the file.
tables = [pd.read_parquet(path) for path in snakemake.input.fits]
fits = pd.concat(tables, ignore_index=True) if tables else None  # None: no real data
compared = set(snakemake.params.compared)
summaries, pointwise, missing = [], [], []
for i, posterior in enumerate(snakemake.params.posteriors, start=1):
    path = loo_path(posterior)
    try:
        if not expect_file(path, fits, posterior):
            continue
    except FileNotFoundError as error:  # every missing one at once, not one per rerun
        missing.append(str(error))
        continue
    table = pd.read_parquet(path)
    summaries.append(posterior_identity(posterior) | loo_summary(loo_from_table(table)))
    if posterior in compared:  # the comparison reads these terms instead of computing LOO again
        pointwise.append(table.assign(posterior=posterior))
    logger.info("LOO %d/%d: %s (%d observations)", i, len(snakemake.params.posteriors), posterior, len(table))
if missing:
    raise FileNotFoundError("\n".join(missing))
write_table(pd.DataFrame(summaries), snakemake.output.loo)
write_table(pd.concat(pointwise, ignore_index=True) if pointwise else pd.DataFrame(), snakemake.output.pointwise)

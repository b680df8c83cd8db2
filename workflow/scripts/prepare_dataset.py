from poolbench.runtime import start_job

logger = start_job(snakemake)

from poolbench.data import read_user_csv, write_datasets

# The rule's output is named by the data set ({dataset}: its key under `datasets` in the
# config), so a refused file's message names the data set the user has to fix, not only
# the CSV (which several data sets may share, with other columns).
name = snakemake.wildcards.dataset
columns, csv = snakemake.params.columns, snakemake.params.csv
data = read_user_csv(
    csv, columns["x"], columns["y"], columns["group"], columns["min_group_size"], name=name,
    family=columns["family"], trials=columns["trials"], success=columns["success"],
)
logger.info("data set %r (%s): %d rows in %d groups", name, csv, len(data), data["group"].nunique())
write_datasets([data], snakemake.output.data)

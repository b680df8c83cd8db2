from poolbench.runtime import start_job

logger = start_job(snakemake)

from poolbench.data import read_user_csv, write_datasets

columns, csv = snakemake.params.columns, snakemake.params.csv
data = read_user_csv(csv, columns["x"], columns["y"], columns["group"], columns["min_group_size"])
logger.info("%s: %d rows in %d groups", csv, len(data), data["group"].nunique())
write_datasets([data], snakemake.output.data)

from poolbench.runtime import start_job

logger = start_job(snakemake)

from poolbench.data import read_user_csv, write_datasets

columns = snakemake.params.columns
data = read_user_csv(snakemake.input.csv, columns["x"], columns["y"], columns["group"], columns["min_group_size"])
logger.info("%s: %d rows in %d groups", snakemake.input.csv, len(data), data["group"].nunique())
write_datasets([data], snakemake.output.data)

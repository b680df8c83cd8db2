from poolbench.runtime import start_job

start_job(snakemake)

from poolbench.data import write_datasets, write_truths
from poolbench.simulate import simulate_scenario

frames, truths = simulate_scenario(
    snakemake.wildcards.scenario,
    snakemake.params.scenario,
    snakemake.params.levels,
    snakemake.params.seeds,
    snakemake.params.master_seed,
)
write_datasets(frames, snakemake.output.data)
write_truths(truths, snakemake.output.truth)

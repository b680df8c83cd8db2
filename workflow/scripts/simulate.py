from poolbench.runtime import configure_logging

configure_logging(snakemake)

from poolbench.simulate import simulate, write_dataset

data, truth = simulate(
    snakemake.wildcards.scenario,
    snakemake.params.scenario,
    snakemake.params.level,
    int(snakemake.wildcards.seed),
    snakemake.params.master_seed,
)
write_dataset(data, snakemake.output.data)
truth.write(snakemake.output.truth)

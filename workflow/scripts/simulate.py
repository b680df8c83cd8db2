from poolbench.runtime import configure_logging

configure_logging(snakemake)

from poolbench.simulate import simulate, write_dataset

outputs = zip(snakemake.output.data, snakemake.output.truth, strict=True)
for dataset, (data_path, truth_path) in zip(snakemake.params.datasets, outputs, strict=True):
    data, truth = simulate(
        snakemake.wildcards.scenario,
        snakemake.params.scenario,
        snakemake.params.levels[dataset["outliers"]],
        dataset["seed"],
        snakemake.params.master_seed,
    )
    write_dataset(data, data_path)
    truth.write(truth_path)

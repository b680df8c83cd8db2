from poolbench.runtime import configure_logging, pin_threads

pin_threads(1)  # before numpy loads: chains, not BLAS, use the job's threads
configure_logging(snakemake)

from poolbench.fit import FitTask, SamplerSettings, fit_batch, write_table
from poolbench.grid import ModelSpec

tasks = [
    FitTask(dataset, truth, posterior)
    for dataset, truth, posterior in zip(
        snakemake.input.datasets, snakemake.input.truths, snakemake.params.posteriors
    )
]
settings = SamplerSettings(
    target_accept=float(snakemake.wildcards.target_accept),
    threads=snakemake.threads,
    **snakemake.params.sampler,
)
fits, groups = fit_batch(
    ModelSpec.from_name(snakemake.wildcards.model),
    tasks,
    settings,
    snakemake.params.priors,
    snakemake.params.master_seed,
)
write_table(fits, snakemake.output.fits)
write_table(groups, snakemake.output.groups)

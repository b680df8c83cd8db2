from poolbench.runtime import configure_logging, pin_threads

pin_threads(1)  # before numpy loads: chains, not BLAS, use the job's threads
configure_logging(snakemake)

from poolbench.fit import FitTask, SamplerSettings, fit_batch, write_table
from poolbench.grid import ModelSpec

fits, groups = fit_batch(
    ModelSpec.from_name(snakemake.wildcards.model),
    [FitTask(**task) for task in snakemake.params.tasks],
    SamplerSettings(threads=snakemake.threads, **snakemake.params.sampler),
    snakemake.params.priors,
    snakemake.params.master_seed,
    cache_dir=snakemake.params.cache,
)
write_table(fits, snakemake.output.fits)
write_table(groups, snakemake.output.groups)

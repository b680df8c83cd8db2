from poolbench.runtime import configure_logging, pin_threads

pin_threads(1)  # before numpy loads: chains, not BLAS, use the job's threads
logger = configure_logging(snakemake)

from threadpoolctl import threadpool_info

from poolbench.fit import FitTask, SamplerSettings, fit_batch
from poolbench.grid import ModelSpec
from poolbench.storage import write_table

logger.info(
    "BLAS/OpenMP threads: %s",
    sorted({(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()}),
)

fits, groups = fit_batch(
    ModelSpec.from_name(snakemake.wildcards.model),
    [FitTask(**task) for task in snakemake.params.tasks],
    SamplerSettings(
        backend=snakemake.wildcards.backend,
        threads=snakemake.threads,
        **snakemake.params.sampler,
    ),
    snakemake.params.priors,
    snakemake.params.master_seed,
    cache_dir=snakemake.params.cache,
)
write_table(fits, snakemake.output.fits)
write_table(groups, snakemake.output.groups)

from poolbench.numerics import configure_pytensor
from poolbench.runtime import start_job

logger = start_job(snakemake)  # before numpy loads: chains, not BLAS, use the job's threads
configure_pytensor()

from pathlib import Path

from threadpoolctl import threadpool_info

from poolbench import paths
from poolbench.data import DatasetTable, read_truths
from poolbench.fit import DataSource, FitBatch, FitTask
from poolbench.grid import FitKey, ModelSpec, SbcKey, target_accept_label
from poolbench.runtime import freeze_imported_objects
from poolbench.samplers import SamplerSettings
from poolbench.sbc import SbcBatch
from poolbench.storage import write_table

freeze_imported_objects()

logger.info(
    "BLAS/OpenMP threads: %s",
    sorted({(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()}),
)
# What the job was given (from the size of its data: poolbench.resources), beside what it
# then uses (its benchmark file), for a job that runs out of either.
logger.info("declared: mem_mb=%s, runtime=%s min", snakemake.resources.get("mem_mb"), snakemake.resources.get("runtime"))
w, params, output = snakemake.wildcards, snakemake.params, snakemake.output
spec = ModelSpec.from_name(w.model, w.likelihood, w.prior)
settings = SamplerSettings.from_label(w.backend, threads=snakemake.threads, **params.sampler)
data = DataSource(
    tables={name: DatasetTable(path) for name, path in zip(params.tables, snakemake.input.tables)},
    truths={name: read_truths(path) for name, path in zip(params.truths, snakemake.input.truths)},
)
posterior = Path(output.posterior)
tasks = [
    FitTask(key, str(posterior / paths.posterior_name(key.scenario, key.outliers, key.seed, target_accept_label(key.target_accept))))
    for key in map(FitKey._make, params.fits)
]
batch = FitBatch(
    spec,
    params.priors,
    settings,
    params.hdi_prob,
    params.master_seed,
    data,
    cache_dir=params.cache,
    check_target_accept=params.check_target_accept,
)
fits, groups = batch.run(tasks)
write_table(fits, output.fits)
write_table(groups, output.groups)

calibration = SbcBatch(
    spec=spec,
    fit_prior=params.priors,
    settings=settings,
    scenarios=params.sbc_scenarios,
    master_seed=params.master_seed,
    thin=params.thin,
    cache_dir=params.cache,
    models=batch.models,
)
sbc_fits, ranks = calibration.run([SbcKey._make(key) for key in params.simulations])
write_table(sbc_fits, output.sbc_fits)
write_table(ranks, output.ranks)

from poolbench.runtime import configure_pytensor, start_job

logger = start_job(snakemake)  # before numpy loads: chains, not BLAS, use the job's threads
configure_pytensor()

from pathlib import Path

from threadpoolctl import threadpool_info

from poolbench import paths
from poolbench.data import DatasetTable, read_truths
from poolbench.fit import DataSource, FitBatch, FitTask
from poolbench.grid import FitKey, ModelSpec, target_accept_label
from poolbench.samplers import SamplerSettings
from poolbench.storage import write_table

logger.info(
    "BLAS/OpenMP threads: %s",
    sorted({(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()}),
)
w, params = snakemake.wildcards, snakemake.params
spec = ModelSpec.from_name(w.model, w.likelihood, w.prior)
data = DataSource(
    tables={name: DatasetTable(path) for name, path in zip(params.tables, snakemake.input.tables)},
    truths={name: read_truths(path) for name, path in zip(params.truths, snakemake.input.truths)},
)
posterior = Path(snakemake.output.posterior)
tasks = [
    FitTask(key, str(posterior / paths.posterior_name(key.scenario, key.outliers, key.seed, target_accept_label(key.target_accept))))
    for key in map(FitKey._make, params.fits)
]
batch = FitBatch(
    spec,
    params.priors,
    SamplerSettings(backend=w.backend, threads=snakemake.threads, **params.sampler),
    params.hdi_prob,
    params.master_seed,
    data,
    cache_dir=params.cache,
)
fits, groups = batch.run(tasks)
write_table(fits, snakemake.output.fits)
write_table(groups, snakemake.output.groups)

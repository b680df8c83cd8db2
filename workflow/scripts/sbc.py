from poolbench.runtime import configure_pytensor, start_job

logger = start_job(snakemake)  # before numpy loads
configure_pytensor()

from poolbench.grid import ModelSpec, SbcKey
from poolbench.samplers import SamplerSettings
from poolbench.sbc import SbcBatch
from poolbench.storage import write_table

w, params = snakemake.wildcards, snakemake.params
batch = SbcBatch(
    spec=ModelSpec.from_name(w.model, w.likelihood, w.prior),
    fit_prior=params.priors,
    settings=SamplerSettings(backend=w.backend, threads=snakemake.threads, **params.sampler),
    scenarios=params.scenarios,
    master_seed=params.master_seed,
    thin=params.thin,
    cache_dir=params.cache,
)
fits, ranks = batch.run([SbcKey._make(key) for key in params.simulations])
write_table(fits, snakemake.output.fits)
write_table(ranks, snakemake.output.ranks)

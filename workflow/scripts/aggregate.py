from poolbench.runtime import start_job

start_job(snakemake)

from poolbench import records
import pandas as pd

from poolbench.aggregate import collect, parameterisation_table, summarise, with_loo, with_provenance
from poolbench.metrics import calibration, model_verdict, trust_verdict
from poolbench.report import provenance
from poolbench.storage import write_table

inputs, outputs, trust = snakemake.input, snakemake.output, snakemake.params.trust
stamp = provenance(snakemake.params.config, snakemake.params.repo)
fits = with_loo(collect(inputs.fits, records.FIT_COLUMNS), pd.read_parquet(inputs.loo))
fits = model_verdict(trust_verdict(fits, trust))
groups = collect(inputs.groups, records.GROUP_COLUMNS)
write_table(with_provenance(fits, stamp), outputs.fits, outputs.fits_csv)
write_table(with_provenance(groups, stamp), outputs.groups, outputs.groups_csv)
summary = with_provenance(summarise(fits), stamp)
write_table(summary, outputs.summary_parquet, outputs.summary)

sbc_fits = trust_verdict(collect(inputs.sbc_fits, records.SBC_FIT_COLUMNS), trust)
ranks = collect(inputs.sbc_ranks, records.RANK_COLUMNS)
write_table(with_provenance(sbc_fits, stamp), outputs.sbc_fits)
write_table(with_provenance(ranks, stamp), outputs.ranks)
calibrated = with_provenance(calibration(ranks, sbc_fits), stamp)
write_table(calibrated, outputs.calibration_parquet, outputs.calibration)
write_table(with_provenance(parameterisation_table(fits), stamp), outputs.parameterisation_parquet, outputs.parameterisation)

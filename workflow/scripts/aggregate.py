from poolbench.runtime import configure_logging

configure_logging(snakemake)

from poolbench.aggregate import collect, summarise, with_provenance
from poolbench.report import provenance
from poolbench.storage import write_table

stamp = provenance(snakemake.params.config, snakemake.params.repo)
fits = collect(snakemake.input.fits)
groups = collect(snakemake.input.groups)
write_table(with_provenance(fits, stamp), snakemake.output.fits, snakemake.output.fits_csv)
write_table(with_provenance(groups, stamp), snakemake.output.groups, snakemake.output.groups_csv)
summary = with_provenance(summarise(fits), stamp)
write_table(summary, snakemake.output.summary_parquet, snakemake.output.summary)

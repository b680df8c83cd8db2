from poolbench.runtime import configure_logging

configure_logging(snakemake)

from poolbench.aggregate import collect, summarise, write_tables

fits = collect(snakemake.input.fits)
groups = collect(snakemake.input.groups)
write_tables(fits, snakemake.output.fits, snakemake.output.fits_csv)
write_tables(groups, snakemake.output.groups, snakemake.output.groups_csv)
summarise(fits).to_csv(snakemake.output.summary, index=False)

localrules:
    aggregate,


rule aggregate:
    input:
        fits=get_fit_tables(rules.fit.output.fits),
        groups=get_fit_tables(rules.fit.output.groups),
    output:
        fits="results/tables/fits.parquet",
        fits_csv="results/tables/fits.csv",
        groups="results/tables/groups.parquet",
        groups_csv="results/tables/groups.csv",
        summary="results/tables/summary.csv",
    log:
        "results/logs/aggregate.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/aggregate.py"

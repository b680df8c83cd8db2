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
        summary_parquet="results/tables/summary.parquet",
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate/aggregate.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        # Everything but the plots block: a plot setting must not rerun aggregation.
        config=canonical(
            {key: value for key, value in config.items() if key != "plots"}
        ),
        repo=workflow.basedir,
    script:
        "../scripts/aggregate.py"

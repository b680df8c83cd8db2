# Cheap: run on the submitting host, not as cluster jobs.
localrules:
    simulate,


rule simulate:
    output:
        data="results/datasets/{scenario}/{outliers}/seed{seed}.csv",
        truth="results/datasets/{scenario}/{outliers}/seed{seed}.truth.json",
    log:
        "results/logs/simulate/{scenario}/{outliers}/seed{seed}.log",
    benchmark:
        "results/benchmarks/simulate/{scenario}/{outliers}/seed{seed}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        scenario=get_scenario,
        level=get_outlier_level,
        master_seed=lookup(dpath="master_seed", within=config),
    script:
        "../scripts/simulate.py"

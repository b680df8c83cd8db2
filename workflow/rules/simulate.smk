rule simulate:
    output:
        data=DATASET + ".csv",
        truth=DATASET + ".truth.json",
    log:
        "results/logs/simulate/{scenario}/{outliers}/seed{seed}.log",
    params:
        scenario=lambda wildcards: config["scenarios"][wildcards.scenario],
        level=lambda wildcards: OUTLIER_LEVELS[wildcards.outliers],
        master_seed=lookup(dpath="master_seed", within=config),
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/simulate.py"

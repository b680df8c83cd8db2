# Cheap: run on the submitting host, not as cluster jobs. One job per scenario writes all of
# its datasets (outlier levels x seeds) into one table: a job or a file per dataset would
# cost more in Python start-ups and planning than the simulation itself.
localrules:
    simulate,
    prepare_dataset,


rule simulate:
    output:
        data=P.dataset,
        truth=P.truth,
    log:
        P.log("simulate/{scenario}"),
    benchmark:
        P.benchmark("simulate/{scenario}")
    priority: DATA_PRIORITY
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        scenario=get_scenario,
        seeds=PLAN.seeds,
        levels=canonical(PLAN.outlier_levels),
        master_seed=lookup(dpath="master_seed", within=config),
    script:
        "../scripts/simulate.py"


# A real data set: the user's CSV checked (one error naming the file, the column and the
# first offending rows) and written in the layout of simulated datasets.
rule prepare_dataset:
    input:
        csv=get_dataset_csv,
    output:
        data=P.dataset.replace("{scenario}", "{dataset}"),
    log:
        P.log("prepare_dataset/{dataset}"),
    priority: DATA_PRIORITY
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=get_prepare_mem_mb,
        runtime=5,
    params:
        csv=dataset_csv_path,
        columns=get_dataset_columns,
    script:
        "../scripts/prepare_dataset.py"

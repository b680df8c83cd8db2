# Cheap: run on the submitting host, not as cluster jobs. One job per scenario writes all of
# its datasets (outlier levels x seeds): a job per dataset spent more time starting Python
# than simulating.
localrules:
    simulate,


rule simulate:
    output:
        data=get_scenario_datasets(DATASET_CSV),
        truth=get_scenario_datasets(DATASET_TRUTH),
    log:
        "results/logs/simulate/{scenario}.log",
    benchmark:
        "results/benchmarks/simulate/{scenario}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        scenario=get_scenario,
        datasets=SCENARIO_DATASETS,
        levels=canonical(OUTLIER_LEVELS),
        master_seed=lookup(dpath="master_seed", within=config),
    script:
        "../scripts/simulate.py"

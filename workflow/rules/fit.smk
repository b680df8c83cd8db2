rule fit:
    input:
        datasets=lambda wildcards: get_fit_datasets(wildcards, ".csv"),
        truths=lambda wildcards: get_fit_datasets(wildcards, ".truth.json"),
    output:
        fits=FIT + "/fits.parquet",
        groups=FIT + "/groups.parquet",
        posterior=directory(FIT + "/posterior"),
    log:
        FIT.replace("results/", "results/logs/", 1) + ".log",
    benchmark:
        FIT.replace("results/", "results/benchmarks/", 1) + ".tsv"
    params:
        posteriors=get_fit_posteriors,
        priors=get_priors,
        sampler=get_sampler_settings(),
        master_seed=lookup(dpath="master_seed", within=config),
    threads: lookup(dpath="sampler/threads", within=config)
    resources:
        mem_mb=1500,
        runtime=30,
    script:
        "../scripts/fit.py"


rule model_graph:
    input:
        data=lambda wildcards: DATASET.format(
            scenario=SCENARIOS[0], outliers=next(iter(OUTLIER_LEVELS)), seed=SEEDS[0]
        )
        + ".csv",
    output:
        svg="results/models/{model}.svg",
    log:
        "results/logs/model_graph/{model}.log",
    params:
        priors=get_priors,
        n_groups=config["scenarios"][SCENARIOS[0]]["n_groups"],
    threads: 1
    resources:
        mem_mb=800,
        runtime=5,
    script:
        "../scripts/model_graph.py"

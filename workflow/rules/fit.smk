rule fit:
    input:
        datasets=get_fit_datasets(DATASET_CSV),
        truths=get_fit_datasets(DATASET_TRUTH),
    output:
        fits="results/fits/{model}/{backend}/fits.parquet",
        groups="results/fits/{model}/{backend}/groups.parquet",
        posterior=directory("results/fits/{model}/{backend}/posterior"),
    log:
        "results/logs/fit/{model}/{backend}.log",
    benchmark:
        "results/benchmarks/fit/{model}/{backend}.tsv"
    conda:
        ENV
    threads: lookup(dpath="sampler/threads", within=config)
    # Measured peak RSS of a fit job: 463-481 MB (results/benchmarks/fit/*.tsv on the test
    # and benchmark grids, docs/performance.md); runtime ~10-40 s for the default grid.
    resources:
        mem_mb=1500,
        runtime=30,
    params:
        tasks=get_fit_tasks,
        # Snakemake's params trigger does not see `tasks` (a function of input/output):
        # these do, so a new target_accept reruns the job (the cache keeps finished fits).
        target_accepts=lookup(dpath="sampler/target_accept", within=config),
        datasets=DATASETS,
        priors=get_priors,
        sampler=get_sampler_settings(),
        master_seed=lookup(dpath="master_seed", within=config),
        cache=FIT_CACHE,
    script:
        "../scripts/fit.py"


localrules:
    model_graph,


# All plate diagrams in one job: each is quick, starting Python and PyMC is not. A directory
# output with a pattern makes each diagram its own report item, with `model` as its wildcard.
rule model_graph:
    input:
        data=get_graph_dataset(),
    output:
        graphs=report(
            directory("results/models"),
            patterns=["{model}.svg"],
            caption="../report/model_graph.rst",
            category="Models",
            labels={"model": "{model}"},
        ),
    log:
        "results/logs/model_graph.log",
    benchmark:
        "results/benchmarks/model_graph/model_graph.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=800,
        runtime=5,
    params:
        priors={model: model_priors(model) for model in MODEL_SPECS},
        n_groups=config["scenarios"][SCENARIOS[0]]["n_groups"],
    script:
        "../scripts/model_graph.py"

# A fit job: one compiled model (variant, parameterisation, likelihood, prior set) and
# backend over one part of its fits and, with the same compiled model, of its simulation-
# based calibration (parameters from its prior, data from a scenario's design).
rule fit:
    input:
        tables=get_fit_tables,
        truths=get_fit_truths,
    output:
        fits=f"{P.fit_job}/fits.parquet",
        groups=f"{P.fit_job}/groups.parquet",
        posterior=directory(f"{P.fit_job}/posterior"),
        sbc_fits=f"{P.fit_job}/sbc_fits.parquet",
        ranks=f"{P.fit_job}/ranks.parquet",
    log:
        P.log("fit/{model}/{likelihood}/{prior}/{backend}/{part}"),
    benchmark:
        P.benchmark("fit/{model}/{likelihood}/{prior}/{backend}/{part}")
    priority: get_fit_priority
    conda:
        ENV
    threads: lookup(dpath="sampler/threads", within=config)
    # From the size of the job's data (poolbench.resources; measured in docs/performance.md,
    # and tests check the declaration covers the measured peak).
    resources:
        mem_mb=get_fit_mem_mb,
        runtime=get_fit_runtime,
    params:
        # The job's fits: a change to any of them reruns it (the cache keeps finished fits).
        fits=get_fit_keys,
        tables=get_fit_table_names,
        truths=get_fit_truth_names,
        priors=get_priors,
        sampler=PLAN.sampler_settings(),
        hdi_prob=lookup(dpath="sampler/hdi_prob", within=config),
        master_seed=lookup(dpath="master_seed", within=config),
        # Real-data fits at this target_accept keep replicated datasets for the report.
        check_target_accept=SHOWCASE_TA,
        simulations=get_sbc_keys,
        sbc_scenarios=get_sbc_scenarios,
        thin=lookup(dpath="sbc/thin", within=config),
        cache=paths.CACHE,
    script:
        "../scripts/fit.py"


localrules:
    model_graph,


# All plate diagrams in one job: each is quick, starting Python and PyMC is not. A directory
# output with a pattern makes each diagram its own report item, with `item` as its wildcard.
rule model_graph:
    input:
        data=PLAN.graph_dataset(),
    output:
        graphs=family_output("models"),
    log:
        P.log("model_graph"),
    benchmark:
        P.benchmark("model_graph")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=800,
        runtime=5,
    params:
        models=PLAN.model_graphs(),
    script:
        "../scripts/model_graph.py"

localrules:
    plot_summary,
    plot_posterior,
    plot_funnel,
    plot_calibration,
    plot_real,
    plot_map,


rule plot_summary:
    input:
        fits=rules.aggregate.output.fits,
        groups=rules.aggregate.output.groups,
        summary=rules.aggregate.output.summary_parquet,
    output:
        **summary_figure_outputs(),
    log:
        P.log("plot_summary"),
    benchmark:
        P.benchmark("plot_summary")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        plots=canonical(config["plots"]),
        showcase_outliers=SHOWCASE_OUTLIERS,
        showcase_target_accept=SHOWCASE_TA,
    script:
        "../scripts/plot_summary.py"


# The tutorial figures of all models in one job (one Python start, one ArviZ import); each
# figure is its own report item, with `item` (the model) as its wildcard.
rule plot_posterior:
    input:
        fits=rules.aggregate.output.fits,
        posterior=PLAN.posterior_directories(PLAN.tutorial_posteriors().values()),
    output:
        figures=family_output("posterior"),
    log:
        P.log("plot_posterior"),
    benchmark:
        P.benchmark("plot_posterior")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        posteriors=PLAN.tutorial_posteriors(),
        plots=canonical(config["plots"]),
        hdi_prob=lookup(dpath="sampler/hdi_prob", within=config),
    script:
        "../scripts/plot_posterior.py"


# The funnel, per scenario: log(sigma) against a group's slope (centered) or offset z
# (non-centered), divergent draws marked, at the lowest and highest target_accept.
rule plot_funnel:
    input:
        fits=rules.aggregate.output.fits,
        posterior=PLAN.posterior_directories(
            panel.posterior for panel in PLAN.funnel_panels()
        ),
    output:
        figures=family_output("funnel"),
    log:
        P.log("plot_funnel"),
    benchmark:
        P.benchmark("plot_funnel")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        panels=plan.as_records(PLAN.funnel_panels()),
        plots=canonical(config["plots"]),
    script:
        "../scripts/plot_funnel.py"


rule plot_calibration:
    input:
        ranks=rules.aggregate.output.ranks,
    output:
        figures=family_output("calibration"),
    log:
        P.log("plot_calibration"),
    benchmark:
        P.benchmark("plot_calibration")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        plots=canonical(config["plots"]),
    script:
        "../scripts/plot_calibration.py"


# Real data sets: the posterior predictive check and the shrinkage picture (estimates
# against group size), from the fits at the highest target_accept.
rule plot_real:
    input:
        fits=rules.aggregate.output.fits,
        groups=rules.aggregate.output.groups,
        posteriors=PLAN.posterior_directories(fit.posterior for fit in PLAN.real_fits()),
    output:
        figures=family_output("real"),
    log:
        P.log("plot_real"),
    benchmark:
        P.benchmark("plot_real")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=get_plot_real_mem_mb,
        runtime=10,
    params:
        real_fits=plan.as_records(PLAN.real_fits()),
        backend=BACKENDS[0],
        target_accept=SHOWCASE_TA,
        plots=canonical(config["plots"]),
        master_seed=lookup(dpath="master_seed", within=config),
    script:
        "../scripts/plot_real.py"


rule plot_map:
    input:
        fits=rules.aggregate.output.fits,
    output:
        figures=family_output("map"),
    log:
        P.log("plot_map"),
    benchmark:
        P.benchmark("plot_map")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        figures=PLAN.map_figure_items(),
        plots=canonical(config["plots"]),
    script:
        "../scripts/plot_map.py"

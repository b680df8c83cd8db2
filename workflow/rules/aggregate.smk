localrules:
    loo,
    aggregate,
    compare_real,


# PSIS-LOO of every real-data fit: the fit jobs compute it beside each posterior (while the
# pointwise log-likelihood is in memory; it is not stored), this job collects it.
rule loo:
    input:
        posteriors=PLAN.posterior_directories(PLAN.real_posteriors()),
        fits=PLAN.real_fit_tables(),
    output:
        loo=P.table("loo"),
        pointwise=P.table("loo_pointwise"),
    log:
        P.log("loo"),
    benchmark:
        P.benchmark("loo")
    priority: LOO_PRIORITY
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=get_loo_mem_mb,
        runtime=10,
    params:
        posteriors=PLAN.real_posteriors(),
        compared=[fit.posterior for fit in PLAN.real_fits()],
    script:
        "../scripts/loo.py"


rule aggregate:
    input:
        loo=rules.loo.output.loo,
        fits=PLAN.job_outputs("fits.parquet"),
        groups=PLAN.job_outputs("groups.parquet"),
        sbc_fits=PLAN.job_outputs("sbc_fits.parquet"),
        sbc_ranks=PLAN.job_outputs("ranks.parquet"),
    output:
        fits=P.table("fits"),
        fits_csv=P.table("fits", "csv"),
        groups=P.table("groups"),
        groups_csv=P.table("groups", "csv"),
        summary=P.table("summary", "csv"),
        summary_parquet=P.table("summary"),
        ranks=P.directory("sbc/ranks.parquet"),
        sbc_fits=P.table("sbc_fits"),
        calibration=P.table("calibration", "csv"),
        calibration_parquet=P.table("calibration"),
        parameterisation=P.table("parameterisation", "csv"),
        parameterisation_parquet=P.table("parameterisation"),
    log:
        P.log("aggregate"),
    benchmark:
        P.benchmark("aggregate")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        # Everything but the plots block: a plot setting must not rerun aggregation.
        config=PLAN.aggregate_config(),
        trust=canonical(config["trust"]),
        repo=workflow.basedir,
    script:
        "../scripts/aggregate.py"


# Real data sets: PSIS-LOO model comparison over trusted fits, from the stored posteriors.
rule compare_real:
    input:
        fits=rules.aggregate.output.fits,
        pointwise=rules.loo.output.pointwise,
    output:
        comparison=P.table("comparison", "csv"),
        comparison_parquet=P.table("comparison"),
    log:
        P.log("compare_real"),
    benchmark:
        P.benchmark("compare_real")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=get_loo_mem_mb,
        runtime=10,
    params:
        posteriors={fit.label: fit.posterior for fit in PLAN.real_fits()},
        backend=BACKENDS[0],
    script:
        "../scripts/compare_real.py"

localrules:
    html_report,


rule html_report:
    input:
        fits=rules.aggregate.output.fits,
        summary=rules.aggregate.output.summary_parquet,
        calibration=rules.aggregate.output.calibration_parquet,
        sbc_fits=rules.aggregate.output.sbc_fits,
        parameterisation=rules.aggregate.output.parameterisation_parquet,
        comparison=rules.compare_real.output.comparison_parquet,
        summary_figures=rules.plot_summary.output,
        posterior_figures=family_figures("posterior"),
        funnel_figures=family_figures("funnel"),
        calibration_figures=family_figures("calibration"),
        real_figures=family_figures("real"),
        map_figures=family_figures("map"),
        model_graphs=family_figures("models"),
    output:
        html=P.report,
        findings=report(
            P.table("findings", "csv"),
            caption="../report/findings.rst",
            category="Findings",
            labels={"table": "findings"},
        ),
        findings_parquet=P.table("findings"),
    log:
        P.log("html_report"),
    benchmark:
        P.benchmark("html_report")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        figures=get_report_figures(),
        config=config,
    script:
        "../scripts/html_report.py"

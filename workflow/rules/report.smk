localrules:
    html_report,


rule html_report:
    input:
        fits=rules.aggregate.output.fits,
        summary=rules.aggregate.output.summary_parquet,
        summary_figures=rules.plot_summary.output,
        posterior_figures=rules.plot_posterior.output.figures,
        model_graphs=rules.model_graph.output.graphs,
    output:
        html="results/report.html",
    log:
        "results/logs/html_report.log",
    benchmark:
        "results/benchmarks/html_report/html_report.tsv"
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

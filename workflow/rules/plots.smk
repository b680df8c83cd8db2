localrules:
    plot_summary,
    plot_posterior,


rule plot_summary:
    input:
        fits=rules.aggregate.output.fits,
        groups=rules.aggregate.output.groups,
    output:
        divergences=report(
            "results/figures/divergences.png",
            caption="../report/divergences.rst",
            category="Figures",
            subcategory="Sampler",
            labels={"figure": "divergences vs target_accept"},
        ),
        divergences_svg="results/figures/divergences.svg",
        shrinkage=report(
            "results/figures/shrinkage.png",
            caption="../report/shrinkage.rst",
            category="Figures",
            subcategory="Shrinkage",
            labels={"figure": "shrinkage error"},
        ),
        shrinkage_svg="results/figures/shrinkage.svg",
        estimates=report(
            "results/figures/estimates.png",
            caption="../report/estimates.rst",
            category="Figures",
            subcategory="Shrinkage",
            labels={"figure": "estimates vs truth"},
        ),
        estimates_svg="results/figures/estimates.svg",
        cost=report(
            "results/figures/cost.png",
            caption="../report/cost.rst",
            category="Figures",
            subcategory="Cost",
            labels={"figure": "ESS per second"},
        ),
        cost_svg="results/figures/cost.svg",
        backends=report(
            "results/figures/backends.png",
            caption="../report/backends.rst",
            category="Figures",
            subcategory="Cost",
            labels={"figure": "ESS per second by backend"},
        ),
        backends_svg="results/figures/backends.svg",
    log:
        "results/logs/plot_summary.log",
    benchmark:
        "results/benchmarks/plot_summary/plot_summary.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        plots=canonical(config["plots"]),
        showcase_outliers=grid.showcase_outlier_label(config),
        showcase_target_accept=grid.showcase_target_accept(config),
    script:
        "../scripts/plot_summary.py"


# The tutorial figures of all models in one job (one Python start, one ArviZ import); each
# figure is its own report item, with `model` as its wildcard.
rule plot_posterior:
    input:
        fits=rules.aggregate.output.fits,
        posterior=[showcase_posterior_dir(model) for model in MODEL_SPECS],
    output:
        figures=report(
            directory("results/figures/posterior"),
            patterns=["{model}.png"],
            caption="../report/posterior.rst",
            category="Tutorial figures",
            subcategory="{model}",
            labels={"model": "{model}"},
        ),
    log:
        "results/logs/plot_posterior.log",
    benchmark:
        "results/benchmarks/plot_posterior/plot_posterior.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        posterior={model: showcase_posterior_file(model) for model in MODEL_SPECS},
        plots=canonical(config["plots"]),
        hdi_prob=lookup(dpath="sampler/hdi_prob", within=config),
    script:
        "../scripts/plot_posterior.py"

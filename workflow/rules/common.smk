from snakemake.utils import validate

from poolbench import grid

# Refuse a bad config before any job is planned: schema first, then cross-key rules.
validate(config, schema="../schemas/config.schema.yaml")
grid.check_consistency(config)

SEEDS = grid.seeds(config)
OUTLIER_LEVELS = grid.outlier_levels(config)
SCENARIOS = list(config["scenarios"])
MODEL_SPECS = {spec.name: spec for spec in grid.model_specs(config)}
TARGET_ACCEPTS = {
    grid.target_accept_label(ta): ta for ta in config["sampler"]["target_accept"]
}


wildcard_constraints:
    scenario="|".join(SCENARIOS),
    outliers="|".join(OUTLIER_LEVELS),
    seed=r"\d+",
    model="|".join(MODEL_SPECS),
    target_accept="|".join(t.replace(".", r"\.") for t in TARGET_ACCEPTS),


DATASET = "results/datasets/{scenario}/{outliers}/seed{seed}"
FIT = "results/fits/{scenario}/{model}/ta{target_accept}"


def get_fit_datasets(wildcards, suffix):
    """Every dataset of a scenario, outlier levels outer and seeds inner (the fit order)."""
    return [
        DATASET.format(scenario=wildcards.scenario, outliers=o, seed=s) + suffix
        for o in OUTLIER_LEVELS
        for s in SEEDS
    ]


def get_fit_posteriors(wildcards):
    """Where each fit of a job writes its posterior, aligned with get_fit_datasets."""
    base = FIT.format(**wildcards) + "/posterior"
    return [f"{base}/{o}_seed{s}.nc" for o in OUTLIER_LEVELS for s in SEEDS]


def get_priors(wildcards):
    return config["models"]["priors"][MODEL_SPECS[wildcards.model].variant]


def get_sampler_settings():
    """Sampler keys that change a fit's numbers. `threads` is left out: results do not
    depend on it, so changing it must not invalidate finished fits."""
    keys = ("backend", "draws", "tune", "chains", "hdi_prob")
    return {key: config["sampler"][key] for key in keys}


def get_fit_tables(name):
    return expand(
        f"{FIT}/{name}.parquet",
        scenario=SCENARIOS,
        model=MODEL_SPECS,
        target_accept=TARGET_ACCEPTS,
    )


def get_final_output():
    return [
        "results/tables/fits.parquet",
        "results/tables/summary.csv",
        *expand("results/models/{model}.svg", model=MODEL_SPECS),
    ]

import os
import sys
from pathlib import Path

from snakemake.utils import validate

# The logic lives in src/poolbench. Put it on the path of this process and of every job,
# so the workflow runs in any environment holding the dependencies (venv, conda, cluster).
POOLBENCH_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, POOLBENCH_SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (POOLBENCH_SRC, os.getenv("PYTHONPATH")) if p)
)
ENV = "../../environment.yml"

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


def get_fit_datasets(output):
    """Input function: every dataset of the job's scenario, outlier levels outer and
    seeds inner (the order of the job's fits)."""

    def datasets(wildcards):
        return [
            output.format(scenario=wildcards.scenario, outliers=o, seed=s)
            for o in OUTLIER_LEVELS
            for s in SEEDS
        ]

    return datasets


def get_fit_posteriors(wildcards, output):
    """Where each fit of a job writes its posterior, aligned with get_fit_datasets."""
    return [f"{output.posterior}/{o}_seed{s}.nc" for o in OUTLIER_LEVELS for s in SEEDS]


def get_graph_dataset(wildcards):
    """Any dataset gives the plate diagram its shapes; take the first scenario's first."""
    return rules.simulate.output.data.format(
        scenario=SCENARIOS[0], outliers=next(iter(OUTLIER_LEVELS)), seed=SEEDS[0]
    )


def get_priors(wildcards):
    return config["models"]["priors"][MODEL_SPECS[wildcards.model].variant]


def get_sampler_settings():
    """Sampler keys that change a fit's numbers. `threads` is left out: results do not
    depend on it, so changing it must not invalidate finished fits."""
    keys = ("backend", "draws", "tune", "chains", "hdi_prob")
    return {key: config["sampler"][key] for key in keys}


def get_fit_tables(pattern):
    return expand(
        pattern,
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

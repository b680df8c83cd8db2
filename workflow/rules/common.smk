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
BACKENDS = config["sampler"]["backends"]
TARGET_ACCEPTS = {
    grid.target_accept_label(ta): ta for ta in config["sampler"]["target_accept"]
}


wildcard_constraints:
    scenario="|".join(SCENARIOS),
    outliers="|".join(OUTLIER_LEVELS),
    seed=r"\d+",
    model="|".join(MODEL_SPECS),
    backend="|".join(BACKENDS),


DATASET_CSV = "results/datasets/{scenario}/{outliers}/seed{seed}.csv"
DATASET_TRUTH = "results/datasets/{scenario}/{outliers}/seed{seed}.truth.json"
# A scenario's datasets: outlier levels, then seeds.
SCENARIO_DATASETS = [
    {"outliers": outliers, "seed": seed}
    for outliers in OUTLIER_LEVELS
    for seed in SEEDS
]
# The datasets every fit job fits: scenarios, then the above.
DATASETS = [
    {"scenario": scenario, **dataset}
    for scenario in SCENARIOS
    for dataset in SCENARIO_DATASETS
]


def get_scenario_datasets(pattern):
    """A simulate job's outputs: `pattern` for each of SCENARIO_DATASETS, `{scenario}`
    left as the job's wildcard."""
    return [pattern.format(scenario="{scenario}", **d) for d in SCENARIO_DATASETS]


def get_fit_datasets(pattern):
    return [pattern.format(**dataset) for dataset in DATASETS]


def get_fit_tasks(wildcards, input, output):
    """The fits of one job: every dataset at every target_accept, and where each
    posterior goes."""
    return [
        {
            "dataset": data,
            "truth": truth,
            "target_accept": ta,
            "posterior": f"{output.posterior}/{d['scenario']}/{d['outliers']}_seed{d['seed']}_ta{label}.nc",
        }
        for data, truth, d in zip(input.datasets, input.truths, DATASETS)
        for label, ta in TARGET_ACCEPTS.items()
    ]


def get_graph_dataset():
    """Any dataset gives the plate diagrams their shapes; take the first scenario's first."""
    return DATASET_CSV.format(scenario=SCENARIOS[0], **SCENARIO_DATASETS[0])


def canonical(mapping):
    """A dict with its keys sorted, recursively. Snakemake compares params as printed, so
    reordering keys in the config must not look like a change."""
    if isinstance(mapping, dict):
        return {key: canonical(mapping[key]) for key in sorted(mapping)}
    return mapping


def get_scenario(wildcards):
    return canonical(config["scenarios"][wildcards.scenario])


def model_priors(model):
    return canonical(config["models"]["priors"][MODEL_SPECS[model].variant])


def get_priors(wildcards):
    return model_priors(wildcards.model)


def get_sampler_settings():
    """Sampler keys that change a fit's numbers. `threads` is left out: results do not
    depend on it, so changing it must not invalidate finished fits."""
    return {
        key: config["sampler"][key] for key in ("chains", "draws", "hdi_prob", "tune")
    }


# Finished fits by content (poolbench.fit.FitCache): reruns sample only what changed.
FIT_CACHE = "results/cache/fits"


def get_fit_tables(pattern):
    return expand(pattern, model=MODEL_SPECS, backend=BACKENDS)


def tutorial_scenario():
    return config["plots"]["tutorial_scenario"]


def showcase_posterior_dir(model):
    """The fit job's posterior directory holding the showcase dataset's fit of `model`."""
    return rules.fit.output.posterior.format(model=model, backend=BACKENDS[0])


def showcase_posterior_file(model):
    seed = config["plots"]["showcase_seed"]
    outliers = grid.showcase_outlier_label(config)
    ta = grid.target_accept_label(grid.showcase_target_accept(config))
    name = f"{tutorial_scenario()}/{outliers}_seed{seed}_ta{ta}.nc"
    return f"{showcase_posterior_dir(model)}/{name}"


SUMMARY_FIGURES = {
    "divergences": "Divergences against target_accept",
    "shrinkage": "Shrinkage error by model and outlier level",
    "estimates": "Estimates against the truth, group by group",
    "cost": "Cost: ESS per second and sampling time",
    "backends": "Cost by sampler backend",
}


def get_report_figures():
    """Every figure of the HTML report, in order, with the caption file Snakemake's
    report uses for it (paths relative to the working directory / this file). Paths come
    from the rules that write the figures."""
    captions = Path(workflow.basedir) / "workflow/report"
    posterior_figures = rules.plot_posterior.output.figures
    model_graphs = rules.model_graph.output.graphs
    figures = [
        {
            "id": name,
            "title": title,
            "path": str(getattr(rules.plot_summary.output, name)),
            "caption": str(captions / f"{name}.rst"),
            "wildcards": {},
        }
        for name, title in SUMMARY_FIGURES.items()
    ]
    for model in MODEL_SPECS:
        figures.append(
            {
                "id": f"posterior_{model}",
                "title": f"Tutorial figure: {model} posterior",
                "path": f"{posterior_figures}/{model}.png",
                "caption": str(captions / "posterior.rst"),
                "wildcards": {"model": model},
            }
        )
        figures.append(
            {
                "id": f"model_{model}",
                "title": f"Plate diagram: {model}",
                "path": f"{model_graphs}/{model}.svg",
                "caption": str(captions / "model_graph.rst"),
                "wildcards": {"model": model},
            }
        )
    return figures


def get_final_output():
    return [
        "results/tables/fits.parquet",
        "results/tables/summary.csv",
        "results/report.html",
    ]

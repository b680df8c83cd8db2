import os
import re
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

from poolbench import config as config_checks
from poolbench import figures, grid, paths, plan, resources, variants

# Snakemake runs `script:` jobs as `{sys.executable} {script}` with the interpreter's path
# unquoted (snakemake/snakemake#2645): a space in it breaks every job. bin/setup avoids it;
# say so here rather than fail later with bash's "Is a directory".
if " " in sys.executable:
    raise WorkflowError(
        f"The Python running Snakemake has a space in its path ({sys.executable!r}), which "
        "Snakemake 9 cannot run scripts with (snakemake/snakemake#2645). Run bin/setup, which "
        "puts the environment at a path without spaces, and use .venv/bin/snakemake."
    )

# Refuse a bad config before any job is planned: schema (and defaults), strict types,
# then cross-key rules.
validate(config, schema="../schemas/config.schema.yaml")
config_checks.check(config)

# The plan (poolbench.plan): fit jobs, their fits, order and needs, posterior paths, and which
# fits each figure shows. The functions below only hand its records to the rules.
PLAN = plan.Plan(config)
P = PLAN.paths
SCENARIOS = PLAN.scenarios
REAL_DATASETS = PLAN.datasets
BACKENDS = PLAN.backends
SHOWCASE_TA = PLAN.showcase_target_accept
SHOWCASE_OUTLIERS = PLAN.showcase_outliers
DATA_PRIORITY = PLAN.data_priority
LOO_PRIORITY = PLAN.loo_priority
canonical = plan.canonical


def _names(values):
    """A regex matching exactly these names (nothing, if there are none)."""
    return "|".join(re.escape(str(value)) for value in values) or "(?!)"


wildcard_constraints:
    scenario=_names(SCENARIOS),
    dataset=_names(REAL_DATASETS),
    model=_names(grid.MODEL_NAMES),
    likelihood=_names(variants.LIKELIHOODS),
    prior=_names(grid.prior_sets(config)),
    backend=_names(BACKENDS),
    part=r"[A-Za-z][A-Za-z0-9_]*-p\d+",


def _job(wildcards):
    return PLAN.job(
        wildcards.model,
        wildcards.likelihood,
        wildcards.prior,
        wildcards.backend,
        wildcards.part,
    )


def get_fit_keys(wildcards):
    """The fits of one fit job, as plain lists (what the job's params record)."""
    return [list(key) for key in _job(wildcards).fits]


def get_fit_tables(wildcards):
    return [PLAN.dataset_path(name) for name in _job(wildcards).tables]


def get_fit_table_names(wildcards):
    return _job(wildcards).tables


def get_fit_truth_names(wildcards):
    return [name for name in _job(wildcards).tables if name in SCENARIOS]


def get_fit_truths(wildcards):
    return [PLAN.truth_path(name) for name in get_fit_truth_names(wildcards)]


def get_priors(wildcards):
    return PLAN.priors(_job(wildcards))


def get_fit_priority(wildcards):
    return PLAN.fit_priority(_job(wildcards))


def get_sbc_keys(wildcards):
    """The calibration simulations a fit job does beside its fits."""
    return [list(key) for key in _job(wildcards).simulations]


def get_sbc_scenarios(wildcards):
    return PLAN.sbc_scenarios(_job(wildcards))


def get_scenario(wildcards):
    return canonical(SCENARIOS[wildcards.scenario])


def get_fit_mem_mb(wildcards, input):
    """A fit job's memory, from the size of its real data (poolbench.resources)."""
    return PLAN.fit_job_mem_mb(_job(wildcards))


def get_fit_runtime(wildcards, input):
    return PLAN.fit_job_minutes(_job(wildcards))


def get_loo_mem_mb(wildcards, input):
    return PLAN.loo_mem_mb()


def get_plot_real_mem_mb(wildcards, input):
    return PLAN.plot_real_mem_mb()


def get_prepare_mem_mb(wildcards, input):
    """Reading a user's CSV: every cell as text first (its checks name the bad rows)."""
    return resources.prepare_mem_mb(sum(Path(f).stat().st_size for f in input))


def dataset_csv_path(wildcards):
    """A real data set's CSV: as written in the config, relative to the working directory,
    else to the workflow's directory (where the shipped data sets live)."""
    csv = Path(REAL_DATASETS[wildcards.dataset]["csv"])
    if csv.is_absolute() or csv.exists():
        return str(csv)
    shipped = Path(workflow.basedir) / csv
    return str(shipped) if shipped.exists() else str(csv)


def get_dataset_csv(wildcards):
    """The CSV as the job's input, so that editing it reruns the job; nothing if it does
    not exist: a missing input would stop the whole run while planning, where the job's
    own check fails only this data set, naming the file (the path is also a param)."""
    csv = dataset_csv_path(wildcards)
    return [csv] if Path(csv).exists() else []


def get_dataset_columns(wildcards):
    dataset = REAL_DATASETS[wildcards.dataset]
    return {
        key: dataset[key]
        for key in ("x", "y", "group", "min_group_size", "family", "trials", "success")
    }


def summary_figure_outputs():
    """The summary figures' outputs, named after them (PNG in both reports, plus SVG)."""
    out = {}
    for figure in figures.SUMMARY:
        out[figure.name] = report(
            P.figure(figure.name),
            caption=f"../report/{figure.caption}",
            category=figure.category,
            subcategory=figure.subcategory,
            labels={"figure": figure.name},
        )
        out[f"{figure.name}_svg"] = P.figure(figure.name, "svg")
    return out


def family_output(name):
    """A figure family's directory output: one report item per `{item}.png`."""
    family = figures.FAMILIES[name]
    return report(
        directory(P.directory(f"figures/{name}")),
        patterns=["{item}.png"],
        caption=f"../report/{family.caption}",
        category=family.category,
        subcategory=family.subcategory,
        labels={"item": "{item}"},
    )


def family_figures(name):
    """The report's input from a figure family: its directory, or nothing where the run has
    no such figure (no calibration, real data or map): no job starts only to draw none.
    """
    return [P.directory(f"figures/{name}")] if PLAN.family_items()[name] else []


def get_report_figures():
    """Every figure of the HTML report, in order (poolbench.plan.Plan.report_figures)."""
    return PLAN.report_figures(Path(workflow.basedir) / "workflow/report")


def get_final_output():
    return [P.table("fits"), P.table("summary", "csv"), P.report]

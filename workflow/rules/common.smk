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
from poolbench import figures, grid, paths, resources, variants

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

P = paths.Paths(config["study"]["name"])
SCENARIOS = grid.scenarios(config)
REAL_DATASETS = config["datasets"]
OUTLIER_LEVELS = grid.outlier_levels(config)
SEEDS = grid.seeds(config)
BACKENDS = config["sampler"]["backends"]
FITS_PER_JOB = config["sampler"]["fits_per_job"]
SPECS = grid.model_specs(config)
SHOWCASE_TA = grid.showcase_target_accept(config)
SHOWCASE_OUTLIERS = grid.showcase_outlier_label(config) if SCENARIOS else None


SPEC_KEYS = {spec: grid.fit_keys(config, spec) for spec in SPECS}
SBC_SPECS = grid.sbc_specs(config)


def spec_parts(spec):
    """The jobs of one model: part label -> (its fits, its calibration simulations)."""
    sbc = grid.sbc_keys(config, spec) if spec in SBC_SPECS else []
    return grid.parts(SPEC_KEYS[spec], sbc, FITS_PER_JOB)


def _fit_jobs():
    """Every fit job: its wildcards, its fits and its calibration simulations."""
    jobs = {}
    for spec in SPECS:
        for part, (keys, simulations) in spec_parts(spec).items():
            for backend in BACKENDS:
                wildcards = dict(
                    model=spec.name,
                    likelihood=spec.likelihood,
                    prior=spec.prior,
                    backend=backend,
                    part=part,
                )
                jobs[tuple(wildcards.values())] = (wildcards, keys, simulations)
    return jobs


FIT_JOBS = _fit_jobs()


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


def canonical(mapping):
    """A dict with its keys sorted, recursively. Snakemake compares params as printed, so
    reordering keys in the config must not look like a change."""
    if isinstance(mapping, dict):
        return {key: canonical(mapping[key]) for key in sorted(mapping)}
    return mapping


def _job_key(wildcards):
    return (
        wildcards.model,
        wildcards.likelihood,
        wildcards.prior,
        wildcards.backend,
        wildcards.part,
    )


def get_fit_keys(wildcards):
    """The fits of one fit job, as plain lists (what the job's params record)."""
    return [list(key) for key in FIT_JOBS[_job_key(wildcards)][1]]


def _job_scenarios(wildcards, jobs):
    keys = jobs[_job_key(wildcards)][1]
    return list(dict.fromkeys(key.scenario for key in keys))


def get_fit_tables(wildcards):
    return [P.dataset.format(scenario=s) for s in _job_scenarios(wildcards, FIT_JOBS)]


def get_fit_table_names(wildcards):
    return _job_scenarios(wildcards, FIT_JOBS)


def get_fit_truth_names(wildcards):
    return [s for s in _job_scenarios(wildcards, FIT_JOBS) if s in SCENARIOS]


def get_fit_truths(wildcards):
    return [P.truth.format(scenario=s) for s in get_fit_truth_names(wildcards)]


def get_priors(wildcards):
    """The job's prior: a job fits simulated data or one real data set (grid.parts), whose
    own prior rule applies."""
    spec = grid.ModelSpec.from_name(
        wildcards.model, wildcards.likelihood, wildcards.prior
    )
    keys = FIT_JOBS[_job_key(wildcards)][1]
    real = {key.scenario for key in keys if key.source == grid.REAL}
    return canonical(grid.priors(config, spec, next(iter(real), None)))


def get_sampler_settings():
    """Sampler keys that change a fit's draws. `threads` is left out: results do not
    depend on it, so changing it must not invalidate finished fits."""
    return {key: config["sampler"][key] for key in ("chains", "draws", "tune")}


def get_scenario(wildcards):
    return canonical(SCENARIOS[wildcards.scenario])


def get_fit_priority(wildcards):
    """The order in which ready fit jobs start on a few cores (only the order changes,
    never a number). The costliest first, so that it does not run alone at the end. Then
    the real-data fit jobs, whatever their own cost (among themselves by cost): LOO waits
    for all of them, and all after it waits for LOO, so run last they would leave LOO
    alone on one core at the end. Then the others by cost (docs/performance.md)."""
    job = FIT_JOBS[_job_key(wildcards)]
    cost = _fit_job_cost(job)
    if cost == COSTLIEST_FIT_JOB:
        return cost
    if any(key.source == grid.REAL for key in job[1]):  # in (C - 1, C - 0.5]
        return COSTLIEST_FIT_JOB - 1 + cost / (2 * COSTLIEST_FIT_JOB)
    return cost * (COSTLIEST_FIT_JOB - 1) / COSTLIEST_FIT_JOB  # below C - 1, order kept


def _fit_job_cost(job):
    """A fit job's cost in fits: its fits, and its calibration simulations at a fifth of a
    fit each (their designs are small: 0.10 s of sampling against 0.52 s), doubled where
    the likelihood has its own parameter (Student-t) and where the model has hierarchical
    terms: those fits sample longest (on the default grid the hierarchical non-centered
    Student-t job takes ~100 s, the others 12-48 s)."""
    wildcards, keys, simulations = job
    variant = variants.VARIANTS[grid.ModelSpec.from_name(wildcards["model"]).variant]
    likelihood = variants.LIKELIHOODS[wildcards["likelihood"]]
    weight = (1 + bool(likelihood.parameters)) * (1 + bool(variant.hyperparameters))
    return (len(keys) + len(simulations) / 5) * weight


COSTLIEST_FIT_JOB = max(map(_fit_job_cost, FIT_JOBS.values()), default=0)
# Snakemake's priorities order ready jobs only; they do not pass to a job's inputs. The
# short jobs others wait on therefore rank above every fit job: first the data (simulation
# and preparation, which every fit job needs), then LOO (which the aggregation needs; with
# no real data it has nothing to do and must not delay a simulation). Without this, radon's
# small fit jobs, ready first, kept both cores for a minute while the costliest simulated
# job waited for its data, and LOO, ranked last, waited for every fit job and then ran
# alone at the end.
LOO_PRIORITY = COSTLIEST_FIT_JOB + 1
DATA_PRIORITY = COSTLIEST_FIT_JOB + 2


def _real_rows(dataset):
    """Rows of a prepared real data set (0 until it is prepared)."""
    return resources.dataset_rows(P.dataset.format(scenario=dataset))


def _job_real_rows(wildcards):
    keys = FIT_JOBS[_job_key(wildcards)][1]
    return max(
        (_real_rows(k.scenario) for k in keys if k.source == grid.REAL), default=0
    )


def _draws():
    return config["sampler"]["draws"] * config["sampler"]["chains"]


def get_fit_mem_mb(wildcards, input):
    """A fit job's memory, from the size of its real data (poolbench.resources)."""
    return resources.fit_job_mem_mb(_job_real_rows(wildcards), _draws())


def get_fit_runtime(wildcards, input):
    _, keys, simulations = FIT_JOBS[_job_key(wildcards)]
    rows = _job_real_rows(wildcards)
    return resources.fit_job_minutes(rows, _draws(), len(keys), len(simulations))


def get_loo_mem_mb(wildcards, input):
    """The LOO and comparison jobs' memory: the per-row LOO terms of the fits they read."""
    posteriors = [p for p in all_real_posteriors() if p]
    rows = [_real_rows(paths.posterior_identity(p)["scenario"]) for p in posteriors]
    return resources.loo_job_mem_mb(sum(rows))


def get_plot_real_mem_mb(wildcards, input):
    largest = max(map(_real_rows, REAL_DATASETS), default=0)
    return resources.plot_real_mem_mb(largest, figures.PPC_DRAWS)


def get_prepare_mem_mb(wildcards, input):
    """Reading a user's CSV: every cell as text first (its checks name the bad rows)."""
    return resources.prepare_mem_mb(sum(Path(f).stat().st_size for f in input))


def real_fit_job_tables():
    """The fits tables of the fit jobs with real data (which fits succeeded)."""
    jobs = {paths.fit_job_directory(p) for p in all_real_posteriors() if p}
    return sorted(str(Path(job, "fits.parquet")) for job in jobs)


def get_sbc_keys(wildcards):
    """The calibration simulations a fit job does beside its fits."""
    return [list(key) for key in FIT_JOBS[_job_key(wildcards)][2]]


def get_sbc_scenarios(wildcards):
    names = {key.scenario for key in FIT_JOBS[_job_key(wildcards)][2]}
    return canonical({name: SCENARIOS[name] for name in names})


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
    return {key: dataset[key] for key in ("x", "y", "group", "min_group_size")}


def job_outputs(name):
    """One output of every fit job."""
    return [f"{P.fit_job}/{name}".format(**job[0]) for job in FIT_JOBS.values()]


_PARTS = {}


def posterior_path(spec, backend, key):
    """Where the posterior of one fit lies: its job's posterior directory and name."""
    if spec not in _PARTS:
        _PARTS[spec] = {
            k: part
            for part, (keys, _) in (
                spec_parts(spec) if spec in SPEC_KEYS else {}
            ).items()
            for k in keys
        }
    part = _PARTS[spec].get(key)
    if part is None:
        return None
    job = P.fit_job.format(
        model=spec.name,
        likelihood=spec.likelihood,
        prior=spec.prior,
        backend=backend,
        part=part,
    )
    name = paths.posterior_name(
        key.scenario,
        key.outliers,
        key.seed,
        grid.target_accept_label(key.target_accept),
    )
    return f"{job}/posterior/{name}"


def _showcase_key(scenario, ta=SHOWCASE_TA):
    return grid.FitKey(
        grid.SIMULATED,
        scenario,
        SHOWCASE_OUTLIERS,
        config["plots"]["showcase_seed"],
        ta,
    )


def tutorial_posteriors():
    """The tutorial figures' posteriors: each model of the simulated grid (first
    likelihood and prior set), on the showcase dataset of the tutorial scenario."""
    scenario = config["plots"]["tutorial_scenario"]
    out = {}
    for spec in grid.simulated_specs(config):
        if spec.name not in out:
            out[spec.name] = posterior_path(spec, BACKENDS[0], _showcase_key(scenario))
    return out


def funnel_posteriors():
    """Per scenario: the showcase fits, at the lowest and highest target_accept, of the
    first simulated-data variant with hierarchical slopes (first likelihood, default
    priors), by parameterisation and target_accept."""
    tas = config["sampler"]["target_accept"]
    funnel = next(
        (
            v
            for v in config["models"]["variants"]
            if variants.VARIANTS[v].slopes == variants.HIERARCHICAL
        ),
        None,
    )
    specs = [
        s
        for s in grid.simulated_specs(config)
        if s.variant == funnel
        and s.likelihood == config["models"]["likelihoods"][0]
        and s.prior == grid.DEFAULT_PRIOR
    ]
    out = {}
    for scenario in SCENARIOS if specs else []:
        for spec in specs:
            for ta in dict.fromkeys([min(tas), max(tas)]):
                key = (
                    f"{scenario}/{spec.parameterisation}/{grid.target_accept_label(ta)}"
                )
                out[key] = posterior_path(
                    spec, BACKENDS[0], _showcase_key(scenario, ta)
                )
    return out


def real_posteriors():
    """Per real data set: every model's fit at the highest target_accept (first backend)."""
    out = {}
    for dataset in REAL_DATASETS:
        for spec in grid.dataset_specs(config, dataset):
            key = grid.FitKey(grid.REAL, dataset, grid.OBSERVED, 0, SHOWCASE_TA)
            label = f"{dataset}/{spec.name}/{spec.likelihood}/{spec.prior}"
            out[label] = posterior_path(spec, BACKENDS[0], key)
    return out


def all_real_posteriors():
    """Every real-data fit's posterior (every model, target_accept and backend)."""
    return [
        posterior_path(spec, backend, key)
        for spec in SPECS
        for backend in BACKENDS
        for key in SPEC_KEYS[spec]
        if key.source == grid.REAL
    ]


def fit_job_dirs(posteriors):
    """The fit jobs' posterior directories behind a set of posterior paths (rule inputs)."""
    return sorted({paths.posterior_directory(p) for p in posteriors.values() if p})


def model_graph_specs():
    """One plate diagram per model name (its first likelihood and the default priors)."""
    out = {}
    for spec in SPECS:
        out.setdefault(spec.name, spec)
    return out


def get_graph_dataset():
    """Any dataset gives the plate diagrams their shapes; take the first one."""
    return P.dataset.format(scenario=next(iter([*SCENARIOS, *REAL_DATASETS])))


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


def calibration_cells():
    return [
        grid.calibration_label(s.name, s.likelihood, s.prior, b, scenario, ta)
        for s in SBC_SPECS
        for b in BACKENDS
        for scenario in config["sbc"]["scenarios"]
        for ta in config["sbc"]["target_accept"]
    ]


def get_report_figures():
    """Every figure of the HTML report, in order: title, path, caption file and the
    wildcards its caption is rendered with. Paths come from the rules that write them.
    """
    captions = Path(workflow.basedir) / "workflow/report"
    out = [
        {
            "id": f.name,
            "section": f.section,
            "title": f.title,
            "path": P.figure(f.name),
            "caption": str(captions / f.caption),
            "wildcards": {},
        }
        for f in figures.SUMMARY
    ]

    def family(name, items, section):
        f = figures.FAMILIES[name]
        for item in items:
            out.append(
                {
                    "id": f"{name}_{item}",
                    "section": section,
                    "title": f.title.format(item=item),
                    "path": P.directory(f"figures/{name}/{item}.png"),
                    "caption": str(captions / f.caption),
                    "wildcards": {"item": item},
                }
            )

    family("funnel", SCENARIOS if funnel_posteriors() else [], "figures")
    family("posterior", tutorial_posteriors(), "figures")
    family("models", model_graph_specs(), "figures")
    family("calibration", calibration_cells(), "calibration")
    family("real", real_figure_items(), "real")
    family("map", map_figure_items(), "map")
    return out


def real_figure_items():
    return [f"{d}_{kind}" for d in REAL_DATASETS for kind in ("ppc", "shrinkage")]


def map_figure_items():
    if not config["study"]["parameterisation_map"]:
        return []
    return [
        f"{name}.{prior}" for prior in grid.prior_sets(config) for name in figures.MAP
    ]


def aggregate_config():
    """What the tables depend on: every key but the plots."""
    return canonical({key: value for key, value in config.items() if key != "plots"})


def get_final_output():
    return [P.table("fits"), P.table("summary", "csv"), P.report]

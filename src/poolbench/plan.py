"""The run's plan: its fit jobs (which fits and calibration simulations each does, in what
order they start, what they need), where each fit's posterior lies, and which fits every
figure and the report show.

`workflow/rules/common.smk` builds one `Plan` from the validated config and its rules read
its records; the tests read the same records directly. What is Snakemake's own (rule
outputs, `report()` items, the workflow's directory) stays in the rules. Nothing here
imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from poolbench import figures, grid, paths, resources
from poolbench.variants import HIERARCHICAL, LIKELIHOODS, PURE_PARAMETERISATIONS, VARIANTS


def canonical(mapping):
    """A dict with its keys sorted, recursively. Snakemake compares params as printed, so
    reordering keys in the config must not look like a change."""
    if isinstance(mapping, dict):
        return {key: canonical(mapping[key]) for key in sorted(mapping)}
    return mapping


# Calibration simulations cost a fifth of a fit each: their designs are small (0.10 s of
# sampling against 0.52 s on the default grid; docs/performance.md).
SIMULATIONS_PER_FIT = 5


def job_wildcards(spec: grid.ModelSpec, backend: str, part: str) -> dict[str, str]:
    """A fit job's wildcards, in the order of `paths.Paths.fit_job`."""
    return {"model": spec.name, "likelihood": spec.likelihood, "prior": spec.prior, "backend": backend, "part": part}


@dataclass(frozen=True)
class FitJob:
    """One fit job: one compiled model and backend over one part of its fits and of its
    calibration simulations (`grid.parts`)."""

    spec: grid.ModelSpec
    backend: str
    part: str
    fits: tuple[grid.FitKey, ...]
    simulations: tuple[grid.SbcKey, ...]

    @property
    def wildcards(self) -> dict[str, str]:
        return job_wildcards(self.spec, self.backend, self.part)

    @property
    def id(self) -> tuple[str, ...]:
        return tuple(self.wildcards.values())

    @property
    def tables(self) -> list[str]:
        """The data tables it reads: simulated scenarios and real data sets, in fit order."""
        return list(dict.fromkeys(key.scenario for key in self.fits))

    @property
    def real_datasets(self) -> list[str]:
        return list(dict.fromkeys(key.scenario for key in self.fits if key.source == grid.REAL))

    @property
    def cost(self) -> float:
        """Its cost in fits, doubled where the likelihood has its own parameter (Student-t)
        and where the model has hierarchical terms: those fits sample longest (on the
        default grid the hierarchical non-centered Student-t job takes ~100 s, the others
        12-48 s)."""
        variant = VARIANTS[self.spec.variant]
        weight = (1 + bool(LIKELIHOODS[self.spec.likelihood].parameters)) * (1 + bool(variant.hyperparameters))
        return (len(self.fits) + len(self.simulations) / SIMULATIONS_PER_FIT) * weight


@dataclass(frozen=True)
class FunnelPanel:
    """One panel of a scenario's funnel figure: a parameterisation at a target_accept."""

    scenario: str
    parameterisation: str
    target_accept: float
    posterior: str | None  # None: the fit is not in the plan


@dataclass(frozen=True)
class RealFit:
    """A real data set's fit shown in its figures and compared by PSIS-LOO."""

    dataset: str
    model: str
    likelihood: str
    prior: str
    posterior: str | None

    @property
    def label(self) -> str:
        return grid.real_fit_label(self.dataset, self.model, self.likelihood, self.prior)


def as_records(items) -> list[dict]:
    """Records as plain dicts: what a rule's params hold (Snakemake prints them to decide
    whether they changed, and scripts need not import this module to read them)."""
    return [dict(vars(item)) for item in items]


class Plan:
    """Everything the rules plan, from one validated config (`config.check` passed)."""

    def __init__(self, config: dict):
        self.config = config
        self.paths = paths.Paths(config["study"]["name"])
        self.scenarios = grid.scenarios(config)
        self.datasets = config["datasets"]
        self.outlier_levels = grid.outlier_levels(config)
        self.seeds = grid.seeds(config)
        self.backends = grid.sampler_labels(config)  # backends with their adaptations
        self.specs = grid.model_specs(config)
        self.sbc_specs = grid.sbc_specs(config)
        self.showcase_target_accept = grid.showcase_target_accept(config)
        self.showcase_outliers = grid.showcase_outlier_label(config) if self.scenarios else None
        self.jobs: dict[tuple[str, ...], FitJob] = {}
        self.fit_keys = {spec: grid.fit_keys(config, spec) for spec in self.specs}
        self._parts: dict[tuple[grid.ModelSpec, grid.FitKey], str] = {}
        for spec in self.specs:
            sbc = grid.sbc_keys(config, spec) if spec in self.sbc_specs else []
            for part, (keys, simulations) in grid.parts(self.fit_keys[spec], sbc,
                                                        config["sampler"]["fits_per_job"]).items():
                self._parts |= {(spec, key): part for key in keys}
                for backend in self.backends:
                    job = FitJob(spec, backend, part, tuple(keys), tuple(simulations))
                    self.jobs[job.id] = job

    def job(self, model: str, likelihood: str, prior: str, backend: str, part: str) -> FitJob:
        return self.jobs[model, likelihood, prior, backend, part]

    # ---- what a fit job needs and declares ----

    def priors(self, job: FitJob) -> dict:
        """The job's prior: a job fits simulated data or one real data set (`grid.parts`),
        whose own prior rule applies."""
        return canonical(grid.priors(self.config, job.spec, next(iter(job.real_datasets), None)))

    def sampler_settings(self) -> dict:
        """Sampler keys that change a fit's draws. `threads` is left out: results do not
        depend on it, so changing it must not invalidate finished fits."""
        return {key: self.config["sampler"][key] for key in ("chains", "draws", "tune")}

    def sbc_scenarios(self, job: FitJob) -> dict:
        names = dict.fromkeys(key.scenario for key in job.simulations)
        return canonical({name: self.scenarios[name] for name in names})

    def dataset_path(self, name: str) -> str:
        return self.paths.dataset.format(scenario=name)

    def truth_path(self, name: str) -> str:
        return self.paths.truth.format(scenario=name)

    def draws(self) -> int:
        return self.config["sampler"]["draws"] * self.config["sampler"]["chains"]

    def real_rows(self, dataset: str) -> int:
        """Rows of a prepared real data set (0 until it is prepared)."""
        return resources.dataset_rows(self.dataset_path(dataset))

    def _job_real_rows(self, job: FitJob) -> int:
        return max(map(self.real_rows, job.real_datasets), default=0)

    def fit_job_mem_mb(self, job: FitJob) -> int:
        return resources.fit_job_mem_mb(self._job_real_rows(job), self.draws())

    def fit_job_minutes(self, job: FitJob) -> int:
        return resources.fit_job_minutes(self._job_real_rows(job), self.draws(), len(job.fits), len(job.simulations))

    def loo_mem_mb(self) -> int:
        """The LOO and comparison jobs' memory: the per-row LOO terms of the fits they read."""
        rows = [self.real_rows(paths.posterior_identity(p)["scenario"]) for p in self.real_posteriors()]
        return resources.loo_job_mem_mb(sum(rows))

    def plot_real_mem_mb(self) -> int:
        return resources.plot_real_mem_mb(max(map(self.real_rows, self.datasets), default=0), figures.PPC_DRAWS)

    # ---- the order in which ready jobs start (only the order changes, never a number) ----

    @cached_property
    def costliest_fit_job(self) -> float:
        return max((job.cost for job in self.jobs.values()), default=0)

    def fit_priority(self, job: FitJob) -> float:
        """The costliest job first, so that it does not run alone at the end. Then the
        real-data fit jobs, whatever their own cost (among themselves by cost): LOO waits
        for all of them, and all after it waits for LOO, so run last they would leave LOO
        alone on one core at the end. Then the others by cost (docs/performance.md)."""
        top = self.costliest_fit_job
        if job.cost == top:
            return job.cost
        if job.real_datasets:  # in (top - 1, top - 0.5]
            return top - 1 + job.cost / (2 * top)
        return job.cost * (top - 1) / top  # below top - 1, order kept

    # Snakemake's priorities order ready jobs only; they do not pass to a job's inputs. The
    # short jobs others wait on therefore rank above every fit job: first the data
    # (simulation and preparation, which every fit job needs), then LOO (which the
    # aggregation needs; with no real data it has nothing to do and must not delay a
    # simulation). Without this, radon's small fit jobs, ready first, kept both cores for a
    # minute while the costliest simulated job waited for its data, and LOO, ranked last,
    # waited for every fit job and then ran alone at the end.
    @property
    def loo_priority(self) -> float:
        return self.costliest_fit_job + 1

    @property
    def data_priority(self) -> float:
        return self.costliest_fit_job + 2

    # ---- where posteriors lie ----

    def job_directory(self, job: FitJob) -> str:
        return self.paths.fit_job.format(**job.wildcards)

    def job_outputs(self, name: str) -> list[str]:
        """One output of every fit job."""
        return [f"{self.job_directory(job)}/{name}" for job in self.jobs.values()]

    def posterior(self, spec: grid.ModelSpec, backend: str, key: grid.FitKey) -> str | None:
        """Where the posterior of one fit lies (None: no job of the plan does that fit)."""
        part = self._parts.get((spec, key))
        if part is None:
            return None
        directory = self.paths.fit_job.format(**job_wildcards(spec, backend, part))
        name = paths.posterior_name(key.scenario, key.outliers, key.seed, grid.target_accept_label(key.target_accept))
        return f"{directory}/posterior/{name}"

    def real_posteriors(self) -> list[str]:
        """Every real-data fit's posterior: by model, backend, then data set and
        target_accept (the `loo` job's order)."""
        return [
            self.posterior(spec, backend, key)
            for spec in self.specs
            for backend in self.backends
            for key in self.fit_keys[spec]
            if key.source == grid.REAL
        ]

    def real_fit_tables(self) -> list[str]:
        """The fits tables of the fit jobs with real data (which fits succeeded)."""
        return sorted(str(Path(paths.fit_job_directory(p), "fits.parquet")) for p in
                      dict.fromkeys(map(paths.fit_job_directory, self.real_posteriors())))

    @staticmethod
    def posterior_directories(posteriors) -> list[str]:
        """The fit jobs' posterior directories behind posterior paths (rule inputs)."""
        return sorted({paths.posterior_directory(p) for p in posteriors if p})

    # ---- which fits each figure shows ----

    def _showcase_key(self, scenario: str, target_accept: float | None = None) -> grid.FitKey:
        ta = self.showcase_target_accept if target_accept is None else target_accept
        return grid.FitKey(grid.SIMULATED, scenario, self.showcase_outliers, self.config["plots"]["showcase_seed"], ta)

    def tutorial_posteriors(self) -> dict[str, str | None]:
        """The tutorial figures' posteriors, model name -> path: each model of the
        simulated grid (first likelihood and prior set) on the showcase dataset of the
        tutorial scenario."""
        scenario = self.config["plots"]["tutorial_scenario"]
        key = self._showcase_key(scenario)
        out = {}
        for spec in grid.simulated_specs(self.config):
            if grid.family_fits(self.config, spec.likelihood, scenario=scenario):
                out.setdefault(spec.name, self.posterior(spec, self.backends[0], key))
        return out

    def funnel_panels(self) -> list[FunnelPanel]:
        """Per scenario: the showcase fits, at the lowest and highest target_accept, of the
        first simulated-data variant with hierarchical slopes (the first likelihood that
        fits the scenario's family, default priors), by parameterisation."""
        models, tas = self.config["models"], self.config["sampler"]["target_accept"]
        funnel = next((v for v in models["variants"] if VARIANTS[v].slopes == HIERARCHICAL), None)
        # The funnel is the pure forms' picture: a partially centered model has neither axis.
        specs = [s for s in grid.simulated_specs(self.config) if s.variant == funnel and s.prior == grid.DEFAULT_PRIOR
                 and s.parameterisation in PURE_PARAMETERISATIONS]
        panels = []
        for scenario in self.scenarios:
            fitting = [s for s in specs if grid.family_fits(self.config, s.likelihood, scenario=scenario)]
            first = next((s.likelihood for s in fitting), None)
            panels += [
                FunnelPanel(scenario, spec.parameterisation, ta,
                            self.posterior(spec, self.backends[0], self._showcase_key(scenario, ta)))
                for spec in fitting if spec.likelihood == first
                for ta in dict.fromkeys([min(tas), max(tas)])
            ]
        return panels

    def real_fits(self) -> list[RealFit]:
        """Per real data set: every model's fit at the highest target_accept (first backend)."""
        return [
            RealFit(dataset, spec.name, spec.likelihood, spec.prior,
                    self.posterior(spec, self.backends[0],
                                   grid.FitKey(grid.REAL, dataset, grid.OBSERVED, 0, self.showcase_target_accept)))
            for dataset in self.datasets
            for spec in grid.dataset_specs(self.config, dataset)
        ]

    def model_graph_specs(self) -> dict[str, grid.ModelSpec]:
        """One plate diagram per model name (its first likelihood and the default priors)."""
        out = {}
        for spec in self.specs:
            out.setdefault(spec.name, spec)
        return out

    def model_graphs(self) -> dict[str, list]:
        """The plate diagrams' params: model name -> [likelihood, prior set, its priors]."""
        return {name: [spec.likelihood, spec.prior, canonical(grid.priors(self.config, spec))]
                for name, spec in self.model_graph_specs().items()}

    def graph_dataset(self) -> str:
        """Any dataset gives the plate diagrams their shapes; take the first one."""
        return self.dataset_path(next(iter([*self.scenarios, *self.datasets])))

    def calibration_cells(self) -> list[str]:
        sbc = self.config["sbc"]
        return [
            grid.calibration_label(s.name, s.likelihood, s.prior, b, scenario, ta)
            for s in self.sbc_specs
            for b in self.backends
            # The designs this model is calibrated on (its prior set's, of its family's outcome).
            for scenario in dict.fromkeys(key.scenario for key in grid.sbc_keys(self.config, s))
            for ta in sbc["target_accept"]
        ]

    def real_figure_items(self) -> list[str]:
        return [f"{dataset}_{kind}" for dataset in self.datasets for kind in figures.REAL_KINDS]

    def map_figure_items(self) -> list[str]:
        if not self.config["study"]["parameterisation_map"]:
            return []
        return [f"{name}.{prior}" for prior in grid.prior_sets(self.config) for name in figures.MAP]

    def family_items(self) -> dict[str, list[str]]:
        """Each figure family's items (the files of its directory), in the report's order."""
        return {
            "funnel": list(dict.fromkeys(panel.scenario for panel in self.funnel_panels())),
            "posterior": list(self.tutorial_posteriors()),
            "models": list(self.model_graph_specs()),
            "calibration": self.calibration_cells(),
            "real": self.real_figure_items(),
            "map": self.map_figure_items(),
        }

    def report_figures(self, captions: Path) -> list[dict]:
        """Every figure of the HTML report, in order: id, section, title, path, caption file
        (under `captions`) and the wildcards its caption is rendered with."""
        out = [
            {"id": f.name, "section": f.section, "title": f.title, "path": self.paths.figure(f.name),
             "caption": str(captions / f.caption), "wildcards": {}}
            for f in figures.SUMMARY
        ]
        for name, items in self.family_items().items():
            family = figures.FAMILIES[name]
            out += [
                {"id": f"{name}_{item}", "section": family.section, "title": family.title.format(item=item),
                 "path": self.paths.directory(f"figures/{name}/{item}.png"), "caption": str(captions / family.caption),
                 "wildcards": {"item": item}}
                for item in items
            ]
        return out

    def aggregate_config(self) -> dict:
        """What the tables depend on: every key but the plots."""
        return canonical({key: value for key, value in self.config.items() if key != "plots"})

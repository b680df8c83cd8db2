"""The run's plan, read directly (poolbench.plan): fit jobs, their order, posterior paths and
what each figure shows (issue #27, item 5). `tests/test_workflow.py` checks that Snakemake
plans what this plans."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from conftest import DEFAULT, TINY, validated
from poolbench import figures, grid, paths
from poolbench.plan import Plan, as_records


@pytest.fixture(scope="module")
def default_plan() -> Plan:
    return Plan(validated(DEFAULT))


def split_default(seeds=8, simulations=95, fits_per_job=48) -> dict:
    """The default config with its fits split into parts of nearly equal cost."""
    config = copy.deepcopy(DEFAULT)
    config["seeds"], config["sbc"]["simulations"], config["sampler"]["fits_per_job"] = seeds, simulations, fits_per_job
    return validated(config)


def test_every_fit_of_every_model_is_in_exactly_one_job_within_the_job_size():
    for config in (validated(DEFAULT), split_default(), split_default(seeds=3, simulations=7, fits_per_job=5)):
        plan, per_job = Plan(config), config["sampler"]["fits_per_job"]
        for spec in plan.specs:
            jobs = [job for job in plan.jobs.values() if job.spec == spec]
            done = Counter(key for job in jobs for key in job.fits)
            assert done == Counter(grid.fit_keys(config, spec))
            simulations = Counter(key for job in jobs for key in job.simulations)
            assert simulations == Counter(grid.sbc_keys(config, spec) if spec in plan.sbc_specs else [])
            assert all(len(job.fits) <= per_job and len(job.simulations) <= per_job for job in jobs)
            # A job reads simulated data or one real data set, never both (its prior rule).
            assert all(len({key.scenario if key.source == grid.REAL else grid.SIMULATED for key in job.fits}) <= 1
                       for job in jobs)


def test_the_default_plan_has_fourteen_fit_jobs_reading_their_own_tables(default_plan):
    # 4 simulated-data models x 2 likelihoods, the hierarchical ones with the normal likelihood
    # again under the data rule (hard only), and radon's 4 intercept models with the normal
    # likelihood only (its `likelihoods`).
    assert len(default_plan.jobs) == 14
    data_scaled = [job for job in default_plan.jobs.values() if job.spec.prior == "data_scaled"]
    assert len(data_scaled) == 2 and all(job.tables == ["hard"] for job in data_scaled)
    radon = [job for job in default_plan.jobs.values() if job.real_datasets]
    assert len(radon) == 4 and all(job.tables == ["radon"] and not job.simulations for job in radon)
    assert {job.spec.likelihood for job in radon} == {"normal"}
    assert all(len(job.fits) == 3 for job in radon)  # one per target_accept
    tutorial = default_plan.job("hierarchical_noncentered", "student_t", "default", "nutpie", "simulated-p0")
    assert tutorial.tables == ["tutorial", "hard"] and len(tutorial.fits) == 2 * 2 * 2 * 3
    assert len(tutorial.simulations) == 50


@pytest.mark.parametrize("config", ["default", "split"])
def test_jobs_others_wait_on_first_then_the_costliest_fit_jobs_then_real_data_fits(config):
    """Issue #18: Snakemake's priorities do not pass to a job's inputs. Measured on the
    default run before this order: radon's small fit jobs (ready at once) held both cores
    for 65 s while the simulation the costliest job needed waited, and LOO, ranked below
    every fit job, waited for the last one and then ran alone at the end. Radon's fit jobs
    therefore run right after the costliest ones. Checked on the default config and on one
    whose fits are split into parts of nearly equal cost (a review found real-data jobs
    ranked below such a part)."""
    plan = Plan(validated(DEFAULT) if config == "default" else split_default())
    priority = {job.id: plan.fit_priority(job) for job in plan.jobs.values()}
    top = max(priority.values())
    assert plan.data_priority > plan.loo_priority > top
    # The costliest: the hierarchical Student-t models' simulated fits (both forms).
    first = [job for job in plan.jobs.values() if priority[job.id] == top]
    assert len(first) == 2, first
    assert all(job.spec.variant == "hierarchical" and job.spec.likelihood == "student_t" and not job.real_datasets
               for job in first)
    # Then radon's, which LOO waits for, ahead of every other simulated fit job.
    radon = {job.id: priority[job.id] for job in plan.jobs.values() if job.real_datasets}
    others = [p for job_id, p in priority.items() if job_id not in radon and p != top]
    assert len(radon) == 4 and min(radon.values()) > max(others)
    # Among themselves, by cost: the hierarchical radon fits before the pooled ones.
    assert (priority["varying_intercepts_noncentered", "normal", "default", "nutpie", "radon-p0"]
            > priority["pooled_intercept", "normal", "default", "nutpie", "radon-p0"])


def test_each_posterior_path_names_its_own_fit_and_an_unplanned_fit_has_none(default_plan):
    seen = set()
    for job in default_plan.jobs.values():
        for key in job.fits:
            path = default_plan.posterior(job.spec, job.backend, key)
            assert path.startswith(default_plan.job_directory(job) + "/posterior/")
            identity = paths.posterior_identity(path)
            assert identity == {"scenario": key.scenario, "outliers": key.outliers, "seed": key.seed,
                                "model": job.spec.name, "likelihood": job.spec.likelihood, "prior": job.spec.prior,
                                "backend": job.backend,
                                "target_accept_label": grid.target_accept_label(key.target_accept)}
            seen.add(path)
    assert len(seen) == sum(len(job.fits) for job in default_plan.jobs.values())
    # The data rule is fitted to the hard scenario only.
    spec = grid.ModelSpec("hierarchical", "centered", "normal", "data_scaled")
    assert default_plan.posterior(spec, "nutpie", grid.FitKey(grid.SIMULATED, "tutorial", "0at30", 0, 0.8)) is None
    assert default_plan.posterior(spec, "nutpie", grid.FitKey(grid.SIMULATED, "hard", "0at30", 0, 0.8))


def test_the_figures_show_the_showcase_fits_the_plan_does(default_plan):
    planned = {default_plan.posterior(job.spec, job.backend, key) for job in default_plan.jobs.values() for key in job.fits}
    # The funnel: per scenario both forms at the lowest and highest target_accept, on the
    # showcase dataset, first likelihood, default priors.
    panels = default_plan.funnel_panels()
    assert [(p.scenario, p.parameterisation, p.target_accept) for p in panels] == [
        (s, form, ta) for s in ("tutorial", "hard") for form in ("centered", "noncentered") for ta in (0.8, 0.99)
    ]
    for panel in panels:
        identity = paths.posterior_identity(panel.posterior)
        assert panel.posterior in planned and identity["outliers"] == "2at30" and identity["seed"] == 0
        assert (identity["likelihood"], identity["prior"]) == ("normal", "default")
    # Records, as the rules hand them to the scripts: plain values only.
    assert as_records(panels)[0] == {"scenario": "tutorial", "parameterisation": "centered", "target_accept": 0.8,
                                     "posterior": panels[0].posterior}
    tutorial = default_plan.tutorial_posteriors()
    assert list(tutorial) == ["pooled", "unpooled", "hierarchical_centered", "hierarchical_noncentered"]
    assert all(p in planned and paths.posterior_identity(p)["scenario"] == "tutorial" for p in tutorial.values())
    real = default_plan.real_fits()
    assert len(real) == 4 and len({fit.label for fit in real}) == 4  # radon: 4 models, normal only
    assert all(fit.posterior in planned and paths.posterior_identity(fit.posterior)["target_accept_label"] == "0.99"
               for fit in real)
    assert set(default_plan.real_posteriors()) == {p for p in planned if "/radon/" in p}


def test_the_report_lists_every_figure_once_in_a_declared_section(default_plan, tmp_path):
    shown = default_plan.report_figures(tmp_path)
    ids = [figure["id"] for figure in shown]
    assert len(ids) == len(set(ids))
    assert {figure["section"] for figure in shown} <= set(figures.REPORT_SECTIONS) | {figures.OVERVIEW}
    assert [f["id"] for f in shown[: len(figures.SUMMARY)]] == [f.name for f in figures.SUMMARY]
    by_family = Counter(figure["id"].split("_")[0] for figure in shown[len(figures.SUMMARY):])
    # Calibration: the 8 simulated-data models, and the 2 hierarchical normal ones under the data rule.
    assert by_family == {"funnel": 2, "posterior": 4, "models": 8, "calibration": 10, "real": 2}
    assert all(figure["caption"].startswith(str(tmp_path)) for figure in shown)
    # The map's figures only where the study asks for the map.
    mapped = copy.deepcopy(TINY)
    mapped["study"]["parameterisation_map"] = True
    items = Plan(validated(mapped)).map_figure_items()
    assert len(items) == len(figures.MAP) * len(grid.prior_sets(validated(mapped))) and not default_plan.map_figure_items()


def test_every_figure_is_in_a_section_the_report_shows_figures_in():
    """A figure declared in a section the page draws no figures in would vanish from it."""
    from poolbench.report import TEMPLATES

    page = (TEMPLATES / "report.html.j2").read_text()
    assert set(figures.FIGURE_SECTIONS) <= set(figures.REPORT_SECTIONS)
    for section in (*figures.FIGURE_SECTIONS, figures.OVERVIEW):
        assert f"for figure in sections.{section} %" in page, section
    declared = [*figures.SUMMARY, *figures.FAMILIES.values()]
    assert {f.section for f in declared} <= {*figures.FIGURE_SECTIONS, figures.OVERVIEW}
    # And the report's order of sections is the declared one.
    positions = [page.index(f'<h2 id="{section}">') for section in figures.REPORT_SECTIONS]
    assert positions == sorted(positions)

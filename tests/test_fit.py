"""The science: shrinkage on the tutorial's data, the funnel in the hard regime,
identical reruns, and failed fits recorded instead of crashing."""

from __future__ import annotations

import pandas as pd
import pytest
import xarray as xr

from conftest import DEFAULT
from poolbench.fit import TIMING_COLUMNS as TIMINGS
from poolbench.fit import FitTask, SamplerSettings, fit_batch
from poolbench.grid import ModelSpec
from poolbench.simulate import simulate, write_dataset

PRIORS = DEFAULT["models"]["priors"]
MASTER_SEED = DEFAULT["master_seed"]
TWO_OUTLIERS = {"count": 2, "value": 30.0}
# The hard-regime dataset (5 points per group, noise 1, 2 outliers) and sampler settings
# that show the funnel clearly (centered: 174 divergences at 0.8, 51 at 0.99; non-centered:
# 0 and 0); found by scanning seeds 0-11 at the default master seed.
FUNNEL_SEED = 1


def make_tasks(tmp_path, scenario: str, seeds: list[int], target_accepts=(0.8,), level=TWO_OUTLIERS) -> list[FitTask]:
    tasks = []
    for seed in seeds:
        data, truth = simulate(scenario, DEFAULT["scenarios"][scenario], level, seed, MASTER_SEED)
        stem = tmp_path / f"{scenario}_{seed}"
        write_dataset(data, f"{stem}.csv")
        truth.write(f"{stem}.json")
        for ta in target_accepts:
            posterior = tmp_path / "posterior" / f"{stem.name}_ta{ta}.nc"
            tasks.append(FitTask(f"{stem}.csv", f"{stem}.json", ta, str(posterior)))
    return tasks


def fit(name, tasks, draws=1000, prior=None, cache=None, backend="nutpie"):
    spec = ModelSpec.from_name(name)
    settings = SamplerSettings(backend, draws, 1000, 4, 1, 0.94)
    return fit_batch(spec, tasks, settings, prior or PRIORS[spec.variant], MASTER_SEED, cache)


@pytest.fixture(scope="module")
def tutorial_tasks(tmp_path_factory):
    """The tutorial's own dataset: seed 0 with two outliers at 30."""
    return make_tasks(tmp_path_factory.mktemp("tutorial"), "tutorial", [0])


@pytest.fixture(scope="module", params=["nutpie", "pymc", "numpyro"])
def tutorial_fits(request, tutorial_tasks):
    """The tutorial's facts must hold whichever NUTS implementation samples."""
    names = ["pooled", "unpooled", "hierarchical_centered", "hierarchical_noncentered"]
    return {name: fit(name, tutorial_tasks, backend=request.param) for name in names}


def test_tutorial_unpooled_minority_slope_is_pulled_to_the_outliers(tutorial_fits):
    fits, _ = tutorial_fits["unpooled"]
    assert fits.loc[0, "status"] == "ok"
    assert fits.loc[0, "minority_slope_mean"] == pytest.approx(15, abs=1.5)


@pytest.mark.parametrize("name", ["hierarchical_centered", "hierarchical_noncentered"])
def test_tutorial_hierarchical_model_shrinks_the_minority_slope(tutorial_fits, name):
    fits, groups = tutorial_fits[name]
    record = fits.loc[0]
    assert 7 < record["minority_slope_mean"] < 10
    assert 2.2 < record["mu_slope_mean"] < 3.8
    # Shrinkage: the minority estimate sits between the unpooled one and mu.
    unpooled = tutorial_fits["unpooled"][0].loc[0, "minority_slope_mean"]
    assert record["mu_slope_mean"] < record["minority_slope_mean"] < unpooled
    # The majority groups, rich in data, are recovered closely.
    majority = groups[~groups["is_minority"]]
    assert (majority["slope_error"].abs() < 0.5).all()


def test_tutorial_pooled_slope_is_about_three(tutorial_fits):
    fits, groups = tutorial_fits["pooled"]
    assert fits.loc[0, "minority_slope_mean"] == pytest.approx(3, abs=0.5)
    assert groups["slope_mean"].nunique() == 1  # one slope for every group


def test_fit_record_has_diagnostics_and_errors_against_truth(tutorial_fits):
    fits, groups = tutorial_fits["hierarchical_noncentered"]
    record = fits.loc[0]
    assert record["max_rhat"] < 1.05 and record["min_ess_bulk"] > 200
    assert 0 <= record["divergence_rate"] <= 1 and record["mean_tree_depth"] > 0
    assert record["step_size"] > 0 and record["ess_bulk_per_second"] > 0
    assert len(groups) == 8 and groups["hdi_covers_truth"].dtype == bool
    assert record["hdi_coverage"] == groups["hdi_covers_truth"].mean()
    assert record["slope_rmse"] == pytest.approx((groups["slope_error"] ** 2).mean() ** 0.5)
    assert (groups["slope_hdi_lower"] < groups["slope_mean"]).all()
    assert (groups["slope_mean"] < groups["slope_hdi_upper"]).all()


def test_posterior_is_written_as_netcdf_with_the_truth(tutorial_tasks, tutorial_fits):
    tree = xr.open_datatree(tutorial_tasks[0].posterior, engine="h5netcdf")
    assert {"posterior", "sample_stats", "observed_data", "constant_data"} <= set(tree.children)
    assert tree["posterior"]["slope"].dims == ("chain", "draw", "group")
    assert '"scenario": "tutorial"' in tree.attrs["truth"]


def test_funnel_centered_diverges_and_raising_target_accept_does_not_cure_it(tmp_path):
    tasks = make_tasks(tmp_path, "hard", [FUNNEL_SEED], target_accepts=(0.8, 0.99))
    divergences = {}
    for name in ("hierarchical_centered", "hierarchical_noncentered"):
        fits = fit(name, tasks)[0]
        divergences |= {(name, row.target_accept): row.n_divergent for row in fits.itertuples()}
    assert divergences["hierarchical_centered", 0.8] >= 50, divergences
    assert divergences["hierarchical_centered", 0.99] >= 10, divergences
    assert divergences["hierarchical_noncentered", 0.8] <= 3, divergences
    assert divergences["hierarchical_noncentered", 0.99] <= 3, divergences


def test_rerun_gives_identical_records(tmp_path):
    tasks = make_tasks(tmp_path, "hard", [0, 1])
    first, first_groups = fit("hierarchical_noncentered", tasks, draws=300)
    second, second_groups = fit("hierarchical_noncentered", tasks, draws=300)
    pd.testing.assert_frame_equal(first.drop(columns=TIMINGS), second.drop(columns=TIMINGS))
    pd.testing.assert_frame_equal(first_groups, second_groups)


def test_cache_reuses_finished_fits_and_samples_only_new_ones(tmp_path, caplog):
    caplog.set_level("INFO", logger="poolbench.fit")
    cache = tmp_path / "cache"
    tasks = make_tasks(tmp_path, "hard", [0], target_accepts=(0.8, 0.9))
    fresh, fresh_groups = fit("hierarchical_noncentered", tasks, draws=300, cache=cache)
    assert "2 fits, 0 from the cache" in caplog.text
    # A new target_accept: the two finished fits come from the cache, one is sampled.
    more = make_tasks(tmp_path, "hard", [0], target_accepts=(0.8, 0.9, 0.95))
    grown, grown_groups = fit("hierarchical_noncentered", more, draws=300, cache=cache)
    assert "3 fits, 2 from the cache" in caplog.text
    # Cached records come back exactly (timings: the job's compile time is shared out later).
    pd.testing.assert_frame_equal(grown.iloc[:2].drop(columns=TIMINGS), fresh.drop(columns=TIMINGS))
    pd.testing.assert_frame_equal(grown_groups.iloc[:16], fresh_groups)
    uncached, _ = fit("hierarchical_noncentered", more, draws=300)
    pd.testing.assert_frame_equal(grown.drop(columns=TIMINGS), uncached.drop(columns=TIMINGS))
    # Any setting that decides the numbers is part of the key.
    fit("hierarchical_noncentered", more, draws=200, cache=cache)
    assert "3 fits, 0 from the cache" in caplog.text


def test_a_fit_that_cannot_initialise_is_recorded_as_failed(tmp_path):
    tasks = make_tasks(tmp_path, "tutorial", [0])
    broken = PRIORS["hierarchical"] | {"noise_rate": 1e300}  # initial noise ~1e-300: logp = -inf
    fits, groups = fit("hierarchical_centered", tasks, draws=100, prior=broken, cache=tmp_path / "cache")
    assert fits.loc[0, "status"] == "failed"
    assert "Initial evaluation of model at starting point failed" in fits.loc[0, "error"]
    assert "noise" in fits.loc[0, "error"] and "\n" not in fits.loc[0, "error"]
    assert groups.empty
    assert not list((tmp_path / "cache").rglob("record.json"))  # failures are retried, not cached


def test_poolbench_nutpie_callbacks_give_the_same_draws_as_nutpies_own(tmp_path):
    """poolbench.nutpie_callbacks copies results in a loop to compile faster; the draws
    must be bit-identical to those of nutpie's own callbacks."""
    import nutpie

    from poolbench import nutpie_callbacks
    from poolbench.models import build_model
    from poolbench.simulate import read_dataset

    task = make_tasks(tmp_path, "hard", [FUNNEL_SEED])[0]
    spec = ModelSpec.from_name("hierarchical_noncentered")
    model = build_model(spec, PRIORS["hierarchical"], read_dataset(task.dataset), 8)
    posteriors = []
    for use_ours in (False, True):
        nutpie_callbacks.install() if use_ours else nutpie_callbacks.uninstall()
        compiled = nutpie.compile_pymc_model(model)
        tree = nutpie.sample(compiled, draws=200, tune=200, chains=2, seed=5, progress_bar=False)
        posteriors.append(tree["posterior"].to_dataset())
    assert nutpie_callbacks.install(), "the pinned nutpie is not the version the callbacks copy"
    xr.testing.assert_equal(*posteriors)  # values exactly equal (attrs hold timestamps)

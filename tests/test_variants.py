"""The variant registry: each variant declared once, built from its terms, runnable end to
end under its own name (underscores included), and recovering what it models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_RESULTS, fit, fit_keys, simulated_source, snakemake, tiny_config
from poolbench import grid, variants
from poolbench.data import model_arrays

# A scenario with group intercepts (the tutorial's have none), for the intercept variants.
WITH_INTERCEPTS = {
    "rng": "default", "n_groups": 6, "points_per_group": 40, "minority_points": 40, "noise": 0.3,
    "slope_mean": 1.0, "slope_sd": 0.5, "intercept_mean": 2.0, "intercept_sd": 1.0,
}


def test_model_names_parse_against_the_registry():
    assert grid.ModelSpec.from_name("varying_intercepts_noncentered") == grid.ModelSpec("varying_intercepts", "noncentered")
    assert grid.ModelSpec.from_name("unpooled_intercepts").variant == "unpooled_intercepts"
    assert grid.ModelSpec.from_name("hierarchical_centered", "student_t").likelihood == "student_t"
    with pytest.raises(ValueError, match="unknown model 'varying'"):
        grid.ModelSpec.from_name("varying")


@pytest.mark.parametrize("name", sorted(grid.MODEL_NAMES))
@pytest.mark.parametrize("likelihood", list(variants.LIKELIHOODS))
def test_every_variant_builds_from_its_terms_with_the_variables_the_registry_lists(name, likelihood):
    from poolbench.models import build_model

    spec = grid.ModelSpec.from_name(name, likelihood)
    variant = variants.VARIANTS[spec.variant]
    config = {"models": {"priors": {}, "likelihood_priors": {}, "prior_sets": {}}}
    data = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "y": [1.0, 2, 3, 4], "group": [0, 0, 1, 1], "trials": 5})
    arrays = model_arrays(data, likelihood)
    model = build_model(spec, grid.priors(config, spec), arrays, 2)
    names = set(model.named_vars)
    family = variants.LIKELIHOODS[likelihood]
    expected = set(variant.figure_vars) | set(variant.scored) | set(variant.calibrated(family))
    assert expected <= names, expected - names
    for coefficient in variant.scored:
        assert model.named_vars_to_dims[coefficient] == ("group",)
    assert (variants.standardised("slope") in names) == (spec.parameterisation == "noncentered" and variant.slopes == "hierarchical")
    assert (variants.NU in names) == (variants.NU in family.parameters)
    # A family without noise has no noise parameter (and no noise prior); its own data
    # columns enter as data.
    assert (variants.NOISE in names) == family.has_noise
    assert ("noise_rate" in grid.priors(config, spec)) == family.has_noise
    assert set(family.columns) <= names
    assert model[variants.OBSERVED].type.dtype.startswith("int") == family.discrete


def test_the_simulator_draws_intercepts_only_when_asked_and_leaves_the_tutorial_alone():
    from poolbench.simulate import simulate

    level = {"count": 0, "value": 30.0}
    data, truth = simulate("s", WITH_INTERCEPTS, level, 0, 1)
    assert np.std(truth.intercepts) > 0.3 and truth.intercept_sd == 1.0
    plain = WITH_INTERCEPTS | {"intercept_sd": 0.0}
    data_plain, truth_plain = simulate("s", plain, level, 0, 1)
    assert truth_plain.intercepts == [0.0] * 6
    # Intercepts are drawn after everything else: the slopes and x are the same draws.
    assert truth_plain.slopes == truth.slopes
    np.testing.assert_array_equal(data_plain["x"], data["x"])


@pytest.mark.slow
def test_varying_intercept_models_recover_simulated_intercepts(tmp_path):
    source = simulated_source(tmp_path, {"with_intercepts": WITH_INTERCEPTS}, [0], [{"count": 0, "value": 30.0}])
    keys = fit_keys("with_intercepts", [0], level={"count": 0, "value": 30.0})
    for name in ("varying_intercepts_noncentered", "unpooled_intercepts"):
        fits, groups = fit(name, keys, source, tmp_path, draws=500, tune=500, chains=2)
        assert fits.loc[0, "status"] == "ok", fits.loc[0, "error"]
        # 40 points per group, noise 0.3: every intercept within 0.25 of its true value.
        assert (groups["intercept_error"].abs() < 0.25).all(), groups[["true_intercept", "intercept_mean"]]
        assert fits.loc[0, "intercept_rmse"] < 0.15
        if name.startswith("varying"):
            assert fits.loc[0, "mu_intercept_mean"] == pytest.approx(np.mean(groups["true_intercept"]), abs=0.6)


@pytest.mark.slow
def test_a_variant_name_with_underscores_runs_end_to_end(tmp_path):
    """Issue #14: `varying_intercepts` once parsed as ('varying', 'intercepts') and every
    fit of it failed. Simulate, fit, aggregate, figures and report, under its own name."""
    config = tiny_config(seeds=[0], scenarios={"with_intercepts": WITH_INTERCEPTS},
                         outlier_levels=[{"count": 0, "value": 30.0}])
    config["models"] |= {"variants": ["varying_intercepts", "pooled_intercept"], "parameterisations": ["noncentered"]}
    config["sampler"] |= {"target_accept": [0.9], "draws": 300, "tune": 300}
    config["plots"] |= {"tutorial_scenario": "with_intercepts", "showcase_outliers": 0}
    snakemake(tmp_path, config)
    fits = pd.read_parquet(tmp_path / TINY_RESULTS / "tables/fits.parquet")
    assert set(fits["model"]) == {"varying_intercepts_noncentered", "pooled_intercept"}
    assert set(fits["variant"]) == {"varying_intercepts", "pooled_intercept"}
    assert (fits["status"] == "ok").all()
    html = (tmp_path / TINY_RESULTS / "report.html").read_text()
    assert "varying_intercepts_noncentered" in html
    assert (tmp_path / TINY_RESULTS / "figures/posterior/varying_intercepts_noncentered.png").stat().st_size > 1000


def _digests(config: dict) -> dict[str, str]:
    from poolbench.models import build_model, specification_digest

    arrays = model_arrays(pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "y": [1.0, 2, 3, 4], "group": [0, 0, 1, 1]}))
    out = {}
    for name in ("pooled", "unpooled", "hierarchical_noncentered", "varying_intercepts_centered"):
        spec = grid.ModelSpec.from_name(name)
        out[name] = specification_digest(build_model(spec, grid.priors(config, spec), arrays, 2))
    return out


def test_a_new_builder_in_models_py_changes_no_code_version_of_the_fit_cache(tmp_path, monkeypatch):
    """Adding a family or a term edits the builders (models.py): that must neither resample
    nor recompute the metrics of any other model's fits (grid, calibration, learned). The
    code the metrics evaluate on a built model (densities.py) and the learned form's run
    (learned.py, from the pilot in centering.py) do change their versions."""
    import shutil

    from poolbench import cache

    package = tmp_path / "poolbench"
    shutil.copytree(cache.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "PACKAGE", package)
    versions = (cache.sampling_code_version, cache.metrics_code_version, cache.learning_code_version)

    def current():
        for version in versions:
            version.cache_clear()
        return tuple(version() for version in versions)

    try:
        before = current()
        for module in ("models.py", "variants.py", "simulate.py", "priors.py"):
            with open(package / module, "a") as out:
                out.write("\n\ndef zero_inflated_poisson_likelihood(eta, noise, y, prior, n_obs, columns):\n    pass\n")
        assert current() == before
        changed = {}
        for module in ("densities.py", "learned.py", "centering.py", "samplers.py"):
            with open(package / module, "a") as out:
                out.write("\n# edited\n")
            after = current()
            changed[module] = {version.__name__ for version, old, new in zip(versions, before, after) if old != new}
            before = after
        assert changed == {"densities.py": {"metrics_code_version"}, "learned.py": {"learning_code_version"},
                           "centering.py": {"learning_code_version"}, "samplers.py": {"sampling_code_version"}}
    finally:  # the versions of the copy must not outlive the test, even a failed one
        for version in versions:
            version.cache_clear()


def test_a_registry_edit_changes_the_cache_key_of_that_variants_fits_only(monkeypatch):
    """Issue #26, item 4: the fit cache keys a fit by its own model (the built graph), not by
    the file that declares all of them; a title is no model fact."""
    import dataclasses

    from poolbench import cache

    config = {"models": {"priors": {}, "likelihood_priors": {}, "prior_sets": {}}}
    before = _digests(config)
    assert before == _digests(config) and len(set(before.values())) == len(before)  # stable, distinct
    # Neither the registry nor the builders of every term and family (models.py) key every
    # fit: adding a family resamples no fit of another; the built model is in the key.
    assert not {"variants.py", "models.py", "priors.py"} & set(cache.SAMPLING_MODULES)
    hierarchical = variants.VARIANTS["hierarchical"]
    monkeypatch.setitem(variants.VARIANTS, "hierarchical", dataclasses.replace(hierarchical, priors=hierarchical.priors | {"mu_sd": 2.0}))
    monkeypatch.setitem(variants.VARIANTS, "pooled", dataclasses.replace(variants.VARIANTS["pooled"], title="renamed"))
    after = _digests(config)
    assert {name for name in before if before[name] != after[name]} == {"hierarchical_noncentered"}
    # A fact that never reaches the prior dict, here the name of the non-centered offsets
    # (what a stored posterior holds), still changes that model's key and only its.
    from poolbench import models

    monkeypatch.setattr(models, "standardised", lambda coefficient: f"offset_{coefficient}")
    renamed = _digests(config)
    assert {name for name in after if renamed[name] != after[name]} == {"hierarchical_noncentered"}
    monkeypatch.undo()
    after = _digests(config)
    # A setting of the config changes only its model's digest too (the prior's numbers are in the graph).
    edited = {"models": {"priors": {"unpooled": {"slope_sd": 5.0, "noise_rate": 10.0}}, "likelihood_priors": {}, "prior_sets": {}}}
    assert {name for name, d in _digests(edited).items() if d != after[name]} == {"unpooled"}


@pytest.mark.slow
def test_after_a_registry_edit_only_that_variants_fits_are_sampled_again(tmp_path, monkeypatch, caplog):
    import dataclasses

    from conftest import DEFAULT

    source = simulated_source(tmp_path / "data", {"hard": DEFAULT["scenarios"]["hard"]}, [0])
    keys = fit_keys("hard", [0])
    cache = tmp_path / "cache"

    def run(name, directory):
        """Whether the fit came from the cache; its priors the registry's defaults."""
        caplog.clear()
        caplog.set_level("INFO", logger="poolbench")
        prior = grid.priors({"models": {"priors": {}, "likelihood_priors": {}, "prior_sets": {}}}, grid.ModelSpec.from_name(name))
        fit(name, keys, source, tmp_path / directory, draws=100, tune=100, cache=cache, prior=prior)
        return "1 fits, 1 from the cache" in caplog.text

    assert not run("pooled", "first") and not run("hierarchical_noncentered", "first")
    hierarchical = variants.VARIANTS["hierarchical"]
    monkeypatch.setitem(variants.VARIANTS, "hierarchical", dataclasses.replace(hierarchical, priors=hierarchical.priors | {"mu_sd": 2.0}))
    assert run("pooled", "again")  # served from the cache
    assert not run("hierarchical_noncentered", "again")  # its model changed: sampled again

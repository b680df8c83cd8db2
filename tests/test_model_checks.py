"""The model checks (issue #25): priors that follow the data's scale, power-scaling prior
sensitivity, the prior predictive check, and the calibration's log-likelihood test quantity."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import DEFAULT, fit, fit_keys, simulated_source

from poolbench import grid, metrics, priors
from poolbench.variants import DATA_RULE, FIXED_RULE, VARIANTS

NO_OUTLIERS = {"count": 0, "value": 30.0}
TWO_OUTLIERS = {"count": 2, "value": 30.0}


def config_with(**datasets) -> dict:
    return {"models": {"priors": DEFAULT["models"]["priors"], "likelihood_priors": {}, "prior_sets": {
        "data_scaled": {"rule": "data", "variants": ["hierarchical"], "scenarios": ["hard"]}}},
        "scenarios": DEFAULT["scenarios"], "datasets": datasets}


def test_real_data_follow_the_data_rule_and_simulated_data_keep_the_tutorials_numbers():
    config = config_with(ms={"priors": {}}, fixed={"priors": {"rule": "fixed", "pooled_intercept": {"slope_sd": 3.0}}})
    spec = grid.ModelSpec("pooled_intercept")
    assert grid.priors(config, spec, "ms") == {"rule": DATA_RULE, "intercept_sd": 2.5, "noise_rate": 1.0, "slope_sd": 2.5}
    assert grid.priors(config, spec, "fixed") == {"rule": FIXED_RULE, "intercept_sd": 10.0, "noise_rate": 1.0, "slope_sd": 3.0}
    tutorial = grid.priors(config, grid.ModelSpec("hierarchical", "noncentered"))
    assert tutorial == {"rule": FIXED_RULE, "mu_sd": 1.0, "noise_rate": 10.0, "sigma_dist": "exponential",
                        "sigma_rate": 13.0, "sigma_sd": 1.0}


def test_a_prior_set_is_fitted_only_where_it_says():
    config = DEFAULT | {"models": DEFAULT["models"]}
    specs = grid.simulated_specs(config)
    scaled = [s for s in specs if s.prior == "data_scaled"]
    assert {s.variant for s in scaled} == {"hierarchical"} and {s.likelihood for s in scaled} == {"normal"}
    assert len(scaled) == 2  # centered and non-centered
    assert {k.scenario for s in scaled for k in grid.fit_keys(config, s)} == {"hard"}
    # Without its `likelihoods`, under every likelihood fitted.
    config = copy.deepcopy(config)
    del config["models"]["prior_sets"]["data_scaled"]["likelihoods"]
    assert {s.likelihood for s in grid.simulated_specs(config) if s.prior == "data_scaled"} == {"normal", "student_t"}
    assert all(s.prior == "default" for d in config["datasets"] for s in grid.dataset_specs(config, d))


def test_the_data_rules_scales_are_refused_for_data_without_spread_or_too_large():
    x, y = np.arange(5.0), np.arange(5.0) * 2
    assert priors.data_scales(x, y, True)[priors.Y_CENTER] == pytest.approx(4.0)
    assert priors.Y_CENTER not in priors.data_scales(x, y, False)  # no intercept: no centre
    with pytest.raises(priors.ScaleError, match="the same value everywhere"):
        priors.data_scales(x, np.full(5, 3.0), True)
    with pytest.raises(priors.ScaleError, match="overflows"):
        priors.data_scales(x, y * 1e160, True)


def test_the_diagnosis_grades_a_spread_of_few_groups_and_separates_conflict_from_domination():
    fits = pd.DataFrame({
        "status": ["ok"] * 4, "n_groups": [8] * 4,
        "sigma_slope_prior_sensitivity": [0.40, 0.12, 0.01, np.nan],
        "sigma_slope_likelihood_sensitivity": [0.20, 0.20, 0.20, np.nan],
        "noise_prior_sensitivity": [0.15, 0.01, 0.09, 0.01], "noise_likelihood_sensitivity": [0.11, 0.2, 0.01, 0.2],
        "prior_predictive_outside": [0, 0, 0, 3], "prior_predictive_checked": [16, 16, 16, 16],
    })
    judged = metrics.model_verdict(fits)
    assert judged["sigma_slope_diagnosis"].tolist() == [metrics.CONFLICT, metrics.WEAKLY_IDENTIFIED, "", ""]
    assert judged["noise_diagnosis"].tolist() == [metrics.CONFLICT, "", metrics.PRIOR_DOMINATED, ""]
    # Weak identification is a note, not a failed check; the prior predictive check counts.
    assert judged["model_ok"].tolist() == [False, True, False, False]
    assert "sigma_slope: weakly identified by 8 groups (prior 0.12)" in judged["model_flags"][1]
    assert judged["model_flags"][3] == "prior predictive: 3 of 16 group statistics outside its central 99%"


def test_the_prior_predictive_check_flags_an_observed_group_outside_its_central_99_percent():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 20)
    replicated = [rng.normal(0, 1, 40) for _ in range(1000)]
    y = rng.normal(0, 1, 40)
    y[20:] += 30  # the second group's mean far beyond anything the prior predicts
    rows = metrics.prior_predictive_check(y, groups, 2, replicated)
    assert [row["prior_outside"] for row in rows] == [False, True]
    assert rows[1]["prior_mean_upper"] < rows[1]["observed_mean"]


@pytest.fixture(scope="module")
def hard_fits(tmp_path_factory):
    """The default study's hard regime, non-centered with the normal likelihood: four seeds
    (the default study's three and one more) at both outlier levels and every
    target_accept (24 fits, the pipeline's own seeds), with the tutorial's priors and with
    the data rule."""
    directory = tmp_path_factory.mktemp("hard")
    seeds, levels = [0, 1, 2, 3], [NO_OUTLIERS, TWO_OUTLIERS]
    source = simulated_source(directory, {"hard": grid.scenarios(DEFAULT)["hard"]}, seeds, levels)
    keys = [key for level in levels for key in fit_keys("hard", seeds, tuple(DEFAULT["sampler"]["target_accept"]), level=level)]
    data_rule = {"rule": DATA_RULE, **VARIANTS["hierarchical"].data_priors}
    tutorial = fit("hierarchical_noncentered", keys, source, directory / "tutorial")[0]
    scaled = fit("hierarchical_noncentered", keys, source, directory / "scaled", prior=data_rule)[0]
    return metrics.model_verdict(tutorial), metrics.model_verdict(scaled)


@pytest.mark.slow
def test_the_tutorials_priors_in_the_hard_regime_are_flagged_and_the_data_rule_clears_mu_and_noise(hard_fits):
    tutorial, scaled = hard_fits
    assert len(tutorial) == len(scaled) == 24
    follows = (metrics.CONFLICT, metrics.PRIOR_DOMINATED)
    # Sensitivities are Monte Carlo estimates: judged over the regime's fits. mu_slope's
    # N(0, 1) against a true mean of 2 is the mildest (measured: flagged in 21 of 24; seed
    # 0 without outliers gives 0.037-0.043, under the 0.05 threshold, and 0.036-0.043 with
    # 4 x 40,000 draws: the data set's value, not Monte Carlo error).
    for name in ("sigma_slope", "noise", "mu_slope"):
        assert tutorial[f"{name}_diagnosis"].isin(follows).mean() > 0.75, (name, tutorial[f"{name}_prior_sensitivity"].tolist())
    assert not tutorial["model_ok"].any()
    for name in ("mu_slope", "noise"):
        assert (scaled[f"{name}_diagnosis"] == "").all(), scaled[f"{name}_prior_sensitivity"].tolist()
    assert scaled["mu_slope_prior_sensitivity"].median() <= tutorial["mu_slope_prior_sensitivity"].median() / 2
    assert scaled["sigma_slope_prior_sensitivity"].median() <= tutorial["sigma_slope_prior_sensitivity"].median() / 2
    # And the spread is no longer held at the prior's mean of 0.077 (the truth is 1).
    assert scaled["sigma_slope_mean"].median() > 3 * tutorial["sigma_slope_mean"].median()


def _grouped_csv(path, y_factor=1.0, x_factor=1.0):
    """A data set at a scale of hundreds (a response in milliseconds around 250, residual
    sd 25): six well-identified groups of 40 rows."""
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(6), 40)
    x = rng.uniform(0, 9, len(groups))
    y = 250 + rng.normal(0, 30, 6)[groups] + (10.5 + rng.normal(0, 2, 6)[groups]) * x + rng.normal(0, 25, len(groups))
    pd.DataFrame({"days": x * x_factor, "ms": y * y_factor, "subject": groups}).to_csv(path, index=False)
    return path


def _real_fits(directory, y_factor, x_factor):
    """The three intercept models fitted to `_grouped_csv` in these units. The data set has
    the same name in every directory, hence the same seeds: the sampler then sees the same
    standardised data and draws alike, so estimates and LOO differ between units by the
    units and floating-point rounding only, not by Monte Carlo error."""
    from poolbench import data
    from poolbench.fit import DataSource

    directory.mkdir()
    name = "reaction"
    table = directory / f"{name}.parquet"
    data.write_datasets([data.read_user_csv(_grouped_csv(directory / f"{name}.csv", y_factor, x_factor),
                                            "days", "ms", "subject", name=name)], table)
    source = DataSource({name: data.DatasetTable(table)}, {})
    config = config_with(**{name: {"priors": {}}})
    keys = [grid.FitKey(grid.REAL, name, grid.OBSERVED, 0, 0.9)]
    out = {}
    for model in ("pooled_intercept", "unpooled_intercepts", "varying_intercepts_noncentered"):
        spec = grid.ModelSpec.from_name(model)
        out[model] = fit(model, keys, source, directory, prior=grid.priors(config, spec, name), draws=500, tune=500)
    return out, pd.read_csv(directory / f"{name}.csv")


def _least_squares(frame: pd.DataFrame) -> dict:
    pooled = np.polyfit(frame["days"], frame["ms"], 1)
    by_group = frame.groupby("subject").apply(lambda g: pd.Series(np.polyfit(g["days"], g["ms"], 1), index=["slope", "intercept"]))
    return {"slope": pooled[0], "intercept": pooled[1], "groups": by_group}


@pytest.mark.slow
def test_priors_that_follow_the_data_give_least_squares_in_any_units(tmp_path):
    from poolbench import paths
    import arviz as az

    fits, frame = _real_fits(tmp_path / "ms", 1.0, 1.0)
    scaled, _ = _real_fits(tmp_path / "seconds", 1000.0, 0.01)  # y x 1000, x x 0.01
    ls = _least_squares(frame)
    # Within a quarter of a posterior sd of least squares: the MCSE of a posterior mean is
    # sd/sqrt(ESS), 0.03-0.06 sd at these fits' ESS (300-1000), so this is four to eight
    # MCSEs (measured: at most 0.09 sd); the fixed unit-scale priors miss by 6-24 sds.
    def near(estimate, least_squares, sd):
        return abs(estimate - least_squares) <= 0.25 * sd

    pooled = fits["pooled_intercept"][1].iloc[0]
    assert near(pooled["slope_mean"], ls["slope"], pooled["slope_sd"])
    assert near(pooled["intercept_mean"], ls["intercept"], pooled["intercept_sd"])
    unpooled = fits["unpooled_intercepts"][1].set_index("group")
    for g, row in ls["groups"].iterrows():
        assert near(unpooled.loc[g, "slope_mean"], row["slope"], unpooled.loc[g, "slope_sd"])
        assert near(unpooled.loc[g, "intercept_mean"], row["intercept"], unpooled.loc[g, "intercept_sd"])
    loo = {}
    for label, runs in (("ms", fits), ("seconds", scaled)):
        for model, (records, groups) in runs.items():
            posterior = next((tmp_path / label / f"{model}.normal").rglob("*.nc"))
            loo[label, model] = metrics.loo_from_table(pd.read_parquet(paths.loo_path(str(posterior))))
    for model in fits:
        a, b = fits[model], scaled[model]
        # Same verdict, estimates scaled by the units (slope: y x 1000 / x x 0.01 = 1e5),
        # within a tenth of a posterior sd (the same seeds on the same standardised data).
        assert a[0]["status"].tolist() == b[0]["status"].tolist() == ["ok"]
        assert a[0]["n_divergent"].iloc[0] == b[0]["n_divergent"].iloc[0]
        if model != "varying_intercepts_noncentered":  # data-rich groups: its funnel may show
            assert a[0]["n_divergent"].iloc[0] == 0
        for column, factor in (("slope_mean", 1e5), ("intercept_mean", 1e3)):
            mcse = 0.1 * a[1][column.replace("mean", "sd")].to_numpy()
            assert np.allclose(b[1][column].to_numpy() / factor, a[1][column].to_numpy(), atol=mcse + 1e-9)
    rank = {label: list(az.compare({m: loo[label, m] for m in fits}, round_to="none").index) for label in ("ms", "seconds")}
    assert rank["ms"] == rank["seconds"]
    # The verdicts agree too: the sampler's and the model check's (model_ok, the same
    # failing diagnoses per variable and the same prior predictive misses) in both units.
    for model in fits:
        # NUTS sees no units (the standardised data on a grid): its draws in the data's
        # scale are the same bit for bit, so are its diagnostics and sampler verdict, even
        # of a fit near the thresholds (the varying intercepts here, before: R-hat 1.012 and
        # bulk ESS 375 in one unit, 1.005 and 607 in the other, the units alone moving it).
        draws = {label: xr.open_datatree(next((tmp_path / label / f"{model}.normal").rglob("*.nc")))["posterior"]
                 for label in ("ms", "seconds")}
        sampled = [name for name in draws["ms"].data_vars if name.endswith("_std") or name.startswith("z_")]
        assert sampled
        for name in sampled:
            assert draws["ms"][name].values.tobytes() == draws["seconds"][name].values.tobytes(), (model, name)
        # Their diagnostics are read in the data's units, whose last bits differ: ranks, and
        # so bulk ESS, do not move; R-hat's folded half does, by 1e-5 (the two middle draws
        # lie equally far from their median, tied or not as the last bit falls).
        np.testing.assert_allclose(fits[model][0]["min_ess_bulk"], scaled[model][0]["min_ess_bulk"], rtol=1e-9)
        np.testing.assert_allclose(fits[model][0]["max_rhat"], scaled[model][0]["max_rhat"], rtol=1e-4)
        a, b = metrics.trust_verdict(fits[model][0], DEFAULT["trust"]), metrics.trust_verdict(scaled[model][0], DEFAULT["trust"])
        assert a["trusted"].tolist() == b["trusted"].tolist()
        if model != "varying_intercepts_noncentered":  # the data-rich groups' non-centered form is not always
            assert a["trusted"].tolist() == [True]
        a, b = metrics.model_verdict(fits[model][0]), metrics.model_verdict(scaled[model][0])
        assert a["model_ok"].tolist() == b["model_ok"].tolist()
        # Every diagnosis, the notes too (sigma_intercept's sits near the threshold: 0.05-0.08
        # over seeds), from the same sensitivities.
        for name in metrics.CHECKED_VARIABLES:
            assert a[f"{name}_diagnosis"].tolist() == b[f"{name}_diagnosis"].tolist(), name
            for component in ("prior", "likelihood"):
                column = f"{name}_{component}_sensitivity"
                if column in a:
                    np.testing.assert_allclose(a[column], b[column], rtol=1e-6, err_msg=column)
        assert a["prior_predictive_outside"].tolist() == b["prior_predictive_outside"].tolist()

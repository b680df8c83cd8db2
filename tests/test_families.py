"""Binary and count outcomes (issue #26): binomial, Poisson and negative-binomial families,
declared once in the registry, simulated through their links, recovered, calibrated, and
their bad input refused naming the data set, the column and the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import DEFAULT, REPO, tiny_config, validated
from poolbench import grid, simulate, variants
from poolbench.data import DataError, model_arrays, read_user_csv

COUNTS = {"rng": "default", "n_groups": 8, "points_per_group": 40, "minority_points": 40, "noise": 1.0,
          "slope_mean": 0.5, "slope_sd": 0.5, "family": "poisson", "intercept_mean": 1.0, "intercept_sd": 0.0}
# Twenty trials per observation: enough information per group to recover its slope.
LOGISTIC = COUNTS | {"family": "binomial", "trials": 20, "slope_mean": 1.0}
NO_OUTLIERS = {"count": 0, "value": 0.0}


def test_every_family_has_a_builder_and_every_simulated_family_a_simulator():
    from poolbench.models import LIKELIHOOD_BUILDERS

    schema = yaml.safe_load(open(REPO / "workflow/schemas/config.schema.yaml"))
    assert set(LIKELIHOOD_BUILDERS) == set(variants.LIKELIHOODS)
    assert schema["definitions"]["simulated_family"]["enum"] == list(simulate.SIMULATORS)
    assert set(simulate.SIMULATORS) <= set(variants.LIKELIHOODS)
    # Each outcome's default family is one of its own, and the robust ones are compared with it.
    for outcome, name in variants.DEFAULT_FAMILIES.items():
        assert variants.LIKELIHOODS[name].outcome == outcome and not variants.LIKELIHOODS[name].robust


@pytest.mark.parametrize("family", ["binomial", "poisson", "negative_binomial"])
def test_simulated_discrete_data_take_their_familys_values_and_share_x_with_the_normal(family):
    scenario = (LOGISTIC if family == "binomial" else COUNTS) | {"family": family}
    data, truth = simulate.simulate("s", scenario, NO_OUTLIERS, 3, 1)
    normal, _ = simulate.simulate("s", scenario | {"family": "normal"}, NO_OUTLIERS, 3, 1)
    y = data["y"].to_numpy()
    assert (y == np.round(y)).all() and (y >= 0).all() and y.std() > 0
    np.testing.assert_array_equal(data["x"], normal["x"])  # the same design whatever the family
    assert truth.family == family and truth.noise == 0.0  # no noise sd in these families
    if family == "binomial":
        assert (y <= 20).all() and (data["trials"] == 20).all() and truth.trials == 20
    else:
        assert (data["trials"] == 1).all()
    arrays = model_arrays(data, family)
    assert arrays["y"].dtype == np.int64 and (("trials" in arrays) == (family == "binomial"))


def test_the_predictive_check_of_discrete_data_draws_bars_of_each_values_share_not_a_density():
    from matplotlib.collections import LineCollection

    from poolbench import plots  # draws with Agg

    assert {name for name, family in variants.LIKELIHOODS.items() if family.discrete} == {
        "binomial", "poisson", "negative_binomial"}
    rng = np.random.default_rng(0)
    observed = rng.poisson(2.0, 400)
    replicated = {"model": [rng.poisson(2.0, 400) for _ in range(50)]}
    ax = plots.ppc_figure(observed, replicated, "counts", discrete=True).axes[0]
    support = np.arange(0, int(np.ceil(np.percentile(observed, 99))) + 1)
    # One bar per value up to the 99th percentile, as high as the share of rows with it.
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, [(observed == v).mean() for v in support])
    assert [round(bar.get_x() + bar.get_width() / 2) for bar in ax.patches] == support.tolist()
    # The replicated shares as points (their median) with 90 % intervals, no density curve.
    (points,) = ax.get_lines()
    median = np.median([[(draw == v).mean() for v in support] for draw in replicated["model"]], axis=0)
    np.testing.assert_allclose(points.get_ydata(), median)
    assert points.get_linestyle() == "None" and any(isinstance(c, LineCollection) for c in ax.collections)
    # A normal outcome keeps its densities: one thin line per replicate and the observed.
    ax = plots.ppc_figure(observed.astype(float), replicated, "y", discrete=False).axes[0]
    assert not ax.patches and sum(len(line.get_xdata()) == 200 for line in ax.get_lines()) == 51


def test_overdispersed_counts_are_more_variable_than_poisson_ones():
    big = COUNTS | {"points_per_group": 500, "minority_points": 500, "slope_sd": 0.01, "slope_mean": 0.0}
    poisson, _ = simulate.simulate("s", big, NO_OUTLIERS, 0, 1)
    negbin, truth = simulate.simulate("s", big | {"family": "negative_binomial", "overdispersion": 0.5}, NO_OUTLIERS, 0, 1)
    mean = 1.0  # exp(slope * x) with slopes of ~0 (no intercepts drawn: intercept_sd 0)
    assert poisson["y"].var() == pytest.approx(mean, rel=0.1)
    # Var = mu + (overdispersion mu)^2, the model's parameterisation.
    assert negbin["y"].var() == pytest.approx(mean + (0.5 * mean) ** 2, rel=0.15)
    assert truth.overdispersion == 0.5


def test_a_scenario_is_fitted_only_by_the_families_of_its_outcome():
    config = tiny_config(scenarios={"counts": COUNTS, "plain": DEFAULT["scenarios"]["hard"]},
                         outlier_levels=[NO_OUTLIERS])
    config["models"] |= {"likelihoods": ["normal", "poisson", "negative_binomial"], "variants": ["hierarchical"]}
    config["plots"] |= {"showcase_outliers": 0, "tutorial_scenario": "plain"}
    config = validated(config)
    for spec in grid.model_specs(config):
        scenarios = {key.scenario for key in grid.fit_keys(config, spec)}
        assert scenarios == ({"plain"} if spec.likelihood == "normal" else {"counts"}), spec
    # Binomial and count models have no noise, hence no noise prior in their cache keys.
    spec = grid.ModelSpec("hierarchical", "noncentered", "poisson")
    assert "noise_rate" not in grid.priors(config, spec)
    assert grid.priors(config, grid.ModelSpec("hierarchical", "noncentered", "negative_binomial"))["overdispersion_sd"] == 1.0


def test_the_data_rule_scales_a_link_familys_slopes_by_x_alone():
    from poolbench import priors

    x, y = np.array([0.0, 1, 2, 3]), np.array([0, 1, 1, 2])
    scales = priors.data_scales(x, y, True, "poisson")
    assert scales[priors.Y_SCALE] == 1.0 and scales[priors.Y_CENTER] == pytest.approx(np.log(1.0))
    binomial = priors.data_scales(x, y, True, "binomial", np.full(4, 4))
    assert binomial[priors.Y_CENTER] == pytest.approx(np.log(0.25 / 0.75))
    with pytest.raises(priors.ScaleError, match="every trial a success"):
        priors.data_scales(x, np.array([4, 4, 3, 4]), True, "binomial", np.array([4, 4, 3, 4]))


def test_an_undrawable_prior_predictive_replicate_is_beyond_every_observation():
    """A count prior whose tail holds rates numpy cannot draw: the check goes on, that
    replicate counts as larger than anything observed, and the draws stay reproducible."""
    from poolbench import metrics
    from poolbench.densities import PriorSimulator
    from poolbench.models import build_model

    spec = grid.ModelSpec("unpooled", likelihood="poisson")
    data, _ = simulate.simulate("s", COUNTS, NO_OUTLIERS, 0, 1)
    arrays = model_arrays(data, "poisson")
    model = build_model(spec, {"rule": "fixed", "slope_sd": 10.0}, arrays, 8)
    simulator = PriorSimulator(model, [])
    draws = list(simulator.replicates(arrays, 5, 40))
    assert any(d is None for d in draws) and any(d is not None for d in draws)
    again = list(simulator.replicates(arrays, 5, 40))
    assert [d is None for d in draws] == [d is None for d in again]
    np.testing.assert_array_equal(np.array([d for d in draws if d is not None]), np.array([d for d in again if d is not None]))
    rows = metrics.prior_predictive_check(arrays["y"], arrays["group_idx"], 8, draws)
    assert all(np.isfinite(row["prior_mean_upper"]) and row["prior_mean_upper"] > 1e300 for row in rows)


# ---- bad input: a user's binomial or count CSV ----

def csv(tmp_path, rows: dict) -> str:
    path = tmp_path / "data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


GOOD = {"site": ["a"] * 4 + ["b"] * 4, "dose": [0, 1, 2, 3] * 2, "cases": [0, 1, 2, 3, 1, 1, 2, 4],
        "n": [5, 5, 5, 5, 6, 6, 6, 6]}


def read(tmp_path, edit: dict, **options):
    return read_user_csv(csv(tmp_path, GOOD | edit), "dose", "cases", "site", name="trial", **options)


@pytest.mark.parametrize("edit, options, fragments", [
    ({"cases": [0, 1.5, 2, 3, 1, 1, 2, 4]}, {"family": "binomial", "trials": "n"},
     ["data set 'trial'", "column 'cases' (y): non-integer values at line 3"]),
    ({"cases": [0, 1, -2, 3, 1, 1, 2, 4]}, {"family": "binomial", "trials": "n"},
     ["column 'cases' (y): negative values at line 4"]),
    ({"cases": [0, 1, 2, 3, 1, 1, 2, 7]}, {"family": "binomial", "trials": "n"},
     ["column 'cases' (y): more successes than trials (column 'n') at line 9"]),
    ({"n": [5, 0, 5, 5, 6, 6, 6, 6]}, {"family": "binomial", "trials": "n"},
     ["column 'n' (trials): values that are not whole numbers >= 1 at line 3"]),
    ({}, {"family": "binomial"}, ["column 'cases' (y): values above 1 at line 4", "name the column of trials"]),
    ({"cases": ["no", "yes", "no", "yes", "no", "no", "yes", "yes"]}, {"family": "binomial"},
     ["column 'cases' (y): non-numeric values at line 2", "two labels ['no', 'yes']: set the data set's `success`"]),
    ({"cases": ["Y", "N", "Y", "?", "N", "N", "Y", "Y"]}, {"family": "binomial", "success": "Y"},
     ["column 'cases' (y): more than two labels", "at line 5"]),
    ({"cases": [0, 1, 2.5, 3, 1, 1, 2, 4]}, {"family": "poisson"}, ["column 'cases' (y): non-integer values at line 4"]),
    ({"cases": [0, 1, 2, -3, 1, 1, 2, 4]}, {"family": "negative_binomial"}, ["negative values at line 5"]),
    ({"cases": [0] * 8}, {"family": "binomial", "trials": "n"}, ["no successes at every row"]),
    ({}, {"family": "normal", "trials": "n"}, ["a trials column ('n') is read for the binomial family only"]),
    # A missing answer is no failure; a label column with a trials column is refused.
    ({"cases": ["yes", "", "yes", "no", "no", "no", "yes", "yes"]}, {"family": "binomial", "success": "yes"},
     ["column 'cases' (y): empty or NaN values at line 3"]),
    ({"cases": ["yes", "no"] * 4}, {"family": "binomial", "success": "yes", "trials": "n"}, ["give one or the other"]),
    # Counts a 64-bit integer (and a float's whole numbers) cannot hold.
    ({"cases": [0, 1, 2, 1e20, 1, 1, 2, 4]}, {"family": "poisson"}, ["column 'cases' (y): counts beyond 9.0072e+15 at line 5"]),
])
def test_a_bad_binomial_or_count_csv_is_refused_naming_the_column_and_rows(tmp_path, edit, options, fragments):
    with pytest.raises(DataError) as error:
        read(tmp_path, edit, **options)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


def test_good_binomial_and_count_csvs_are_read_with_their_trials_and_labels(tmp_path):
    data = read(tmp_path, {}, family="binomial", trials="n")
    assert data["trials"].tolist() == GOOD["n"] and data["y"].tolist() == GOOD["cases"]
    labels = read(tmp_path, {"cases": ["N", "Y", "N", "Y", "Y", "N", "Y", "Y"]}, family="binomial", success="Y")
    assert labels["y"].tolist() == [0, 1, 0, 1, 1, 0, 1, 1] and (labels["trials"] == 1).all()
    # A group with no case at all is data for a family without noise, not a group to refuse.
    counts = read(tmp_path, {"cases": [0, 0, 0, 0, 1, 1, 2, 4]}, family="poisson")
    assert counts.groupby("group")["y"].sum().tolist() == [0, 8]
    # Binomial: the same number of successes in every row is data where the trials differ.
    same = read(tmp_path, {"cases": [1] * 8}, family="binomial", trials="n")
    assert same["y"].tolist() == [1] * 8
    with pytest.raises(DataError, match="the same value at every row"):
        read(tmp_path, {"cases": [0, 0, 0, 0, 1, 1, 2, 4]})  # the normal family: no spread of its own


@pytest.mark.parametrize("name, family, trials", [("cbpp", "binomial", "size"), ("epil", "poisson", None)])
def test_the_shipped_binary_and_count_data_sets_are_read_as_their_study_says(name, family, trials):
    study = yaml.safe_load(open(REPO / "config/studies/families.yaml"))
    dataset = study["datasets"][name]
    assert (dataset["family"], dataset.get("trials")) == (family, trials)
    data = read_user_csv(REPO / dataset["csv"], dataset["x"], dataset["y"], dataset["group"],
                         dataset.get("min_group_size", 2), name=name, family=family, trials=trials)
    assert len(data) == {"cbpp": 56, "epil": 236}[name] and data["group"].nunique() == {"cbpp": 15, "epil": 59}[name]
    assert "GNU General Public License" in (REPO / "resources/data/COPYING.GPL-3").read_text()
    assert f"{name}.csv" in (REPO / "resources/data/SOURCE.md").read_text()


# ---- fitting: recovery and calibration (NUTS) ----

WEAK = {"rule": "fixed", "mu_sd": 2.5, "sigma_dist": "exponential", "sigma_rate": 1.0, "sigma_sd": 1.0,
        "overdispersion_sd": 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", [LOGISTIC, COUNTS, COUNTS | {"family": "negative_binomial"}],
                         ids=["logistic", "poisson", "negative_binomial"])
def test_a_simulated_binomial_or_count_scenario_recovers_its_group_slopes(scenario):
    from poolbench.samplers import CompiledModels, SamplerSettings

    family = scenario["family"]
    data, truth = simulate.simulate("s", scenario, NO_OUTLIERS, 0, 1)
    spec = grid.ModelSpec("hierarchical", "noncentered", family)
    sampler = CompiledModels(spec, WEAK, SamplerSettings("nutpie", 500, 500, 2)).get(model_arrays(data, family), 8)
    tree = sampler.sample(model_arrays(data, family), 3, 0.9)
    slopes = tree["posterior"]["slope"].mean(("chain", "draw")).values
    error = slopes - np.array(truth.slopes)
    # Per group, 40 observations on the logit (20 trials each) or log scale (counts near 1).
    assert np.sqrt(np.mean(error**2)) < 0.2, (slopes, truth.slopes)
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    assert float(tree["posterior"]["mu_slope"].mean()) == pytest.approx(np.mean(truth.slopes), abs=0.4)


def calibrate_family(family: str, fitted_sigma_rate: float, generating_sigma_rate: float) -> pd.DataFrame:
    """SBC of the non-centered hierarchical model of `family` on a design of 8 groups of 10,
    its spread fitted under Exp(fitted_sigma_rate) and drawn from Exp(generating_sigma_rate)."""
    from poolbench.metrics import calibration, trust_verdict
    from poolbench.samplers import SamplerSettings
    from poolbench.sbc import SbcBatch

    design = COUNTS | {"family": family, "points_per_group": 10, "minority_points": 10, "trials": 10}
    spec = grid.ModelSpec("hierarchical", "noncentered", family)
    prior = WEAK | {"mu_sd": 1.0, "sigma_rate": fitted_sigma_rate}
    # 600 draws thinned by 6: ranks of nearly independent draws (the log-likelihood's
    # rank is the first to show autocorrelated draws as "too narrow").
    batch = SbcBatch(spec=spec, fit_prior=prior, settings=SamplerSettings("nutpie", 600, 400, 2),
                     scenarios={"design": design}, master_seed=5, thin=6,
                     generating_prior=prior | {"sigma_rate": generating_sigma_rate})
    fits, ranks = batch.run([grid.SbcKey("design", i, 0.9) for i in range(SBC_SIMULATIONS)])
    assert (fits["status"] == "ok").all(), fits["error"].unique()
    return calibration(ranks, trust_verdict(fits, DEFAULT["trust"]))


SBC_SIMULATIONS = 30


@pytest.mark.slow
@pytest.mark.parametrize("family", ["binomial", "poisson", "negative_binomial"])
def test_every_familys_non_centered_model_is_calibrated(family):
    table = calibrate_family(family, 2.0, 2.0)
    assert not table["miscalibrated"].any(), table.sort_values("p_value").head()
    # Each family's own parameters are calibrated too, and no family without noise has one.
    parameters = set(table["parameter"])
    assert {"mu_slope", "sigma_slope", "slope[0]", "log_likelihood"} <= parameters
    assert ("overdispersion" in parameters) == (family == "negative_binomial") and "noise" not in parameters
    assert (table["n_ranked"] == SBC_SIMULATIONS).all()


@pytest.mark.slow
def test_a_binomial_model_whose_spread_prior_differs_from_the_simulations_is_flagged():
    """The positive control: spreads drawn from Exp(0.5) (mean 2) but fitted under Exp(13)."""
    table = calibrate_family("binomial", 13.0, 0.5)
    sigma = table[table["parameter"] == "sigma_slope"].iloc[0]
    assert sigma["miscalibrated"] and sigma["departure"] == "biased low (posteriors below the truth)"


# ---- the workflow: a logistic scenario and the shipped binary and count data sets ----

@pytest.fixture(scope="module")
def families_run(tmp_path_factory):
    from conftest import snakemake

    study = yaml.safe_load(open(REPO / "config/studies/families.yaml"))
    workdir = tmp_path_factory.mktemp("families_run")
    config = tiny_config(scenarios={"logistic": study["scenarios"]["logistic"]}, outlier_levels=study["outlier_levels"],
                         datasets={"cbpp": study["datasets"]["cbpp"] | {"variants": ["pooled_intercept", "varying_intercepts"]},
                                   "epil": study["datasets"]["epil"] | {"variants": ["pooled_intercept"]}})
    config["study"]["name"] = "families"
    config["models"] |= {"variants": ["hierarchical"], "parameterisations": ["noncentered"],
                         "likelihoods": ["binomial", "poisson", "negative_binomial"], "priors": study["models"]["priors"]}
    config["sampler"] |= {"target_accept": [0.9], "draws": 400, "tune": 400}
    config["plots"] |= {"showcase_outliers": 0, "tutorial_scenario": "logistic"}
    snakemake(workdir, config)
    return workdir / "results/families"


@pytest.mark.slow
def test_the_binary_and_count_data_fit_end_to_end_with_verdicts_loo_and_predictive_checks(families_run):
    fits = pd.read_parquet(families_run / "tables/fits.parquet")
    assert (fits["status"] == "ok").all() and fits["trusted"].notna().all() and fits["model_ok"].notna().all()
    # Each source fitted by the families of its outcome only.
    assert {tuple(r) for r in fits[["scenario", "likelihood"]].drop_duplicates().to_numpy()} == {
        ("logistic", "binomial"), ("cbpp", "binomial"), ("epil", "poisson"), ("epil", "negative_binomial")}
    assert fits.loc[fits["scenario"] == "logistic", "slope_rmse"].notna().all()
    assert fits.loc[fits["scenario"] != "logistic", "elpd_loo"].notna().all()
    # The negative binomial's own parameter is estimated and checked for prior sensitivity.
    negbin = fits[fits["likelihood"] == "negative_binomial"]
    assert negbin["overdispersion_mean"].between(0.1, 3.0).all(), negbin["overdispersion_mean"]
    assert negbin["overdispersion_prior_sensitivity"].notna().all()
    assert fits.loc[fits["likelihood"] != "negative_binomial", "overdispersion_mean"].isna().all()
    # The seizure counts are overdispersed: PSIS-LOO ranks the negative binomial first, by far.
    comparison = pd.read_parquet(families_run / "tables/comparison.parquet")
    epil = comparison[comparison["dataset"] == "epil"].set_index("likelihood")
    assert epil.loc["negative_binomial", "elpd_loo"] > epil.loc["poisson", "elpd_loo"] + 100
    # The replicated data of the predictive check are counts of the data's own kind.
    from poolbench.storage import read_posterior

    posterior = next((families_run / "fits/varying_intercepts_noncentered/binomial/default/nutpie").glob("cbpp-p0/posterior/cbpp/*.nc"))
    tree = read_posterior(posterior)
    replicated = tree["posterior_predictive"]["y_obs"].values
    trials = tree["constant_data"]["trials"].values
    assert replicated.dtype.kind == "i" and (replicated >= 0).all() and (replicated <= trials[: replicated.shape[-1]]).all()
    findings = pd.read_csv(families_run / "tables/findings.csv", keep_default_na=False, na_values=[""])
    assert {"real:cbpp", "real:epil"} <= set(findings["key"])
    html = (families_run / "report.html").read_text()
    assert "cbpp_ppc" in html and "epil_ppc" in html

"""Simulation-based calibration (issue #15): a wrong model is caught, a right one is not;
the ranks are reproducible and grow without resampling."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from conftest import DEFAULT, TINY_RESULTS, snakemake, tiny_config
from poolbench import grid, records
from poolbench.metrics import calibration, trust_verdict
from poolbench.samplers import SamplerSettings
from poolbench.sbc import SbcBatch

R = TINY_RESULTS
HARD = DEFAULT["scenarios"]["hard"] | {"minority_points": 5}
SIMULATIONS = 60


def calibrate(tmp_path, generating_sigma_rate: float) -> pd.DataFrame:
    """Calibrate the non-centered hierarchical model (the tutorial's priors) on simulations
    whose slope spread is drawn with `generating_sigma_rate`."""
    spec = grid.ModelSpec.from_name("hierarchical_noncentered")
    config = {"models": {"priors": DEFAULT["models"]["priors"], "likelihood_priors": {}, "prior_sets": {}}}
    prior = grid.priors(config, spec)
    batch = SbcBatch(
        spec=spec, fit_prior=prior, settings=SamplerSettings("nutpie", 300, 300, 2), scenarios={"hard": HARD},
        master_seed=11, thin=3, generating_prior=prior | {"sigma_rate": generating_sigma_rate},
    )
    fits, ranks = batch.run([grid.SbcKey("hard", i, 0.9) for i in range(SIMULATIONS)])
    assert list(ranks.columns) == records.RANK_COLUMNS and (fits["status"] == "ok").all()
    return calibration(ranks, trust_verdict(fits, DEFAULT["trust"]))


@pytest.fixture(scope="module")
def right_and_wrong(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sbc")
    return calibrate(tmp_path, 13.0), calibrate(tmp_path, 1.0)


def test_a_model_whose_spread_prior_differs_from_the_simulations_is_flagged(right_and_wrong):
    _, wrong = right_and_wrong
    assert wrong["miscalibrated"].any()
    sigma = wrong[wrong["parameter"] == "sigma_slope"].iloc[0]
    # Spreads drawn from Exp(1) but fitted under Exp(13): the posteriors sit below the truth.
    assert sigma["miscalibrated"] and sigma["departure"] == "biased low (posteriors below the truth)"


def test_the_right_model_is_not_flagged(right_and_wrong):
    right, _ = right_and_wrong
    assert not right["miscalibrated"].any(), right.sort_values("p_value").head()
    # Every scalar parameter is tested: mu, sigma, each group's slope and offset, the noise.
    assert {"mu_slope", "sigma_slope", "noise", "slope[0]", "slope[7]"} <= set(right["parameter"])
    assert (right["n_ranked"] == SIMULATIONS).all()
    assert (right["alpha_bonferroni"] == 0.05 / len(right)).all()


def sbc_config(simulations: int) -> dict:
    config = tiny_config(seeds=[0], scenarios={"hard": tiny_config()["scenarios"]["hard"]},
                         outlier_levels=[{"count": 0, "value": 30.0}])
    config["models"] |= {"variants": ["pooled"]}
    config["sampler"] |= {"target_accept": [0.8], "draws": 200, "tune": 200}
    config["sbc"] = {"simulations": simulations, "scenarios": ["hard"], "target_accept": [0.8], "thin": 4}
    config["plots"] |= {"tutorial_scenario": "hard", "showcase_outliers": 0}
    return config


@pytest.fixture(scope="module")
def sbc_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sbc_run")
    snakemake(workdir, sbc_config(12))
    return workdir


def test_the_workflow_writes_ranks_calibration_figures_and_report(sbc_run):
    ranks = pd.read_parquet(sbc_run / R / "sbc/ranks.parquet")
    assert set(ranks["parameter"]) == {"common_slope", "noise", "log_likelihood"} and ranks["simulation"].nunique() == 12
    assert ranks["rank"].between(0, ranks["n_ranks"]).all() and (ranks["n_ranks"] == 2 * 50).all()
    table = pd.read_csv(sbc_run / R / "tables/calibration.csv", keep_default_na=False, na_values=[""])
    from arviz_stats.base import array_stats

    for row in table.itertuples():
        rows = ranks[ranks["parameter"] == row.parameter]
        pit = (rows["rank"] + 0.5) / (rows["n_ranks"] + 1)
        assert row.p_value == pytest.approx(float(array_stats.uniformity_test(pit.to_numpy(), axis=-1, method="pot_c")[0]))
    label = grid.calibration_label("pooled", "normal", "default", "nutpie", "hard", 0.8)
    assert (sbc_run / R / f"figures/calibration/{label}.png").stat().st_size > 1000
    html = (sbc_run / R / "report.html").read_text()
    assert 'id="calibration"' in html and re.search(r"pooled on the hard design at target_accept 0.8 \(nutpie\): (mis)?calibrated", html)


@pytest.mark.slow
def test_more_simulations_sample_only_the_new_ones_and_the_ranks_do_not_change(sbc_run, tmp_path):
    before = pd.read_parquet(sbc_run / R / "sbc/ranks.parquet").drop(columns=["experiment"])
    snakemake(sbc_run, sbc_config(18))
    log = next((sbc_run / R / "logs/fit").rglob("*.log")).read_text()
    assert "18 simulations, 12 from the cache" in log
    after = pd.read_parquet(sbc_run / R / "sbc/ranks.parquet").drop(columns=["experiment"])
    pd.testing.assert_frame_equal(after[after["simulation"] < 12].reset_index(drop=True), before)
    # Same config, fresh directory and cache: the same ranks, bit for bit.
    snakemake(tmp_path, sbc_config(18), "--until", "aggregate")  # the ranks are compared
    again = pd.read_parquet(tmp_path / R / "sbc/ranks.parquet").drop(columns=["experiment"])
    pd.testing.assert_frame_equal(again, after)


@pytest.mark.slow
def test_calibration_cache_entries_keep_no_posterior_and_resample_when_the_metrics_change(tmp_path, caplog, monkeypatch):
    """A calibration fit's entry holds its record and ranks, not its draws (docs/performance.md):
    reused while the metrics code is the same, sampled again (same numbers) when it changed."""
    from poolbench import cache as fit_cache

    spec = grid.ModelSpec.from_name("pooled")
    config = {"models": {"priors": DEFAULT["models"]["priors"], "likelihood_priors": {}, "prior_sets": {}}}
    cache = tmp_path / "cache"

    def run():
        batch = SbcBatch(spec=spec, fit_prior=grid.priors(config, spec), settings=SamplerSettings("nutpie", 100, 100, 2),
                         scenarios={"hard": HARD}, master_seed=5, thin=2, cache_dir=str(cache))
        caplog.clear()
        return batch.run([grid.SbcKey("hard", i, 0.8) for i in range(3)])

    caplog.set_level("INFO", logger="poolbench")
    fits, ranks = run()
    assert len(list(cache.rglob("entry.json"))) == 3 and not list(cache.rglob("*.nc"))
    again = run()
    assert "3 simulations, 3 from the cache" in caplog.text
    monkeypatch.setattr(fit_cache, "metrics_code_version", lambda: "a newer metrics module")
    newer = run()
    assert "3 simulations, 0 from the cache" in caplog.text
    for other in (again, newer):
        pd.testing.assert_frame_equal(other[1], ranks)
        pd.testing.assert_frame_equal(other[0].drop(columns=records.TIMING), fits.drop(columns=records.TIMING))


def test_a_record_only_entry_never_serves_a_fit_that_needs_its_posterior(tmp_path, caplog):
    from poolbench.cache import FitCache

    cache = FitCache(tmp_path)
    identity = {"model": "pooled", "simulation": 0}
    cache.put_record("ab" * 32, identity, {"sampling_seconds": 0.1}, {"record": {}, "ranks": []})
    assert cache.get("ab" * 32, identity, posterior_required=False).posterior is None
    assert cache.get("ab" * 32, identity) is None
    assert "it holds no posterior" in caplog.text

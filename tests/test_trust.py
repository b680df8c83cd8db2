"""Trust before ranking: a verdict for every fit, and headlines that never crown an
untrusted model (issue #13)."""

from __future__ import annotations

import copy
import html
import re

import numpy as np
import pandas as pd
import pytest

from conftest import DEFAULT, snakemake
from poolbench import records
from poolbench.metrics import TRUST_CHECKS, trust_verdict
from poolbench.report import headlines, render_headline, shrinkage_headlines, trap_headlines

TRUST = DEFAULT["trust"]
GOOD = {"status": "ok", "chains": 4, "max_rhat": 1.002, "min_ess_bulk": 1500.0, "min_ess_tail": 1200.0,
        "n_divergent": 0, "min_bfmi": 0.9, "max_tree_depth_rate": 0.0}


@pytest.mark.parametrize(
    "change, reasons",
    [
        ({}, ""),
        ({"max_rhat": 1.01}, "rhat"),  # strictly below 1.01
        ({"min_ess_bulk": 399.0}, "ess_bulk"),  # 100 per chain x 4 chains
        ({"min_ess_tail": 399.0, "n_divergent": 1}, "ess_tail,divergences"),
        ({"min_bfmi": 0.19}, "bfmi"),
        ({"max_tree_depth_rate": 0.011}, "tree_depth"),
        ({"max_rhat": np.nan}, "rhat"),  # what cannot be shown good is not trusted
        ({"max_tree_depth_rate": np.nan}, "tree_depth"),
        ({"status": "failed", "max_rhat": np.nan, "min_ess_bulk": np.nan}, "failed"),
    ],
)
def test_each_check_fails_a_fit_under_its_own_name(change, reasons):
    judged = trust_verdict(pd.DataFrame([GOOD | change]), TRUST)
    assert judged.loc[0, "untrusted_because"] == reasons
    assert bool(judged.loc[0, "trusted"]) == (reasons == "")
    assert set(reasons.split(",")) - {""} <= set(TRUST_CHECKS)


def test_thresholds_come_from_the_config():
    loose = TRUST | {"max_rhat": 1.05, "min_ess_per_chain": 10}
    judged = trust_verdict(pd.DataFrame([GOOD | {"max_rhat": 1.03, "min_ess_bulk": 50.0}]), loose)
    assert judged.loc[0, "trusted"]


def summary_row(label_model, share_trusted, rmse, **extra):
    n = 10
    return {
        "source": "simulated", "scenario": "hard", "outliers": "2at30", "outlier_count": 2, "model": label_model,
        "likelihood": "normal", "prior": "default", "target_accept": 0.9, "n_fits": n,
        "n_trusted": int(round(share_trusted * n)), "share_trusted": share_trusted,
        "slope_rmse_mean": rmse if share_trusted else np.nan, "minority_abs_error_mean": rmse * 2 if share_trusted else np.nan,
        "divergences_mean": 0.0, "untrusted_reasons": "", **extra,
    }


def test_the_headline_never_names_an_untrusted_model_best():
    """The lowest-error model is mostly untrusted: the headline names the best trusted one
    and says why the other is not ranked."""
    summary = pd.DataFrame([
        summary_row("hierarchical_centered", 0.2, 0.30),
        summary_row("hierarchical_noncentered", 0.9, 0.45),
        summary_row("unpooled", 1.0, 0.80),
    ])
    (headline,) = shrinkage_headlines(summary)
    text = html.unescape(str(render_headline(headline)))
    assert "the lowest group-slope RMSE among mostly trusted models was hierarchical_noncentered's" in text
    assert "(hierarchical_centered had lower errors on fits mostly untrusted, so they are not ranked)" in text
    assert headline.numbers["m0_kept"].value == 2 and headline.numbers["m0_n"].value == 10


def test_a_cell_without_a_trusted_fit_says_so():
    summary = pd.DataFrame([summary_row("hierarchical_centered", 0.0, 0.3), summary_row("pooled", 0.0, 0.5)])
    text = html.unescape(str(render_headline(shrinkage_headlines(summary)[0])))
    assert "hierarchical_centered none (" in text and "data-value=\"0.0\">0</span> of" in text
    assert "no model's fits were mostly trusted, so none is named best" in text


def test_each_backend_gets_its_own_findings():
    """With two sampler backends, a finding never pools them: here pooling would name the
    hierarchical model best on both backends' fits, though nutpie trusted it on none."""
    rows = [
        summary_row(model, share, rmse, backend=backend, parameterisation=parameterisation)
        for backend, centered_share in (("nutpie", 0.0), ("pymc", 1.0))
        for model, parameterisation, share, rmse in (("hierarchical_centered", "centered", centered_share, 0.3),
                                                     ("unpooled", "none", 1.0, 0.8))
    ]
    fits = pd.DataFrame({"status": ["ok"] * 40})
    texts = {h.key: html.unescape(str(render_headline(h))) for h in headlines(pd.DataFrame(rows), fits)}
    nutpie = next(text for key, text in texts.items() if key.startswith("nutpie:shrinkage:"))
    pymc = next(text for key, text in texts.items() if key.startswith("pymc:shrinkage:"))
    assert nutpie.startswith("[nutpie] ") and pymc.startswith("[pymc] ")
    assert "among mostly trusted models was unpooled's" in nutpie
    assert "among mostly trusted models was hierarchical_centered's" in pymc
    numbers = [key for text in texts.values() for key in re.findall(r'data-key="([^"]+)"', text)]
    assert numbers and len(numbers) == len(set(numbers))


def test_figures_tell_backends_apart():
    from poolbench.plots import fit_label

    table = pd.DataFrame({"model": ["pooled"] * 2, "likelihood": ["normal"] * 2, "prior": ["default"] * 2,
                          "backend": ["nutpie", "pymc"]})
    assert list(fit_label(table)) == ["pooled · nutpie", "pooled · pymc"]
    assert list(fit_label(table.iloc[:1])) == ["pooled"]


def test_the_target_accept_trap_is_called_out():
    """Raising target_accept silenced the divergences, but R-hat still fails: a trap."""
    rows = [
        summary_row("hierarchical_centered", 0.0, 0.3, target_accept=0.8, divergences_mean=40.0, untrusted_reasons="divergences 10, rhat 4"),
        summary_row("hierarchical_centered", 0.1, 0.3, target_accept=0.99, divergences_mean=0.2, untrusted_reasons="rhat 9, ess_bulk 3"),
    ]
    (headline,) = trap_headlines(pd.DataFrame(rows))
    text = html.unescape(str(render_headline(headline)))
    assert "Trap: in the hard scenario" in text and "failed checks: rhat 9, ess_bulk 3" in text


@pytest.fixture(scope="module")
def trust_run(tmp_path_factory):
    """The default config's regimes and sampler settings on a smaller grid (2 seeds, the
    lowest and highest target_accept, the normal likelihood; no real data, no calibration,
    and the tutorial's priors only: the verdicts tested are the sampler's)."""
    config = copy.deepcopy(DEFAULT)
    config["study"]["name"] = "trust"
    config["seeds"] = 2
    config["sampler"]["target_accept"] = [0.8, 0.99]
    config["models"]["likelihoods"] = ["normal"]
    config["datasets"] = {}
    config["models"]["prior_sets"] = {}
    config["sbc"]["simulations"] = 0
    workdir = tmp_path_factory.mktemp("trust_run")
    snakemake(workdir, config)
    return workdir / "results/trust"


def test_default_regimes_get_the_verdicts_the_diagnostics_imply(trust_run):
    fits = pd.read_parquet(trust_run / "tables/fits.parquet")
    centered_hard = fits[(fits["scenario"] == "hard") & (fits["model"] == "hierarchical_centered")]
    bad = centered_hard[(centered_hard["max_rhat"] >= 1.01) | (centered_hard["n_divergent"] > 0)]
    assert len(bad) >= len(centered_hard) // 2  # the funnel
    assert not bad["trusted"].any()
    for row in bad.itertuples():
        reasons = row.untrusted_because.split(",")
        assert ("rhat" in reasons) == (row.max_rhat >= 1.01)
        assert ("divergences" in reasons) == (row.n_divergent > 0)
    strong = fits[(fits["scenario"] == "tutorial") & fits["model"].isin(["pooled", "unpooled", "hierarchical_centered"])]
    assert strong["trusted"].all(), strong[~strong["trusted"]][["model", "untrusted_because"]]
    assert set(records.VERDICT) <= set(pd.read_csv(trust_run / "tables/fits.csv", keep_default_na=False, na_values=[""]).columns)


def test_report_says_which_parameterisation_is_trusted_more_often_in_each_regime(trust_run):
    fits = pd.read_parquet(trust_run / "tables/fits.parquet")
    page = (trust_run / "report.html").read_text()
    for scenario in ("tutorial", "hard"):
        share = {p: fits[(fits["scenario"] == scenario) & (fits["parameterisation"] == p)]["trusted"].mean()
                 for p in ("centered", "noncentered")}
        winner = "centered" if share["centered"] > share["noncentered"] else "non-centered"
        sentence = re.search(rf"In the {scenario} scenario, .*?: (the [a-z-]+ form is trusted more often)", page)
        assert sentence and sentence[1] == f"the {winner} form is trusted more often", sentence
    # The strong-data regime favours the centered form, the weak-data one the non-centered.
    assert "In the tutorial scenario" in page
    summary = pd.read_csv(trust_run / "tables/summary.csv", keep_default_na=False, na_values=[""])
    assert {"share_trusted", "n_trusted", "untrusted_reasons"} <= set(summary.columns)
    assert 'class="untrusted"' in page  # the hard regime's centered cells are marked

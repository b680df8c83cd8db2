"""Studies (issue #17): named questions with their own config, results folder and report;
the parameterisation map's headline comes from its table."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake, tiny_config
from poolbench import grid
from poolbench.report import centered_threshold, map_headlines, render_headline

STUDY = yaml.safe_load((REPO / "config/studies/parameterisation_map.yaml").read_text())


def test_the_map_study_covers_the_grid_it_promises():
    scenarios = grid.scenarios(STUDY)
    assert len(scenarios) == 7 * 4
    assert {s["points_per_group"] for s in scenarios.values()} == {2, 5, 10, 20, 50, 100, 200}
    assert {s["noise"] for s in scenarios.values()} == {0.1, 0.3, 1.0, 3.0}
    assert {s["slope_sd"] for s in scenarios.values()} == {1.0}  # the true spread, fixed
    assert all(s["minority_points"] == s["points_per_group"] for s in scenarios.values())
    assert "map_20_0.3" in scenarios and scenarios["map_20_0.3"]["noise"] == 0.3
    # Names do not depend on the order the config lists the varied keys in.
    shuffled = STUDY | {"scenarios": {"map": STUDY["scenarios"]["map"] | {"vary": dict(reversed(STUDY["scenarios"]["map"]["vary"].items()))}}}
    assert list(grid.scenarios(shuffled)) == list(scenarios)
    assert grid.prior_sets(STUDY) == ["default", "weak"] and len(STUDY["sampler"]["target_accept"]) == 2
    assert STUDY["seeds"] >= 10
    specs = grid.model_specs(STUDY)
    fits = sum(len(grid.fit_keys(STUDY, spec)) for spec in specs)
    assert fits == 28 * 10 * 2 * 2 * 2  # cells x seeds x target_accepts x parameterisations x priors


def map_row(points, noise, ratio, centered_trusted, noncentered_trusted, prior="default", ta=0.8, fits=10):
    return {"prior": prior, "target_accept": ta, "noise": noise, "points_per_group": points, "ess_ratio": ratio,
            "centered_share_trusted": centered_trusted, "noncentered_share_trusted": noncentered_trusted,
            "centered_trusted": round(centered_trusted * fits), "noncentered_trusted": round(noncentered_trusted * fits)}


def test_the_map_headline_picks_the_threshold_a_constructed_table_implies():
    rows = [
        # noise 1: centered faster from 20 points on, but at 10 it is less often trusted.
        map_row(5, 1.0, 0.5, 0.0, 1.0), map_row(10, 1.0, 1.3, 0.6, 0.9), map_row(20, 1.0, 1.4, 1.0, 1.0),
        map_row(50, 1.0, 2.0, 1.0, 0.7), map_row(100, 1.0, 3.0, 1.0, 0.6),
        # noise 3: a win at 50 that does not last: never for good.
        map_row(5, 3.0, 0.2, 0.0, 1.0), map_row(50, 3.0, 1.1, 1.0, 1.0), map_row(100, 3.0, 0.9, 1.0, 1.0),
    ]
    table = pd.DataFrame(rows)
    assert centered_threshold(table[table["noise"] == 1.0]) == 20
    assert centered_threshold(table[table["noise"] == 3.0]) is None
    texts = {h.key: html.unescape(str(render_headline(h))) for h in map_headlines(table)}
    # Strong data: the non-centered form is never trusted beyond the smallest groups, so
    # the centered one wins from there (its ESS/s ratio is undefined, not a loss).
    strong = pd.DataFrame([map_row(2, 0.1, 4.0, 0.8, 0.2), map_row(10, 0.1, np.nan, 1.0, 0.0), map_row(50, 0.1, np.nan, 1.0, 0.0)])
    assert centered_threshold(strong) == 2
    assert centered_threshold(strong.assign(centered_trusted=0, centered_share_trusted=0.0)) is None
    assert re.search(r"Noise 1, .*from .*>20</span> points per group on \(below the rule of thumb of about .*>50<", texts["map:default:0.8:1"])
    assert "never wins for good" in texts["map:default:0.8:3"]


def test_the_map_headline_says_how_the_answer_depends_on_the_priors():
    rows = [map_row(p, 1.0, r, 1.0, 1.0) for p, r in ((5, 0.5), (20, 1.2), (50, 1.5))]
    rows += [map_row(p, 1.0, r, 1.0, 1.0, prior="weak") for p, r in ((5, 1.1), (20, 1.2), (50, 1.5))]
    texts = {h.key: html.unescape(str(render_headline(h))) for h in map_headlines(pd.DataFrame(rows))}
    assert texts["map-priors:0.8:1"] == "Noise 1, target_accept 0.8: the answer depends on the priors (default priors: from 20; weak priors: from 5)."


def tiny_study(name: str) -> dict:
    """The map study's shape at two cells and few draws."""
    config = tiny_config(seeds=2, outlier_levels=[{"count": 0, "value": 30.0}])
    config["study"] = STUDY["study"] | {"name": name}
    config["scenarios"] = {"map": STUDY["scenarios"]["map"] | {"vary": {"points_per_group": [5, 50], "noise": [1.0]}}}
    config["models"] = STUDY["models"]
    config["sampler"] |= {"target_accept": [0.9], "draws": 200, "tune": 200}
    config["plots"] |= {"tutorial_scenario": "map_5_1", "showcase_outliers": 0}
    return config


@pytest.mark.slow
def test_two_studies_write_their_own_reports_and_neither_overwrites_the_other(tmp_path):
    snakemake(tmp_path, tiny_study("first"))
    first = tmp_path / "results/first/report.html"
    before = first.read_bytes()
    table = pd.read_csv(tmp_path / "results/first/tables/parameterisation.csv", keep_default_na=False, na_values=[""])
    assert set(table["points_per_group"]) == {5, 50} and set(table["prior"]) == {"default", "weak"}
    page = html.unescape(first.read_text())
    assert 'id="map"' in page and "Parameterisation map: ess_ratio.weak" in page
    for prior, rows in table.groupby("prior"):
        threshold = centered_threshold(rows)
        if threshold is None:
            assert f"Noise 1, target_accept 0.9, {prior} priors: the centered form never wins" in re.sub("<[^>]+>", "", page)
        else:
            assert f"Noise 1, target_accept 0.9, {prior} priors: the centered form wins on ESS/s with no more untrusted fits from {threshold:g} points" in re.sub("<[^>]+>", "", page)
    snakemake(tmp_path, tiny_study("second"))
    assert first.read_bytes() == before
    assert (tmp_path / "results/second/report.html").exists()
    # The second study's fits of the same data came from the shared cache.
    logs = [p.read_text() for p in (tmp_path / "results/second/logs/fit").rglob("*.log")]
    assert logs and all(re.search(r": (\d+) fits, \1 from the cache", log) for log in logs)
    assert np.isfinite(table["centered_share_trusted"]).all()

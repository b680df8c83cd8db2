"""The self-contained HTML report: headline findings written from the numbers, trust first,
tables, figures with captions, calibration, real data, and provenance. Rendered with
Jinja2 with autoescaping on: every string a user controls (config values, names, error
messages, provenance) reaches the page escaped. Images are embedded.

The code here finds: each finding is a `Headline` of numbers (traced to the tables), words
and switches. Its sentence is worded by the macro of its kind in `templates/findings.j2`,
so a new kind of finding is a function here and a macro there.

No headline ranks a model on untrusted fits: every comparison of errors uses trusted fits,
says how many each side kept, and never names as best a model whose fits in that cell are
mostly untrusted. Nor on an unreliable PSIS-LOO: a real data set's finding ranks only the
trusted fits whose Pareto k are all good, and names the others with their k counts. Nor
on a variable that follows its prior: where a hierarchical model's population parameters
are mostly in prior-data conflict or prior-dominated over its trusted fits (the model
check, apart from `trusted`), the sentence comparing errors says so; a spread that is only
weakly identified by few groups gets a note, not a conflict. The headlines about the
sampler (trust, the funnel, the target_accept trap) compare no estimates and carry neither.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.metadata
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup, escape

from poolbench import grid
from poolbench.figures import OPTIONAL_SECTIONS, REPORT_SECTIONS
from poolbench.grid import DEFAULT_PRIOR, experiment_hash
from poolbench.metrics import (
    COMPARISON_COLUMNS,
    CONFLICT,
    PRIOR_DOMINATED,
    PRIOR_PREDICTIVE_PROB,
    SENSITIVITY_THRESHOLD,
    WEAK_SPREAD_SENSITIVITY,
    WEAKLY_IDENTIFIED,
)
from poolbench.variants import (
    CENTERED, DEFAULT_FAMILIES, DEFAULT_LIKELIHOOD, LIKELIHOODS, MU, NONCENTERED, PARAMETERISATIONS, PURE_PARAMETERISATIONS,
    SIGMA,
)

TEMPLATES = Path(__file__).parent / "templates"
# Packages whose versions decide the numbers or the pictures.
KEY_PACKAGES = [
    "pymc", "pytensor", "nutpie", "arviz", "arviz-stats", "arviz-plots", "numpy", "pandas",
    "xarray", "seaborn", "matplotlib", "snakemake",
]
# A model counts as trusted in a cell when at least this share of its fits is.
MOSTLY_TRUSTED = 0.5
# "Near zero" divergences per fit, for the target_accept trap.
FEW_DIVERGENCES = 0.5
# The rule of thumb the parameterisation map is compared with (Stan discourse).
RULE_OF_THUMB_POINTS = 50
# The population parameters a comparison of group-slope errors leans on: where a
# hierarchical model's follow their prior, its shrinkage is the prior's, not the data's.
POOLING_VARIABLES = (SIGMA, MU)
# The model check's diagnoses of a posterior that follows its prior.
FOLLOWS_PRIOR = (CONFLICT, PRIOR_DOMINATED)
# A variable follows its prior in a regime when more than this share of a model's trusted
# fits say so; a headline comparing that model then says so too.
MOSTLY_FLAGGED = 0.5


@dataclass
class Number:
    """A number quoted in the report, with the exact value it was formatted from."""

    key: str
    value: float
    digits: int = 1

    def __str__(self) -> str:
        return f"{self.value:.{self.digits}f}"


@dataclass
class Headline:
    """One finding: what it found, as data. Its sentence is the macro of its kind in
    `templates/findings.j2`, rendered from these."""

    key: str  # "<kind>:<scope>", e.g. "funnel:hard"; prefixed "<backend>:" by `for_backend`
    numbers: dict[str, Number] = field(default_factory=dict)
    words: dict[str, str] = field(default_factory=dict)  # names the sentence quotes (escaped)
    section: str = "findings"
    data: dict = field(default_factory=dict)  # the rest the sentence needs: switches, lists of tags
    scope: dict = field(default_factory=dict)  # where it holds: SCOPE_COLUMNS of the findings table

    @property
    def kind(self) -> str:
        backend = self.words.get("backend", "")
        return (self.key.removeprefix(f"{backend}:") if backend else self.key).split(":", 1)[0]


# The macros' layout whitespace is collapsed after rendering; the whitespace of the words
# and keys they quote is kept, moved out of the way (to this private-use plane) meanwhile.
_KEPT = 0xF0000


def _kept(value) -> Markup:
    """A word or key, escaped, its whitespace protected from the collapse."""
    return Markup("".join(chr(_KEPT + ord(c)) if c.isspace() else c for c in str(escape(value))))


def _restored(text: str) -> str:
    return "".join(chr(ord(c) - _KEPT) if ord(c) >= _KEPT else c for c in text)


# One environment for the page and the findings' macros: autoescaping on.
ENVIRONMENT = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
ENVIRONMENT.filters |= {"exact": lambda value: repr(float(value)), "kept": _kept}
FINDINGS_TEMPLATES = ENVIRONMENT.get_template("findings.j2").module


def render_headline(headline: Headline) -> Markup:
    """The finding's sentence, from the macro of its kind: each number a
    <span data-key=... data-value=...>, so tests and readers can trace it back to the
    tables; every word escaped (and its own spacing kept). A finding of one of several
    backends names it first."""
    macro = getattr(FINDINGS_TEMPLATES, headline.kind.replace("-", "_"))
    text = _restored(" ".join(str(macro(headline)).split()))
    if headline.words.get("backend"):
        text = str(escape(f"[{headline.words['backend']}] ")) + text
    return Markup(text)


def _label(row) -> str:
    """A model with its likelihood and prior set, as headlines name it."""
    text = row["model"]
    if row.get("likelihood", DEFAULT_LIKELIHOOD) != DEFAULT_LIKELIHOOD:
        text += f" ({row['likelihood']})"
    if row.get("prior", DEFAULT_PRIOR) != DEFAULT_PRIOR:
        text += f" [{row['prior']} priors]"
    return text


def _share(value: float) -> str:
    return f"{value:.0%}"


def _cells(summary: pd.DataFrame) -> pd.DataFrame:
    simulated = summary[summary["source"] == "simulated"] if "source" in summary else summary
    return simulated.assign(label=[_label(r) for _, r in simulated.iterrows()])


def trust_headlines(summary: pd.DataFrame) -> list[Headline]:
    """Per scenario (and likelihood, prior set): how often each parameterisation's fits
    were trusted, and which is trusted more often."""
    out = []
    cells = _cells(summary)
    hierarchical = cells[cells["parameterisation"].isin(PURE_PARAMETERISATIONS)]
    for (scenario, likelihood, prior), rows in hierarchical.groupby(["scenario", "likelihood", "prior"], sort=False, dropna=False):
        shares = {}
        for parameterisation in PURE_PARAMETERISATIONS:
            side = rows[rows["parameterisation"] == parameterisation]
            if side["n_fits"].sum():
                shares[parameterisation] = (side["n_trusted"].sum(), side["n_fits"].sum())
        if len(shares) < 2:
            continue
        key = f"trust:{scenario}:{likelihood}:{prior}"
        (ct, cn), (nt, nn) = shares[CENTERED], shares[NONCENTERED]
        c_share, n_share = ct / cn, nt / nn
        more = CENTERED if c_share > n_share else NONCENTERED if n_share > c_share else "neither"
        out.append(Headline(
            key,
            {
                "centered": Number(f"{key}:centered_trusted", ct, 0),
                "centered_n": Number(f"{key}:centered_fits", cn, 0),
                "noncentered": Number(f"{key}:noncentered_trusted", nt, 0),
                "noncentered_n": Number(f"{key}:noncentered_fits", nn, 0),
            },
            {
                "scenario": scenario, "centered_share": _share(c_share), "noncentered_share": _share(n_share),
                "variant": _axes_note(likelihood, prior),
            },
            data={"more": more}, scope={"scenario": scenario, "likelihood": likelihood, "prior": prior},
        ))
    return out


# A partially centered form is "as fast" as the better pure form at this share of its
# ESS per second or more (issue #28's goal).
AS_FAST = 0.9


def centering_headlines(summary: pd.DataFrame) -> list[Headline]:
    """Per scenario (and likelihood, prior set): each partially centered form (partial,
    mixed, learned) against the better pure form, cell by cell (outlier level,
    target_accept, variant): in how many cells it was trusted at least as often as the
    better of centered and non-centered (trusted more often; at equal shares, the faster),
    in how many it was also as fast (ESS per second at least AS_FAST of the better form's,
    medians over trusted fits), and its trusted fits against the better form's."""
    out = []
    cells = _cells(summary)
    keys = ["variant", "outliers", "target_accept"]
    for (scenario, likelihood, prior), rows in cells.groupby(["scenario", "likelihood", "prior"], sort=False, dropna=False):
        for form in (p for p in PARAMETERISATIONS if p not in PURE_PARAMETERISATIONS):
            if not (rows["parameterisation"] == form).any():
                continue
            table = rows.pivot_table(index=keys, columns="parameterisation", aggfunc="first", dropna=False,
                                     values=["n_trusted", "n_fits", "share_trusted", "ess_bulk_per_second_trusted_median"])
            if not all((column, p) in table for column in ("n_fits",) for p in (*PURE_PARAMETERISATIONS, form)):
                continue
            table = table[table[("n_fits", form)].notna()]
            trusted = better_trusted = better_fits = as_trusted = as_fast = 0
            for _, cell in table.iterrows():
                better = max(PURE_PARAMETERISATIONS, key=lambda p: (
                    np.nan_to_num(cell[("share_trusted", p)], nan=-1.0),
                    np.nan_to_num(cell[("ess_bulk_per_second_trusted_median", p)], nan=-1.0)))
                trusted += cell[("n_trusted", form)]
                better_trusted += cell[("n_trusted", better)]
                better_fits += cell[("n_fits", better)]
                kept = cell[("share_trusted", form)] >= cell[("share_trusted", better)]
                as_trusted += bool(kept)
                ratio = cell[("ess_bulk_per_second_trusted_median", form)] / cell[("ess_bulk_per_second_trusted_median", better)]
                as_fast += bool(kept and ratio >= AS_FAST)
            key = f"centering:{scenario}:{likelihood}:{prior}:{form}"
            out.append(Headline(
                key,
                {"as_trusted": Number(f"{key}:cells_as_trusted", as_trusted, 0),
                 "as_fast": Number(f"{key}:cells_as_fast", as_fast, 0),
                 "cells": Number(f"{key}:cells", len(table), 0),
                 "trusted": Number(f"{key}:trusted", trusted, 0),
                 "fits": Number(f"{key}:fits", table[("n_fits", form)].sum(), 0),
                 "better_trusted": Number(f"{key}:better_trusted", better_trusted, 0),
                 "better_fits": Number(f"{key}:better_fits", better_fits, 0),
                 "as_fast_share": Number(f"{key}:as_fast_share", AS_FAST, 1)},
                {"scenario": scenario, "form": form, "variant": _axes_note(likelihood, prior)},
                scope={"scenario": scenario, "likelihood": likelihood, "prior": prior},
            ))
    return out


def _axes_note(likelihood: str, prior: str) -> str:
    parts = [] if likelihood == DEFAULT_LIKELIHOOD else [f"{likelihood} likelihood"]
    parts += [] if prior == DEFAULT_PRIOR else [f"{prior} priors"]
    return f" ({', '.join(parts)})" if parts else ""


def funnel_headlines(summary: pd.DataFrame) -> list[Headline]:
    """Per scenario: centered vs non-centered divergences at the lowest target_accept,
    and what the highest target_accept left of the centered model's."""
    out = []
    cells = _cells(summary)
    hierarchical = cells[cells["parameterisation"].isin(PURE_PARAMETERISATIONS)]
    tas = sorted(hierarchical["target_accept"].unique())
    for (scenario, likelihood, prior), rows in hierarchical.groupby(["scenario", "likelihood", "prior"], sort=False, dropna=False):
        low, high = tas[0], tas[-1]

        def mean(parameterisation, ta):
            chosen = rows[(rows["parameterisation"] == parameterisation) & (rows["target_accept"] == ta)]
            values = chosen["divergences_mean"].dropna()
            return float(values.mean()) if len(values) else None

        centered, noncentered, centered_high = mean(CENTERED, low), mean(NONCENTERED, low), mean(CENTERED, high)
        if centered is None or noncentered is None:
            continue
        key = f"funnel:{scenario}" + ("" if (likelihood, prior) == (DEFAULT_LIKELIHOOD, DEFAULT_PRIOR) else f":{likelihood}:{prior}")
        headline = Headline(
            key,
            {"centered": Number(f"{key}:centered", centered), "noncentered": Number(f"{key}:noncentered", noncentered),
             "low": Number(f"{key}:low", low, 2)},
            {"scenario": scenario, "variant": _axes_note(likelihood, prior)},
            data={"none_diverged": centered == noncentered == 0, "reduced": noncentered < centered,
                  "raised": noncentered > centered},
            scope={"scenario": scenario, "likelihood": likelihood, "prior": prior},
        )
        if centered_high is not None and high != low:
            headline.numbers |= {"high": Number(f"{key}:high", high, 2), "centered_high": Number(f"{key}:centered_high", centered_high)}
        out.append(headline)
    return out


def trap_headlines(summary: pd.DataFrame) -> list[Headline]:
    """Cells where raising target_accept brought divergences to (near) zero while most fits
    stayed untrusted by R-hat or ESS: silence from the divergence check is not a pass."""
    out = []
    cells = _cells(summary)
    for (scenario, outliers, label), rows in cells.groupby(["scenario", "outliers", "label"], sort=False, dropna=False):
        rows = rows.sort_values("target_accept")
        if len(rows) < 2:
            continue
        low, high = rows.iloc[0], rows.iloc[-1]
        reasons = str(high["untrusted_reasons"])
        stuck = any(check in reasons for check in ("rhat", "ess_bulk", "ess_tail"))
        if (low["divergences_mean"] > FEW_DIVERGENCES and high["divergences_mean"] <= FEW_DIVERGENCES
                and high["share_trusted"] < MOSTLY_TRUSTED and stuck):
            key = f"trap:{scenario}:{outliers}:{label}"
            out.append(Headline(
                key,
                {"low": Number(f"{key}:low", low["target_accept"], 2), "high": Number(f"{key}:high", high["target_accept"], 2),
                 "before": Number(f"{key}:before", low["divergences_mean"]), "after": Number(f"{key}:after", high["divergences_mean"]),
                 "trusted": Number(f"{key}:trusted", high["n_trusted"], 0), "n": Number(f"{key}:n", high["n_fits"], 0)},
                {"scenario": scenario, "outliers": outliers, "model": label, "reasons": reasons,
                 # on a likelihood or prior set other than the default: ranked after the defaults
                 "variant": _axes_note(high["likelihood"], high["prior"])},
                scope={"scenario": scenario, "outliers": outliers, "model": high["model"],
                       "likelihood": high["likelihood"], "prior": high["prior"]},
            ))
    return out


def best_trusted(rows: pd.DataFrame, column: str) -> tuple[pd.Series | None, list[str]]:
    """The row with the lowest `column` among models whose fits are mostly trusted, and the
    models passed over for lower errors because they are not."""
    scored = rows.dropna(subset=[column])
    eligible = scored[scored["share_trusted"] >= MOSTLY_TRUSTED]
    if eligible.empty:
        return None, []
    best = eligible.loc[eligible[column].idxmin()]
    passed_over = scored[(scored["share_trusted"] < MOSTLY_TRUSTED) & (scored[column] < best[column])]
    return best, list(passed_over["label"])


def _pool(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model (label) over target_accepts: trusted counts summed, errors as the
    trusted-fit-weighted means."""
    out = []
    for label, group in rows.groupby("label", sort=False, dropna=False):
        weights = group["n_trusted"]
        row = {"label": label, "n_trusted": int(weights.sum()), "n_fits": int(group["n_fits"].sum())}
        for column in ("slope_rmse_mean", "minority_abs_error_mean"):
            valid = group[column].notna() & (weights > 0)
            row[column] = float(np.average(group.loc[valid, column], weights=weights[valid])) if valid.any() else np.nan
        out.append(row)
    table = pd.DataFrame(out)
    table["share_trusted"] = table["n_trusted"] / table["n_fits"]
    return table


def checked_fits(fits: pd.DataFrame) -> pd.DataFrame | None:
    """The simulated fits labelled as headlines name their models, where the fits table
    carries the model check; None where it does not (tables written before it)."""
    needed = {"model", "likelihood", "prior", "trusted", "n_groups"}
    needed |= {f"{v}_{c}" for v in POOLING_VARIABLES for c in ("diagnosis", "prior_sensitivity")}
    return _cells(fits) if needed <= set(fits.columns) else None


def prior_following(fits: pd.DataFrame, variable: str) -> pd.DataFrame:
    """Per model (label) of `fits`: its trusted fits with `variable` checked, how many of
    them are in prior-data conflict or prior-dominated (as the summary's
    `{variable}_prior_flag_share` counts them) and how many weakly identified, and the
    number of groups."""
    checked = fits[fits["trusted"].astype(bool) & fits[f"{variable}_prior_sensitivity"].notna()]
    diagnosis, by = checked[f"{variable}_diagnosis"], checked.groupby("label", sort=False)
    return pd.DataFrame({
        "checked": by.size(),
        "flagged": diagnosis.isin(FOLLOWS_PRIOR).groupby(checked["label"], sort=False).sum(),
        "weakly_identified": diagnosis.eq(WEAKLY_IDENTIFIED).groupby(checked["label"], sort=False).sum(),
        "n_groups": by["n_groups"].first(),
    }).rename_axis("label").reset_index()


def _counted(headline: Headline, variable: str, counts: pd.DataFrame, column: str) -> list[str]:
    """The tags of "a of b trusted fits of M" over `counts`' rows (the template's
    `counted`), their numbers and names added to `headline`."""
    tags = []
    for row in counts.itertuples():
        tag = f"c{len(headline.numbers)}"  # unique: the headline's numbers only grow
        headline.words[f"{tag}_name"] = row.label
        headline.numbers |= {
            f"{tag}_count": Number(f"{headline.key}:{row.label}:{variable}_{column}", getattr(row, column), 0),
            f"{tag}_checked": Number(f"{headline.key}:{row.label}:{variable}_checked", row.checked, 0),
        }
        tags.append(tag)
    return tags


def prior_caveat(headline: Headline, fits: pd.DataFrame | None, consequence: str) -> None:
    """Append to `headline`, which compares the models of `fits` (one regime's, labelled),
    what it must say in the same sentence: for each of POOLING_VARIABLES that mostly follows
    its prior in a model's trusted fits, how often, and `consequence`; where the spread is
    mostly weakly identified instead, a note saying by how many groups, not a conflict."""
    if fits is None:
        return
    follows, notes = [], []
    for variable in POOLING_VARIABLES:
        counts = prior_following(fits, variable)
        flagged = counts[counts["flagged"] > MOSTLY_FLAGGED * counts["checked"]]
        if len(flagged):
            follows.append({"variable": variable, "tags": _counted(headline, variable, flagged, "flagged")})
        weak = counts[(counts["weakly_identified"] > MOSTLY_FLAGGED * counts["checked"]) & ~counts["label"].isin(flagged["label"])]
        if variable == SIGMA and len(weak):
            groups = weak["n_groups"].dropna()
            if len(groups):
                headline.numbers["groups"] = Number(f"{headline.key}:n_groups", groups.iloc[0], 0)
            notes.append({"variable": variable, "by_groups": bool(len(groups)),
                          "tags": _counted(headline, variable, weak, "weakly_identified")})
    headline.data["caveat"] = {"follows": follows, "notes": notes, "consequence": consequence,
                               "conflict": CONFLICT, "dominated": PRIOR_DOMINATED, "weak": WEAKLY_IDENTIFIED}


def shrinkage_headlines(summary: pd.DataFrame, fits: pd.DataFrame | None = None) -> list[Headline]:
    """Per scenario, at its largest outlier level: each model's minority-slope absolute error
    and group-slope RMSE over its trusted fits (with how many it kept), and the best model
    among those mostly trusted; with `fits` (`checked_fits`), whether a hierarchical model's
    population parameters follow their prior there (`prior_caveat`)."""
    out = []
    cells = _cells(summary)
    for scenario in dict.fromkeys(cells["scenario"]):
        rows = cells[cells["scenario"] == scenario]
        outliers = rows.loc[rows["outlier_count"].idxmax(), "outliers"]
        pooled = _pool(rows[rows["outliers"] == outliers])
        key = f"shrinkage:{scenario}:{outliers}"
        numbers, tags = {}, []
        for i, row in enumerate(pooled.itertuples()):
            tag = f"m{i}"
            tags.append(tag)
            numbers[f"{tag}_kept"] = Number(f"{key}:{row.label}:trusted", row.n_trusted, 0)
            numbers[f"{tag}_n"] = Number(f"{key}:{row.label}:fits", row.n_fits, 0)
            if row.n_trusted:
                numbers[f"{tag}_error"] = Number(f"{key}:{row.label}:minority_abs_error", row.minority_abs_error_mean, 2)
                numbers[f"{tag}_rmse"] = Number(f"{key}:{row.label}:slope_rmse", row.slope_rmse_mean, 2)
        words = {"scenario": scenario, "outliers": outliers} | {f"m{i}_name": r.label for i, r in enumerate(pooled.itertuples())}
        best, passed_over = best_trusted(pooled, "slope_rmse_mean")
        if best is not None:
            words["best"] = best["label"]
            if passed_over:
                words["passed"] = ", ".join(passed_over)
        headline = Headline(key, numbers, words, data={"models": tags}, scope={"scenario": scenario, "outliers": outliers})
        regime = None if fits is None else fits[(fits["scenario"] == scenario) & (fits["outliers"] == outliers)]
        prior_caveat(headline, regime, "these errors reflect the prior, not pooling" if best is None
                     else "this ranking reflects the prior, not pooling")
        out.append(headline)
    return out


def likelihood_headlines(summary: pd.DataFrame, fits: pd.DataFrame | None = None) -> list[Headline]:
    """Where the default likelihood and a robust one (the registry's `robust`) were both
    fitted: the minority slope's error under each, per scenario and model at the largest
    outlier level (trusted fits); with `fits`, whether a hierarchical model's population
    parameters follow their prior there."""
    out = []
    cells = _cells(summary)
    robust_likelihoods = [name for name, likelihood in LIKELIHOODS.items() if likelihood.robust]
    # Each robust family against its outcome's default (Student-t against the normal,
    # negative binomial against the Poisson).
    bases = {name: DEFAULT_FAMILIES[LIKELIHOODS[name].outcome] for name in robust_likelihoods}
    for (scenario, model), rows in cells.groupby(["scenario", "model"], sort=False, dropna=False):
        outliers = rows.loc[rows["outlier_count"].idxmax(), "outliers"]
        rows = rows[(rows["outliers"] == outliers) & (rows["prior"] == DEFAULT_PRIOR)]
        sides = {}
        for likelihood in dict.fromkeys([*bases.values(), *robust_likelihoods]):
            side = rows[rows["likelihood"] == likelihood]
            pooled = _pool(side.assign(label=model)) if len(side) else pd.DataFrame()
            if len(pooled) and pooled["n_trusted"].iloc[0] > 0:
                sides[likelihood] = pooled.iloc[0]
        for robust_name, base_name in bases.items():
            if base_name not in sides or robust_name not in sides:
                continue
            key = f"likelihood:{scenario}:{outliers}:{model}"
            if list(bases.values()).count(base_name) > 1:
                key += f":{robust_name}"
            base, robust = sides[base_name], sides[robust_name]
            headline = Headline(
                key,
                {"normal": Number(f"{key}:{base_name}", base["minority_abs_error_mean"], 2),
                 "robust": Number(f"{key}:{robust_name}", robust["minority_abs_error_mean"], 2),
                 "normal_kept": Number(f"{key}:{base_name}_trusted", base["n_trusted"], 0),
                 "robust_kept": Number(f"{key}:{robust_name}_trusted", robust["n_trusted"], 0)},
                {"scenario": scenario, "outliers": outliers, "model": model,
                 "base_label": LIKELIHOODS[base_name].label, "robust_label": LIKELIHOODS[robust_name].label},
                scope={"scenario": scenario, "outliers": outliers, "model": model, "prior": DEFAULT_PRIOR},
            )
            regime = None if fits is None else fits[
                (fits["scenario"] == scenario) & (fits["outliers"] == outliers) & (fits["model"] == model)
                & (fits["prior"] == DEFAULT_PRIOR)]
            prior_caveat(headline, regime, "this comparison reflects the prior, not the likelihood alone")
            out.append(headline)
    return out


def merged_reasons(reasons: pd.Series) -> str:
    """Cells' reason counts ("sigma_slope prior-data conflict 12, prior predictive 4", as
    the aggregation writes them) added up over the cells, most frequent first."""
    counts = {}
    for text in reasons.dropna():
        for item in filter(None, (part.strip() for part in str(text).split(","))):
            reason, _, count = item.rpartition(" ")
            reason, count = (reason, int(count)) if reason and count.isdigit() else (item, 0)
            counts[reason] = counts.get(reason, 0) + count
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{reason} {count}" if count else reason for reason, count in ranked)


def prior_set_headlines(summary: pd.DataFrame) -> list[Headline]:
    """Where a hierarchical model was fitted with the default priors and another prior set:
    per scenario at its largest outlier level, each prior set side by side, how many of
    its trusted fits passed the model check, what the others were flagged for, and its
    group-slope RMSE."""
    out = []
    cells = _cells(summary)
    if cells["prior"].nunique() < 2 or "n_model_ok" not in cells:
        return out
    hierarchical = cells[cells["parameterisation"].isin(PARAMETERISATIONS)]
    for (scenario, model, likelihood), rows in hierarchical.groupby(["scenario", "model", "likelihood"], sort=False, dropna=False):
        outliers = rows.loc[rows["outlier_count"].idxmax(), "outliers"]
        rows = rows[rows["outliers"] == outliers]
        priors = list(dict.fromkeys(rows["prior"]))
        if DEFAULT_PRIOR not in priors or len(priors) < 2:
            continue
        name = _label({"model": model, "likelihood": likelihood, "prior": DEFAULT_PRIOR})
        key = f"priors:{scenario}:{outliers}:{name}"
        numbers, words, tags = {}, {"scenario": scenario, "outliers": outliers, "model": name}, []
        for i, prior in enumerate([DEFAULT_PRIOR] + [p for p in priors if p != DEFAULT_PRIOR]):
            side = rows[rows["prior"] == prior]
            pooled = _pool(side).iloc[0]  # one label: the model with this prior set
            tag = f"p{i}"
            tags.append(tag)
            words[f"{tag}_prior"] = prior
            numbers |= {f"{tag}_kept": Number(f"{key}:{prior}:trusted", pooled["n_trusted"], 0),
                        f"{tag}_n": Number(f"{key}:{prior}:fits", pooled["n_fits"], 0)}
            if not pooled["n_trusted"]:
                continue
            reasons = merged_reasons(side["model_flag_reasons"]) if "model_flag_reasons" in side else ""
            words[f"{tag}_flags"] = f"flagged for {reasons}" if reasons else "nothing flagged"
            numbers |= {f"{tag}_ok": Number(f"{key}:{prior}:model_ok", side["n_model_ok"].sum(), 0),
                        f"{tag}_rmse": Number(f"{key}:{prior}:slope_rmse", pooled["slope_rmse_mean"], 2)}
        out.append(Headline(key, numbers, words, section="model_checks", data={"sets": tags},
                            scope={"scenario": scenario, "outliers": outliers, "model": model, "likelihood": likelihood}))
    return out


def failure_headline(fits: pd.DataFrame) -> Headline:
    failed = int((fits["status"] != "ok").sum())
    return Headline(
        "failed",
        {"failed": Number("failed:count", failed, 0), "total": Number("failed:total", len(fits), 0)},
    )


def calibration_failure_headline(sbc_fits: pd.DataFrame) -> Headline:
    failed = int((sbc_fits["status"] != "ok").sum())
    return Headline(
        "failed_calibration",
        {"failed": Number("failed:calibration_count", failed, 0),
         "total": Number("failed:calibration_total", len(sbc_fits), 0)},
    )


FAILED_COLUMNS = ["scenario", "outliers", "seed", "model", "likelihood", "prior", "backend", "target_accept", "error"]


def failed_fits(fits: pd.DataFrame, sbc_fits: pd.DataFrame | None) -> pd.DataFrame:
    """Every failed fit, grid and calibration: a calibration fit is shown on its design
    ("hard (calibration)") with its simulation number as the seed."""
    failed = fits[fits["status"] != "ok"].reindex(columns=FAILED_COLUMNS)
    if sbc_fits is None or not (sbc_fits["status"] != "ok").any():
        return failed
    simulations = sbc_fits[sbc_fits["status"] != "ok"]
    simulations = simulations.assign(scenario=simulations["scenario"] + " (calibration)", outliers="-",
                                     seed=simulations["simulation"])
    return pd.concat([failed, simulations.reindex(columns=FAILED_COLUMNS)], ignore_index=True)


def calibration_headlines(calibration: pd.DataFrame) -> list[Headline]:
    """Per calibration cell: calibrated, or which parameters are not and how."""
    out = []
    cell = ["model", "likelihood", "prior", "backend", "scenario", "target_accept"]
    for keys, rows in calibration.groupby(cell, sort=False, dropna=False):
        model, likelihood, prior, backend, scenario, ta = keys
        key = f"calibration:{model}:{likelihood}:{prior}:{backend}:{scenario}:{ta:g}"
        bad = rows[rows["miscalibrated"].astype(bool)]
        numbers = {
            "n": Number(f"{key}:simulations", rows["n_simulations"].iloc[0], 0),
            "p": Number(f"{key}:min_p", rows["p_value"].min(), 3),
            "trusted": Number(f"{key}:share_trusted", 100 * rows["share_trusted"].iloc[0], 0),
        }
        words = {"cell": f"{_label({'model': model, 'likelihood': likelihood, 'prior': prior})} on the {scenario} design "
                         f"at target_accept {ta:g} ({backend})"}
        if not bad.empty:
            words["which"] = "; ".join(f"{r.parameter} {r.departure}" for r in bad.head(4).itertuples()) + (
                f"; and {len(bad) - 4} more" if len(bad) > 4 else "")
        out.append(Headline(key, numbers, words, section="calibration",
                            scope={"scenario": scenario, "model": model, "likelihood": likelihood, "prior": prior,
                                   "target_accept": ta}))
    return out


def _loo_unreliable(rows: pd.DataFrame) -> pd.DataFrame:
    """The trusted, unranked fits whose PSIS-LOO the comparison found unreliable."""
    flagged = rows["loo_reliable"].eq(False) & rows["trusted"].astype(bool) & rows["rank"].isna()
    return rows[flagged & rows["n_pareto_k_high"].notna()]


def _ranked_model_flags(compared: pd.DataFrame, words: dict) -> None:
    """What the same sentence must say when a model it ranks fails its model check (a
    variable in prior-data conflict or prior-dominated, or a prior predictive misfit): what
    it is flagged for (`words["flagged"]`)."""
    flagged = compared[(compared["model_flags"].fillna("").astype(str) != "") & ~compared["model_ok"].fillna(True).astype(bool)]
    if flagged.empty:
        return
    # The failed checks only: a weak-identification note fails nothing.
    words["flagged"] = "; ".join(
        f"{r.label} ({', '.join(f for f in r.model_flags.split('; ') if WEAKLY_IDENTIFIED not in f)})"
        for r in flagged.itertuples())


def real_headlines(comparison: pd.DataFrame) -> list[Headline]:
    """Per real data set: which model predicts best among the trusted fits whose PSIS-LOO is
    reliable, by how much in standard errors; which trusted fits were not ranked because
    their PSIS-LOO is unreliable (how many Pareto k are too high), or that none can be
    ranked; and which fits were left out as untrusted and why."""
    out = []
    # dropna=False: a data set named 'NA' (or read back as NaN) must not vanish.
    for dataset, rows in comparison.groupby("dataset", sort=False, dropna=False):
        rows = rows.assign(label=[_label(r) for _, r in rows.iterrows()])
        key = f"real:{dataset}"
        ranked = rows.dropna(subset=["rank"]).sort_values("rank")
        untrusted = rows[~rows["trusted"].astype(bool)]
        unreliable = _loo_unreliable(rows)
        words = {"dataset": str(dataset)}
        numbers = {}
        tags = []
        for i, r in enumerate(unreliable.itertuples()):
            tag = f"u{i}"
            tags.append(tag)
            words[f"{tag}_name"] = r.label
            numbers |= {f"{tag}_high": Number(f"{key}:{r.label}:n_pareto_k_high", r.n_pareto_k_high, 0),
                        f"{tag}_n": Number(f"{key}:{r.label}:n_obs", r.n_obs, 0),
                        f"{tag}_k": Number(f"{key}:{r.label}:pareto_k_threshold", r.pareto_k_threshold, 2)}
            if pd.notna(r.p_loo):
                numbers[f"{tag}_p"] = Number(f"{key}:{r.label}:p_loo", r.p_loo, 1)
        data = {"unreliable": tags, "any_trusted": bool(rows["trusted"].astype(bool).any())}
        if not ranked.empty:
            best = ranked.iloc[0]
            words["best"] = best["label"]
            numbers["elpd"] = Number(f"{key}:best_elpd", best["elpd_loo"], 1)
            if len(ranked) > 1:
                second = ranked.iloc[1]
                words["second"] = second["label"]
                numbers["diff"] = Number(f"{key}:elpd_diff", -second["elpd_diff"], 1)
                numbers["se"] = Number(f"{key}:elpd_diff_se", second["elpd_diff_se"], 1)
                ratio = -second["elpd_diff"] / second["elpd_diff_se"] if second["elpd_diff_se"] > 0 else np.inf
                numbers["ratio"] = Number(f"{key}:diff_in_se", ratio, 1)
            _ranked_model_flags(ranked.head(2), words)
            # Their estimates may be biased (optimistic, mostly): the best of the reliable
            # fits is not shown to be the best of all.
            higher = unreliable[unreliable["elpd_loo"] > best["elpd_loo"]]
            if len(higher):
                words["higher"] = ", ".join(higher["label"])
                data["n_higher"] = len(higher)
        if len(untrusted):
            words["untrusted"] = "; ".join(f"{r.label} ({r.untrusted_because})" for r in untrusted.itertuples())
        out.append(Headline(key, numbers, words, section="real", data=data, scope={"scenario": str(dataset)}))
    return out


def centered_threshold(rows: pd.DataFrame) -> float | None:
    """From how many points per group on the centered form wins for good, at that size and
    every larger one: some of its fits are trusted, no smaller share of them than of the
    non-centered form's, and its median min-ESS per second over trusted fits is higher
    (ratio > 1), or none of the non-centered form's fits is trusted at all. None where it
    never does."""
    rows = rows.sort_values("points_per_group")
    faster = (rows["ess_ratio"] > 1) | (rows["noncentered_trusted"] == 0)
    wins = faster & (rows["centered_trusted"] > 0) & (rows["centered_share_trusted"] >= rows["noncentered_share_trusted"])
    for i in range(len(rows)):
        if wins.iloc[i:].all():
            return float(rows["points_per_group"].iloc[i])
    return None


def map_headlines(table: pd.DataFrame) -> list[Headline]:
    """The parameterisation map, per prior set, target_accept and noise level: from how many
    points per group the centered form wins (`centered_threshold`), compared with the rule
    of thumb of about 50 observations per group; then how the answer moves with the priors."""
    out = []
    if table.empty:
        return out
    thresholds = {}
    for (prior, ta, noise), rows in table.groupby(["prior", "target_accept", "noise"], sort=True, dropna=False):
        key = f"map:{prior}:{ta:g}:{noise:g}"
        words = {"prior": prior, "noise": f"{noise:g}", "ta": f"{ta:g}"}
        threshold = thresholds[prior, ta, noise] = centered_threshold(rows)
        if threshold is None:
            numbers = {"largest": Number(f"{key}:largest", rows["points_per_group"].max(), 0)}
        else:
            numbers = {"threshold": Number(f"{key}:threshold", threshold, 0), "rule": Number(f"{key}:rule", RULE_OF_THUMB_POINTS, 0)}
            words["comparison"] = ("below" if threshold < RULE_OF_THUMB_POINTS
                                   else "above" if threshold > RULE_OF_THUMB_POINTS else "at")
        out.append(Headline(key, numbers, words, section="map", scope={"prior": prior, "target_accept": ta, "noise": noise}))
    priors = list(dict.fromkeys(table["prior"]))
    for (ta, noise), rows in table.groupby(["target_accept", "noise"], sort=True, dropna=False):
        if len(priors) < 2:
            break
        found = {p: thresholds.get((p, ta, noise)) for p in priors}
        described = "; ".join(f"{p} priors: {'never' if t is None else f'from {t:g}'}" for p, t in found.items())
        moves = len(set(found.values())) > 1
        out.append(Headline(
            f"map-priors:{ta:g}:{noise:g}",
            {}, {"noise": f"{noise:g}", "ta": f"{ta:g}", "described": described}, section="map", data={"moves": moves},
            scope={"target_accept": ta, "noise": noise},
        ))
    return out


def for_backend(headline: Headline, backend: str) -> Headline:
    """`headline` as the finding of one sampler backend's fits: named in its text, key and
    numbers, so that each backend's findings stand apart."""
    return Headline(
        f"{backend}:{headline.key}",
        {name: Number(f"{backend}:{number.key}", number.value, number.digits) for name, number in headline.numbers.items()},
        headline.words | {"backend": backend},
        headline.section,
        headline.data,
        headline.scope,
    )


def headlines(summary: pd.DataFrame, fits: pd.DataFrame) -> list[Headline]:
    if summary.empty:
        return [failure_headline(fits)]
    # With several sampler backends, each gets its own findings: pooled, one sampler's
    # divergences and trusted fits would be averaged into another's.
    backends = list(dict.fromkeys(summary["backend"]))
    checked = checked_fits(fits)
    found = []
    for backend in backends:
        cells = summary[summary["backend"] == backend]
        here = None if checked is None else checked[checked["backend"] == backend]
        found_here = [
            *trust_headlines(cells), *trap_headlines(cells), *funnel_headlines(cells), *centering_headlines(cells),
            *shrinkage_headlines(cells, here), *likelihood_headlines(cells, here), *prior_set_headlines(cells),
        ]
        found += [for_backend(h, backend) for h in found_here] if len(backends) > 1 else found_here
    return [*found, failure_headline(fits)]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(repo: str | Path) -> str:
    """The commit of the workflow's code, marked '+dirty' with uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def provenance(config: dict, repo: str | Path) -> dict:
    return {
        "experiment_hash": experiment_hash(config),
        "git_commit": git_commit(repo),
        "packages": package_versions(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def data_uri(path: str | Path) -> str:
    path = Path(path)
    mime = {".png": "image/png", ".svg": "image/svg+xml"}[path.suffix]
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def render_caption(path: str | Path, **wildcards) -> Markup:
    """Captions are the RST files Snakemake's report uses: their Jinja parts rendered the
    same way, the text escaped, ``literals`` set as code."""
    text = jinja2.Template(Path(path).read_text()).render(snakemake={"wildcards": wildcards}).strip()
    escaped = html.escape(" ".join(text.split()))
    return Markup(re.sub(r"``(.+?)``", r"<code>\1</code>", escaped))


# Which grid cell a row of the summary is, in every table of cells.
CELL_COLUMNS = {
    "scenario": "scenario",
    "outliers": "outliers",
    "model": "model",
    "likelihood": "likelihood",
    "prior": "prior",
    "backend": "backend",
    "target_accept": "target_accept",
}

SUMMARY_COLUMNS = {
    **CELL_COLUMNS,
    "n_fits": "fits",
    "n_failed": "failed",
    "share_trusted": "trusted",
    "divergences_mean": "divergences / fit",
    "share_with_divergences": "share with divergences",
    "max_rhat": "max R-hat",
    "min_ess_bulk": "min bulk ESS",
    "untrusted_reasons": "untrusted because",
    "share_model_ok": "model check passed (trusted)",
    "model_flag_reasons": "model flagged for",
    "slope_rmse_mean": "slope RMSE (trusted)",
    "minority_abs_error_mean": "|minority error| (trusted)",
    "minority_bias_mean": "minority bias (trusted)",
    "hdi_coverage_mean": "HDI coverage (trusted)",
    "ess_bulk_per_second_median": "ESS/s (median)",
}


# The model check per cell, over its trusted fits; then each checked variable's share of
# them following its prior (`model_check_columns`).
MODEL_CHECK_COLUMNS = {
    **CELL_COLUMNS,
    "n_trusted": "trusted fits",
    "n_model_ok": "model check passed",
    "share_model_ok": "share passed",
    "model_flag_reasons": "flagged for",
}
# A real data set's fits, one by one, with their flags in full.
REAL_MODEL_CHECK_COLUMNS = {
    "scenario": "data set",
    "model": "model",
    "likelihood": "likelihood",
    "prior": "prior",
    "backend": "backend",
    "target_accept": "target_accept",
    "trusted": "trusted",
    "model_ok": "model check passed",
    "model_flags": "flagged for",
}


def model_check_columns(summary: pd.DataFrame) -> dict[str, str]:
    """MODEL_CHECK_COLUMNS, then `{V}_prior_flag_share` of every checked variable some
    cell's model has."""
    shares = [c for c in summary.columns if c.endswith("_prior_flag_share") and summary[c].notna().any()]
    return MODEL_CHECK_COLUMNS | {c: f"{c.removesuffix('_prior_flag_share')} follows its prior" for c in shares}


def _format(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if np.isnan(value) else f"{value:.3g}"
    return str(value)


# Counts of the comparison table, shown whole (a column with a gap is float: 919.0, or
# 1.23e+03 at three significant digits).
COMPARISON_COUNTS = ("rank", "n_pareto_k_bad", "n_obs", "n_pareto_k_high")


def _counts_as_integers(frame: pd.DataFrame, columns) -> pd.DataFrame:
    return frame.assign(**{c: [_format(v) if pd.isna(v) else str(int(v)) for v in frame[c]] for c in columns if c in frame})


def table_rows(frame: pd.DataFrame, columns: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    present = [c for c in columns if c in frame.columns]
    return [columns[c] for c in present], [[_format(v) for v in row] for row in frame[present].itertuples(index=False)]


def _tutorial_fit(rows: pd.DataFrame, variant: str, likelihood: str):
    """The fit of `variant` with `likelihood` among the tutorial dataset's `rows`: the first
    trusted parameterisation in the registry's order, else the first (shown untrusted)."""
    mine = rows[(rows["variant"] == variant) & (rows["likelihood"] == likelihood) & (rows["status"] == "ok")]
    if mine.empty:
        return None
    mine = mine.assign(_order=mine["parameterisation"].map({p: i for i, p in enumerate(PARAMETERISATIONS)}).fillna(-1))
    mine = mine.sort_values("_order", kind="stable")
    trusted = mine[mine["trusted"].astype(bool)]
    return (trusted if len(trusted) else mine).iloc[0]


def tutorial_story(fits: pd.DataFrame, config: dict) -> list[Headline]:
    """For a study that fits the tutorial's own dataset: its story in three numbers with the
    truth (the minority group's slope unpooled, partially pooled with mu, and partially
    pooled with robust noise), from its fits at the highest target_accept with the default
    priors and the first backend; a fit that is not trusted says so beside its number."""
    found = grid.tutorial_dataset(config) if "minority_slope_mean" in fits else None
    if found is None or fits.empty:
        return []
    scenario, outliers, seed = found
    ta = grid.showcase_target_accept(config)
    rows = fits[(fits["scenario"] == scenario) & (fits["outliers"] == outliers) & (fits["seed"] == seed)
                & np.isclose(fits["target_accept"], ta) & (fits["prior"] == DEFAULT_PRIOR)
                & (fits["backend"] == grid.sampler_labels(config)[0])]
    picked = {role: _tutorial_fit(rows, *model) for role, model in grid.TUTORIAL_MODELS.items()}
    if picked["unpooled"] is None or picked["pooled"] is None:
        return []
    key = f"story:{scenario}:{outliers}:{seed}"
    numbers, words = {}, {"scenario": scenario, "outliers": outliers}
    for role, fit in picked.items():
        if fit is None:
            continue
        label = _label(fit)
        numbers[role] = Number(f"{key}:{label}:minority_slope_mean", fit["minority_slope_mean"], 1)
        words[f"{role}_model"] = label
        words[f"{role}_verdict"] = "" if fit["trusted"] else f", untrusted: {fit['untrusted_because']}"
    numbers["seed"] = Number(f"{key}:seed", seed, 0)
    words["ta"] = f"{ta:g}"
    numbers["mu"] = Number(f"{key}:{words['pooled_model']}:mu_slope_mean", picked["pooled"]["mu_slope_mean"], 1)
    truth = picked["unpooled"]["minority_slope_mean"] - picked["unpooled"]["minority_bias"]
    numbers["truth"] = Number(f"{key}:true_minority_slope", truth, 2)
    return [Headline(key, numbers, words, section="story",
                     scope={"scenario": scenario, "outliers": outliers, "seed": seed, "target_accept": ta})]


def _present(calibration: pd.DataFrame | None, comparison: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The calibration and comparison tables a study may lack, as empty tables, the
    comparison with every column a finding reads."""
    calibration = calibration if calibration is not None else pd.DataFrame()
    comparison = (comparison if comparison is not None else pd.DataFrame()).reindex(columns=COMPARISON_COLUMNS)
    return calibration, comparison


def all_findings(
    *,
    summary: pd.DataFrame,
    fits: pd.DataFrame,
    config: dict,
    calibration: pd.DataFrame | None = None,
    comparison: pd.DataFrame | None = None,
    parameterisation: pd.DataFrame | None = None,
    sbc_fits: pd.DataFrame | None = None,
) -> list[Headline]:
    """Every finding of a study, from its tables, in the report's order: the tutorial's
    story, the headline findings most important first (`ranked_findings`), then those of
    the model checks, calibration, real data and the map."""
    calibration, comparison = _present(calibration, comparison)
    general = headlines(summary, fits)
    found = [*tutorial_story(fits, config), *ranked_findings([h for h in general if h.section == "findings"]),
             *[h for h in general if h.section != "findings"]]
    if sbc_fits is not None and (sbc_fits["status"] != "ok").any():
        found.append(calibration_failure_headline(sbc_fits))
    if len(calibration):
        found += calibration_headlines(calibration)
    if len(comparison):
        real = real_headlines(comparison)
        if fits["backend"].nunique() > 1:  # the comparison holds one backend's fits (the first)
            real = [for_backend(h, comparison["backend"].iloc[0]) for h in real]
        found += real
    if config.get("study", {}).get("parameterisation_map") and parameterisation is not None:
        found += map_headlines(parameterisation)
    return found


# Where a finding holds (empty where it does not narrow it: a shrinkage finding compares every
# model of its regime).
SCOPE_COLUMNS = ["scenario", "outliers", "seed", "model", "likelihood", "prior", "target_accept", "noise"]
FINDING_COLUMNS = ["key", "kind", "backend", "section", *SCOPE_COLUMNS, "text", "numbers", "words", "data"]

# The headline findings on the first screen: at most this many, the most important first.
TOP_FINDINGS = 8
# Importance: findings on the default likelihood and priors before those on the other axes
# (a likelihood or prior set that is not the default); then by kind: a false trust first
# (raising target_accept silenced the divergences, not the funnel), which form is trusted,
# what pooling does to the error, the funnel, robust noise, the count of failed fits; then
# the grid's order.
KIND_ORDER = ("trap", "trust", "shrinkage", "funnel", "centering", "likelihood", "failed")
# Every kind of finding, each worded by its own macro of templates/findings.j2.
FINDING_KINDS = (*KIND_ORDER, "priors", "failed_calibration", "calibration", "real", "map", "map-priors", "story")
# The figure a finding of each kind is read in (its id in the report).
KIND_FIGURE = {"trap": "trust", "trust": "trust", "shrinkage": "shrinkage", "funnel": "divergences", "centering": "trust",
               "likelihood": "shrinkage", "failed": "failed"}


def ranked_findings(found: list[Headline]) -> list[Headline]:
    """The findings section's headlines, most important first: those on a variant axis (a
    likelihood or prior set that is not the default: their `variant` note) after those on
    the defaults, each by KIND_ORDER, then in the grid's order."""
    def rank(item):
        index, headline = item
        kind = headline.kind
        return (bool(headline.words.get("variant")), KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), index)

    return [headline for _, headline in sorted(enumerate(found), key=rank)]


def _scope_value(value) -> str:
    """A scope column's cell: text, numbers as the config writes them ("" where unscoped)."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def findings_table(found: list[Headline]) -> pd.DataFrame:
    """The findings as data (`tables/findings.parquet`): one row per finding with its key,
    kind (the key's first part: trust, funnel, shrinkage, likelihood, real, ...), report
    section, where it holds (SCOPE_COLUMNS), the sentence as shown (plain text), and as JSON the numbers it quotes (name ->
    the table-traced key and the exact value), the words it names and its data (the
    switches and lists that chose the macro's wording)."""
    rows = []
    for headline in found:
        text = html.unescape(re.sub(r"<[^>]+>", "", str(render_headline(headline))))
        rows.append({
            # backend: set where each backend has its own findings
            "key": headline.key, "kind": headline.kind, "backend": headline.words.get("backend", ""),
            "section": headline.section, "text": text,
            **{column: _scope_value(headline.scope.get(column)) for column in SCOPE_COLUMNS},
            # JSON has no NaN or infinity: a number that is not finite is null.
            "numbers": json.dumps({name: {"key": n.key, "value": float(n.value) if np.isfinite(n.value) else None}
                                   for name, n in headline.numbers.items()}),
            "words": json.dumps(headline.words),
            # What else decided the sentence: switches (which form is trusted more, whether
            # divergences fell) and the tags of its lists.
            "data": json.dumps(headline.data),
        })
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def render_report(
    *,
    summary: pd.DataFrame,
    fits: pd.DataFrame,
    figures: list[dict],
    config: dict,
    provenance: dict,
    calibration: pd.DataFrame | None = None,
    comparison: pd.DataFrame | None = None,
    parameterisation: pd.DataFrame | None = None,
    sbc_fits: pd.DataFrame | None = None,
    found: list[Headline] | None = None,
) -> str:
    """`figures`: dicts with section, title, path and caption. `provenance`: the tables' own
    (experiment hash, package versions, commit), so the report states where its numbers
    came from even when it is rebuilt later for a plot change. `found`: the findings
    (`all_findings`), computed from the tables here when not given."""
    calibration, comparison = _present(calibration, comparison)
    failed = failed_fits(fits, sbc_fits)
    header, rows = table_rows(summary, SUMMARY_COLUMNS)
    untrusted = [bool(v < MOSTLY_TRUSTED) for v in summary.get("share_trusted", pd.Series(dtype=float)).fillna(0)]
    sections = {}
    for figure in figures:
        sections.setdefault(figure["section"], []).append(
            figure | {"src": data_uri(figure["path"]) if Path(figure["path"]).exists() else ""}
        )
    calibration_header, calibration_rows = table_rows(
        calibration, {"model": "model", "likelihood": "likelihood", "prior": "prior", "backend": "backend", "scenario": "design",
                      "target_accept": "target_accept", "parameter": "parameter", "p_value": "p-value",
                      "alpha_bonferroni": "Bonferroni level", "departure": "departure", "share_trusted": "trusted sims"})
    comparison_header, comparison_rows = table_rows(
        _counts_as_integers(comparison, COMPARISON_COUNTS), {"dataset": "data set", "model": "model", "likelihood": "likelihood", "prior": "prior", "backend": "backend",
                     "trusted": "trusted", "untrusted_because": "untrusted because", "rank": "rank",
                     "elpd_loo": "ELPD-LOO", "elpd_loo_se": "SE", "elpd_diff": "ELPD diff", "elpd_diff_se": "diff SE",
                     "weight": "weight", "n_pareto_k_bad": "Pareto k > 0.7", "n_obs": "observations",
                     "pareto_k_threshold": "k threshold", "n_pareto_k_high": "Pareto k > threshold",
                     "loo_reliable": "PSIS-LOO reliable", "not_ranked_because": "not ranked because"})
    model_checked = "share_model_ok" in summary
    model_check_header, model_check_rows = table_rows(summary, model_check_columns(summary))
    flagged = [bool(v < MOSTLY_TRUSTED) for v in summary.get("share_model_ok", pd.Series(dtype=float)).fillna(1)]
    real_fits = fits[fits["source"] == "real"] if "source" in fits else fits.iloc[:0]
    real_check_header, real_check_rows = table_rows(real_fits, REAL_MODEL_CHECK_COLUMNS if "model_ok" in fits else {})
    study = config.get("study", {})
    all_headlines = found if found is not None else all_findings(
        summary=summary, fits=fits, config=config, calibration=calibration, comparison=comparison,
        parameterisation=parameterisation, sbc_fits=sbc_fits)
    by_section = {}
    for headline in all_headlines:
        by_section.setdefault(headline.section, []).append(headline)
    findings = by_section.pop("findings", [])  # ranked by all_findings
    by_section = {section: [render_headline(h) for h in found_here] for section, found_here in by_section.items()}
    figure_ids = {figure["id"] for figure in figures} | {"failed"}
    top = [(render_headline(h), figure if (figure := KIND_FIGURE.get(h.kind)) in figure_ids else None) for h in findings]
    present = {"model-checks": model_checked, "calibration": bool(sections.get("calibration")),
               "real": bool(sections.get("real") or by_section.get("real")), "map": bool(sections.get("map"))}
    shown = [id for id in REPORT_SECTIONS if id not in OPTIONAL_SECTIONS or present[id]]
    return ENVIRONMENT.get_template("report.html.j2").render(
        title=study.get("title", "poolbench report"),
        question=study.get("question", ""),
        study=study.get("name", ""),
        headlines=by_section,
        top_findings=top[:TOP_FINDINGS],
        more_findings=top[TOP_FINDINGS:],
        summary_header=header,
        summary_rows=list(zip(rows, untrusted)),
        failed=failed.to_dict("records"),
        failed_columns=FAILED_COLUMNS,
        sections=sections,
        calibration_header=calibration_header,
        calibration_rows=calibration_rows,
        comparison_header=comparison_header,
        comparison_rows=comparison_rows,
        shown=shown,
        nav=[(id, REPORT_SECTIONS[id]) for id in shown],
        headings={id: heading for id, (_, heading) in REPORT_SECTIONS.items()},
        model_check_header=model_check_header,
        model_check_rows=list(zip(model_check_rows, flagged)),
        real_check_header=real_check_header,
        real_check_rows=real_check_rows,
        model_check={"sensitivity": SENSITIVITY_THRESHOLD, "weak_spread": WEAK_SPREAD_SENSITIVITY,
                     "prior_predictive": f"{PRIOR_PREDICTIVE_PROB:.0%}", "mostly_flagged": f"{MOSTLY_FLAGGED:.0%}"},
        config_yaml=yaml.safe_dump(config, sort_keys=False),
        provenance=provenance,
        n_fits=len(fits),
        trust=config.get("trust", {}),
    )

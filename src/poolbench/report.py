"""The self-contained HTML report: headline findings written from the numbers, tables,
figures with captions, and provenance. Rendered with Jinja2; images are embedded."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.metadata
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd
import yaml

from poolbench.grid import experiment_hash

TEMPLATES = Path(__file__).parent / "templates"
# Packages whose versions decide the numbers or the pictures.
KEY_PACKAGES = [
    "pymc", "pytensor", "nutpie", "arviz", "arviz-stats", "numpy", "pandas",
    "xarray", "seaborn", "matplotlib", "snakemake",
]


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
    key: str
    template: str  # a str.format template over `numbers` and `words`
    numbers: dict[str, Number] = field(default_factory=dict)
    words: dict[str, str] = field(default_factory=dict)


def _mean(summary: pd.DataFrame, column: str, **where) -> float | None:
    rows = summary
    for key, value in where.items():
        rows = rows[rows[key] == value]
    values = rows[column].dropna()
    return float(values.mean()) if len(values) else None


def funnel_headlines(summary: pd.DataFrame) -> list[Headline]:
    """Per scenario: centered vs non-centered divergences at the lowest target_accept,
    and what the highest target_accept left of the centered model's."""
    out = []
    hierarchical = summary[summary["variant"] == "hierarchical"]
    tas = sorted(hierarchical["target_accept"].unique())
    for scenario in dict.fromkeys(hierarchical["scenario"]):
        low, high = tas[0], tas[-1]
        centered = _mean(hierarchical, "divergences_mean", scenario=scenario, parameterisation="centered", target_accept=low)
        noncentered = _mean(hierarchical, "divergences_mean", scenario=scenario, parameterisation="noncentered", target_accept=low)
        centered_high = _mean(hierarchical, "divergences_mean", scenario=scenario, parameterisation="centered", target_accept=high)
        if centered is None or noncentered is None:
            continue
        key = f"funnel:{scenario}"
        if centered == noncentered == 0:
            opening = "In the {scenario} scenario, neither parameterisation diverged at target_accept {low} ({centered} centered, {noncentered} non-centered per fit)"
        else:
            opening = "In the {scenario} scenario, non-centering {verb} divergences from {centered} to {noncentered} per fit at target_accept {low}"
        headline = Headline(
            key,
            opening,
            {
                "centered": Number(f"{key}:centered", centered),
                "noncentered": Number(f"{key}:noncentered", noncentered),
                "low": Number(f"{key}:low", low, 2),
            },
            {"scenario": scenario, "verb": "cut" if noncentered < centered else "did not reduce"},
        )
        if centered_high is not None and high != low:
            headline.template += "; raising target_accept to {high} left the centered model {centered_high} per fit."
            headline.numbers |= {
                "high": Number(f"{key}:high", high, 2),
                "centered_high": Number(f"{key}:centered_high", centered_high),
            }
        else:
            headline.template += "."
        out.append(headline)
    return out


def shrinkage_headlines(summary: pd.DataFrame) -> list[Headline]:
    """Per scenario, at its largest outlier level: the minority slope's error and the
    group-slope RMSE of each model (averaged over seeds and target_accept)."""
    out = []
    for scenario in dict.fromkeys(summary["scenario"]):
        rows = summary[summary["scenario"] == scenario]
        outliers = rows.loc[rows["outlier_count"].idxmax(), "outliers"]
        rows = rows[rows["outliers"] == outliers]
        models = list(dict.fromkeys(rows["model"]))
        key = f"shrinkage:{scenario}:{outliers}"
        numbers, parts = {}, []
        for model in models:
            error = _mean(rows, "minority_error_mean", model=model)
            rmse = _mean(rows, "slope_rmse_mean", model=model)
            if error is None:
                continue
            numbers[f"{model}_error"] = Number(f"{key}:{model}:minority_error", error, 2)
            numbers[f"{model}_rmse"] = Number(f"{key}:{model}:slope_rmse", rmse, 2)
            parts.append(f"{model} {{{model}_error}} (RMSE {{{model}_rmse}})")
        if not parts:
            continue
        best = min(models, key=lambda m: numbers[f"{m}_rmse"].value if f"{m}_rmse" in numbers else float("inf"))
        out.append(
            Headline(
                key,
                "In the {scenario} scenario with outliers {outliers}, the minority slope's mean error "
                "was " + ", ".join(parts) + "; the lowest group-slope RMSE was {best}'s.",
                numbers,
                {"scenario": scenario, "outliers": outliers, "best": best},
            )
        )
    return out


def failure_headline(fits: pd.DataFrame) -> Headline:
    failed = int((fits["status"] != "ok").sum())
    return Headline(
        "failed",
        "{failed} of {total} fits failed" + (" (listed below)." if failed else "."),
        {"failed": Number("failed:count", failed, 0), "total": Number("failed:total", len(fits), 0)},
    )


def headlines(summary: pd.DataFrame, fits: pd.DataFrame) -> list[Headline]:
    return [*funnel_headlines(summary), *shrinkage_headlines(summary), failure_headline(fits)]


def render_headline(headline: Headline) -> str:
    """Each number becomes <span data-key=... data-value=...>, so tests and readers can
    trace it back to the tables."""
    numbers = {
        name: f'<span class="num" data-key="{n.key}" data-value="{float(n.value)!r}">{n}</span>'
        for name, n in headline.numbers.items()
    }
    words = {k: jinja2.utils.markupsafe.escape(v) for k, v in headline.words.items()}
    return headline.template.format(**numbers, **words)


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


def render_caption(path: str | Path, **wildcards) -> str:
    """Captions are the RST files Snakemake's report uses; render their Jinja parts the same way."""
    text = Path(path).read_text()
    return jinja2.Template(text).render(snakemake={"wildcards": wildcards}).strip()


SUMMARY_COLUMNS = {
    "scenario": "scenario",
    "outliers": "outliers",
    "model": "model",
    "target_accept": "target_accept",
    "n_fits": "fits",
    "n_failed": "failed",
    "divergences_mean": "divergences / fit",
    "share_with_divergences": "share with divergences",
    "slope_rmse_mean": "slope RMSE",
    "minority_error_mean": "minority error",
    "minority_error_lower": "minority error 5 %",
    "minority_error_upper": "minority error 95 %",
    "hdi_coverage_mean": "HDI coverage",
    "max_rhat": "max R-hat",
    "ess_bulk_per_second_median": "ESS/s (median)",
}


def render_report(
    *,
    summary: pd.DataFrame,
    fits: pd.DataFrame,
    figures: list[dict],
    config: dict,
    provenance: dict,
) -> str:
    """`figures`: dicts with title, path and caption. `provenance`: the tables' own
    (experiment hash, package versions, commit), so the report states where its numbers
    came from even when it is rebuilt later for a plot change."""
    failed = fits[fits["status"] != "ok"][
        ["scenario", "outliers", "seed", "model", "target_accept", "error"]
    ]
    table = summary[list(SUMMARY_COLUMNS)].rename(columns=SUMMARY_COLUMNS)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape()
    )
    return environment.get_template("report.html.j2").render(
        headlines=[jinja2.utils.markupsafe.Markup(render_headline(h)) for h in headlines(summary, fits)],
        summary_html=table.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="–", classes="summary", border=0),
        failed=failed.to_dict("records"),
        figures=[f | {"src": data_uri(f["path"])} for f in figures],
        config_yaml=yaml.safe_dump(config, sort_keys=False),
        provenance=provenance,
        n_fits=len(fits),
    )

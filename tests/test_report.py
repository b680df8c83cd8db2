"""End to end on the tiny config: tables, figures, the HTML report (escaped, in a real
browser) and Snakemake's report."""

from __future__ import annotations

import html
import re
import zipfile
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, TINY, TINY_RESULTS, snakemake, tiny_config
from poolbench import figures, records

R = TINY_RESULTS
MODELS = ["pooled", "unpooled", "hierarchical_centered", "hierarchical_noncentered"]
FIGURES = (
    [f.name for f in figures.SUMMARY]
    + [f"posterior/{m}" for m in MODELS]
    + [f"funnel/{s}" for s in TINY["scenarios"]]
)


class ReportParser(HTMLParser):
    """Collects the report's images and the numbers its headlines quote."""

    def __init__(self):
        super().__init__()
        self.images, self.numbers = [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if "data-key" in attrs:
            self.numbers[attrs["data-key"]] = float(attrs["data-value"])


@pytest.fixture(scope="module")
def report(tiny_run):
    parser = ReportParser()
    parser.feed((tiny_run / R / "report.html").read_text())
    return parser


def test_tables_hold_every_fit_and_group_with_its_verdict(tiny_run):
    fits = pd.read_parquet(tiny_run / R / "tables/fits.parquet")
    # 2 scenarios x 2 outlier levels x 2 seeds x 4 models x 2 target_accepts
    assert len(fits) == 64 and (fits["status"] == "ok").all()
    assert list(fits.columns) == records.FIT_COLUMNS + records.VERDICT + records.MODEL_VERDICT + ["experiment"]
    groups = pd.read_parquet(tiny_run / R / "tables/groups.parquet")
    assert len(groups) == 64 * 8
    from_csv = pd.read_csv(tiny_run / R / "tables/fits.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(from_csv[["seed", "model", "max_rhat", "trusted"]], fits[["seed", "model", "max_rhat", "trusted"]], check_dtype=False)
    summary = pd.read_csv(tiny_run / R / "tables/summary.csv", keep_default_na=False, na_values=[""])
    assert len(summary) == 32 and (summary["n_fits"] == 2).all()
    cell = fits[(fits["scenario"] == "hard") & (fits["model"] == "unpooled") & (fits["outliers"] == "2at30") & (fits["target_accept"] == 0.8)]
    row = summary[(summary["scenario"] == "hard") & (summary["model"] == "unpooled") & (summary["outliers"] == "2at30") & (summary["target_accept"] == 0.8)].iloc[0]
    trusted = cell[cell["trusted"]]
    assert row["n_trusted"] == len(trusted) and row["share_trusted"] == len(trusted) / len(cell)
    if len(trusted):  # errors are means over trusted fits only
        assert row["slope_rmse_mean"] == pytest.approx(trusted["slope_rmse"].mean())
        assert row["minority_abs_error_mean"] == pytest.approx(trusted["minority_abs_error"].mean())


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_a_real_png_and_svg(tiny_run, name):
    with Image.open(tiny_run / R / f"figures/{name}.png") as image:
        assert image.width > 200 and image.height > 120  # tiny.yaml draws at 60 dpi
        assert len(set(image.convert("L").getdata())) > 10  # not a blank canvas
    svg = (tiny_run / R / f"figures/{name}.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_no_figure_has_overlapping_titles(tiny_run):
    """Issue #13, item 6: the tutorial figures' titles overlapped the panels' tick labels.
    Every figure is laid out again here and checked text box by text box."""
    from functools import partial

    from poolbench import plots
    from poolbench.storage import read_posterior

    fits = pd.read_parquet(tiny_run / R / "tables/fits.parquet")
    groups = pd.read_parquet(tiny_run / R / "tables/groups.parquet")
    summary = pd.read_parquet(tiny_run / R / "tables/summary.parquet")
    showcase = partial(plots.showcase, seed=0, outliers="2at30", target_accept=0.99)
    drawn = {f.name: getattr(plots, f"{f.name}_figure")(fits, groups, summary, showcase) for f in figures.SUMMARY}
    for model in MODELS:
        posterior = next((tiny_run / R / "fits" / model).rglob("posterior/tutorial/2at30_seed0_ta0.99.nc"))
        drawn[f"posterior/{model}"] = plots.posterior_figure(read_posterior(posterior), model, 0.94)
    for name, figure in drawn.items():
        assert plots.text_overlaps(figure) == [], name


def test_the_overlap_check_catches_a_title_on_tick_labels():
    import matplotlib.pyplot as plt

    from poolbench import plots

    figure, axes = plt.subplots(2, 1, figsize=(3, 2))
    axes[1].set_title("a title\non two lines\nand three")
    assert plots.text_overlaps(figure)


def test_plate_diagrams_show_each_models_variables(tiny_run):
    with Image.open(tiny_run / R / "figures/models/hierarchical_centered.png") as image:
        assert image.width > 100 and image.height > 100
    assert "common_slope" in (tiny_run / R / "figures/models/pooled.svg").read_text()
    noncentered = (tiny_run / R / "figures/models/hierarchical_noncentered.svg").read_text()
    assert all(v in noncentered for v in ("mu_slope", "sigma_slope", "z_slope", "slope", "y_obs"))


def test_funnel_figure_data_show_divergent_draws_of_the_centered_model(tiny_run):
    """The data behind the hard scenario's funnel figure: the centered panels hold the
    draws of log(sigma) against slope[0] with the divergent ones marked, the non-centered
    ones against z_slope[0]."""
    points = pd.read_csv(tiny_run / R / "figures/funnel/hard.csv", keep_default_na=False, na_values=[""])
    assert set(points["parameterisation"]) == {"centered", "noncentered"}
    assert set(points["target_accept"]) == {0.8, 0.99}
    centered = points[points["parameterisation"] == "centered"]
    assert set(centered["x_variable"]) == {"slope[0]"}
    assert set(points[points["parameterisation"] == "noncentered"]["x_variable"]) == {"z_slope[0]"}
    fits = pd.read_parquet(tiny_run / R / "tables/fits.parquet")
    showcase = fits[(fits["scenario"] == "hard") & (fits["seed"] == 0) & (fits["outliers"] == "2at30")
                    & (fits["model"] == "hierarchical_centered")]
    expected = {row.target_accept: row.n_divergent for row in showcase.itertuples()}
    assert {ta: int(rows["diverging"].sum()) for ta, rows in centered.groupby("target_accept")} == expected
    assert centered["diverging"].sum() > 0  # the funnel shows: divergent draws in the centered panel
    assert len(centered) == 2 * 2 * 300  # both target_accepts, 2 chains x 300 draws


def test_report_is_self_contained(tiny_run, report):
    html = (tiny_run / R / "report.html").read_text()
    assert len(report.images) == len(FIGURES) + 4  # + a plate diagram per model
    assert all(src.startswith("data:image/") for src in report.images)
    assert not re.search(r"""(src|href)=["'](https?:|file:|/)""", html)


def test_headline_numbers_equal_the_tables(tiny_run, report):
    fits = pd.read_parquet(tiny_run / R / "tables/fits.parquet")
    tas = sorted(TINY["sampler"]["target_accept"])
    for scenario in TINY["scenarios"]:
        for parameterisation, ta, key in [
            ("centered", tas[0], "centered"),
            ("noncentered", tas[0], "noncentered"),
            ("centered", tas[-1], "centered_high"),
        ]:
            chosen = fits[(fits["scenario"] == scenario) & (fits["parameterisation"] == parameterisation) & (fits["target_accept"] == ta)]
            assert report.numbers[f"funnel:{scenario}:{key}"] == pytest.approx(chosen["n_divergent"].mean())
        for parameterisation in ("centered", "noncentered"):
            side = fits[(fits["scenario"] == scenario) & (fits["parameterisation"] == parameterisation)]
            key = f"trust:{scenario}:normal:default"
            assert report.numbers[f"{key}:{parameterisation}_trusted"] == side["trusted"].sum()
            assert report.numbers[f"{key}:{parameterisation}_fits"] == len(side)
        dirty = fits[(fits["scenario"] == scenario) & (fits["outliers"] == "2at30")]
        for model, rows in dirty.groupby("model"):
            trusted = rows[rows["trusted"]]
            assert report.numbers[f"shrinkage:{scenario}:2at30:{model}:trusted"] == len(trusted)
            if len(trusted):
                assert report.numbers[f"shrinkage:{scenario}:2at30:{model}:minority_abs_error"] == pytest.approx(
                    trusted["minority_abs_error"].mean())
                assert report.numbers[f"shrinkage:{scenario}:2at30:{model}:slope_rmse"] == pytest.approx(
                    trusted["slope_rmse"].mean())
    assert report.numbers["failed:count"] == 0 and report.numbers["failed:total"] == len(fits)


def test_the_findings_table_holds_every_finding_of_the_report_with_its_numbers(tiny_run, report):
    """Issue #27, item 1: the findings as data, one row per finding in the report's order;
    each row's sentence is the report's and its numbers are the report's, traced by key."""
    import json

    findings = pd.read_parquet(tiny_run / R / "tables/findings.parquet")
    html_text = html.unescape(re.sub(r"<[^>]+>", "", (tiny_run / R / "report.html").read_text()))
    assert findings["key"].is_unique and set(findings["kind"]) >= {"story", "trust", "funnel", "shrinkage", "failed"}
    # The tutorial's story comes first, on the first screen, its numbers the fits table's.
    story = findings.iloc[0]
    assert story["kind"] == "story" and story["section"] == "story"
    fits = pd.read_parquet(tiny_run / R / "tables/fits.parquet")
    unpooled = fits[(fits["model"] == "unpooled") & (fits["scenario"] == "tutorial") & (fits["seed"] == 0)
                    & (fits["outliers"] == "2at30") & (fits["target_accept"] == max(TINY["sampler"]["target_accept"]))]
    assert json.loads(story["numbers"])["unpooled"]["value"] == unpooled["minority_slope_mean"].iloc[0]
    page = (tiny_run / R / "report.html").read_text()
    assert page.index('class="story"') < page.index('id="findings"')
    quoted = {}
    for row in findings.itertuples():
        assert " ".join(row.text.split()) in " ".join(html_text.split()), row.key
        for number in json.loads(row.numbers).values():
            quoted[number["key"]] = number["value"]
    assert quoted and quoted == {key: value for key, value in report.numbers.items() if key in quoted}
    assert set(report.numbers) == set(quoted)  # and the report quotes no number the table lacks
    csv = pd.read_csv(tiny_run / R / "tables/findings.csv", keep_default_na=False, na_values=[""])
    assert csv["key"].tolist() == findings["key"].tolist()


def chrome():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


def test_report_renders_in_a_real_browser_with_every_image_loaded(tiny_run):
    driver = chrome()
    try:
        driver.get((tiny_run / R / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"
        )
        assert len(images) == len(FIGURES) + 4
        assert all(complete and width > 0 for complete, width, _ in images), images
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        assert driver.find_element("id", "findings").is_displayed()
        # Issue #27: at 1400 x 900 the question, the tutorial's story and the overview figure
        # are on the first screen, and nothing is wider than the window.
        driver.set_window_size(1400, 900)
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return window.innerHeight")
        bottom = {name: driver.execute_script(f"return document.querySelector('{selector}').getBoundingClientRect().bottom")
                  for name, selector in [("question", ".question"), ("story", ".story"), ("overview", "figure.overview img")]}
        assert all(value <= height for value in bottom.values()), (bottom, height)
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        # The summary table filters and sorts in the page (issue #27, item 2).
        rows = "Array.from(document.getElementById('summary-table').rows).slice(1)"
        total = driver.execute_script(f"return {rows}.length")
        box = driver.find_element("id", "summary-filter")
        box.send_keys("hard 0.99")
        shown = driver.execute_script(f"return {rows}.filter(r => !r.hidden).map(r => r.textContent)")
        assert 0 < len(shown) < total and all("hard" in text and "0.99" in text for text in shown)
        box.clear()
        driver.execute_script("document.getElementById('summary-filter').dispatchEvent(new Event('input'))")
        header = driver.execute_script("return Array.from(document.getElementById('summary-table').rows[0].cells).map(c => c.textContent)")
        column = header.index("trusted")
        driver.execute_script(f"document.getElementById('summary-table').rows[0].cells[{column}].click()")
        values = driver.execute_script(f"return {rows}.map(r => r.cells[{column}].textContent)")
        numbers = [float(v.rstrip("%")) for v in values]
        assert numbers == sorted(numbers) and len(set(numbers)) > 1
        # Every navigation anchor lands on its section.
        for anchor in driver.execute_script("return Array.from(document.querySelectorAll('nav a')).map(a => a.hash)"):
            driver.execute_script(f"document.querySelector('nav a[href=\"{anchor}\"]').click()")
            top = driver.execute_script(f"return document.querySelector('{anchor}').getBoundingClientRect().top")
            assert abs(top) < 5 or driver.execute_script(
                "return window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 2"), anchor
    finally:
        driver.quit()


HOSTILE = [
    "<script>document.title='PWNED'</script>",
    "<img src=x onerror=\"document.title='PWNED'\">",
    "\"><svg onload=\"document.title='PWNED'\">",
    "{{ 7*7 }}</pre><b id=injected>bold</b>",
]


def test_hostile_strings_in_every_user_field_are_shown_not_run(tiny_run, tmp_path):
    """Issue #12, item 7: error messages, config values, scenario and model names and
    provenance, all rendered into the report, none executing or adding elements."""
    from poolbench.report import render_report
    from poolbench.storage import read_provenance

    fits = pd.read_parquet(tiny_run / R / "tables/fits.parquet")
    summary = pd.read_parquet(tiny_run / R / "tables/summary.parquet")
    hostile = " ".join(HOSTILE)
    fits.loc[0, ["status", "error", "scenario", "model", "likelihood"]] = ["failed", hostile, hostile, hostile, hostile]
    fits.loc[0, "trusted"] = False
    summary.loc[0, ["scenario", "outliers", "model", "untrusted_reasons"]] = [hostile] * 4
    provenance = read_provenance(tiny_run / R / "tables/summary.parquet")
    provenance |= {"git_commit": hostile, "created": hostile, "packages": {hostile: hostile}}
    config = tiny_config() | {"study": {"name": hostile, "title": hostile, "question": hostile}}
    comparison = pd.DataFrame([{"dataset": hostile, "model": hostile, "likelihood": "normal", "prior": "default",
                                "trusted": False, "untrusted_because": hostile, "elpd_loo": 1.0}])
    calibration = pd.DataFrame([{"model": hostile, "variant": "x", "parameterisation": "none", "likelihood": hostile,
                                 "prior": "default", "backend": "nutpie", "scenario": hostile, "target_accept": 0.8,
                                 "parameter": hostile, "n_ranked": 10, "p_value": 0.001, "pit_mean": 0.9, "pit_var": 0.05,
                                 "alpha_bonferroni": 0.01, "miscalibrated": True, "departure": hostile,
                                 "share_trusted": 1.0, "n_simulations": 10}])
    image = tmp_path / "figure.png"
    image.write_bytes((tiny_run / R / "figures/trust.png").read_bytes())
    figures_ = [{"id": "x", "section": "figures", "title": hostile, "path": str(image), "caption": hostile}]
    # A failed calibration fit is listed with the grid's failures, its error escaped too.
    sbc_fits = pd.DataFrame([{"model": "pooled", "likelihood": "normal", "scenario": "hard", "target_accept": 0.8,
                              "simulation": 3, "status": "failed", "error": hostile},
                             {"model": "pooled", "likelihood": "normal", "scenario": "hard", "target_accept": 0.8,
                              "simulation": 4, "status": "ok", "error": ""}])
    html = render_report(summary=summary, fits=fits, figures=figures_, config=config, provenance=provenance,
                         calibration=calibration, comparison=comparison, sbc_fits=sbc_fits)
    assert "<td>hard (calibration)</td><td>-</td><td>3</td><td>pooled</td>" in html
    assert re.search(r'data-key="failed:calibration_count"[^>]*>1</span> of <span[^>]*>2</span> calibration fits failed', html)
    page = tmp_path / "report.html"
    page.write_text(html)
    assert "<script>document" not in html and "onerror=\"document" not in html
    driver = chrome()
    try:
        driver.get(page.as_uri())
        assert driver.title != "PWNED" and "<script>" in driver.title  # the title shown as text
        # The page's one script is its own (the summary table's sort and filter), none injected.
        assert driver.execute_script("return Array.from(document.scripts).map(s => s.id)") == ["poolbench-table"]
        assert driver.execute_script("return document.querySelectorAll('#injected, svg[onload], img[onerror]').length") == 0
        assert len(driver.execute_script("return Array.from(document.images)")) == 1  # the one figure
        body = driver.find_element("tag name", "body").text
        assert "<script>document.title='PWNED'</script>" in body  # shown as text
    finally:
        driver.quit()


@pytest.mark.slow
def test_snakemake_report_builds_with_figures_and_captions(tiny_run):
    snakemake(tiny_run, tiny_config(), "--report", f"{R}/snakemake-report.zip")
    with zipfile.ZipFile(tiny_run / R / "snakemake-report.zip") as archive:
        names = archive.namelist()
        page = archive.read(next(n for n in names if n.endswith("report.html"))).decode()
    files = [n.rsplit("/", 1)[-1] for n in names]
    for name in ["divergences.png", "trust.png", "estimates.png", "hard.png"] + [f"{m}.png" for m in MODELS]:
        assert name in files, name
    # Each per-item figure is its own item, its caption rendered with its own name.
    for model in MODELS:
        assert f"Plate diagram of the {model} model" in page
        assert f"tutorial's figure for {model}" in page
    assert "from this pipeline's own posteriors of the hard" in page  # the funnel's caption
    assert "findings.csv" in files and "The study's findings as data" in page  # the findings table is an item


@pytest.mark.slow
def test_changing_a_plot_setting_reruns_no_fit(tiny_run):
    config = tiny_config()
    config["plots"]["dpi"] = 72
    result = snakemake(tiny_run, config, "--dry-run")
    planned = result.stdout
    assert "rule fit" not in planned and "rule simulate" not in planned and "rule aggregate" not in planned
    assert "rule plot_summary" in planned and "rule html_report" in planned


@pytest.mark.slow
def test_changing_a_trust_threshold_reruns_no_fit(tiny_run):
    """Issue #13: thresholds decide verdicts at aggregation; the fits stand."""
    config = tiny_config() | {"trust": {"max_rhat": 1.05}}
    planned = snakemake(tiny_run, config, "--dry-run").stdout
    assert "rule fit" not in planned and "rule simulate" not in planned
    assert "rule aggregate" in planned and "rule html_report" in planned


@pytest.mark.slow
def test_changing_a_hierarchical_prior_reruns_only_hierarchical_fits(tiny_run):
    config = tiny_config()
    config["models"]["priors"]["hierarchical"]["sigma_rate"] = 10.0
    planned = snakemake(tiny_run, config, "--dry-run").stdout
    fits = re.findall(r"rule fit:\n(?:.*\n)*?\s+wildcards: (.*)", planned)
    assert fits and all("model=hierarchical" in w for w in fits)
    assert len(fits) == 2  # the two parameterisations


# The model check (issue #25), on synthetic tables: what the headlines, the report and the
# prior predictive figure make of its columns.
SHOWCASE = {"seed": 0, "outliers": "2at30", "target_accept": 0.99}
CHECK_MODELS = {"pooled": ("pooled", "none"), "unpooled": ("unpooled", "none"),
                "hierarchical_centered": ("hierarchical", "centered"),
                "hierarchical_noncentered": ("hierarchical", "noncentered")}


def checked_fits(sigma_slope: dict[str, str], likelihoods=("normal",), seeds=3) -> pd.DataFrame:
    """Trusted fits of the hard scenario with their model check: `sigma_slope` maps each
    prior set to the hierarchical fits' sigma_slope diagnosis (every other variable clean).
    Group-slope RMSE: hierarchical 0.4 (default priors) or 0.2 (others), the rest 0.6."""
    rows = []
    for prior, diagnosis in sigma_slope.items():
        for likelihood in likelihoods:
            for model, (variant, parameterisation) in CHECK_MODELS.items():
                hierarchical = variant == "hierarchical"
                for target_accept in (0.8, 0.99):
                    for seed in range(seeds):
                        row = {"source": "simulated", "scenario": "hard", "outliers": "2at30", "outlier_count": 2,
                               "seed": seed, "model": model, "variant": variant, "parameterisation": parameterisation,
                               "likelihood": likelihood, "prior": prior, "backend": "nutpie",
                               "target_accept": target_accept, "n_groups": 8, "status": "ok", "error": "",
                               "trusted": True, "untrusted_because": "", "n_divergent": 0, "minority_abs_error": 0.5,
                               "slope_rmse": (0.4 if prior == "default" else 0.2) if hierarchical else 0.6}
                        for name in records.CHECKED:
                            row |= {f"{name}_prior_sensitivity": np.nan, f"{name}_likelihood_sensitivity": np.nan,
                                    f"{name}_diagnosis": ""}
                        if hierarchical:
                            row |= {"sigma_slope_prior_sensitivity": 0.4, "sigma_slope_likelihood_sensitivity": 0.2,
                                    "sigma_slope_diagnosis": diagnosis, "mu_slope_prior_sensitivity": 0.01,
                                    "mu_slope_likelihood_sensitivity": 0.01}
                        flagged = hierarchical and diagnosis in ("prior-data conflict", "prior-dominated")
                        row["model_ok"] = not flagged
                        row["model_flags"] = f"sigma_slope: {diagnosis} (prior 0.40, likelihood 0.20)" if hierarchical and diagnosis else ""
                        rows.append(row)
    return pd.DataFrame(rows)


def checked_summary(fits: pd.DataFrame) -> pd.DataFrame:
    """The summary's columns the headlines read, per grid cell, as the aggregation computes
    them (over trusted fits)."""
    from poolbench.aggregate import CELL

    out = []
    for cell, rows in fits.groupby(CELL, sort=False):
        trusted = rows[rows["trusted"]]
        kinds = trusted["model_flags"][trusted["model_flags"] != ""].str.replace(r"^(\w+): ([^(]+) \(.*$", r"\1 \2", regex=True)
        row = dict(zip(CELL, cell)) | {
            "n_fits": len(rows), "n_trusted": len(trusted), "share_trusted": len(trusted) / len(rows),
            "untrusted_reasons": "", "divergences_mean": rows["n_divergent"].mean(), "n_groups": rows["n_groups"].iloc[0],
            "slope_rmse_mean": trusted["slope_rmse"].mean(), "minority_abs_error_mean": trusted["minority_abs_error"].mean(),
            "n_model_ok": int(trusted["model_ok"].sum()), "share_model_ok": trusted["model_ok"].mean(),
            "model_flag_reasons": ", ".join(f"{kind} {n}" for kind, n in kinds.value_counts().items()),
        }
        for name in records.CHECKED:
            checked = trusted[trusted[f"{name}_prior_sensitivity"].notna()]
            row[f"{name}_prior_flag_share"] = (checked[f"{name}_diagnosis"].isin(["prior-data conflict", "prior-dominated"]).mean()
                                               if len(checked) else np.nan)
        out.append(row)
    return pd.DataFrame(out)


def rendered_headlines(fits: pd.DataFrame) -> dict[str, tuple[str, str, dict]]:
    """key -> (section, text without markup, the numbers it quotes by data-key)."""
    import html as html_

    from poolbench.report import headlines, render_headline

    out = {}
    for headline in headlines(checked_summary(fits), fits):
        marked = str(render_headline(headline))
        numbers = {m[1]: float(m[2]) for m in re.finditer(r'data-key="([^"]+)" data-value="([^"]+)"', marked)}
        out[headline.key] = (headline.section, html_.unescape(re.sub(r"<[^>]+>", "", marked)), numbers)
    return out


CAVEAT = ("; the hierarchical fits' sigma_slope follows its prior there (prior-data conflict or prior-dominated in "
          "6 of 6 trusted fits of hierarchical_centered, 6 of 6 trusted fits of hierarchical_noncentered), so this "
          "ranking reflects the prior, not pooling.")


@pytest.mark.parametrize("diagnosis", ["prior-data conflict", "prior-dominated"])
def test_a_ranking_on_a_spread_that_follows_its_prior_says_so_in_the_same_sentence(diagnosis):
    fits = checked_fits({"default": diagnosis})
    _, text, numbers = rendered_headlines(fits)["shrinkage:hard:2at30"]
    assert text.endswith("the lowest group-slope RMSE among mostly trusted models was hierarchical_centered's" + CAVEAT)
    for model in ("hierarchical_centered", "hierarchical_noncentered"):  # each count traced to the fits table
        mine = fits[(fits["model"] == model) & fits["trusted"]]
        assert numbers[f"shrinkage:hard:2at30:{model}:sigma_slope_flagged"] == (mine["sigma_slope_diagnosis"] == diagnosis).sum()
        assert numbers[f"shrinkage:hard:2at30:{model}:sigma_slope_checked"] == len(mine)


def test_both_population_parameters_following_their_prior_are_named_in_one_clause():
    fits = checked_fits({"default": "prior-data conflict"})
    fits.loc[fits["variant"] == "hierarchical", "mu_slope_diagnosis"] = "prior-dominated"
    _, text, numbers = rendered_headlines(fits)["shrinkage:hard:2at30"]
    assert text.endswith(
        "; the hierarchical fits' sigma_slope follows its prior there (prior-data conflict or prior-dominated in 6 of 6 "
        "trusted fits of hierarchical_centered, 6 of 6 trusted fits of hierarchical_noncentered) and so does their "
        "mu_slope (prior-data conflict or prior-dominated in 6 of 6 trusted fits of hierarchical_centered, 6 of 6 trusted "
        "fits of hierarchical_noncentered), so this ranking reflects the prior, not pooling.")
    assert numbers["shrinkage:hard:2at30:hierarchical_centered:mu_slope_flagged"] == 6


def test_a_clean_model_check_adds_nothing_to_the_ranking():
    _, text, _ = rendered_headlines(checked_fits({"default": ""}))["shrinkage:hard:2at30"]
    assert text.endswith("the lowest group-slope RMSE among mostly trusted models was hierarchical_centered's.")
    assert "prior" not in text and "note" not in text


def test_a_minority_of_flagged_fits_adds_nothing():
    fits = checked_fits({"default": "prior-data conflict"})
    flagged = fits["sigma_slope_diagnosis"] != ""
    fits.loc[flagged & (fits["seed"] > 0), "sigma_slope_diagnosis"] = ""  # 2 of 6 per model
    _, text, _ = rendered_headlines(fits)["shrinkage:hard:2at30"]
    assert "follows its prior" not in text


def test_a_weakly_identified_spread_is_a_note_not_a_conflict():
    fits = checked_fits({"default": "weakly identified"})
    _, text, numbers = rendered_headlines(fits)["shrinkage:hard:2at30"]
    assert text.endswith("was hierarchical_centered's; note: the spread sigma_slope is weakly identified by 8 groups (in 6 of "
                         "6 trusted fits of hierarchical_centered, 6 of 6 trusted fits of hierarchical_noncentered).")
    assert "conflict" not in text and "follows its prior" not in text
    assert numbers["shrinkage:hard:2at30:n_groups"] == fits["n_groups"].iloc[0]
    assert numbers["shrinkage:hard:2at30:hierarchical_centered:sigma_slope_weakly_identified"] == 6


def test_a_likelihood_comparison_on_a_spread_that_follows_its_prior_says_so():
    found = rendered_headlines(checked_fits({"default": "prior-data conflict"}, likelihoods=("normal", "student_t")))
    _, text, _ = found["likelihood:hard:2at30:hierarchical_noncentered"]
    assert text.endswith("(trusted fits: 6 and 6); the hierarchical fits' sigma_slope follows its prior there (prior-data "
                         "conflict or prior-dominated in 6 of 6 trusted fits of hierarchical_noncentered, 6 of 6 trusted fits "
                         "of hierarchical_noncentered (student_t)), so this comparison reflects the prior, not the likelihood alone.")
    _, text, _ = found["likelihood:hard:2at30:pooled"]
    assert text.endswith("(trusted fits: 6 and 6).")
    # The likelihoods named as the registry labels them.
    assert re.search(r"off by [\d.]+ with a normal likelihood and by [\d.]+ with a Student-t one", text), text


def test_prior_sets_are_set_side_by_side_with_their_flags_and_errors():
    fits = checked_fits({"default": "prior-data conflict", "data_scaled": ""})
    found = rendered_headlines(fits)
    section, text, numbers = found["priors:hard:2at30:hierarchical_centered"]
    assert section == "model_checks"
    assert text == ("In the hard scenario with outliers 2at30, hierarchical_centered by prior set: default priors: model "
                    "check passed in 0 of 6 trusted fits (flagged for sigma_slope prior-data conflict 6), group-slope RMSE "
                    "0.40; data_scaled priors: model check passed in 6 of 6 trusted fits (nothing flagged), group-slope "
                    "RMSE 0.20.")
    for prior in ("default", "data_scaled"):
        mine = fits[(fits["model"] == "hierarchical_centered") & (fits["prior"] == prior) & fits["trusted"]]
        key = f"priors:hard:2at30:hierarchical_centered:{prior}"
        assert numbers[f"{key}:model_ok"] == mine["model_ok"].sum()
        assert numbers[f"{key}:trusted"] == len(mine)
        assert numbers[f"{key}:slope_rmse"] == pytest.approx(mine["slope_rmse"].mean())
    # The ranking of every model names which of them follow their prior.
    _, text, _ = found["shrinkage:hard:2at30"]
    assert "the lowest group-slope RMSE among mostly trusted models was hierarchical_centered [data_scaled priors]'s" in text
    assert text.endswith(CAVEAT)
    assert not any(key.startswith("priors:") for key in rendered_headlines(checked_fits({"default": ""})))


def render_checked(fits: pd.DataFrame, summary: pd.DataFrame) -> str:
    from poolbench.report import render_report

    provenance = {"experiment_hash": "h", "git_commit": "c", "packages": {}, "created": "now"}
    return render_report(summary=summary, fits=fits, figures=[], config=tiny_config(), provenance=provenance)


def test_the_summary_and_the_model_checks_show_each_cells_check():
    from poolbench.report import SUMMARY_COLUMNS

    assert {"share_model_ok": "model check passed (trusted)", "model_flag_reasons": "model flagged for"}.items() <= SUMMARY_COLUMNS.items()
    fits = checked_fits({"default": "prior-data conflict", "data_scaled": ""})
    page = render_checked(fits, checked_summary(fits))
    summary = re.search(r'<table class="summary"[^>]*>(.*?)</table>', page, re.S).group(1)
    header = re.findall(r"<th>(.*?)</th>", summary)
    assert header[header.index("untrusted because") + 1 : header.index("untrusted because") + 3] == [
        "model check passed (trusted)", "model flagged for"]
    assert '<a href="#model-checks">Model checks</a>' in page
    checks = page.split('<h2 id="model-checks">Model checks</h2>')[1].split("<h2")[0]
    assert re.findall(r"<th>(.*?)</th>", checks) == [
        "scenario", "outliers", "model", "likelihood", "prior", "backend", "target_accept", "trusted fits",
        "model check passed", "share passed", "flagged for", "mu_slope follows its prior", "sigma_slope follows its prior"]
    flagged = '<tr class="flagged"><td>hard</td><td>2at30</td><td>hierarchical_centered</td><td>normal</td><td>default</td>'
    assert checks.count(flagged) == 2  # both target_accepts
    assert "<td>3</td><td>0</td><td>0</td><td>sigma_slope prior-data conflict 3</td><td>0</td><td>1</td></tr>" in checks
    assert "hierarchical_centered by prior set: default priors" in checks  # the prior sets' headline


def test_hostile_model_flags_are_shown_not_run():
    from markupsafe import escape

    hostile = " ".join(HOSTILE)
    fits = checked_fits({"default": "prior-data conflict", "data_scaled": ""})
    real = fits.iloc[[0]].assign(source="real", scenario="radon", outliers="observed", model_flags=hostile, model_ok=False)
    fits = pd.concat([fits, real], ignore_index=True)
    summary = checked_summary(fits)
    summary.loc[summary["model"].str.startswith("hierarchical"), "model_flag_reasons"] = hostile
    page = render_checked(fits, summary)
    assert "<script>document" not in page and "onerror=\"document" not in page and "<b id=injected>" not in page
    shown = str(escape(hostile))
    checks, real = page.split('<h2 id="model-checks">Model checks</h2>')[1].split("<h2")[0].split("<h3>Real data fits</h3>")
    assert shown in real  # the real fit's own flags
    assert checks.count(f"<td>{shown}</td>") == 8  # each hierarchical cell's reasons
    assert f"(flagged for {shown})" in checks  # in the prior sets' headline
    assert re.search(r'<table class="summary"[^>]*>.*?</table>', page, re.S).group(0).count(f"<td>{shown}</td>") == 8


def groups_with_prior_predictive(scenarios=("hard",), real=("radon",)) -> pd.DataFrame:
    """Groups rows with the prior predictive columns: every model, both prior sets, both
    target_accepts; interval bounds that say which row they are."""
    rows = []
    datasets = [("simulated", s, 0, "2at30") for s in scenarios] + [("real", d, 0, "observed") for d in real]
    for d, (source, scenario, seed, outliers) in enumerate(datasets):
        for m, (model, (variant, parameterisation)) in enumerate(CHECK_MODELS.items()):
            for p, prior in enumerate(("default", "data_scaled")):
                for target_accept in (0.8, 0.99):
                    for group in range(8):
                        width = (10.0 ** (p + 1)) * (m + 1) + target_accept
                        rows.append({"source": source, "scenario": scenario, "seed": seed, "outliers": outliers,
                                     "model": model, "variant": variant, "parameterisation": parameterisation,
                                     "likelihood": "normal", "prior": prior, "backend": "nutpie",
                                     "target_accept": target_accept, "group": group, "observed_mean": group + d,
                                     "observed_sd": 1 + group / 10, "prior_mean_lower": -width - group,
                                     "prior_mean_upper": width + group, "prior_sd_lower": 0.01 * (m + 1),
                                     "prior_sd_upper": width / 2, "prior_outside": False})
    return pd.DataFrame(rows)


def drawn_ranges(ax) -> dict[str, set]:
    """Colour label -> the (x, lower, upper) of the ranges drawn in one panel."""
    from matplotlib.collections import LineCollection

    return {c.get_label(): {(round(s[0][0], 6), s[0][1], s[1][1]) for s in c.get_segments()}
            for c in ax.collections if isinstance(c, LineCollection)}


def test_the_prior_predictive_figure_draws_each_groups_interval_and_observed_value():
    from functools import partial

    from poolbench import plots

    groups = groups_with_prior_predictive()
    fig = plots.prior_predictive_figure(None, groups, None, partial(plots.showcase, **SHOWCASE))
    assert plots.text_overlaps(fig) == []
    axes = np.array(fig.axes[:4]).reshape(2, 2)  # rows: mean, sd; columns: hard, radon
    assert [ax.get_title() for ax in axes[0]] == ["hard · seed 0 · outliers 2at30 · mean",
                                                 "radon · real data · target_accept 0.99 · mean"]
    labels = ["pooled · default", "pooled · data_scaled", "unpooled · default", "unpooled · data_scaled",
              "hierarchical · default", "hierarchical · data_scaled"]  # one parameterisation per variant
    for col, scenario in enumerate(("hard", "radon")):
        for row, (lower, upper) in enumerate((("prior_mean_lower", "prior_mean_upper"), ("prior_sd_lower", "prior_sd_upper"))):
            drawn = drawn_ranges(axes[row][col])
            assert list(drawn) == labels
            for label, ranges in drawn.items():
                variant, prior = label.split(" · ")
                model = next(m for m, (v, _) in CHECK_MODELS.items() if v == variant)  # the first: centered
                expected = groups[(groups["scenario"] == scenario) & (groups["model"] == model) & (groups["prior"] == prior)
                                  & (groups["target_accept"] == 0.99)]
                assert {(lo, hi) for _, lo, hi in ranges} == set(zip(expected[lower], expected[upper]))
                assert sorted(round(x) for x, _, _ in ranges) == list(range(8))
        observed = axes[0][col].collections[-1].get_offsets()
        expected = groups[groups["scenario"] == scenario].drop_duplicates("group")
        assert list(observed[:, 1]) == list(expected["observed_mean"])


def test_the_prior_predictive_figure_caps_its_ranges_per_dataset_so_real_data_keep_their_own_models():
    """The default study draws 7 simulated models × prior sets and radon's 3 other ones: a
    cap over the whole figure left radon's panels empty."""
    from functools import partial

    from poolbench import plots

    groups = groups_with_prior_predictive()
    real_variants = {"pooled": "pooled_intercept", "unpooled": "unpooled_intercepts", "hierarchical": "varying_intercepts"}
    is_real = groups["source"] == "real"
    groups.loc[is_real, "variant"] = groups.loc[is_real, "variant"].map(real_variants)
    wide = groups[~is_real & (groups["prior"] == "data_scaled")].assign(prior="wide")  # 9 labels on hard
    fig = plots.prior_predictive_figure(None, pd.concat([groups, wide]), None, partial(plots.showcase, **SHOWCASE))
    axes = np.array(fig.axes[:4]).reshape(2, 2)  # rows: mean, sd; columns: hard, radon
    variants = ("pooled", "unpooled", "hierarchical")
    hard = [f"{v} · {p}" for v in variants for p in ("default", "data_scaled")] + [f"{v} · wide" for v in variants]
    radon = [f"{v} · {p}" for v in real_variants.values() for p in ("default", "data_scaled")]
    for row in range(2):
        assert list(drawn_ranges(axes[row][0])) == hard[:plots.MAX_PRIOR_PREDICTIVE_LABELS]
        assert list(drawn_ranges(axes[row][1])) == radon
    assert fig.get_suptitle() == f"Prior predictive ranges of each dataset's first {plots.MAX_PRIOR_PREDICTIVE_LABELS} models × prior sets (of up to 9)"
    legend = [text.get_text() for text in axes[0][1].get_legend().get_texts()]
    assert legend == hard[:plots.MAX_PRIOR_PREDICTIVE_LABELS] + radon + ["observed"]
    assert plots.text_overlaps(fig) == []


def test_the_prior_predictive_figure_without_its_columns_says_so():
    from functools import partial

    from poolbench import plots

    showcase = partial(plots.showcase, **SHOWCASE)
    groups = groups_with_prior_predictive()
    fig = plots.prior_predictive_figure(None, groups.drop(columns=["prior_sd_upper"]), None, showcase)
    assert "no prior predictive check (prior_sd_upper)" in fig.axes[0].texts[0].get_text()
    empty = groups.assign(**{c: np.nan for c in ("prior_mean_lower", "prior_mean_upper", "prior_sd_lower", "prior_sd_upper",
                                                 "observed_mean", "observed_sd")})
    assert "nothing to show" in plots.prior_predictive_figure(None, empty, None, showcase).axes[0].texts[0].get_text()


def test_many_scenarios_keep_the_real_data_sets_for_the_summary_figures():
    from poolbench import plots

    groups = groups_with_prior_predictive(scenarios=[f"s{i}" for i in range(plots.MAX_SCENARIOS + 2)])
    (kept,), note = plots.first_scenarios(groups)
    assert list(dict.fromkeys(kept["scenario"])) == [f"s{i}" for i in range(plots.MAX_SCENARIOS)] + ["radon"]
    assert note == f"the first {plots.MAX_SCENARIOS} of {plots.MAX_SCENARIOS + 2} scenarios (all of them are in the tables)"


# What the captions used to state as results, whatever the study's data said (issue #27, item 4).
FORMER_CAPTION_CLAIMS = (
    "rarely trusted", "mixes worse", "divergences persist", "removes them", "unpooled follows its outliers",
    "Partial pooling shrinks", "ignores the outliers", "turns the funnel into", "pull small groups",
)


def test_captions_describe_the_figures_and_claim_no_result():
    """A caption holds for any study; a result is a computed finding (the report's
    headlines, traced to the tables). None of the former claims is left."""
    captions = {path.name: path.read_text() for path in (REPO / "workflow/report").glob("*.rst")}
    assert len(captions) >= 10
    for name, text in captions.items():
        flat = " ".join(text.split())
        assert not [claim for claim in FORMER_CAPTION_CLAIMS if claim in flat], name


def weak_data_summary(centered_wins: bool) -> pd.DataFrame:
    """A weak-data regime's hierarchical cells, hand-made: the winning form trusted in every
    fit and never diverging, the other trusted in one of three and diverging."""
    rows = []
    for parameterisation in ("centered", "noncentered"):
        wins = (parameterisation == "centered") == centered_wins
        for target_accept in (0.8, 0.99):
            rows.append({"source": "simulated", "scenario": "weak", "likelihood": "normal", "prior": "default",
                         "backend": "nutpie", "variant": "hierarchical", "parameterisation": parameterisation,
                         "model": f"hierarchical_{parameterisation}", "outliers": "none", "target_accept": target_accept,
                         "n_fits": 3, "n_trusted": 3 if wins else 1, "share_trusted": 1.0 if wins else 1 / 3,
                         "divergences_mean": 0.0 if wins else 4.0})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("centered_wins", [True, False])
def test_a_study_whose_data_contradict_a_former_caption_claim_gets_the_finding_its_data_say(centered_wins):
    """Where data are weak, the captions used to say, the centered model is rarely trusted
    and non-centering removes its divergences. A study whose weak-data regime says the
    opposite is told the opposite, by the computed findings; no caption says otherwise."""
    from poolbench.report import funnel_headlines, trust_headlines

    summary = weak_data_summary(centered_wins)
    (trust,), (funnel,) = trust_headlines(summary), funnel_headlines(summary)
    trust_text, funnel_text = headline_text(trust), headline_text(funnel)
    if centered_wins:
        assert trust_text.endswith("the centered form is trusted more often.")
        assert trust_text.startswith("In the weak scenario, 6 of 6 centered fits and 2 of 6 non-centered fits were trusted")
        assert "non-centering raised divergences from 0.0 to 4.0 per fit at target_accept 0.80" in funnel_text
    else:
        assert trust_text.endswith("the non-centered form is trusted more often.")
        assert "non-centering cut divergences from 4.0 to 0.0 per fit" in funnel_text
    captions = " ".join(" ".join(path.read_text().split()) for path in (REPO / "workflow/report").glob("*.rst"))
    for text in (trust_text, funnel_text, captions):
        assert not [claim for claim in FORMER_CAPTION_CLAIMS if claim in text], text


def tutorial_fits(trusted_centered: bool = True) -> pd.DataFrame:
    """The tutorial dataset's fits at the highest target_accept, hand-made with the
    tutorial's numbers (true minority slope 1.85)."""
    rows = []
    for variant, parameterisation, likelihood, slope, mu in [
        ("unpooled", "none", "normal", 15.3, np.nan), ("hierarchical", "centered", "normal", 8.6, 3.0),
        ("hierarchical", "noncentered", "normal", 8.5, 2.9), ("hierarchical", "centered", "student_t", 1.9, 2.1),
        ("pooled", "none", "normal", 2.4, np.nan),
    ]:
        model = variant if parameterisation == "none" else f"{variant}_{parameterisation}"
        ok = trusted_centered or parameterisation != "centered"
        rows.append({"scenario": "tutorial", "outliers": "2at30", "seed": 0, "target_accept": 0.99, "prior": "default",
                     "backend": "nutpie", "variant": variant, "parameterisation": parameterisation, "model": model,
                     "likelihood": likelihood, "status": "ok", "trusted": ok, "untrusted_because": "" if ok else "rhat",
                     "minority_slope_mean": slope, "minority_bias": slope - 1.85, "mu_slope_mean": mu})
    return pd.DataFrame(rows)


def headline_text(headline) -> str:
    """A finding's sentence as a reader sees it: its HTML rendering, tags dropped."""
    from poolbench.report import render_headline

    return html.unescape(re.sub(r"<[^>]+>", "", str(render_headline(headline))))


def story_text(fits, config) -> str:
    from poolbench.report import tutorial_story

    return " ".join(headline_text(h) for h in tutorial_story(fits, config))


def test_the_tutorials_story_is_told_in_three_numbers_with_the_truth():
    """Issue #27, item 2: for a study that fits the tutorial's own dataset."""
    from conftest import DEFAULT

    text = story_text(tutorial_fits(), DEFAULT)
    assert text == ("On the tutorial's own dataset (tutorial scenario, seed 0, outliers 2at30; target_accept 0.99) the minority "
                    "group's slope is 15.3 without pooling (unpooled), 8.6 with partial pooling (hierarchical_centered; "
                    "population mean mu 3.0) and 1.9 with partial pooling and robust noise (hierarchical_centered "
                    "(student_t)); its true slope is 1.85.")
    # An untrusted centered fit gives way to the trusted non-centered one; untrusted alone, it says so.
    assert "8.5 with partial pooling (hierarchical_noncentered;" in story_text(tutorial_fits(False), DEFAULT)
    alone = tutorial_fits(False)
    alone = alone[alone["parameterisation"] != "noncentered"]
    assert "(hierarchical_centered, untrusted: rhat; population mean mu 3.0)" in story_text(alone, DEFAULT)
    # A study without the tutorial's dataset (another design, or no seed 0) has no story.
    other = DEFAULT | {"scenarios": {"tutorial": DEFAULT["scenarios"]["tutorial"] | {"noise": 0.2}}}
    assert story_text(tutorial_fits(), other) == "" and story_text(tutorial_fits(), DEFAULT | {"seeds": [1, 2]}) == ""


def test_the_overview_marks_each_cell_by_trusted_share_error_and_model_check():
    """Issue #27, item 2: the verdict matrix's cells, from the summary table."""
    from poolbench import plots

    rows = []
    for model, share, rmse, ok in [("pooled", 1.0, 1.1, 1.0), ("hierarchical_centered", 0.0, np.nan, np.nan),
                                   ("hierarchical_noncentered", 0.75, 0.95, 0.25)]:
        for ta in (0.99, 0.8):
            rows.append({"source": "simulated", "scenario": "hard", "outliers": "2at30", "outlier_count": 2,
                         "target_accept": ta, "model": model, "likelihood": "normal", "prior": "default", "backend": "nutpie",
                         "share_trusted": share, "slope_rmse_mean": rmse, "share_model_ok": ok})
    share, labels = plots.overview_table(pd.DataFrame(rows))
    assert list(share.columns) == ["hard · 2at30 · 0.8", "hard · 2at30 · 0.99"]  # in the grid's order
    # Scenarios keep the grid's order, not the alphabet's (map_100 is not before map_20).
    later = pd.DataFrame(rows).assign(scenario="map_20")
    first = pd.DataFrame(rows).assign(scenario="map_100")
    mapped, _ = plots.overview_table(pd.concat([later, first]))
    assert [c.split(" · ")[0] for c in mapped.columns] == ["map_20", "map_20", "map_100", "map_100"]
    assert list(share.index) == ["pooled", "hierarchical_centered", "hierarchical_noncentered"]
    assert labels.loc["pooled"].tolist() == ["1.10", "1.10"]
    assert labels.loc["hierarchical_centered"].tolist() == ["–", "–"]  # no trusted fit, no error
    assert labels.loc["hierarchical_noncentered"].tolist() == ["0.95!", "0.95!"]  # the model check flags most
    assert share.loc["hierarchical_noncentered"].tolist() == [0.75, 0.75]


def test_the_headline_findings_come_most_important_first():
    """Issue #27, item 2: the default likelihood and priors before the other axes, each by
    kind (report.KIND_ORDER), then the grid's order."""
    from poolbench.report import KIND_ORDER, all_findings

    fits = checked_fits({"default": "prior-data conflict", "data_scaled": ""}, likelihoods=("normal", "student_t"))
    found = [h for h in all_findings(summary=checked_summary(fits), fits=fits, config={"study": {}})
             if h.section == "findings"]
    ranks = [(bool(h.words.get("variant")), KIND_ORDER.index(h.kind)) for h in found]
    assert ranks == sorted(ranks) and len({kind for _, kind in ranks}) >= 3 and {axis for axis, _ in ranks} == {False, True}
    assert found[0].key == "trust:hard:normal:default" and found[-1].words["variant"]  # defaults lead, other axes close
    # The findings table keeps the report's order: the headline findings, then the other sections.
    every = all_findings(summary=checked_summary(fits), fits=fits, config={"study": {}})
    sections = [h.section for h in every]
    assert sections[:len(found)] == ["findings"] * len(found) and "model_checks" in sections[len(found):]


def test_at_most_eight_headlines_lead_and_every_link_lands_on_its_target(tiny_run):
    page = (tiny_run / R / "report.html").read_text()
    first = page.split('<ul class="headlines">', 1)[1].split("</ul>", 1)[0]
    from poolbench.report import TOP_FINDINGS

    assert 0 < first.count("<li>") <= TOP_FINDINGS
    rest = re.search(r'<details class="more"><summary>(\d+) more findings</summary>', page)
    total = len(pd.read_parquet(tiny_run / R / "tables/findings.parquet").query("section == 'findings'"))
    assert first.count("<li>") + (int(rest[1]) if rest else 0) == total
    ids = set(re.findall(r'id="([^"]+)"', page))
    links = set(re.findall(r'href="#([^"]+)"', page))
    assert links and links <= ids, links - ids
    assert 'href="#trust">(figure)' in first


def radon_like(groups=6):
    """A real data set's groups and fits tables at one target_accept: no, partial (two
    forms: the centered one untrusted) and complete pooling, with the normal likelihood,
    and the same models with a Student-t one."""
    rng = np.random.default_rng(1)
    sizes = [1, 2, 2, 5, 20, 100][:groups]
    fits, rows = [], []
    models = {"pooled_intercept": "pooled_intercept", "unpooled_intercepts": "unpooled_intercepts",
              "varying_intercepts_centered": "varying_intercepts", "varying_intercepts_noncentered": "varying_intercepts"}
    for likelihood in ("normal", "student_t"):
        for model, variant in models.items():
            trusted = model != "varying_intercepts_centered"
            fits.append({"scenario": "radon", "model": model, "variant": variant, "likelihood": likelihood, "prior": "default",
                         "backend": "nutpie", "target_accept": 0.99, "status": "ok", "trusted": trusted, "n_divergent": 0 if trusted else 5,
                         "untrusted_because": "" if trusted else "rhat,ess_bulk"})
            for g, n in enumerate(sizes):
                intercept = {"pooled_intercept": 1.0, "unpooled_intercepts": 1.0 + rng.normal()}.get(model, 1.0 + 0.3 * rng.normal())
                rows.append({"scenario": "radon", "model": model, "likelihood": likelihood, "prior": "default", "backend": "nutpie",
                             "target_accept": 0.99, "group": g, "n_obs": n, "intercept_mean": intercept,
                             "slope_mean": -0.6 if model == "pooled_intercept" else -0.6 + 0.2 * rng.normal()})
    return pd.DataFrame(rows), pd.DataFrame(fits)


def test_the_real_data_shrinkage_picture_joins_each_groups_unpooled_and_partially_pooled_estimates():
    """Issue #27, item 3: Gelman & Hill's picture. One panel per coefficient that varies by
    group; per group a line from its unpooled to its partially pooled estimate at its size;
    the completely pooled estimate as a line; the trusted form of partial pooling, under
    the default likelihood, each fit named in the legend."""
    from matplotlib.collections import LineCollection, PathCollection

    from poolbench import plots

    groups, fits = radon_like()
    chosen = plots.shrinkage_fits(groups, fits)
    assert {kind: fit["model"] for kind, fit in chosen.items()} == {
        "unpooled": "unpooled_intercepts", "hierarchical": "varying_intercepts_noncentered", "pooled": "pooled_intercept"}
    assert {fit["likelihood"] for fit in chosen.values()} == {"normal"}
    fig = plots.real_shrinkage_figure(groups, fits, "radon")
    assert plots.text_overlaps(fig) == []
    assert [ax.get_title() for ax in fig.axes] == ["intercept", "slope"]
    mine = groups[groups["likelihood"] == "normal"].set_index(["model", "group"])
    for ax, coefficient in zip(fig.axes, ("intercept", "slope")):
        (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        segments = sorted((s[0][0], s[0][1], s[1][1]) for s in lines.get_segments())
        expected = sorted(
            (x, mine.loc[("unpooled_intercepts", g), f"{coefficient}_mean"], mine.loc[("varying_intercepts_noncentered", g), f"{coefficient}_mean"])
            for g, x in zip(range(6), plots._jittered_sizes(mine.loc["unpooled_intercepts"].reset_index())))
        assert np.allclose(segments, expected)
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert [len(c.get_offsets()) for c in points] == [6, 6]
        (pooled,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert pooled.get_ydata()[0] == pytest.approx(mine.loc["pooled_intercept", f"{coefficient}_mean"].mean())
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["no pooling: unpooled_intercepts", "partial pooling: varying_intercepts_noncentered",
                      "complete pooling: pooled_intercept"]
    # When no form of partial pooling is trusted, the one shown says so.
    untrusted = fits.assign(trusted=~fits["model"].str.startswith("varying"))
    legend = [t.get_text() for t in plots.real_shrinkage_figure(groups, untrusted, "radon").legends[0].get_texts()]
    assert "partial pooling: varying_intercepts_noncentered (NOT trusted)" in legend  # fewer failed checks


def test_the_overlap_check_catches_crowded_tick_labels_and_notes_on_labels():
    import matplotlib.pyplot as plt

    from poolbench import plots

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_xticks(range(8), [f"a long model name {i}" for i in range(8)])
    assert any("x tick" in a and "x tick" in b for a, b in plots.text_overlaps(fig))
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_xlabel("groups")
    ax.annotate("a note on the label", xy=(0.5, 0), xycoords="axes fraction", xytext=(0, -20), textcoords="offset points",
                ha="center", va="top")
    assert any(a.startswith("axes 0 note") for a, _ in plots.text_overlaps(fig))


def test_every_kind_of_finding_has_its_own_macro_and_nothing_else_does():
    """Issue #27, item 1: the wording of each kind of finding lives in one macro of
    templates/findings.j2; the code computes numbers and words only."""
    from poolbench import report

    helpers = {"n", "w", "counted", "caveat", "unreliable"}
    macros = {name for name in dir(report.FINDINGS_TEMPLATES) if not name.startswith("_")} - helpers
    assert macros == {kind.replace("-", "_") for kind in report.FINDING_KINDS}
    with pytest.raises(AttributeError):
        report.render_headline(report.Headline("no-such-kind:x"))


def test_a_words_own_spacing_survives_the_templates_layout():
    """The macros' line breaks are collapsed after rendering; what a finding quotes is not."""
    from poolbench import report

    found = report.Headline("failed", {"failed": report.Number("failed:count", 2, 0), "total": report.Number("failed:total", 9, 0)})
    assert str(report.render_headline(found)).endswith('>9</span> fits failed (listed below).')
    calibration = report.Headline("calibration:x", {name: report.Number(f"k:{name}", 1, 0) for name in ("n", "p", "trusted")},
                                  {"cell": "a  model\twith <b>spaces</b>"})
    assert str(report.render_headline(calibration)).startswith("a  model\twith &lt;b&gt;spaces&lt;/b&gt;: calibrated (")


def test_the_findings_table_says_where_each_finding_holds():
    """Issue #27, item 1: each finding's scope in columns of its own (scenario, outliers,
    model, likelihood, prior, ...), its wording's switches as data."""
    import json

    from poolbench.report import SCOPE_COLUMNS, all_findings, findings_table

    fits = checked_fits({"default": "prior-data conflict", "data_scaled": ""}, likelihoods=("normal", "student_t"))
    table = findings_table(all_findings(summary=checked_summary(fits), fits=fits, config={"study": {}})).set_index("key")
    assert set(SCOPE_COLUMNS) <= set(table.columns)
    trust = table.loc["trust:hard:student_t:default"]
    assert (trust["scenario"], trust["likelihood"], trust["prior"], trust["outliers"]) == ("hard", "student_t", "default", "")
    assert json.loads(trust["data"])["more"] in ("centered", "noncentered", "neither")
    shrinkage = table[table["kind"] == "shrinkage"].iloc[0]
    assert shrinkage["scenario"] == "hard" and shrinkage["outliers"] and shrinkage["model"] == ""  # every model of the regime
    priors = table[table["kind"] == "priors"].iloc[0]
    assert priors["model"].startswith("hierarchical") and priors["likelihood"] in ("normal", "student_t")

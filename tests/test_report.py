"""End to end on the tiny config: tables, figures, the HTML report (escaped, in a real
browser) and Snakemake's report."""

from __future__ import annotations

import re
import zipfile
from html.parser import HTMLParser

import pandas as pd
import pytest
from PIL import Image

from conftest import TINY, TINY_RESULTS, snakemake, tiny_config
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
    assert list(fits.columns) == records.FIT_COLUMNS + records.VERDICT + ["experiment"]
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
        assert driver.execute_script("return document.scripts.length") == 0
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

"""End to end on the tiny config: tables, figures, the HTML report and Snakemake's report."""

from __future__ import annotations

import re
import zipfile
from html.parser import HTMLParser

import pandas as pd
import pytest
from PIL import Image

from conftest import TINY, snakemake, tiny_config

MODELS = ["pooled", "unpooled", "hierarchical_centered", "hierarchical_noncentered"]
FIGURES = ["divergences", "shrinkage", "estimates", "cost", "backends"] + [f"posterior/{m}" for m in MODELS]


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
    parser.feed((tiny_run / "results/report.html").read_text())
    return parser


def test_tables_hold_every_fit_and_group(tiny_run):
    fits = pd.read_parquet(tiny_run / "results/tables/fits.parquet")
    # 2 scenarios x 2 outlier levels x 2 seeds x 4 models x 2 target_accepts
    assert len(fits) == 64 and (fits["status"] == "ok").all()
    groups = pd.read_parquet(tiny_run / "results/tables/groups.parquet")
    assert len(groups) == 64 * 8
    from_csv = pd.read_csv(tiny_run / "results/tables/fits.csv").fillna({"error": ""})
    pd.testing.assert_frame_equal(from_csv, fits, check_dtype=False)
    summary = pd.read_csv(tiny_run / "results/tables/summary.csv")
    assert len(summary) == 32 and (summary["n_fits"] == 2).all()
    cell = fits[(fits["scenario"] == "hard") & (fits["model"] == "unpooled") & (fits["outliers"] == "2at30") & (fits["target_accept"] == 0.8)]
    row = summary[(summary["scenario"] == "hard") & (summary["model"] == "unpooled") & (summary["outliers"] == "2at30") & (summary["target_accept"] == 0.8)].iloc[0]
    assert row["slope_rmse_mean"] == pytest.approx(cell["slope_rmse"].mean())
    assert row["minority_error_lower"] <= row["minority_error_mean"] <= row["minority_error_upper"]


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_a_real_png_and_svg(tiny_run, name):
    with Image.open(tiny_run / f"results/figures/{name}.png") as image:
        assert image.width > 200 and image.height > 120  # tiny.yaml draws at 60 dpi
        assert len(set(image.convert("L").getdata())) > 10  # not a blank canvas
    svg = (tiny_run / f"results/figures/{name}.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_plate_diagrams_show_each_models_variables(tiny_run):
    with Image.open(tiny_run / "results/models/hierarchical_centered.png") as image:
        assert image.width > 100 and image.height > 100
    assert "common_slope" in (tiny_run / "results/models/pooled.svg").read_text()
    noncentered = (tiny_run / "results/models/hierarchical_noncentered.svg").read_text()
    assert all(v in noncentered for v in ("mu_slope", "sigma_slope", "z", "slope", "y_obs"))


def test_report_is_self_contained(tiny_run, report):
    html = (tiny_run / "results/report.html").read_text()
    assert len(report.images) == len(FIGURES) + 4  # + a plate diagram per model
    assert all(src.startswith("data:image/") for src in report.images)
    assert not re.search(r"""(src|href)=["'](https?:|file:|/)""", html)


def test_headline_numbers_equal_the_tables(tiny_run, report):
    fits = pd.read_parquet(tiny_run / "results/tables/fits.parquet")
    tas = sorted(TINY["sampler"]["target_accept"])
    for scenario in TINY["scenarios"]:
        for parameterisation, ta, key in [
            ("centered", tas[0], "centered"),
            ("noncentered", tas[0], "noncentered"),
            ("centered", tas[-1], "centered_high"),
        ]:
            chosen = fits[(fits["scenario"] == scenario) & (fits["parameterisation"] == parameterisation) & (fits["target_accept"] == ta)]
            assert report.numbers[f"funnel:{scenario}:{key}"] == pytest.approx(chosen["n_divergent"].mean())
        dirty = fits[(fits["scenario"] == scenario) & (fits["outliers"] == "2at30")]
        for model, rows in dirty.groupby("model"):
            assert report.numbers[f"shrinkage:{scenario}:2at30:{model}:minority_error"] == pytest.approx(rows["minority_error"].mean())
            assert report.numbers[f"shrinkage:{scenario}:2at30:{model}:slope_rmse"] == pytest.approx(rows["slope_rmse"].mean())
    assert report.numbers["failed:count"] == 0 and report.numbers["failed:total"] == len(fits)


def test_report_renders_in_a_real_browser_with_every_image_loaded(tiny_run):
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get((tiny_run / "results/report.html").as_uri())
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


def test_snakemake_report_builds_with_figures_and_captions(tiny_run):
    snakemake(tiny_run, tiny_config(), "--report", "results/snakemake-report.zip")
    with zipfile.ZipFile(tiny_run / "results/snakemake-report.zip") as archive:
        names = archive.namelist()
        page = archive.read(next(n for n in names if n.endswith("report.html"))).decode()
    files = [n.rsplit("/", 1)[-1] for n in names]
    for name in ["divergences.png", "estimates.png"] + [f"{m}.png" for m in MODELS] + [f"{m}.svg" for m in MODELS]:
        assert name in files, name
    # Each per-model figure is its own item, its caption rendered with its own model.
    for model in MODELS:
        assert f"Plate diagram of the {model} model" in page
        assert f"tutorial's figure for {model}" in page


def test_changing_a_plot_setting_reruns_no_fit(tiny_run):
    config = tiny_config()
    config["plots"]["dpi"] = 72
    result = snakemake(tiny_run, config, "--dry-run")
    planned = result.stdout
    assert "rule fit" not in planned and "rule simulate" not in planned and "rule aggregate" not in planned
    assert "rule plot_summary" in planned and "rule html_report" in planned


def test_changing_a_hierarchical_prior_reruns_only_hierarchical_fits(tiny_run):
    config = tiny_config()
    config["models"]["priors"]["hierarchical"]["sigma_rate"] = 10.0
    planned = snakemake(tiny_run, config, "--dry-run").stdout
    fits = re.findall(r"rule fit:\n(?:.*\n)*?\s+wildcards: (.*)", planned)
    assert fits and all("model=hierarchical" in w for w in fits)
    assert len(fits) == 2  # the two parameterisations

"""Real data (issue #16): the radon survey and a user's own CSV, checked on read, fitted,
and compared by PSIS-LOO where there is no truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, snakemake, tiny_config
from poolbench.data import DataError, read_user_csv

RADON = REPO / "resources/data/radon_mn.csv"


def user_csv(path, n_groups=6, per_group=15, seed=3):
    """A grouped CSV with its own column names and text group labels."""
    rng = np.random.default_rng(seed)
    clinic = np.repeat([f"clinic {chr(65 + g)}" for g in range(n_groups)], per_group)
    dose = rng.uniform(0, 2, len(clinic))
    effect = np.repeat(rng.normal(1.0, 0.4, n_groups), per_group)
    response = 0.5 + effect * dose + rng.normal(0, 0.3, len(clinic))
    pd.DataFrame({"patient": range(len(clinic)), "clinic": clinic, "dose": dose, "response": response}).to_csv(path, index=False)
    return path


def test_a_user_csv_is_read_with_its_own_column_names(tmp_path):
    data = read_user_csv(user_csv(tmp_path / "trial.csv"), x="dose", y="response", group="clinic")
    assert data["group"].nunique() == 6 and sorted(data["group_label"].unique())[0] == "clinic A"
    assert len(data) == 90 and (data["outliers"] == "observed").all()


def test_numeric_group_labels_keep_numeric_order():
    data = read_user_csv(RADON, x="floor", y="log_radon", group="county", min_group_size=1)
    assert data["group"].nunique() == 85 and len(data) == 919
    assert data.loc[data["group_label"] == "10", "group"].iloc[0] == 9


def bad(tmp_path, edit, **columns):
    frame = pd.read_csv(user_csv(tmp_path / "good.csv"))
    path = tmp_path / "bad.csv"
    edit(frame).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        read_user_csv(path, **({"x": "dose", "y": "response", "group": "clinic"} | columns))
    return str(error.value)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.csv: no such file"):
        read_user_csv(tmp_path / "nowhere.csv", "x", "y", "g")


def test_a_missing_column_is_refused_naming_the_columns_there_are(tmp_path):
    message = bad(tmp_path, lambda f: f, y="outcome")
    assert "bad.csv: no column(s) ['outcome']; the file has ['patient', 'clinic', 'dose', 'response']" in message


def test_non_numeric_values_are_refused_with_their_rows(tmp_path):
    message = bad(tmp_path, lambda f: f.assign(dose=f["dose"].astype(object).where(f.index != 4, "high")))
    assert "bad.csv: column 'dose' (x): non-numeric values at line 6" in message


def test_missing_values_are_refused_with_their_rows(tmp_path):
    message = bad(tmp_path, lambda f: f.assign(response=f["response"].where(~f.index.isin([2, 7]))))
    assert "bad.csv: column 'response' (y): empty or NaN values at line 4, line 9" in message


def test_infinite_values_are_refused_with_their_rows(tmp_path):
    message = bad(tmp_path, lambda f: f.assign(response=f["response"].where(f.index != 0, np.inf)))
    assert "bad.csv: column 'response' (y): infinite values at line 2" in message


def test_a_single_group_is_refused(tmp_path):
    message = bad(tmp_path, lambda f: f.assign(clinic="clinic A"))
    assert "bad.csv: column 'clinic' (group): a single group ('clinic A'); pooling needs two or more" in message


def test_groups_of_one_row_are_refused_unless_allowed(tmp_path):
    one = lambda f: f.assign(clinic=f["clinic"].where(f.index != 0, "clinic Z"))  # noqa: E731
    message = bad(tmp_path, one)
    assert "bad.csv: column 'clinic' (group): 1 group(s) with fewer than 2 rows (min_group_size), e.g. ['clinic Z'] at line 2" in message
    frame = pd.read_csv(tmp_path / "bad.csv")
    assert len(read_user_csv(tmp_path / "bad.csv", "dose", "response", "clinic", min_group_size=1)) == len(frame)


def test_as_many_groups_as_rows_is_refused(tmp_path):
    message = bad(tmp_path, lambda f: f.assign(clinic=[f"c{i}" for i in range(len(f))]), min_group_size=1)
    assert "bad.csv: column 'clinic' (group): 90 groups for 90 rows; every row is its own group" in message


def real_config(datasets: dict) -> dict:
    config = tiny_config(scenarios={}, datasets=datasets)
    config["study"]["name"] = "real"
    config["sampler"] |= {"target_accept": [0.95], "draws": 400, "tune": 400, "chains": 2}
    config["plots"]["tutorial_scenario"] = "none"
    return config


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """Radon (as the default config fits it, fewer draws) and a user's CSV with its own
    column names, both fitted in one run with no simulated scenario at all."""
    workdir = tmp_path_factory.mktemp("real_run")
    trial = user_csv(workdir / "trial.csv")
    datasets = {
        "radon": {"csv": "resources/data/radon_mn.csv", "x": "floor", "y": "log_radon", "group": "county",
                  "variants": ["pooled_intercept", "varying_intercepts"], "min_group_size": 1},
        "trial": {"csv": str(trial), "x": "dose", "y": "response", "group": "clinic",
                  "variants": ["pooled_intercept", "unpooled_intercepts", "varying_intercepts"]},
    }
    config = real_config(datasets)
    config["models"]["parameterisations"] = ["noncentered"]
    snakemake(workdir, config)
    return workdir / "results/real"


def test_radons_hierarchical_fits_have_85_county_slopes(real_run):
    groups = pd.read_parquet(real_run / "tables/groups.parquet")
    radon = groups[(groups["scenario"] == "radon") & (groups["model"] == "varying_intercepts_noncentered")]
    assert radon["group"].nunique() == 85 and radon["slope_mean"].notna().all()
    assert radon["n_obs"].sum() == 919 and radon["n_obs"].min() == 1
    # Shrinkage: the single-home counties' intercepts sit closer to the mean than the
    # unpooled estimate of a single home could.
    fits = pd.read_parquet(real_run / "tables/fits.parquet")
    assert (fits[fits["scenario"] == "radon"]["elpd_loo"].notna()).all()


def test_the_comparison_table_is_arvizs_on_the_stored_posteriors(real_run):
    import arviz as az

    from poolbench.storage import read_posterior

    table = pd.read_csv(real_run / "tables/comparison.csv")
    fits = pd.read_parquet(real_run / "tables/fits.parquet")
    for dataset in ("radon", "trial"):
        rows = table[(table["dataset"] == dataset)]
        assert rows["elpd_loo"].notna().all()
        ranked = rows.dropna(subset=["rank"]).set_index("model")
        trusted = fits[(fits["scenario"] == dataset) & fits["trusted"]]
        assert set(ranked.index) == set(trusted["model"])
        if len(ranked) < 2:
            continue
        trees = {model: read_posterior(next((real_run / "fits" / model).rglob(f"posterior/{dataset}/*.nc")))
                 for model in ranked.index}
        direct = az.compare(trees, method="stacking", var_name="y_obs", round_to="none")
        for model, row in direct.iterrows():
            assert ranked.loc[model, "rank"] == row["rank"]
            assert ranked.loc[model, "elpd_diff"] == pytest.approx(row["elpd_diff"])
            assert ranked.loc[model, "elpd_diff_se"] == pytest.approx(row["dse"])
            assert ranked.loc[model, "weight"] == pytest.approx(row["weight"])
            assert ranked.loc[model, "elpd_loo"] == pytest.approx(row["elpd"])


def test_the_comparison_rebuilds_each_fits_loo_exactly_from_the_loo_jobs_table(real_run):
    """The comparison reads the `loo` job's pointwise table instead of computing LOO again:
    what it rebuilds is ArviZ's result on the posterior, to the last digit."""
    import arviz as az

    from poolbench.metrics import LOO_FIELDS, loo_from_table, pointwise_loo
    from poolbench.storage import read_posterior

    pointwise = pd.read_parquet(real_run / "tables/loo_pointwise.parquet")
    assert pointwise["posterior"].nunique() == len(pd.read_parquet(real_run / "tables/loo.parquet"))
    for path, rows in pointwise.groupby("posterior"):
        stored = loo_from_table(rows)
        direct = pointwise_loo(read_posterior(real_run.parents[1] / path))
        for field in LOO_FIELDS:
            np.testing.assert_array_equal(getattr(stored, field), getattr(direct, field), err_msg=field)
        np.testing.assert_array_equal(stored.elpd_i.values, np.ravel(direct.elpd_i))
        np.testing.assert_array_equal(stored.pareto_k.values, np.ravel(direct.pareto_k))
    # And so is the comparison: ArviZ's on the rebuilt results is ArviZ's on the posteriors.
    radon = {path: loo_from_table(rows) for path, rows in pointwise.groupby("posterior") if "/radon/" in path}
    labels = dict(enumerate(radon))
    on_tables = az.compare({label: radon[path] for label, path in labels.items()}, method="stacking", round_to="none")
    on_posteriors = az.compare({label: read_posterior(real_run.parents[1] / path) for label, path in labels.items()},
                               method="stacking", var_name="y_obs", round_to="none")
    pd.testing.assert_frame_equal(on_tables, on_posteriors, check_exact=True)


def test_with_two_backends_the_comparison_lists_each_model_once_from_the_first_backend():
    """The compared posteriors are the first backend's; its fits (and only its) are listed,
    one row per model, with their own trust verdicts."""
    from poolbench.metrics import compare_real

    fits = pd.DataFrame([
        {"source": "real", "scenario": "radon", "target_accept": 0.99, "model": model, "likelihood": "normal",
         "prior": "default", "backend": backend, "trusted": backend == "nutpie",
         "untrusted_because": "" if backend == "nutpie" else "rhat", "elpd_loo": -1000.0, "elpd_loo_se": 10.0,
         "p_loo": 5.0, "n_pareto_k_bad": 0}
        for model in ("pooled_intercept", "varying_intercepts_noncentered") for backend in ("nutpie", "pymc")
    ])
    table = compare_real(fits, {}, "nutpie")
    assert sorted(table["model"]) == ["pooled_intercept", "varying_intercepts_noncentered"]
    assert table["trusted"].all() and (table["untrusted_because"] == "").all()


def test_the_report_has_a_section_per_data_set(real_run):
    html = (real_run / "report.html").read_text()
    assert 'id="real"' in html
    for dataset in ("radon", "trial"):
        assert f"{dataset}: " in html and f'id="real_{dataset}_ppc"' in html and f'id="real_{dataset}_shrinkage"' in html
        assert (real_run / f"figures/real/{dataset}_ppc.png").stat().st_size > 1000
    assert "predicts best (ELPD-LOO" in html


def test_a_broken_csv_fails_its_own_jobs_and_the_other_data_set_finishes(tmp_path):
    """A CSV with a NaN and a CSV that does not exist: each fails its own job (not the
    planning of the whole run), naming the file; the good data set's fits finish."""
    trial = user_csv(tmp_path / "trial.csv")
    broken = tmp_path / "broken.csv"
    gone = tmp_path / "gone.csv"
    frame = pd.read_csv(trial)
    frame.assign(response=frame["response"].where(frame.index != 5)).to_csv(broken, index=False)
    columns = {"x": "dose", "y": "response", "group": "clinic", "variants": ["pooled_intercept"]}
    datasets = {
        "good": {"csv": str(trial)} | columns,
        "bad": {"csv": str(broken)} | columns,
        "gone": {"csv": str(gone)} | columns,
    }
    result = snakemake(tmp_path, real_config(datasets), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{broken}: column 'response' (y): empty or NaN values at line 7" in output
    assert f"{gone}: no such file" in output and "MissingInputException" not in output
    good = pd.read_parquet(next((tmp_path / "results/real/fits/pooled_intercept").rglob("good-p0/fits.parquet")))
    assert (good["status"] == "ok").all() and len(good) == 1


def test_a_failed_real_data_fit_is_listed_unranked_and_the_comparison_goes_on(tmp_path):
    """A real-data fit whose start point is impossible has no posterior: the LOO and
    comparison jobs skip it, the comparison lists it untrusted and unranked, the report is
    written."""
    trial = user_csv(tmp_path / "trial.csv")
    datasets = {"trial": {"csv": str(trial), "x": "dose", "y": "response", "group": "clinic",
                          "variants": ["pooled_intercept", "unpooled_intercepts"]}}
    config = real_config(datasets)
    # An initial noise of ~1e-300 makes the log density -inf: initialisation fails.
    config["models"]["priors"] = {"unpooled_intercepts": {"intercept_sd": 10.0, "slope_sd": 10.0, "noise_rate": 1e300}}
    config.setdefault("trust", {})["max_rhat"] = 1.1  # the short chains of tests; the ranking path is what is tested
    snakemake(tmp_path, config)
    table = pd.read_csv(tmp_path / "results/real/tables/comparison.csv").set_index("model")
    assert table.loc["unpooled_intercepts", "untrusted_because"] == "failed"
    assert pd.isna(table.loc["unpooled_intercepts", "rank"]) and table.loc["pooled_intercept", "rank"] == 0
    assert "starting point failed" in (tmp_path / "results/real/report.html").read_text()

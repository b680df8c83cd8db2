"""Datasets: the tutorial's data exactly, reproducibility, outliers and input checks."""

import numpy as np
import pandas as pd
import pytest

from conftest import TINY
from poolbench.grid import derive_seed
from poolbench.data import DataError, read_dataset_table, read_truths, write_datasets, write_truths
from poolbench.simulate import simulate, simulate_scenario

TUTORIAL = TINY["scenarios"]["tutorial"]
HARD = TINY["scenarios"]["hard"]
TWO_OUTLIERS = {"count": 2, "value": 30.0}
NO_OUTLIERS = {"count": 0, "value": 30.0}


def tutorial_reference():
    """The tutorial's own lines, run as written."""
    np.random.seed(0)
    slopes = np.random.normal(2, size=8)
    groups = np.array(50 * [0, 1, 2, 3, 4, 5, 6] + 5 * [7])
    x = np.random.randn(355)
    y = slopes[groups] * x + 0.1 * np.random.randn(355)
    y[-1] = y[-2] = 30
    return slopes, groups, x, y


def test_tutorial_scenario_reproduces_the_tutorial_data_bit_for_bit():
    slopes, groups, x, y = tutorial_reference()
    data, truth = simulate("tutorial", TUTORIAL, TWO_OUTLIERS, seed=0, master_seed=123)
    np.testing.assert_array_equal(data["x"].to_numpy(), x)
    np.testing.assert_array_equal(data["y"].to_numpy(), y)
    np.testing.assert_array_equal(data["group"].to_numpy(), groups)
    np.testing.assert_array_equal(np.array(truth.slopes), slopes)
    assert data["is_outlier"].sum() == 2 and data["is_outlier"].iloc[-2:].all()


def test_dataset_and_truth_tables_round_trip_exactly(tmp_path):
    levels = {"0at30": NO_OUTLIERS, "2at30": TWO_OUTLIERS}
    frames, truths = simulate_scenario("tutorial", TUTORIAL, levels, [0, 1], master_seed=1)
    write_datasets(frames, tmp_path / "d.parquet")
    write_truths(truths, tmp_path / "d.truth.parquet")
    pd.testing.assert_frame_equal(read_dataset_table(tmp_path / "d.parquet", 8), pd.concat(frames, ignore_index=True), check_exact=True)
    assert read_truths(tmp_path / "d.truth.parquet") == {(t.outliers, t.seed): t for t in truths}


def test_outlier_levels_share_the_clean_data():
    clean, _ = simulate("hard", HARD, NO_OUTLIERS, seed=3, master_seed=1)
    dirty, _ = simulate("hard", HARD, TWO_OUTLIERS, seed=3, master_seed=1)
    same = ~dirty["is_outlier"]
    columns = ["x", "y", "group", "is_outlier"]  # the `outliers` label differs, as it should
    pd.testing.assert_frame_equal(clean.loc[same, columns], dirty.loc[same, columns], check_exact=True)
    assert (dirty.loc[dirty["is_outlier"], "y"] == 30).all()
    assert set(dirty.loc[dirty["is_outlier"], "group"]) == {7}


def test_default_rng_streams_depend_on_master_seed_scenario_and_seed():
    base, truth = simulate("hard", HARD, NO_OUTLIERS, seed=0, master_seed=1)
    again, _ = simulate("hard", HARD, NO_OUTLIERS, seed=0, master_seed=1)
    pd.testing.assert_frame_equal(base, again, check_exact=True)
    assert truth.rng_seed == derive_seed(1, "dataset", "hard", 0)
    for other in [
        simulate("hard", HARD, NO_OUTLIERS, seed=1, master_seed=1)[0],
        simulate("hard", HARD, NO_OUTLIERS, seed=0, master_seed=2)[0],
        simulate("hard2", HARD, NO_OUTLIERS, seed=0, master_seed=1)[0],
    ]:
        assert not np.array_equal(other["x"], base["x"])


def test_group_structure_follows_the_scenario():
    data, truth = simulate("hard", HARD, NO_OUTLIERS, seed=0, master_seed=1)
    counts = data["group"].value_counts().sort_index()
    assert counts.tolist() == [5] * 7 + [5]
    assert truth.minority_group == 7 and len(truth.slopes) == 8


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.assign(y=d["y"].where(d.index != 3)), "NaN values in column(s) ['y']"),
        (lambda d: d.drop(columns="group"), "missing column(s) ['group']"),
        (lambda d: d.assign(group=d["group"] + 20), "out of range"),
    ],
)
def test_a_broken_dataset_is_refused_naming_the_file(tmp_path, edit, message):
    data, _ = simulate("hard", HARD, NO_OUTLIERS, seed=0, master_seed=1)
    path = tmp_path / "broken.parquet"
    edit(data).to_parquet(path)
    with pytest.raises(DataError) as error:
        read_dataset_table(path, 8)
    assert str(path) in str(error.value) and message in str(error.value)

"""Bad input (issue #25): a user's CSV that no fit could use is refused on read, with one
DataError naming the data set and the column or groups, before any fit could produce a NaN
or infinite prior scale from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from poolbench.data import DataError, read_user_csv

from test_real import RADON, user_csv

COLUMNS = {"x": "dose", "y": "response", "group": "clinic"}


def refused(tmp_path, edit, **options) -> str:
    """The message of refusing the trial CSV of test_real after `edit` (6 clinics A-F of
    15 patients, rows in clinic order: clinic A at lines 2-16, B at 17-31, ...)."""
    frame = pd.read_csv(user_csv(tmp_path / "good.csv"))
    path = tmp_path / "bad.csv"
    edit(frame).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        read_user_csv(path, **(COLUMNS | options))
    return str(error.value)


def accepted(tmp_path, edit, **options) -> pd.DataFrame:
    frame = pd.read_csv(user_csv(tmp_path / "good.csv"))
    path = tmp_path / "ok.csv"
    edit(frame).to_csv(path, index=False)
    return read_user_csv(path, **(COLUMNS | options))


def in_clinics(frame, column, value, clinics):
    """`column` set to `value` in every row of these clinics."""
    return frame.assign(**{column: frame[column].where(~frame["clinic"].isin(clinics), value)})


@pytest.mark.parametrize("column, role", [("dose", "x"), ("response", "y")])
@pytest.mark.parametrize("value", [1e151, -3e200, 1.7e308])
def test_values_too_large_for_the_prior_scale_are_refused_naming_column_and_rows(tmp_path, column, role, value):
    # Finite on read, but their squares (in the sd that scales the data rule's priors) overflow.
    message = refused(tmp_path, lambda f: f.assign(**{column: f[column].where(~f.index.isin([3, 8]), value)}))
    assert f"bad.csv: column {column!r} ({role}): values beyond 1e+150 in magnitude at line 5, line 10; " in message
    assert "would overflow: rescale the column (e.g. to other units)" in message


def test_values_just_below_the_limit_are_accepted(tmp_path):
    data = accepted(tmp_path, lambda f: f.assign(response=f["response"] * 1e149))
    assert np.isfinite(data["y"].std())


def test_a_constant_y_is_refused_naming_the_y_column(tmp_path):
    message = refused(tmp_path, lambda f: f.assign(response=2.5))
    assert "bad.csv: column 'response' (y): the same value (2.5) at every row; nothing to model" in message


def test_a_constant_x_is_refused_naming_the_x_column(tmp_path):
    message = refused(tmp_path, lambda f: f.assign(dose=1.0))
    assert "bad.csv: column 'dose' (x): the same value (1.0) at every row; no slope can be estimated" in message


@pytest.mark.parametrize("min_group_size", [1, 2])
def test_x_varying_only_between_groups_is_refused_whatever_min_group_size(tmp_path, min_group_size):
    # One dose per clinic: the doses differ, but no slope within a group can be estimated.
    def one_dose(f):
        return f.assign(dose=f["clinic"].map({c: i for i, c in enumerate(sorted(f["clinic"].unique()))}))
    message = refused(tmp_path, one_dose, min_group_size=min_group_size)
    assert ("bad.csv: column 'dose' (x): a single distinct value within every group of column 'clinic' (group); "
            "slopes within groups cannot be estimated") in message


def test_groups_of_one_row_and_one_dose_only_are_refused_even_with_min_group_size_1(tmp_path):
    # Groups of one row have a single x value too: with the others flat, no group has a slope.
    def edit(f):
        f = f.assign(dose=f["clinic"].map({c: i for i, c in enumerate(sorted(f["clinic"].unique()))}).astype(float))
        return f.assign(clinic=f["clinic"].where(f.index != 0, "clinic Z"), dose=f["dose"].where(f.index != 0, 9.0))
    message = refused(tmp_path, edit, min_group_size=1)
    assert "a single distinct value within every group of column 'clinic' (group)" in message


ADVICE = ("; set the data set's min_group_size to 1 to keep such groups (a hierarchical model then pools them; "
          "their own slope or spread comes from the pool)")


@pytest.mark.parametrize("flat, expected", [
    (lambda f: in_clinics(f, "response", 0.5, ["clinic C"]),
     "bad.csv: column 'response' (y) has the same value at every row in 1 group(s) of column 'clinic' (group), "
     "e.g. ['clinic C'] at line 32, line 33, line 34, line 35, line 36 and 10 more (no spread of their own)"),
    (lambda f: in_clinics(in_clinics(f, "dose", 1.0, ["clinic E"]), "dose", 0.2, ["clinic B"]),
     "bad.csv: column 'dose' (x) has a single distinct value in 2 group(s) of column 'clinic' (group), "
     "e.g. ['clinic B', 'clinic E'] at line 17, line 18, line 19, line 20, line 21 and 25 more (no slope of their own)"),
], ids=["constant y in a group", "a single dose in two groups"])
def test_flat_groups_are_refused_naming_them_unless_min_group_size_1(tmp_path, flat, expected):
    message = refused(tmp_path, flat)
    assert expected in message
    assert message.endswith(ADVICE)
    assert len(accepted(tmp_path, flat, min_group_size=1)) == 90


def test_flat_groups_in_y_and_x_are_named_in_one_message(tmp_path):
    both = lambda f: in_clinics(in_clinics(f, "response", 0.5, ["clinic A"]), "dose", 1.0, ["clinic F"])  # noqa: E731
    message = refused(tmp_path, both)
    assert message.count("bad.csv") == 1
    assert ("column 'response' (y) has the same value at every row in 1 group(s) of column 'clinic' (group), "
            "e.g. ['clinic A']") in message
    assert ("; column 'dose' (x) has a single distinct value in 1 group(s) of column 'clinic' (group), "
            "e.g. ['clinic F']") in message


def test_only_the_first_flat_groups_are_listed(tmp_path):
    # 12 clinics of 5 rows numbered 1-12, 7 with one dose each: the first five named, in
    # the groups' order (numeric labels in numeric order).
    def edit(f):
        f = f.head(60).assign(clinic=[str(i // 5 + 1) for i in range(60)])
        return in_clinics(f, "dose", 1.0, [str(i) for i in (12, 2, 3, 4, 5, 6, 10)])
    message = refused(tmp_path, edit)
    assert "in 7 group(s) of column 'clinic' (group), e.g. ['2', '3', '4', '5', '6'] at line 7, " in message


def test_radon_is_accepted_with_min_group_size_1():
    # Counties of one home, and 22 counties of several homes all on the same floor: kept,
    # the hierarchical models pool them.
    data = read_user_csv(RADON, x="floor", y="log_radon", group="county", min_group_size=1, name="radon")
    assert len(data) == 919 and data["group"].nunique() == 85


def test_radon_with_min_group_size_2_is_refused_for_its_single_home_counties():
    with pytest.raises(DataError) as error:
        read_user_csv(RADON, x="floor", y="log_radon", group="county", name="radon")
    message = str(error.value)
    assert message.startswith(f"data set 'radon' ({RADON}): column 'county' (group): 3 group(s) with fewer than 2 rows")


def test_a_missing_file_is_named_with_its_data_set(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError) as error:
        read_user_csv(path, **COLUMNS, name="trial")
    assert str(error.value) == f"data set 'trial' ({path}): no such file"


@pytest.mark.parametrize("edit, part", [
    (lambda f: f.assign(response=2.5), "column 'response' (y): the same value (2.5) at every row"),
    (lambda f: f.assign(clinic="clinic A"), "column 'clinic' (group): a single group ('clinic A')"),
    (lambda f: f.assign(dose=f["dose"].where(f.index != 0, 1e200)), "column 'dose' (x): values beyond 1e+150"),
    (lambda f: in_clinics(f, "dose", 1.0, ["clinic B"]), "column 'dose' (x) has a single distinct value in 1 group(s)"),
])
def test_every_message_starts_with_the_data_set_name_when_given(tmp_path, edit, part):
    message = refused(tmp_path, edit, name="trial")
    assert message.startswith(f"data set 'trial' ({tmp_path / 'bad.csv'}): {part}")
    assert message.count("bad.csv") == 1


def test_without_a_name_messages_start_with_the_path(tmp_path):
    message = refused(tmp_path, lambda f: f.assign(response=2.5))
    assert message.startswith(f"{tmp_path / 'bad.csv'}: column 'response' (y)")

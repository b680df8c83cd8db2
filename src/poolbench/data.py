"""Datasets as the fits read them: one table per scenario or real data set.

A dataset table holds every dataset of a scenario (outlier levels x seeds), one row per
observation: `outliers`, `seed`, `x`, `y`, `group` (0..G-1), `group_label`, `is_outlier`,
`trials` (a binomial outcome's number of trials; 1 for every other family).
A real data set is written in the same layout (outliers 'observed', seed 0) after
`read_user_csv` has checked it. The truth of simulated data sits beside it, one row per
dataset and group (`Truth` is one dataset's).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from poolbench.grid import OBSERVED
from poolbench.priors import LARGEST_VALUE
from poolbench.storage import write_table
from poolbench.variants import BINOMIAL_OUTCOME, CONTINUOUS, DEFAULT_LIKELIHOOD, LIKELIHOODS, TRIALS

DATASET_COLUMNS = ["outliers", "seed", "x", "y", "group", "group_label", "is_outlier", TRIALS]
# Shown for each problem of a user's CSV.
FIRST_ROWS = 5
# The largest |x| or |y| of a user's CSV. The data rule's priors (variants.DATA_RULE) are
# scaled by sd(x) and sd(y), which square the values: squares beyond ~1.8e308 overflow to
# inf (an infinite sd, or NaN from inf - inf), so values that read as finite numbers would
# still break every fit. Below 1e150 the squares stay far from that limit.


# The largest count (y, trials) of a binomial or count CSV: 2^53, beyond which a float (as
# the CSV is parsed) no longer holds every whole number, and well inside int64.
LARGEST_COUNT = 2.0**53


class DataError(ValueError):
    """A data set that no fit could use, with the file, column and rows at fault."""


@dataclass
class Truth:
    """What generated one simulated dataset: the fits are scored against it."""

    scenario: str
    seed: int
    outliers: str
    outlier_count: int
    outlier_value: float
    rng: str
    rng_seed: int
    n_groups: int
    points_per_group: int
    minority_points: int
    minority_group: int
    noise: float
    slope_mean: float
    slope_sd: float
    slopes: list[float]
    intercept_mean: float = 0.0
    intercept_sd: float = 0.0
    intercepts: list[float] = field(default_factory=list)
    # The family y was drawn from, its trials (binomial) and overdispersion (negative binomial).
    family: str = DEFAULT_LIKELIHOOD
    trials: int = 1
    overdispersion: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def rows(self) -> list[dict]:
        """The truth table's rows of this dataset: one per group."""
        common = {k: v for k, v in asdict(self).items() if k not in ("slopes", "intercepts")}
        intercepts = self.intercepts or [0.0] * self.n_groups
        return [
            common | {"group": g, "true_slope": slope, "true_intercept": intercept}
            for g, (slope, intercept) in enumerate(zip(self.slopes, intercepts))
        ]


TRUTH_FIELDS = [f for f in Truth.__dataclass_fields__ if f not in ("slopes", "intercepts")]


def write_datasets(frames: list[pd.DataFrame], path: str | Path) -> None:
    table = pd.concat(frames, ignore_index=True)[DATASET_COLUMNS]
    write_table(table, path)


def write_truths(truths: list[Truth], path: str | Path) -> None:
    write_table(pd.DataFrame([row for truth in truths for row in truth.rows()]), path)


def read_truths(path: str | Path) -> dict[tuple[str, int], Truth]:
    """Every dataset's truth in a scenario's truth table, by (outliers, seed)."""
    table = pd.read_parquet(path)
    out = {}
    for (outliers, seed), rows in table.groupby(["outliers", "seed"], sort=False):
        rows = rows.sort_values("group")
        first = rows.iloc[0]
        out[outliers, int(seed)] = Truth(
            **{f: _plain(first[f]) for f in TRUTH_FIELDS},
            slopes=rows["true_slope"].tolist(),
            intercepts=rows["true_intercept"].tolist(),
        )
    return out


def _plain(value):
    return value.item() if hasattr(value, "item") else value


class DatasetTable:
    """The datasets of one scenario or real data set, read once and split by dataset."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        table = read_dataset_table(path)
        self.n_groups = int(table["group"].max()) + 1
        self._datasets = {
            (outliers, int(seed)): rows.reset_index(drop=True)
            for (outliers, seed), rows in table.groupby(["outliers", "seed"], sort=False)
        }

    def first(self) -> pd.DataFrame:
        return next(iter(self._datasets.values()))

    def get(self, outliers: str, seed: int) -> pd.DataFrame:
        try:
            return self._datasets[outliers, seed]
        except KeyError:
            raise DataError(f"{self.path}: no dataset with outliers={outliers!r}, seed={seed}") from None


def read_dataset_table(path: str | Path, n_groups: int | None = None) -> pd.DataFrame:
    """Read a dataset table, refusing one a fit could not use (a hand-edited file, say)."""
    try:
        data = pd.read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read this dataset table ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in DATASET_COLUMNS if c not in data.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected {DATASET_COLUMNS}")
    bad = data[["x", "y", "group"]].isna().any()
    if bad.any():
        raise DataError(f"{path}: empty or NaN values in column(s) {list(bad[bad].index)}")
    if not np.isfinite(data[["x", "y"]].to_numpy(dtype=float)).all():
        raise DataError(f"{path}: non-finite values in x or y")
    groups = data["group"]
    if not pd.api.types.is_integer_dtype(groups) or groups.min() < 0:
        raise DataError(f"{path}: column 'group' must hold non-negative integers")
    if n_groups is not None and groups.max() >= n_groups:
        raise DataError(f"{path}: group {groups.max()} out of range for {n_groups} groups")
    return data


def response_dtype(likelihood: str) -> str:
    """The dtype of y in a model of this family: integers for binomial and count data."""
    return "int64" if LIKELIHOODS[likelihood].discrete else "float64"


def model_arrays(data: pd.DataFrame, likelihood: str = DEFAULT_LIKELIHOOD) -> dict[str, np.ndarray]:
    """The arrays a model's `pm.Data` containers hold, by name: x, y, the group index and
    the family's own columns (binomial: trials)."""
    arrays = {
        "x": data["x"].to_numpy(dtype="float64"),
        "y": data["y"].to_numpy(dtype=response_dtype(likelihood)),
        "group_idx": data["group"].to_numpy(dtype="int64"),
    }
    return arrays | {column: data[column].to_numpy(dtype="int64") for column in LIKELIHOODS[likelihood].columns}


def _rows(mask: pd.Series) -> str:
    """The first offending rows, numbered as in the CSV file (header = line 1)."""
    index = list(mask[mask].index[:FIRST_ROWS])
    more = int(mask.sum()) - len(index)
    text = ", ".join(f"line {i + 2}" for i in index)
    return text + (f" and {more} more" if more > 0 else "")


def read_user_csv(path: str | Path, x: str, y: str, group: str, min_group_size: int = 2, *,
                  name: str | None = None, family: str = DEFAULT_LIKELIHOOD, trials: str | None = None,
                  success: str | None = None) -> pd.DataFrame:
    """A user's grouped CSV as a dataset table, or one DataError naming the data set (its
    `name` in the config, when given, and the file), the column or groups and the first
    offending rows.

    Everything a fit could not use is refused here, before any fit: a bad file would
    otherwise fail in every fit job, or worse, fit with a NaN or infinite prior scale (the
    data rule's priors are scaled by sd(x) and sd(y)). Besides unreadable values, that is
    values whose squares overflow, an x or y with no spread at all, and groups whose own
    slope or noise cannot be estimated (see `_spread_problem`).

    A binomial or count `family` (`poolbench.variants.LIKELIHOODS`) needs whole numbers
    >= 0 in y (binomial: at most the `trials` column, each >= 1; without one every row is
    one trial, y 0 or 1). Two-valued labels in y ("yes"/"no") are read only where
    `success` says which label is a success; otherwise they are refused."""
    path = Path(path)
    outcome = LIKELIHOODS[family].outcome
    at = _source(path, name)
    if not path.is_file():
        raise DataError(f"{at}: no such file")
    duplicated = _duplicated_header(path)
    if duplicated:
        raise DataError(f"{at}: duplicated column(s) in the header: {'; '.join(duplicated)}; "
                        "every column needs its own name")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DataError(f"{at}: cannot read as CSV ({type(exc).__name__}: {exc})") from exc
    if trials is not None and success is not None:
        raise DataError(f"{at}: `success` ({success!r}) labels yes/no rows of one trial each; with a trials "
                        f"column ({trials!r}) y counts successes: give one or the other")
    if trials is not None and outcome != BINOMIAL_OUTCOME:
        raise DataError(f"{at}: a trials column ({trials!r}) is read for the binomial family only, not {family}")
    if success is not None and outcome != BINOMIAL_OUTCOME:
        raise DataError(f"{at}: `success` ({success!r}) labels a binomial outcome; the family is {family}")
    missing = [c for c in (x, y, group, *([trials] if trials else [])) if c not in raw.columns]
    if missing:
        raise DataError(f"{at}: no column(s) {missing}; the file has {list(raw.columns)}")
    if raw.empty:
        raise DataError(f"{at}: no rows")
    values = {}
    if success is not None:  # two labels, one of them the success: y becomes 0/1
        raw[y] = _success_indicator(raw[y], success, at, y)
    for role, column in (("x", x), ("y", y), *((("trials", trials),) if trials else ())):
        text = raw[column].str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        blank = text.eq("") | text.str.lower().isin(["na", "nan", "null", "none"])
        if blank.any():
            raise DataError(f"{at}: column {column!r} ({role}): empty or NaN values at {_rows(blank)}")
        if numbers.isna().any():
            labels = sorted(text.unique())
            hint = (f"; it holds two labels {labels}: set the data set's `success` to the one that counts as a success"
                    if role == "y" and outcome == BINOMIAL_OUTCOME and len(labels) == 2 else "")
            raise DataError(f"{at}: column {column!r} ({role}): non-numeric values at {_rows(numbers.isna())}{hint}")
        if not np.isfinite(numbers).all():
            raise DataError(f"{at}: column {column!r} ({role}): infinite values at {_rows(~np.isfinite(numbers))}")
        large = numbers.abs() > LARGEST_VALUE
        if large.any():
            raise DataError(
                f"{at}: column {column!r} ({role}): values beyond {LARGEST_VALUE:g} in magnitude at {_rows(large)}; "
                "the priors are scaled by the column's sd, which squares the values and would overflow: "
                "rescale the column (e.g. to other units)"
            )
        values[role] = numbers.astype(float)
    if outcome != CONTINUOUS:
        _check_counts(values, outcome, at, y, trials)
    # No spread over the whole data set: the data-scaled priors would divide by an sd of 0.
    # (A binomial outcome varies through its rate: checked by _check_counts.)
    if values["y"].nunique() == 1 and outcome != BINOMIAL_OUTCOME:
        raise DataError(f"{at}: column {y!r} (y): the same value ({values['y'].iloc[0]}) at every row; "
                        "nothing to model")
    if values["x"].nunique() == 1:
        raise DataError(f"{at}: column {x!r} (x): the same value ({values['x'].iloc[0]}) at every row; "
                        "no slope can be estimated")
    labels = raw[group].str.strip()
    blank = labels.eq("") | labels.str.lower().isin(["na", "nan", "null", "none"])
    if blank.any():
        raise DataError(f"{at}: column {group!r} (group): empty or NaN values at {_rows(blank)}")
    counts = labels.value_counts()
    if len(counts) < 2:
        raise DataError(f"{at}: column {group!r} (group): a single group ({labels.iloc[0]!r}); pooling needs two or more")
    if len(counts) >= len(labels):
        raise DataError(f"{at}: column {group!r} (group): {len(counts)} groups for {len(labels)} rows; every row is its own group")
    small = counts[counts < min_group_size]
    if len(small):
        rows = labels.isin(small.index)
        raise DataError(
            f"{at}: column {group!r} (group): {len(small)} group(s) with fewer than {min_group_size} rows "
            f"(min_group_size), e.g. {list(small.index[:FIRST_ROWS])} at {_rows(rows)}; "
            "set the data set's min_group_size to 1 to keep them (hierarchical models pool them)"
        )
    problem = _spread_problem(values, labels, x, y, group, min_group_size, LIKELIHOODS[family].has_noise)
    if problem:
        raise DataError(f"{at}: {problem}")
    order = sorted(counts.index, key=_label_order)
    index = {label: i for i, label in enumerate(order)}
    return pd.DataFrame(
        {
            "outliers": OBSERVED,
            "seed": 0,
            "x": values["x"],
            "y": values["y"],
            "group": labels.map(index).astype("int64"),
            "group_label": labels,
            "is_outlier": False,
            TRIALS: values["trials"].astype("int64") if trials else 1,
        }
    )[DATASET_COLUMNS]


def _success_indicator(column: pd.Series, success: str, at: str, y: str) -> pd.Series:
    """A two-valued column as "1" where it holds the `success` label and "0" where it holds
    the other one; any third label, a blank or NA (a missing answer is no failure), or a
    column without the success label is refused."""
    text = column.str.strip()
    blank = text.eq("") | text.str.lower().isin(["na", "nan", "null", "none"])
    if blank.any():
        raise DataError(f"{at}: column {y!r} (y): empty or NaN values at {_rows(blank)}")
    labels = sorted(text.unique())
    if success not in labels:
        raise DataError(f"{at}: column {y!r} (y): success label {success!r} does not occur; the column holds "
                        f"{labels[:FIRST_ROWS]}")
    if len(labels) > 2:  # the rows of the labels beyond the success and the most frequent other one
        failure = text[text.ne(success)].value_counts().index[0]
        others = ~text.isin([success, failure])
        raise DataError(f"{at}: column {y!r} (y): more than two labels ({labels[:FIRST_ROWS]}); a binomial outcome "
                        f"with `success` takes two, e.g. at {_rows(others)}")
    return text.eq(success).astype(int).astype(str)


def _check_counts(values: dict[str, pd.Series], outcome: str, at: str, y: str, trials: str | None) -> None:
    """y of a binomial or count family: whole numbers >= 0 (binomial: y <= trials, trials
    >= 1, 1 where there is no trials column), at most LARGEST_COUNT (y and trials)."""
    for role, column in (("y", y), ("trials", trials)):
        if role in values:
            large = values[role] > LARGEST_COUNT
            if large.any():
                raise DataError(f"{at}: column {column!r} ({role}): counts beyond {LARGEST_COUNT:g} at {_rows(large)}; "
                                "a count is held as a 64-bit integer, and beyond 2^53 a float no longer tells "
                                "whole numbers apart")
    response = values["y"]
    fractional = response != np.round(response)
    if fractional.any():
        raise DataError(f"{at}: column {y!r} (y): non-integer values at {_rows(fractional)}; the {outcome} family "
                        "counts whole numbers")
    negative = response < 0
    if negative.any():
        raise DataError(f"{at}: column {y!r} (y): negative values at {_rows(negative)}; counts are >= 0")
    if outcome != BINOMIAL_OUTCOME:
        return
    if trials is None:
        above = response > 1
        if above.any():
            raise DataError(f"{at}: column {y!r} (y): values above 1 at {_rows(above)} and no trials column; "
                            "name the column of trials (`trials:`) or give 0/1 outcomes")
        values["trials"] = pd.Series(1.0, index=response.index)
        return
    count = values["trials"]
    bad = (count != np.round(count)) | (count < 1)
    if bad.any():
        raise DataError(f"{at}: column {trials!r} (trials): values that are not whole numbers >= 1 at {_rows(bad)}")
    above = response > count
    if above.any():
        raise DataError(f"{at}: column {y!r} (y): more successes than trials (column {trials!r}) at {_rows(above)}")
    rate = response.sum() / count.sum()
    if rate in (0.0, 1.0):
        raise DataError(f"{at}: column {y!r} (y): {'no successes' if rate == 0 else 'every trial a success'} "
                        "at every row; nothing to model")


def _source(path: Path, name: str | None) -> str:
    """How every message of `read_user_csv` names the data set: the config's name first
    when there is one (several data sets may share a file, and the name is what the user
    edits in the config), then the file."""
    return f"data set {name!r} ({path})" if name is not None else str(path)


def _spread_problem(values: dict[str, pd.Series], labels: pd.Series, x: str, y: str, group: str,
                    min_group_size: int, has_noise: bool = True) -> str | None:
    """What is wrong with the spread of x and y within groups (the message after the data
    set's name), or None.

    x must vary within at least one group, whatever min_group_size: the variants compare
    slopes within groups (one per group, or drawn around a population mean), and where x
    varies only between groups a slope cannot be told from the groups' intercepts. A
    single group with one x value (no slope of its own) or one y value (no spread of its
    own) is refused only where min_group_size >= 2 asks for groups that stand on their
    own; with min_group_size 1 it is kept, and a hierarchical model takes its slope or
    spread from the pool. The radon data need that: counties of one home, and counties
    whose homes were all measured on the same floor. A family without noise (binomial,
    Poisson) has no spread of its own to estimate: a group whose y never varies (no case
    in a herd) is data, not a problem."""
    by_group = pd.DataFrame({"x": values["x"], "y": values["y"], "label": labels}).groupby("label", sort=False)
    distinct = by_group.nunique()
    if (distinct["x"] == 1).all():
        return (f"column {x!r} (x): a single distinct value within every group of column {group!r} (group); "
                "slopes within groups cannot be estimated (x varies only between groups)")
    if min_group_size < 2:
        return None
    sizes = by_group.size()
    problems = []
    checked = (("y", y, "the same value at every row", "no spread"),) if has_noise else ()
    for role, column, lacking, own in checked + (("x", x, "a single distinct value", "no slope"),):
        flat = sorted(distinct.index[(distinct[role] == 1) & (sizes >= 2)], key=_label_order)
        if flat:
            problems.append(f"column {column!r} ({role}) has {lacking} in {len(flat)} group(s) of column {group!r} "
                            f"(group), e.g. {flat[:FIRST_ROWS]} at {_rows(labels.isin(flat))} ({own} of their own)")
    if not problems:
        return None
    return ("; ".join(problems) + "; set the data set's min_group_size to 1 to keep such groups "
            "(a hierarchical model then pools them; their own slope or spread comes from the pool)")


def _duplicated_header(path: Path) -> list[str]:
    """The header's names that occur more than once, also where they differ only by
    surrounding whitespace (each with its spellings), read as pandas reads the header (the
    first non-blank line, comma-separated, double quotes): pandas would rename the second
    `x` to `x.1` and the fit use the first without a word. Blank names are not compared
    (pandas names them 'Unnamed: i'; trailing commas make them)."""
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as file:
            header = next((row for row in csv.reader(file) if row), [])
    except (OSError, csv.Error):
        return []  # pandas then says why the file cannot be read
    spellings: dict[str, list[str]] = {}
    for name in header:
        if name.strip():
            spellings.setdefault(name.strip(), []).append(name)
    return [
        repr(name) if set(names) == {name} else f"{name!r} (as {', '.join(map(repr, names))})"
        for name, names in spellings.items() if len(names) > 1
    ]


def _label_order(label: str):
    """Numeric labels in numeric order (county 2 before county 10), others after, by text."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)

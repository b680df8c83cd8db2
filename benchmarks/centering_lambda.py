"""The centeredness lambda_j of the tutorial's dataset and of radon: the pilot's formula
(`partial`) beside the learned one (`learned`, VIP), for docs/centering.md (issue #28).

    .venv/bin/python benchmarks/centering_lambda.py

Prints, per data set and coefficient, each group's size and its two lambdas, and a summary
(quartiles of each, their correlation). Seconds of the variational run too.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from poolbench import centering, grid, simulate
from poolbench.data import model_arrays, read_user_csv
from poolbench.learned import learned_centeredness
from poolbench.priors import model_inputs
from poolbench.variants import VARIANTS

REPO = Path(__file__).resolve().parents[1]


def compare(name: str, data: pd.DataFrame, spec: grid.ModelSpec, prior: dict, n_groups: int, seed: int) -> pd.DataFrame:
    arrays = model_inputs(model_arrays(data, spec.likelihood), spec.variant, prior, spec.likelihood)
    formula = centering.centeredness(arrays, n_groups, spec.variant, spec.likelihood, "partial", prior)
    start = time.perf_counter()
    learned = learned_centeredness(grid.ModelSpec(spec.variant, "learned", spec.likelihood), prior, arrays, n_groups, seed)
    seconds = time.perf_counter() - start
    sizes = np.bincount(arrays["group_idx"], minlength=n_groups)
    rows = []
    for key in formula:
        for g in range(n_groups):
            rows.append({"data": name, "coefficient": key.removesuffix("_centeredness"), "group": g, "n_obs": sizes[g],
                         "formula": formula[key][g], "learned": learned[key][g]})
    table = pd.DataFrame(rows)
    print(f"\n{name} ({spec.variant}; variational run {seconds:.1f} s)")
    for coefficient, part in table.groupby("coefficient"):
        q = part[["formula", "learned"]].quantile([0.0, 0.25, 0.5, 0.75, 1.0]).round(2)
        print(f"  {coefficient}: quartiles (min, 25 %, median, 75 %, max)\n"
              f"    formula {q['formula'].tolist()}\n    learned {q['learned'].tolist()}\n"
              f"    correlation {part['formula'].corr(part['learned']):.2f}; "
              f"groups with formula >= 0.5: {(part['formula'] >= 0.5).sum()} of {len(part)}")
    return table


def main() -> None:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    scenario, outliers, seed = "tutorial", {"count": 2, "value": 30.0}, 0
    data, _ = simulate.simulate(scenario, config["scenarios"][scenario], outliers, seed, config["master_seed"])
    spec = grid.ModelSpec("hierarchical", "partial")
    hierarchical = dict(config["models"]["priors"]["hierarchical"]) | {"rule": "fixed"}
    tutorial = compare("tutorial dataset (seed 0, 2 outliers at 30)", data, spec, hierarchical, 8, 1)
    print(tutorial.round(3).to_string(index=False))
    radon = config["datasets"]["radon"]
    table = read_user_csv(REPO / radon["csv"], radon["x"], radon["y"], radon["group"], radon["min_group_size"])
    spec = grid.ModelSpec("varying_intercepts", "partial")
    prior = {"rule": "data"} | VARIANTS["varying_intercepts"].data_priors
    n_groups = int(table["group"].max()) + 1
    out = compare("radon (85 counties)", table, spec, prior, n_groups, 1)
    by_size = out.assign(size=pd.cut(out["n_obs"], [0, 2, 5, 10, 20, 200])).groupby(["coefficient", "size"], observed=True)
    print(by_size[["formula", "learned"]].median().round(2).to_string())


if __name__ == "__main__":
    main()

"""The best loop an experienced PyMC user writes by hand, for the benchmark: one Python
process, chains on every core (nutpie's default); each model compiled once with nutpie,
the data swapped with `with_data`;
`az.summary` and one NetCDF per fit. It uses none of poolbench's fitting code: it reads the
datasets poolbench simulated (so both fit the same data) and writes its own models.

usage: handwritten_loop.py CONFIG.yaml DATASETS_DIR OUT_DIR

Prints one JSON line: wall time, the time spent in `nutpie.sample` calls and the leapfrog
steps they took, number of fits.
"""

import json
import sys
import time
from pathlib import Path

start = time.perf_counter()
import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import nutpie  # noqa: E402
import pandas as pd  # noqa: E402
import pymc as pm  # noqa: E402
import yaml  # noqa: E402

imported = time.perf_counter()
config_path, datasets_dir, out_dir = sys.argv[1:]
config = yaml.safe_load(open(config_path))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
sampler = config["sampler"]
# Its priors are the config's, each key the config leaves out at the registry's default
# (the schema does not restate the registry's defaults; poolbench.grid.priors merges them).
from poolbench.variants import VARIANTS  # noqa: E402

priors = {name: VARIANTS[name].priors | config["models"]["priors"].get(name, {}) for name in ("pooled", "unpooled", "hierarchical")}


def build(variant, parameterisation, likelihood, x, y, group_idx, n_groups):
    with pm.Model(coords={"group": range(n_groups)}) as model:
        x = pm.Data("x", x)
        y = pm.Data("y", y)
        group = pm.Data("group_idx", group_idx)
        if variant == "pooled":
            p = priors["pooled"]
            slope = pm.Normal("common_slope", 0, p["slope_sd"]) * pm.math.ones(n_groups)
        elif variant == "unpooled":
            p = priors["unpooled"]
            slope = pm.Normal("slope", 0, p["slope_sd"], dims="group")
        else:
            p = priors["hierarchical"]
            mu = pm.Normal("mu_slope", 0, p["mu_sd"])
            sigma = pm.Exponential("sigma_slope", p["sigma_rate"])
            if parameterisation == "centered":
                slope = pm.Normal("slope", mu, sigma, dims="group")
            else:
                z = pm.Normal("z_slope", 0, 1, dims="group")
                slope = pm.Deterministic("slope", mu + sigma * z, dims="group")
        noise = pm.Exponential("noise", p["noise_rate"])
        if likelihood == "normal":
            pm.Normal("y_obs", slope[group] * x, noise, observed=y, shape=x.shape)
        else:
            nu = pm.Gamma("nu", 2.0, 0.1)
            pm.StudentT("y_obs", nu=nu, mu=slope[group] * x, sigma=noise, observed=y, shape=x.shape)
    return model


models = [(v, p) for v in config["models"]["variants"]
          for p in (config["models"]["parameterisations"] if v == "hierarchical" else ["none"])]
tables = {name: pd.read_parquet(Path(datasets_dir) / f"{name}.parquet") for name in config["scenarios"]}
sampling, fits, steps = 0.0, 0, 0
for variant, parameterisation in models:
    for likelihood in config["models"]["likelihoods"]:
        compiled = None
        for scenario, table in tables.items():
            for (outliers, seed), data in table.groupby(["outliers", "seed"], sort=False):
                arrays = dict(x=data["x"].to_numpy(), y=data["y"].to_numpy(), group_idx=data["group"].to_numpy())
                if compiled is None:
                    compiled = nutpie.compile_pymc_model(build(variant, parameterisation, likelihood, **arrays, n_groups=8))
                for ta in sampler["target_accept"]:
                    started = time.perf_counter()
                    trace = nutpie.sample(
                        compiled.with_data(**arrays), draws=sampler["draws"], tune=sampler["tune"],
                        chains=sampler["chains"], target_accept=ta, seed=fits, progress_bar=False,
                    )
                    sampling += time.perf_counter() - started
                    # Leapfrog steps (gradient evaluations), warm-up included: the benchmark's
                    # per-step cost, which different chains do not confound as time alone would.
                    steps += sum(int(trace[group]["n_steps"].sum()) for group in ("warmup_sample_stats", "sample_stats"))
                    summary = az.summary(trace, kind="diagnostics")
                    trace.to_netcdf(out / f"{variant}_{parameterisation}_{likelihood}_{scenario}_{outliers}_{seed}_{ta}.nc")
                    fits += 1
                    print(f"  hand-written {fits}", end="\r", file=sys.stderr, flush=True)
print(json.dumps({
    "fits": fits,
    "import_seconds": imported - start,
    "wall_seconds": time.perf_counter() - start,
    "sampling_seconds": sampling,
    "leapfrog_steps": steps,
    "worst_rhat": float(np.nanmax(summary["r_hat"])),
}))

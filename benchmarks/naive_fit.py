"""One fit the naive way, as the tutorial does it: a fresh Python process that imports PyMC,
builds the model and calls pm.sample. Prints one JSON line of timings and diagnostics.

usage: naive_fit.py CONFIG.yaml DATASETS.parquet OUTLIERS SEED MODEL LIKELIHOOD TARGET_ACCEPT SAMPLER
"""

import json
import resource
import sys
import time

start = time.perf_counter()
import arviz as az  # noqa: E402
import pandas as pd  # noqa: E402
import pymc as pm  # noqa: E402
import yaml  # noqa: E402

from poolbench import grid  # noqa: E402
from poolbench.data import model_arrays  # noqa: E402
from poolbench.models import build_model  # noqa: E402

imported = time.perf_counter()
config_path, dataset, outliers, seed, model, likelihood, target_accept, sampler = sys.argv[1:]
config = yaml.safe_load(open(config_path))
table = pd.read_parquet(dataset)
data = table[(table["outliers"] == outliers) & (table["seed"] == int(seed))]
spec = grid.ModelSpec.from_name(model, likelihood)
key = grid.FitKey(grid.SIMULATED, dataset.rsplit("/", 1)[-1].removesuffix(".parquet"), outliers, int(seed), float(target_accept))
settings = config["sampler"]
with build_model(spec, grid.priors(config, spec), model_arrays(data), int(data["group"].max()) + 1):
    # The tutorial's call: default cores (min(4, CPUs)), PyMC's own NUTS unless told otherwise.
    tree = pm.sample(
        draws=settings["draws"],
        tune=settings["tune"],
        chains=settings["chains"],
        target_accept=float(target_accept),
        random_seed=grid.fit_seed(config["master_seed"], key, spec),
        nuts_sampler=sampler,
        progressbar=False,
    )
done = time.perf_counter()
sampling = tree["posterior"].attrs.get("sampling_time", done - imported)
ess = float(az.summary(tree, kind="diagnostics", round_to="none")["ess_bulk"].min())
print(json.dumps({
    "import_seconds": imported - start,
    "sample_call_seconds": done - imported,
    "sampling_seconds": sampling,
    "ess_bulk_per_second": ess / sampling,
    "n_divergent": int(tree["sample_stats"]["diverging"].sum()),
    "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))

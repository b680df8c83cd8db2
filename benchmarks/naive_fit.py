"""One fit the naive way, as the tutorial does it: a fresh Python process that imports PyMC,
builds the model and calls pm.sample. Prints one JSON line of timings and diagnostics.

usage: naive_fit.py CONFIG.yaml DATASET.csv TRUTH.json MODEL TARGET_ACCEPT SAMPLER
"""

import json
import resource
import sys
import time

start = time.perf_counter()
import arviz as az
import pymc as pm
import yaml

from poolbench.grid import ModelSpec, fit_seed
from poolbench.models import build_model
from poolbench.simulate import Truth, read_dataset

imported = time.perf_counter()
config_path, dataset, truth_path, model, target_accept, sampler = sys.argv[1:]
config = yaml.safe_load(open(config_path))
truth = Truth.read(truth_path)
spec = ModelSpec.from_name(model)
settings = config["sampler"]
with build_model(spec, config["models"]["priors"][spec.variant], read_dataset(dataset), truth.n_groups):
    # The tutorial's call: default cores (min(4, CPUs)), PyMC's own NUTS unless told otherwise.
    tree = pm.sample(
        draws=settings["draws"],
        tune=settings["tune"],
        chains=settings["chains"],
        target_accept=float(target_accept),
        random_seed=fit_seed(config["master_seed"], truth, spec, float(target_accept)),
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

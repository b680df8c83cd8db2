from poolbench.runtime import start_job

start_job(snakemake)

from pathlib import Path

from poolbench.data import DatasetTable, model_arrays
from poolbench.grid import ModelSpec
from poolbench.models import build_model, render_model_graph

table = DatasetTable(snakemake.input.data)
graphs = Path(snakemake.output.graphs)
graphs.mkdir(parents=True, exist_ok=True)
for name, (likelihood, prior_set, priors) in snakemake.params.models.items():
    model = build_model(ModelSpec.from_name(name, likelihood, prior_set), priors, model_arrays(table.first(), likelihood), table.n_groups)
    render_model_graph(model, graphs / f"{name}.svg", graphs / f"{name}.png")

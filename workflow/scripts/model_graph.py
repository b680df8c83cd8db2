from poolbench.runtime import configure_logging

configure_logging(snakemake)

from pathlib import Path

from poolbench.grid import ModelSpec
from poolbench.models import render_model_graph
from poolbench.simulate import read_dataset

data = read_dataset(snakemake.input.data)
graphs = Path(snakemake.output.graphs)
graphs.mkdir(parents=True, exist_ok=True)
for model, priors in snakemake.params.priors.items():
    render_model_graph(
        ModelSpec.from_name(model),
        priors,
        data,
        snakemake.params.n_groups,
        graphs / f"{model}.svg",
        graphs / f"{model}.png",
    )

from poolbench.runtime import configure_logging

configure_logging(snakemake)

from poolbench.grid import ModelSpec
from poolbench.models import render_model_graph
from poolbench.simulate import read_dataset

render_model_graph(
    ModelSpec.from_name(snakemake.wildcards.model),
    snakemake.params.priors,
    read_dataset(snakemake.input.data),
    snakemake.params.n_groups,
    snakemake.output.svg,
    snakemake.output.png,
)

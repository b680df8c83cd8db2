from poolbench.runtime import configure_logging

configure_logging(snakemake)

from poolbench.grid import ModelSpec
from poolbench.models import render_model_graph
from poolbench.simulate import read_dataset

data = read_dataset(snakemake.input.data)
outputs = zip(snakemake.output.svg, snakemake.output.png, strict=True)
for model, (svg, png) in zip(snakemake.params.models, outputs, strict=True):
    render_model_graph(
        ModelSpec.from_name(model),
        snakemake.params.priors[model],
        data,
        snakemake.params.n_groups,
        svg,
        png,
    )

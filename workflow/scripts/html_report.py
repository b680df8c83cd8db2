from poolbench.runtime import configure_logging

configure_logging(snakemake)

from pathlib import Path

import pandas as pd

from poolbench.report import render_caption, render_report
from poolbench.storage import read_provenance

figures = [
    figure | {"caption": render_caption(figure["caption"], **figure["wildcards"])}
    for figure in snakemake.params.figures
]
html = render_report(
    summary=pd.read_parquet(snakemake.input.summary),
    fits=pd.read_parquet(snakemake.input.fits),
    figures=figures,
    config=snakemake.params.config,
    provenance=read_provenance(snakemake.input.summary),
)
Path(snakemake.output.html).write_text(html)

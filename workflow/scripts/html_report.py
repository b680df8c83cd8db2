from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench.report import render_caption, render_report
from poolbench.storage import read_provenance, write_text

inputs = snakemake.input
figures = [
    figure | {"caption": render_caption(figure["caption"], **figure["wildcards"])}
    for figure in snakemake.params.figures
]
html = render_report(
    summary=pd.read_parquet(inputs.summary),
    fits=pd.read_parquet(inputs.fits),
    figures=figures,
    config=snakemake.params.config,
    provenance=read_provenance(inputs.summary),
    calibration=pd.read_parquet(inputs.calibration),
    # Parquet, never the CSV twin: read back, a CSV guesses NA, and a data set named 'NA',
    # 'nan', 'None' or 'null' would become NaN and vanish from the report.
    comparison=pd.read_parquet(inputs.comparison),
    parameterisation=pd.read_parquet(inputs.parameterisation),
    sbc_fits=pd.read_parquet(inputs.sbc_fits),
)
write_text(html, snakemake.output.html)

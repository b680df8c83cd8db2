from poolbench.runtime import start_job

start_job(snakemake)

import pandas as pd

from poolbench.report import all_findings, findings_table, render_caption, render_report
from poolbench.storage import read_provenance, write_table, write_text

inputs = snakemake.input
figures = [
    figure | {"caption": render_caption(figure["caption"], **figure["wildcards"])}
    for figure in snakemake.params.figures
]
tables = dict(
    summary=pd.read_parquet(inputs.summary),
    fits=pd.read_parquet(inputs.fits),
    calibration=pd.read_parquet(inputs.calibration),
    # Parquet, never the CSV twin: read back, a CSV guesses NA, and a data set named 'NA',
    # 'nan', 'None' or 'null' would become NaN and vanish from the report.
    comparison=pd.read_parquet(inputs.comparison),
    parameterisation=pd.read_parquet(inputs.parameterisation),
    sbc_fits=pd.read_parquet(inputs.sbc_fits),
)
provenance = read_provenance(inputs.summary)
found = all_findings(config=snakemake.params.config, **tables)
findings = findings_table(found)
findings.attrs["provenance"] = provenance  # the tables' own, as theirs
write_table(findings, snakemake.output.findings_parquet, snakemake.output.findings)
html = render_report(
    figures=figures,
    config=snakemake.params.config,
    provenance=provenance,
    found=found,
    **tables,
)
write_text(html, snakemake.output.html)

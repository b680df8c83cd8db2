"""Reading and writing results: atomic writes, clear errors on unreadable files.

Free of PyMC, so plot and report jobs can use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr


def _atomically(path: str | Path, write) -> None:
    """Write to a '.partial' sibling, then rename: an interrupted job never leaves a
    truncated file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def write_table(frame: pd.DataFrame, parquet: str | Path, csv: str | Path | None = None) -> None:
    """Parquet (and optionally CSV); `frame.attrs["provenance"]` goes into the Parquet metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {b"poolbench": json.dumps(frame.attrs.get("provenance", {})).encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    _atomically(parquet, lambda p: pq.write_table(table, p))
    if csv is not None:
        _atomically(csv, lambda p: frame.to_csv(p, index=False))


def read_provenance(parquet: str | Path) -> dict:
    return json.loads(pq.read_schema(parquet).metadata[b"poolbench"])


def write_posterior(tree: xr.DataTree, path: str | Path) -> None:
    _atomically(path, lambda p: tree.to_netcdf(p, engine="h5netcdf"))


def read_posterior(path: str | Path) -> xr.DataTree:
    """Load a posterior, or say which file is broken and what to do about it."""
    try:
        return xr.open_datatree(path, engine="h5netcdf").load()
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(
            f"{path}: cannot read this NetCDF posterior ({type(exc).__name__}: {exc}). "
            "It may be truncated or edited; delete its fit job's results and rerun Snakemake "
            "(finished fits come back from results/cache/fits)."
        ) from exc

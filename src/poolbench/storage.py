"""Reading and writing results: atomic writes, checksums, clear errors on unreadable files.

Free of PyMC, so plot and report jobs can use it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

PARTIAL = ".partial"
# Errors of the machine, not of a model: a fit that meets one has not failed, the job has.
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM,
    errno.EMFILE, errno.ENFILE, errno.ENOMEM,
}
ENVIRONMENT_MESSAGES = (
    "No space left on device", "Disk quota exceeded", "Read-only file system",
    "Permission denied", "Input/output error",
)


class EnvironmentFault(RuntimeError):
    """The machine failed the job (disk full, permissions, I/O): stop, and say where."""


def is_environment_error(exc: BaseException) -> bool:
    """True for an error of the machine anywhere in the exception's chain: by its errno,
    or, for an OSError raised without one, by its message."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError):
            return True
        if isinstance(exc, OSError) and (
            exc.errno in ENVIRONMENT_ERRNOS or any(m in str(exc) for m in ENVIRONMENT_MESSAGES)
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def partial_path(path: Path) -> Path:
    """A writer's private temporary name beside `path`: it carries the writer's PID, so two
    processes writing the same result (a rerun racing an orphan) never share one, and a
    stale one can be told from a live one."""
    return path.with_name(f"{path.name}.{os.getpid()}{PARTIAL}")


def _atomically(path: str | Path, write) -> None:
    """Write to a private '.partial' sibling, then rename: a reader never sees a truncated
    file under the final name, and nothing is left behind when the write fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        remove_path(partial)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def remove_stale_partials(directory: str | Path, recursive: bool = True) -> int:
    """Remove '.partial' files and folders in `directory` whose writer is gone (a process
    killed mid-write leaves them). Returns how many were removed."""
    removed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    found = directory.rglob(f"*{PARTIAL}") if recursive else directory.glob(f"*{PARTIAL}")
    for path in list(found):
        pid = path.name.removesuffix(PARTIAL).rsplit(".", 1)[-1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        remove_path(path)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_table(frame: pd.DataFrame, parquet: str | Path, csv: str | Path | None = None) -> None:
    """Parquet (and optionally CSV); `frame.attrs["provenance"]` goes into the Parquet metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {b"poolbench": json.dumps(frame.attrs.get("provenance", {})).encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    _atomically(parquet, lambda p: pq.write_table(table, p))
    if csv is not None:
        _atomically(csv, lambda p: frame.to_csv(p, index=False))


def write_text(text: str, path: str | Path) -> None:
    _atomically(path, lambda p: Path(p).write_text(text))


def read_provenance(parquet: str | Path) -> dict:
    return json.loads(pq.read_schema(parquet).metadata[b"poolbench"])


# NetCDF files are written and read with netCDF-C (the `netCDF4` package): ~4x faster per
# posterior than h5netcdf, whose per-variable Python overhead cost ~45 ms of every fit
# (docs/performance.md).
NETCDF_ENGINE = "netcdf4"


def write_posterior(tree: xr.DataTree, path: str | Path) -> None:
    """Serialise in memory, then write the bytes: netCDF-C reports a failed disk write as
    "NetCDF: HDF error", without its cause, while a plain write names it (disk full,
    permissions) and so fails the job as the machine's fault, not the fit's."""
    data = tree.to_netcdf(engine=NETCDF_ENGINE)
    _atomically(path, lambda p: Path(p).write_bytes(data))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_file(source: str | Path, target: str | Path) -> None:
    """Put a copy of `source` at `target` atomically: the copy has its own bytes, so
    damage to one never reaches the other."""
    _atomically(target, lambda p: shutil.copyfile(source, p))


def recovery(posterior: str | Path) -> str:
    """How to get a good copy of a fit's posterior back: rerun its fit job (and what
    depends on it); its finished fits come back from the fit cache, whose entries are
    checked before reuse."""
    from poolbench.paths import fit_job_directory

    job = fit_job_directory(posterior)
    return (
        f"Rerun its fit job with `snakemake --forcerun {job}/fits.parquet` (plus your usual "
        "options); finished fits come back from the fit cache, checked, without sampling "
        "(unless what decides their draws changed since)."
    )


def read_posterior(path: str | Path, recovery: str = "", groups: tuple[str, ...] | None = None) -> xr.DataTree:
    """Load a posterior (only `groups` of it, if given), or say which file is broken and
    how to get a good one back."""
    try:
        with xr.open_datatree(path, engine=NETCDF_ENGINE) as tree:
            if groups is not None:
                kept = xr.DataTree.from_dict({group: tree[group].to_dataset() for group in groups})
                kept.attrs |= tree.attrs
                tree = kept
            return tree.load()
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(
            f"{path}: cannot read this NetCDF posterior ({type(exc).__name__}: {exc}). "
            f"It may be truncated or edited. {recovery or 'Delete it and rerun Snakemake.'}"
        ) from exc


def read_fit_posterior(path: str | Path, groups: tuple[str, ...] | None = None) -> xr.DataTree:
    """A fit job's posterior (or `groups` of it), checked to hold the fit its path names: a
    file swapped or copied by hand is refused, not shown under another fit's name."""
    from poolbench.paths import posterior_identity

    advice = recovery(path)
    tree = read_posterior(path, advice, groups)
    try:
        held = json.loads(tree.attrs["fit"])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: this posterior does not say which fit it holds. {advice}") from None
    from poolbench.grid import target_accept_label

    held["target_accept_label"] = target_accept_label(held.get("target_accept", float("nan")))
    wrong = {k: (held.get(k), v) for k, v in posterior_identity(str(path)).items() if held.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}={have!r} (expected {want!r})" for k, (have, want) in wrong.items())
        raise ValueError(f"{path}: holds another fit: {detail}. {advice}")
    return tree


def fit_succeeded(path: str | Path, fits: pd.DataFrame) -> bool:
    """Whether the fit whose posterior `path` names succeeded, by the fits table `fits`
    (its identity columns and `status`). A succeeded fit's posterior (and what lies beside
    it) must exist: `expect_file` says so, naming the file, when one does not. A fit the
    table does not hold is an error too: the table and the files are from different runs."""
    from poolbench.grid import target_accept_label
    from poolbench.paths import posterior_identity

    identity = posterior_identity(str(path))
    label = identity.pop("target_accept_label")
    match = fits["target_accept"].map(target_accept_label) == label
    for column, value in identity.items():
        match &= fits[column] == value
    if not match.any():
        raise ValueError(f"{path}: the fits table holds no record of this fit. {recovery(path)}")
    return bool((fits.loc[match, "status"] == "ok").any())


def expect_file(path: str | Path, fits: pd.DataFrame, posterior: str | Path | None = None) -> bool:
    """True if `path` (the posterior of a fit, or a file beside `posterior`) must be read:
    its fit succeeded and it exists. False if the fit failed (it has no files). Raises,
    naming the file and how to get it back, if the fit succeeded and the file is missing:
    a deleted posterior must not be shown as a failed fit."""
    posterior = posterior or path
    if not fit_succeeded(posterior, fits):
        return False
    if not Path(path).exists():
        raise FileNotFoundError(
            f"{path}: missing, though the fit it belongs to succeeded (status ok in the fits table). "
            f"{recovery(posterior)}"
        )
    return True

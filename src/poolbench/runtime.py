"""Process setup for workflow scripts, in one place: thread pinning (`poolbench.numerics`),
logging to the rule's log, stopping when Snakemake is gone, and releasing memory.

Import this before numpy: BLAS and OpenMP read their thread counts at load time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import time

from poolbench.numerics import pin_threads

# How often a job checks that the Snakemake that started it still runs.
WATCH_SECONDS = 2.0


def configure_logging(snakemake) -> logging.Logger:
    """Send logging, warnings and uncaught tracebacks to the rule's `log:` file."""
    log_path = snakemake.log[0]
    stream = open(log_path, "a", buffering=1)
    sys.stderr = stream
    logging.basicConfig(
        stream=stream,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    logger = logging.getLogger(f"poolbench.{snakemake.rule}")

    def log_uncaught(exc_type, exc, tb):
        logger.error("uncaught exception", exc_info=(exc_type, exc, tb))
        sys.__excepthook__(exc_type, exc, tb)

    sys.excepthook = log_uncaught
    return logger


def stop_with_snakemake(logger: logging.Logger) -> None:
    """Exit when the Snakemake process that started this job is gone (killed with
    SIGKILL, it cannot stop its jobs): an orphaned job would race the rerun for the same
    files. Looks for the nearest ancestor whose command line runs snakemake."""
    import psutil

    try:
        parents = psutil.Process().parents()
    except psutil.Error:
        return
    owner = next((p for p in parents if _runs_snakemake(p)), None)
    if owner is None:
        return
    created = owner.create_time()

    def watch():
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                alive = owner.is_running() and owner.create_time() == created and owner.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            if not alive:
                logger.error("Snakemake (pid %d) is gone: stopping this job, whose outputs it would not keep", owner.pid)
                os._exit(1)

    threading.Thread(target=watch, name="stop-with-snakemake", daemon=True).start()


def _runs_snakemake(process) -> bool:
    import psutil

    try:
        # `snakemake ...`, `python .../snakemake ...` or `python -m snakemake ...`
        return any("snakemake" in os.path.basename(part) for part in process.cmdline()[:3])
    except psutil.Error:
        return False


def remove_stale_partials(snakemake, logger: logging.Logger) -> None:
    """A writer killed mid-write (SIGKILL) leaves its private '.partial' file beside the
    output it was writing: remove those of dead writers before writing again."""
    from pathlib import Path

    from poolbench.storage import remove_stale_partials as remove

    removed = 0
    for output in snakemake.output:
        path = Path(output)
        removed += remove(path.parent, recursive=False)
        if path.is_dir():
            removed += remove(path)
    if removed:
        logger.info("removed %d unfinished files left by killed writers", removed)


def start_job(snakemake, threads: int = 1) -> logging.Logger:
    """What every workflow script does first."""
    pin_threads(threads)
    logger = configure_logging(snakemake)
    stop_with_snakemake(logger)
    remove_stale_partials(snakemake, logger)
    return logger


@contextlib.contextmanager
def progress(logger: logging.Logger, what: str, every: float = 60.0):
    """Log `what` when it starts, every `every` seconds while it runs (a step of minutes,
    such as PSIS-LOO of a million rows, shows it is alive), and how long it took."""
    done = threading.Event()
    start = time.perf_counter()
    logger.info("%s ...", what)

    def beat():
        while not done.wait(every):
            logger.info("%s: still running after %.0f s", what, time.perf_counter() - start)

    thread = threading.Thread(target=beat, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    logger.info("%s: %.1f s", what, time.perf_counter() - start)


def freeze_imported_objects() -> None:
    """Exempt everything alive now (the imported libraries) from later garbage collections,
    so that `release_memory` only scans what the job created since (~0.06 s, not ~0.2 s)."""
    import gc

    gc.collect()
    gc.freeze()


def release_memory() -> None:
    """Give back what a finished fit held. A posterior DataTree is a reference cycle (parent
    and children point at each other) that lives until a full collection, which a busy job
    seldom reaches; and glibc keeps freed memory in its arenas unless asked to return it.
    On radon's largest job (a pointwise log-likelihood of 4,000 draws x 919 homes per fit)
    this took the peak from ~610 to ~530 MB (docs/performance.md)."""
    import gc

    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    import ctypes
    import ctypes.util

    libc = ctypes.util.find_library("c")  # runs ldconfig: once per process
    try:
        return ctypes.CDLL(libc).malloc_trim if libc and "libc.so" in libc else None
    except (OSError, AttributeError):
        return None

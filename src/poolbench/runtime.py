"""Process setup for workflow scripts: thread pinning and logging to the rule's log.

Import this before numpy: BLAS and OpenMP read their thread counts at load time.
"""

from __future__ import annotations

import logging
import os
import sys

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def pin_threads(threads: int = 1) -> None:
    """One BLAS/OpenMP thread per job: parallelism comes from Snakemake jobs and chains,
    and idle BLAS threads only oversubscribe the cores."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


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

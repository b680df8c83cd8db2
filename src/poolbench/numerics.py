"""The process settings that could decide a fit's numbers, apart from the code that
samples: BLAS/OpenMP thread pinning and PyTensor's compile flags. This module is hashed into every fit-cache
key (`poolbench.cache.SAMPLING_MODULES`); the rest of a job's setup (`poolbench.runtime`)
is not, so editing it does not resample the cache.

Import this before numpy: BLAS and OpenMP read their thread counts at load time.
"""

from __future__ import annotations

import os

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


def configure_pytensor() -> None:
    """PyTensor's global settings for every job that compiles a model.

    Compiled functions are cached on disk across processes (a warm compile takes ~4 s
    instead of ~7), with numba's fastmath off: with it on, a model compiled cold and the
    same model loaded from the cache sample different chains (numba optimises fresh and
    cached code differently); with it off, cold, warm and other-directory compiles give
    bit-identical draws (docs/performance.md, tests/test_reliability.py).
    """
    import pytensor

    pytensor.config.numba__cache = True
    pytensor.config.numba__fastmath = False

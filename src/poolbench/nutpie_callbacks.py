"""nutpie's C callbacks, copying their results in a loop: ~1.3 s less per model compile.

nutpie 0.16.11 wraps PyTensor's compiled log density (with gradient) and its "expand"
function (draws -> all variables) in numba `cfunc`s that copy the results with
`out[...] = values`. numba types and lowers that slice assignment through its general
fancy-indexing path (`numba.np.arrayobj.fancy_setslice`): ~1.3 s of every model compile on
the reference machine, as long as sampling ten fits. An element loop copies the same values
and compiles in milliseconds.

The two factories below are nutpie's own, with only that copy changed. They stand in for
nutpie's, only while a model compiles and only for the version they were written
against (`faster_callbacks()`). `tests/test_fit.py` checks that draws are bit-identical with and without them.
"""

from __future__ import annotations

import contextlib
import logging

import numba
import numpy as np
import nutpie
import nutpie.compile_pymc as nutpie_pymc

log = logging.getLogger(__name__)

WRITTEN_FOR = "0.16.11"
_ORIGINAL_LOGP = nutpie_pymc._make_c_logp_func
_ORIGINAL_EXPAND = nutpie_pymc._make_c_expand_func

_LOGP_SIGNATURE = numba.types.int64(
    numba.types.uint64,  # dimension of the unconstrained space
    numba.types.CPointer(numba.types.double),  # position
    numba.types.CPointer(numba.types.double),  # gradient (output)
    numba.types.CPointer(numba.types.double),  # log density (output)
    numba.types.voidptr,  # nutpie's shared-data record
)
_EXPAND_SIGNATURE = numba.types.int64(
    numba.types.uint64,  # dimension of the unconstrained space
    numba.types.uint64,  # number of expanded values
    numba.types.CPointer(numba.types.double),  # position
    numba.types.CPointer(numba.types.double),  # expanded values (output)
    numba.types.voidptr,  # nutpie's shared-data record
)


def make_logp_callback(n_dim, logp_fn, user_data, shared_keys, shared_data):
    extract = nutpie_pymc.make_extraction_fn(logp_fn, shared_data, shared_keys, user_data.dtype)

    def logp_numba(dim, x_, out_, logp_, user_data_):
        if dim != n_dim:
            return -1
        try:
            x = numba.carray(x_, (n_dim,))
            out = numba.carray(out_, (n_dim,))
            logp = numba.carray(logp_, ())
            logp_val, grad = extract(x, user_data_)
            logp[()] = logp_val
            for i in range(n_dim):
                out[i] = grad[i]
            if not np.all(np.isfinite(out)):
                return 3
            if not np.isfinite(logp_val):
                return 4
        except Exception:  # noqa: BLE001 -- a C callback reports errors by return code
            return 1
        return 0

    return logp_numba, _LOGP_SIGNATURE


def make_expand_callback(n_dim, n_expanded, expand_fn, user_data, shared_keys, shared_data):
    extract = nutpie_pymc.make_extraction_fn(expand_fn, shared_data, shared_keys, user_data.dtype)

    def expand_numba(dim, expanded, x_, out_, user_data_):
        if dim != n_dim or expanded != n_expanded:
            return -1
        try:
            x = numba.carray(x_, (n_dim,))
            out = numba.carray(out_, (n_expanded,))
            (values,) = extract(x, user_data_)
            for i in range(n_expanded):
                out[i] = values[i]
        except Exception:  # noqa: BLE001
            return -2
        return 0

    return expand_numba, _EXPAND_SIGNATURE


@contextlib.contextmanager
def faster_callbacks():
    """Use these callbacks inside the block (around `nutpie.compile_pymc_model`) and
    nutpie's own again after it; for another nutpie version, nutpie's own throughout (logged)."""
    if nutpie.__version__ != WRITTEN_FOR:
        log.info(
            "nutpie %s is not %s, the version poolbench.nutpie_callbacks copies: using nutpie's own callbacks",
            nutpie.__version__, WRITTEN_FOR,
        )
        yield False
        return
    nutpie_pymc._make_c_logp_func = make_logp_callback
    nutpie_pymc._make_c_expand_func = make_expand_callback
    try:
        yield True
    finally:
        nutpie_pymc._make_c_logp_func = _ORIGINAL_LOGP
        nutpie_pymc._make_c_expand_func = _ORIGINAL_EXPAND

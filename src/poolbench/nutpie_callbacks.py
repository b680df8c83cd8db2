"""nutpie's C callbacks, copying their results in a loop: ~1.3 s less per model compile.

nutpie 0.16.11 wraps PyTensor's compiled log density (with gradient) and its "expand"
function (draws -> all variables) in numba `cfunc`s that copy the results with
`out[...] = values`. numba types and lowers that slice assignment through its general
fancy-indexing path (`numba.np.arrayobj.fancy_setslice`): ~1.3 s of every model compile on
the reference machine, as long as sampling ten fits. An element loop copies the same values
and compiles in milliseconds.

The two factories below are nutpie's own, with only that copy changed. `install()` puts them
in place of nutpie's for the version they were written against and leaves any other version
alone. `tests/test_fit.py` checks that draws are bit-identical with and without them.
"""

from __future__ import annotations

import numba
import numpy as np
import nutpie
import nutpie.compile_pymc as nutpie_pymc

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


def install() -> bool:
    """Use these callbacks in `nutpie.compile_pymc_model`; False if nutpie is another version."""
    if nutpie.__version__ != WRITTEN_FOR:
        return False
    nutpie_pymc._make_c_logp_func = make_logp_callback
    nutpie_pymc._make_c_expand_func = make_expand_callback
    return True


def uninstall() -> None:
    """nutpie's own callbacks again (for the test that compares the two)."""
    nutpie_pymc._make_c_logp_func = _ORIGINAL_LOGP
    nutpie_pymc._make_c_expand_func = _ORIGINAL_EXPAND

"""Workarounds for bugs in the libraries poolbench runs on, each described with a minimal
reproduction in `docs/upstream.md`. Standard library only."""

from __future__ import annotations

import importlib.util
import sys

# Modules arviz_base registers as lazy proxies when it is imported (arviz_base.io_numpyro).
LAZY_PROXIES = ("jax", "numpyro")


def drop_unloaded_lazy_proxies() -> None:
    """Remove the lazy `jax` and `numpyro` proxies that importing ArviZ (or PyMC) leaves in
    `sys.modules`, as long as nothing has loaded them.

    SciPy's array-API helpers (array_api_compat's `is_jax_array`) take a `jax` in
    `sys.modules` for a sign that JAX is in use, and import it: after `import arviz`, the
    first `scipy.special.logsumexp` (which power-scaling sensitivity calls) loads JAX,
    120-150 MB and 0.25-0.5 s in every job that never uses JAX. Without the proxy, `import jax`
    still works (a real import, e.g. for the numpyro backend); only arviz_base's own
    `from_numpyro`, which poolbench does not call, would lose its lazy handle."""
    lazy = getattr(importlib.util, "_LazyModule", None)
    for name in LAZY_PROXIES:
        if lazy is not None and type(sys.modules.get(name)) is lazy:  # an unloaded proxy
            del sys.modules[name]

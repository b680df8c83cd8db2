"""The fit cache: finished fits by the hash of everything that decides their draws.

An entry is a folder `{key[:2]}/{key}/` holding the fit's posterior (its own copy: damage
to a result under `results/` never reaches it), files stored beside it (`extras`: a
real-data fit's pointwise LOO), and `entry.json`: the key, the fit's
identity, the posterior's SHA-256, the sampling facts (seed, time) and the metrics last
computed from the posterior with the version of the metrics code that computed them.
A calibration fit's entry holds no posterior (`put_record`): nothing downstream reads its
draws, and writing them would cost a quarter of such a fit's time; when the metrics code
changes, such a fit is sampled again instead.

Before an entry is reused it is checked: readable JSON, the key it was stored under, the
identity of the fit asked for, the checksum of what `entry.json` holds (the record, groups
and ranks that go into the tables), and the posterior's and extras' checksums. A bad entry is reported by
path, removed, and the fit is sampled again; nothing wrong is reused silently. The key
covers data, model, priors, sampler settings, seed and sampler code, not the metrics: the
stored metrics are reused only while the metrics code and everything else they were
computed from (`metrics_inputs`: the HDI probability, the group labels, the truth, the
thinning of calibration ranks) are unchanged. Otherwise they are recomputed from the cached
posterior, without sampling (a calibration fit, which keeps no posterior, is sampled again:
same seed, same draws). A real-data fit's pointwise LOO is recomputed the same way when the
metrics code changed (`poolbench.fit`: its log-likelihood again, from the cached draws).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poolbench import storage

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).parent
# Modules whose code decides a fit's draws: part of every key. Not the registry
# (variants.py), which declares every model, nor the builders of its terms and families
# (models.py) or the data rule's scales (priors.py): what they make of a fit's own model
# reaches that fit's key through the built model (`poolbench.models.specification_digest`:
# its log density and deterministics as graphs) and the data it is given (`arrays_digest`,
# scales included), so adding a family or a term resamples no other model's fits.
SAMPLING_MODULES = ("samplers.py", "nutpie_callbacks.py", "numerics.py")
SAMPLING_PACKAGES = ("pymc", "pytensor", "nutpie", "numba", "numpy", "jax", "numpyro")
# Modules whose code decides the metrics computed from a posterior (densities.py: the log
# densities of the sensitivity check, the pointwise log-likelihood and the prior simulator,
# evaluated on the fit's built model). Not the registry, nor the builders (models.py): what
# they make of a fit's own model is in its key (the built model), what the registry says
# about it in its metrics inputs (`Variant.metrics_facts`).
METRICS_MODULES = ("metrics.py", "records.py", "fit.py", "data.py", "densities.py")
METRICS_PACKAGES = ("arviz", "arviz-stats", "arviz-base", "xarray", "numpy", "pandas")
# The code that learns a learned form's centeredness, and the pilot it starts from.
LEARNING_MODULES = ("learned.py", "centering.py")


def _version(modules: tuple[str, ...], packages: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in modules:
        digest.update((PACKAGE / name).read_bytes())
    for name in packages:
        try:
            digest.update(f"{name}={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{name}=absent".encode())
    return digest.hexdigest()[:16]


@functools.cache
def sampling_code_version() -> str:
    return _version(SAMPLING_MODULES, SAMPLING_PACKAGES)


@functools.cache
def learning_code_version() -> str:
    """The code that learns a learned parameterisation's centeredness before sampling
    (`poolbench.learned.learned_centeredness`, from the pilot's formula): part of those
    fits' keys only, as their lambda is not in the data arrays when the key is made. (The
    model it learns on is the fit's own, in the key already.)"""
    return _version(LEARNING_MODULES, SAMPLING_PACKAGES)


@functools.cache
def metrics_code_version() -> str:
    return _version(METRICS_MODULES, METRICS_PACKAGES)


def metrics_inputs(**inputs) -> str:
    """The digest of what a fit's metrics depend on besides its posterior and the metrics
    code: settings such as the HDI probability, the group labels, the truth. Stored with the
    metrics; a mismatch means they are stale (a changed `hdi_prob` or a relabelled group
    must not keep the old intervals or labels)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def fit_key(arrays_sha: str, n_groups: int, model: dict, prior: dict, settings: dict, target_accept: float, seed: int) -> str:
    """The cache key: everything that decides the draws, and nothing else."""
    content = {
        "data": arrays_sha,
        "n_groups": n_groups,
        "model": model,
        "prior": prior,
        "settings": settings,
        "target_accept": target_accept,
        "seed": seed,
        "code": sampling_code_version(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclass
class CachedFit:
    entry: dict
    posterior: Path | None  # None: a record-only entry (`FitCache.put_record`)
    # Files stored beside the posterior (a real-data fit's pointwise LOO), by name.
    extras: dict[str, Path] = field(default_factory=dict)

    def metrics_current(self, inputs: str) -> bool:
        """Whether the stored metrics were computed by this metrics code from these
        `metrics_inputs`."""
        return self.entry.get("metrics_version") == metrics_code_version() and self.entry.get("metrics_inputs") == inputs


class FitCache:
    """Verified, content-addressed storage of finished fits; `None` directory: no cache."""

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory else None
        if self.directory is not None:
            removed = storage.remove_stale_partials(self.directory)
            if removed:
                log.info("fit cache: removed %d unfinished entries left by killed processes", removed)

    def _entry(self, key: str) -> Path:
        return self.directory / key[:2] / key

    def get(self, key: str, identity: dict, posterior_required: bool = True) -> CachedFit | None:
        """The entry stored under `key` if it is sound and holds the fit `identity` names
        (and its posterior, where `posterior_required`)."""
        if self.directory is None:
            return None
        entry = self._entry(key)
        record_path = entry / "entry.json"
        if not record_path.exists():
            return None
        problem = None
        try:
            stored = json.loads(record_path.read_text())
            posterior = entry / "posterior.nc"
            if not isinstance(stored, dict) or stored.get("key") != key:
                problem = "it was stored under another key"
            elif stored.get("identity") != identity:
                problem = f"it holds another fit ({stored.get('identity')}, not {identity})"
            elif stored.get("content_sha256") != _content_sha256(stored):
                problem = "its entry.json does not match its checksum (edited or from an older poolbench)"
            elif not {"sampling", "record"} <= stored.keys() or not {"groups", "ranks"} & stored.keys():
                problem = "its entry.json lacks the sampling facts, the record, or the groups or ranks"
            elif stored.get("posterior_sha256") is None:
                if not posterior_required:
                    return CachedFit(stored, None)  # a record-only entry, as asked
                problem = "it holds no posterior"
            elif not posterior.exists():
                problem = "its posterior.nc is missing"
            elif storage.file_sha256(posterior) != stored.get("posterior_sha256"):
                problem = "its posterior.nc does not match its checksum (truncated or edited)"
            else:
                problem = _extras_problem(entry, stored.get("extras_sha256", {}))
        except (ValueError, UnicodeDecodeError) as exc:
            problem = f"its entry.json is not readable JSON ({exc})"
        if problem:
            log.warning("fit cache: discarding %s: %s; the fit is sampled again", entry, problem)
            storage.remove_path(entry)
            return None
        extras = {name: entry / name for name in stored.get("extras_sha256", {})}
        return CachedFit(stored, posterior, extras)

    def put(self, key: str, identity: dict, posterior: Path, sampling: dict, metrics: dict,
            extras: dict[str, Path] | None = None) -> None:
        """Store a finished fit: a copy of its posterior file (and of `extras`, files by
        name) and its entry, atomically."""
        self._put(key, identity, posterior, sampling, metrics, extras or {})

    def put_record(self, key: str, identity: dict, sampling: dict, metrics: dict) -> None:
        """Store what was computed from a finished fit, without its posterior."""
        self._put(key, identity, None, sampling, metrics, {})

    def _put(self, key: str, identity: dict, posterior: Path | None, sampling: dict, metrics: dict,
             extras: dict[str, Path]) -> None:
        if self.directory is None:
            return
        entry = self._entry(key)
        partial = storage.partial_path(entry)
        try:
            partial.mkdir(parents=True)
            checksum = None
            if posterior is not None:
                storage.copy_file(posterior, partial / "posterior.nc")
                checksum = storage.file_sha256(partial / "posterior.nc")
            for name, path in extras.items():
                storage.copy_file(path, partial / name)
            stored = {
                "key": key,
                "identity": identity,
                "posterior_sha256": checksum,
                "extras_sha256": {name: storage.file_sha256(partial / name) for name in extras},
                "sampling": sampling,
                **metrics,
            }
            (partial / "entry.json").write_text(json.dumps(_sealed(stored)))
            storage.remove_path(entry)
            try:
                os.replace(partial, entry)
            except OSError as exc:  # another process stored the same fit meanwhile: keep theirs
                if not (entry / "entry.json").exists():
                    raise storage.EnvironmentFault(f"{entry}: cannot store a fit in the cache ({exc})") from exc
        finally:
            storage.remove_path(partial)

    def update_metrics(self, key: str, cached: CachedFit, metrics: dict, extras: dict[str, Path] | None = None) -> None:
        """Replace the metrics of an entry (recomputed by newer metrics code or from other
        inputs) and copies of `extras` (files by name) with their checksums. The files go
        first: a process killed in between leaves an entry whose checksums no longer match,
        which is discarded when next read."""
        entry = self._entry(key)
        for name, path in (extras or {}).items():
            storage.copy_file(path, entry / name)
            cached.entry.setdefault("extras_sha256", {})[name] = storage.file_sha256(entry / name)
            cached.extras[name] = entry / name
        cached.entry |= metrics
        storage.write_text(json.dumps(_sealed(cached.entry)), entry / "entry.json")


def _extras_problem(entry: Path, checksums: dict) -> str | None:
    for name, checksum in checksums.items():
        if not (entry / name).exists():
            return f"its {name} is missing"
        if storage.file_sha256(entry / name) != checksum:
            return f"its {name} does not match its checksum (truncated or edited)"
    return None


def _content_sha256(stored: dict) -> str:
    """The checksum of an entry's content: everything in it but the checksum itself."""
    content = {name: value for name, value in stored.items() if name != "content_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _sealed(stored: dict) -> dict:
    """`stored` with its checksum, computed on what reading it back gives (JSON turns
    tuples into lists and keys into strings), so that a sound entry always passes."""
    stored = json.loads(json.dumps(stored))
    return stored | {"content_sha256": _content_sha256(stored)}

"""Where results go: every path pattern, declared once.

The rules, the scripts, the report, the benchmark and the tests build paths from these
patterns. Each study writes under `results/{study}/`; the fit cache is shared by all
studies (it is keyed by content, so a fit done for one study serves another).
"""

from __future__ import annotations

from dataclasses import dataclass

CACHE = "results/cache/fits"


def posterior_name(scenario: str, outliers: str, seed: int, ta_label: str) -> str:
    """A fit's posterior, relative to its fit job's posterior directory."""
    return f"{scenario}/{outliers}_seed{seed}_ta{ta_label}.nc"


def loo_path(posterior: str) -> str:
    """A real-data fit's pointwise PSIS-LOO, beside its posterior: computed by the fit job
    while the pointwise log-likelihood is in memory, so that the log-likelihood (draws x
    observations) need not be stored."""
    return str(posterior).removesuffix(".nc") + ".loo.parquet"


def posterior_directory(path: str) -> str:
    """The fit job's posterior directory holding a posterior."""
    return str(path).split("/posterior/")[0] + "/posterior"


def fit_job_directory(path: str) -> str:
    """The fit job's directory (its fits.parquet, groups.parquet, posterior/) holding a posterior."""
    return posterior_directory(path).removesuffix("/posterior")


def posterior_identity(path: str) -> dict:
    """Which fit a posterior path names (the layout of `Paths.fit_job` and
    `posterior_name`), to check against the fit the file holds."""
    job, name = str(path).split("/posterior/")
    model, likelihood, prior, backend, _part = job.rsplit("/fits/", 1)[1].split("/")
    scenario, stem = name.split("/")
    outliers, rest = stem.removesuffix(".nc").split("_seed")
    seed, ta = rest.split("_ta")
    return {
        "scenario": scenario, "outliers": outliers, "seed": int(seed), "model": model,
        "likelihood": likelihood, "prior": prior, "backend": backend, "target_accept_label": ta,
    }


@dataclass(frozen=True)
class Paths:
    """The path patterns of one study. `{...}` fields are Snakemake wildcards."""

    study: str

    @property
    def root(self) -> str:
        return f"results/{self.study}"

    # Data: one table of observations and one of the truth per scenario; real data sets
    # are written in the same layout (no truth).
    @property
    def dataset(self) -> str:
        return f"{self.root}/datasets/{{scenario}}.parquet"

    @property
    def truth(self) -> str:
        return f"{self.root}/datasets/{{scenario}}.truth.parquet"

    # A fit job: one compiled model (model, likelihood, prior set) and backend over one
    # part of its fits.
    @property
    def fit_job(self) -> str:
        return f"{self.root}/fits/{{model}}/{{likelihood}}/{{prior}}/{{backend}}/{{part}}"

    def table(self, name: str, suffix: str = "parquet") -> str:
        return f"{self.root}/tables/{name}.{suffix}"

    def figure(self, name: str, suffix: str = "png") -> str:
        return f"{self.root}/figures/{name}.{suffix}"

    def directory(self, name: str) -> str:
        return f"{self.root}/{name}"

    def log(self, name: str) -> str:
        return f"{self.root}/logs/{name}.log"

    def benchmark(self, name: str) -> str:
        return f"{self.root}/benchmarks/{name}.tsv"

    @property
    def report(self) -> str:
        return f"{self.root}/report.html"

"""The four model structures, built by one function.

Every variant exposes `slope` with dims `group`, so metrics and plots treat them alike.
Data enter through `pm.Data`, so one compiled model serves every dataset with the same
number of groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm

from poolbench.grid import COMMON_SLOPE, MU, SIGMA, SLOPE, ModelSpec
DATA_NAMES = ("x", "y", "group_idx")


def model_data(data: pd.DataFrame) -> dict[str, np.ndarray]:
    """The arrays a model's `pm.Data` containers hold, by name."""
    return {
        "x": data["x"].to_numpy(dtype="float64"),
        "y": data["y"].to_numpy(dtype="float64"),
        "group_idx": data["group"].to_numpy(dtype="int64"),
    }


def build_model(
    spec: ModelSpec, prior: dict, data: pd.DataFrame, n_groups: int
) -> pm.Model:
    """PyMC model of `spec`; `prior` is the variant's block of `models/priors`.

    pooled:   common_slope ~ N(0, slope_sd); slope_g = common_slope
    unpooled: slope_g ~ N(0, slope_sd)
    hierarchical centered:    slope_g ~ N(mu_slope, sigma_slope)
    hierarchical noncentered: slope_g = mu_slope + sigma_slope * z_g, z_g ~ N(0, 1)
    """
    arrays = model_data(data)
    # No fixed coords for observations: one compiled model then fits datasets of any size.
    with pm.Model(coords={"group": np.arange(n_groups)}) as model:
        x = pm.Data("x", arrays["x"])
        y = pm.Data("y", arrays["y"])
        group_idx = pm.Data("group_idx", arrays["group_idx"])

        if spec.variant == "pooled":
            common = pm.Normal(COMMON_SLOPE, 0.0, prior["slope_sd"])
            slope = pm.Deterministic(SLOPE, common * pm.math.ones(n_groups), dims="group")
        elif spec.variant == "unpooled":
            slope = pm.Normal(SLOPE, 0.0, prior["slope_sd"], dims="group")
        elif spec.variant == "hierarchical":
            mu = pm.Normal(MU, 0.0, prior["mu_sd"])
            sigma = pm.Exponential(SIGMA, prior["sigma_rate"])
            if spec.parameterisation == "centered":
                slope = pm.Normal(SLOPE, mu, sigma, dims="group")
            elif spec.parameterisation == "noncentered":
                z = pm.Normal("z", 0.0, 1.0, dims="group")
                slope = pm.Deterministic(SLOPE, mu + sigma * z, dims="group")
            else:
                raise ValueError(f"unknown parameterisation {spec.parameterisation!r}")
        else:
            raise ValueError(f"unknown variant {spec.variant!r}")

        noise = pm.Exponential("noise", prior["noise_rate"])
        pm.Normal("y_obs", mu=slope[group_idx] * x, sigma=noise, observed=y, shape=x.shape)
    return model


def render_model_graph(
    spec: ModelSpec, prior: dict, data: pd.DataFrame, n_groups: int, svg: str, png: str
) -> None:
    """Plate diagram of a model as SVG and PNG, rendered by Graphviz's `dot`."""
    import shutil

    if shutil.which("dot") is None:
        raise RuntimeError(
            "Graphviz's `dot` program is needed to draw plate diagrams and was not found on PATH. "
            "Install it: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
            "(macOS) or `conda install -c conda-forge graphviz`."
        )
    graph = pm.model_to_graphviz(build_model(spec, prior, data, n_groups))
    for path, fmt in ((svg, "svg"), (png, "png")):
        with open(path, "wb") as out:
            out.write(graph.pipe(format=fmt))

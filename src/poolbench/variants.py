"""The model variants and likelihoods poolbench can fit: each declared once, here.

A variant is a combination of *terms* (how slopes and intercepts are pooled) with its prior
keys and their defaults. Everything else reads this registry: the config schema's enums are
checked against it (tests/test_config.py) and its prior keys by `poolbench.config`, the grid
enumerates model names from it, `models`
builds PyMC models from its terms, `metrics` scores the variables it lists, `plots` draws
the figure it names and the report describes it with its title.

Adding a variant made of existing terms is one `Variant(...)` entry below, its name in the
schema's `variant` enum and a line in `config/README.md`. A new kind of
term also needs its builder in `poolbench.models.TERM_BUILDERS`.

This module imports nothing heavy: plot and report jobs read it without PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# How a coefficient (slope or intercept) varies over groups.
ABSENT = "absent"  # no such term (the tutorial's models have no intercept)
POOLED = "pooled"  # one value shared by every group
UNPOOLED = "unpooled"  # one independent value per group
HIERARCHICAL = "hierarchical"  # per group, drawn around a population mean with a spread

CENTERED = "centered"
NONCENTERED = "noncentered"
# Per group between the two (poolbench.centering): centeredness lambda_j from the data's
# efficient centeredness (PARTIAL), rounded to 0 or 1 (MIXED), or learned by a short
# variational run before sampling (LEARNED; Gorinova, Moore & Hoffman 2020).
PARTIAL = "partial"
MIXED = "mixed"
LEARNED = "learned"
NO_PARAMETERISATION = "none"
PURE_PARAMETERISATIONS = (CENTERED, NONCENTERED)
PARAMETERISATIONS = (*PURE_PARAMETERISATIONS, PARTIAL, MIXED, LEARNED)

# Posterior variable names. Kept here, away from PyMC, so plots and reports share them.
SLOPE = "slope"
INTERCEPT = "intercept"
NOISE = "noise"
NU = "nu"
OVERDISPERSION = "overdispersion"
OBSERVED = "y_obs"
# The data column of a binomial outcome's number of trials (1: Bernoulli).
TRIALS = "trials"


def common(coefficient: str) -> str:
    """Name of a pooled coefficient's single value, e.g. 'common_slope'."""
    return f"common_{coefficient}"


def prior_key(coefficient: str, key: str) -> str:
    """A hierarchical term's prior key: the slope's are bare ('mu_sd'), the intercept's
    prefixed ('intercept_mu_sd')."""
    return key if coefficient == SLOPE else f"{coefficient}_{key}"


def spread_prior(prior: dict, coefficient: str) -> tuple[str, float]:
    """A hierarchical term's spread prior: ("halfnormal", its sd) under `sigma_dist:
    halfnormal`, else ("exponential", its rate)."""
    if prior.get("sigma_dist", "exponential") == "halfnormal":
        return "halfnormal", prior[prior_key(coefficient, "sigma_sd")]
    return "exponential", prior[prior_key(coefficient, "sigma_rate")]


def population_mean(coefficient: str) -> str:
    return f"mu_{coefficient}"


def population_sd(coefficient: str) -> str:
    return f"sigma_{coefficient}"


def standardised(coefficient: str) -> str:
    """The non-centered parameterisation's standard-normal offsets, e.g. 'z_slope'."""
    return f"z_{coefficient}"


def partially_centered(coefficient: str) -> str:
    """A partially centered parameterisation's free coefficients theta~_j, e.g. 'tilde_slope'."""
    return f"tilde_{coefficient}"


MU = population_mean(SLOPE)
SIGMA = population_sd(SLOPE)
SPREAD_PRIORS = ("exponential", "halfnormal")

# How a model's prior hyperparameters are read (config/README.md, "Priors that follow the
# data"). FIXED: as numbers in the data's units (the tutorial's priors). DATA: in units of
# the data's own scale, after rstanarm's autoscaling (Gabry & Goodrich, "Prior
# distributions for rstanarm models") and Gelman et al. (2008): with s_y = sd(y), s_x =
# sd(x) and m_y = mean(y) (0 for a model without intercept, whose line passes through the
# origin), a coefficient is m + u * c with c ~ the prior below, in the coefficient's unit
# u = s_y / s_x (slopes) or s_y (intercepts, noise). Multiplying y or x by a constant then
# multiplies the estimates accordingly and leaves what the sampler sees unchanged.
FIXED_RULE = "fixed"
DATA_RULE = "data"
PRIOR_RULES = (FIXED_RULE, DATA_RULE)
# The data rule's defaults, in those units: every normal prior on a coefficient (or on a
# population mean) has sd 2.5, every spread and the noise an exponential prior of mean 1
# (rstanarm: normal(0, 2.5) coefficients, exponential(1) auxiliary, both autoscaled).
DATA_RULE_PRIORS = {
    "slope_sd": 2.5, "intercept_sd": 2.5, "mu_sd": 2.5, "intercept_mu_sd": 2.5,
    "sigma_dist": "exponential", "sigma_rate": 1.0, "sigma_sd": 1.0,
    "intercept_sigma_rate": 1.0, "intercept_sigma_sd": 1.0, "noise_rate": 1.0,
}


@dataclass(frozen=True)
class Variant:
    """One model variant: which terms it has, its priors, what it scores and shows."""

    name: str
    title: str  # one line, for the report and the docs
    slopes: str  # POOLED, UNPOOLED or HIERARCHICAL
    intercepts: str  # ABSENT, POOLED, UNPOOLED or HIERARCHICAL
    priors: dict  # prior keys with their defaults (the tutorial's for the tutorial's variants)
    figure: str = "dist"  # the tutorial figure: "dist" (posterior densities) or "forest"

    @property
    def data_priors(self) -> dict:
        """This variant's prior keys with the data rule's defaults (DATA_RULE_PRIORS)."""
        return {key: DATA_RULE_PRIORS[key] for key in self.priors}

    @property
    def has_intercept(self) -> bool:
        return self.intercepts != ABSENT

    @property
    def terms(self) -> dict[str, str]:
        """Coefficient -> how it is pooled, for the coefficients the model has."""
        return {c: kind for c, kind in ((SLOPE, self.slopes), (INTERCEPT, self.intercepts)) if kind != ABSENT}

    @property
    def parameterisations(self) -> tuple[str, ...]:
        """Only hierarchical terms can be centered or not."""
        if HIERARCHICAL in self.terms.values():
            return PARAMETERISATIONS
        return (NO_PARAMETERISATION,)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """Population mean and spread of every hierarchical term."""
        return tuple(
            name
            for coefficient, kind in self.terms.items()
            if kind == HIERARCHICAL
            for name in (population_mean(coefficient), population_sd(coefficient))
        )

    @property
    def scored(self) -> tuple[str, ...]:
        """Per-group variables scored against the simulated truth (and shrunk in the
        real-data figures)."""
        return tuple(self.terms)

    @property
    def figure_vars(self) -> tuple[str, ...]:
        """Variables of the tutorial's posterior figure."""
        if self.figure == "forest":
            return tuple(self.terms)
        pooled = tuple(common(c) for c, kind in self.terms.items() if kind == POOLED)
        return pooled + self.hyperparameters + tuple(
            c for c, kind in self.terms.items() if kind != POOLED
        )

    @property
    def read(self) -> tuple[str, ...]:
        """Variables a user reads whose prior sensitivity is checked: population means and
        spreads, pooled coefficients and unpooled ones (per group); the family's own
        parameters (`Likelihood.own_parameters`) come with the family."""
        coefficients = tuple(
            common(c) if kind == POOLED else c for c, kind in self.terms.items() if kind != HIERARCHICAL
        )
        return self.hyperparameters + coefficients

    def metrics_facts(self, likelihood: "Likelihood") -> dict:
        """What the metrics of this variant's fits read from the registry (the variables
        scored, checked for prior sensitivity and calibrated): part of a cached fit's
        metrics inputs, so an edit elsewhere in the registry recomputes nothing of it."""
        return {"scored": self.scored, "read": self.read + likelihood.own_parameters,
                "calibrated": self.calibrated(likelihood), "has_intercept": self.has_intercept}

    def calibrated(self, likelihood: "Likelihood") -> tuple[str, ...]:
        """Variables whose ranks simulation-based calibration checks: every parameter
        drawn from the prior (a pooled coefficient once, not once per group)."""
        coefficients = tuple(
            common(c) if kind == POOLED else c for c, kind in self.terms.items()
        )
        return self.hyperparameters + coefficients + likelihood.own_parameters


# What kind of response a family models: a family fits the data of its outcome only (a
# scenario or data set names its family; `models/likelihoods` lists the families fitted,
# each where the outcome is its own).
CONTINUOUS, BINOMIAL_OUTCOME, COUNT = "continuous", "binomial", "count"
# Links from the linear predictor to the mean of y.
IDENTITY_LINK, LOGIT_LINK, LOG_LINK = "identity", "logit", "log"


@dataclass(frozen=True)
class Likelihood:
    """A family: how y is distributed around the linear predictor. Its PyMC builder is
    `poolbench.models.LIKELIHOOD_BUILDERS[name]`, its simulator
    `poolbench.simulate.SIMULATORS[name]` (tests check that every family has both)."""

    name: str
    title: str
    label: str  # as a sentence names it: "a {label} likelihood"
    priors: dict = field(default_factory=dict)
    parameters: tuple[str, ...] = ()  # its own parameters beyond the mean and the noise
    robust: bool = False  # heavy tails: compared with the default likelihood where outliers are
    outcome: str = CONTINUOUS
    link: str = IDENTITY_LINK
    # Whether y scatters around its mean with a noise sd (`noise`, with the variant's
    # `noise_rate` prior); binomial and Poisson data have no such parameter.
    has_noise: bool = True
    # Data columns beyond x, y and the group that the family reads (binomial: trials).
    columns: tuple[str, ...] = ()

    @property
    def discrete(self) -> bool:
        """Integer responses: predictive checks compare frequencies of values (bars), not densities."""
        return self.outcome != CONTINUOUS

    @property
    def own_parameters(self) -> tuple[str, ...]:
        """The parameters of the observation model a user reads: the noise, where there is
        one, and the family's own."""
        return ((NOISE,) if self.has_noise else ()) + self.parameters


NORMAL, STUDENT_T = "normal", "student_t"
BINOMIAL, POISSON, NEGATIVE_BINOMIAL = "binomial", "poisson", "negative_binomial"
# The likelihood a model has unless the config says otherwise: names and seeds mention
# only the others.
DEFAULT_LIKELIHOOD = NORMAL


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant(
            "pooled",
            "one slope for all groups",
            slopes=POOLED,
            intercepts=ABSENT,
            priors={"slope_sd": 20.0, "noise_rate": 0.1},
        ),
        Variant(
            "unpooled",
            "an independent slope per group",
            slopes=UNPOOLED,
            intercepts=ABSENT,
            priors={"slope_sd": 20.0, "noise_rate": 10.0},
            figure="forest",
        ),
        Variant(
            "hierarchical",
            "group slopes drawn around a population mean (partial pooling)",
            slopes=HIERARCHICAL,
            intercepts=ABSENT,
            priors={
                "mu_sd": 1.0,
                "sigma_dist": "exponential",
                "sigma_rate": 13.0,
                "sigma_sd": 1.0,
                "noise_rate": 10.0,
            },
        ),
        Variant(
            "pooled_intercept",
            "one intercept and one slope for all groups",
            slopes=POOLED,
            intercepts=POOLED,
            priors={"intercept_sd": 10.0, "slope_sd": 10.0, "noise_rate": 1.0},
        ),
        Variant(
            "unpooled_intercepts",
            "an independent intercept and slope per group",
            slopes=UNPOOLED,
            intercepts=UNPOOLED,
            priors={"intercept_sd": 10.0, "slope_sd": 10.0, "noise_rate": 1.0},
            figure="forest",
        ),
        Variant(
            "varying_intercepts",
            "group intercepts and group slopes, each drawn around its population mean",
            slopes=HIERARCHICAL,
            intercepts=HIERARCHICAL,
            priors={
                "intercept_mu_sd": 5.0,
                "intercept_sigma_rate": 1.0,
                "intercept_sigma_sd": 1.0,
                "mu_sd": 5.0,
                "sigma_dist": "exponential",
                "sigma_rate": 1.0,
                "sigma_sd": 1.0,
                "noise_rate": 1.0,
            },
        ),
    ]
}

LIKELIHOODS: dict[str, Likelihood] = {
    lik.name: lik
    for lik in [
        Likelihood(NORMAL, "normal noise", "normal"),
        # nu ~ Gamma(2, 0.1) (Juárez & Steel 2010; the Stan prior-choice wiki's default):
        # mean 20, so it behaves like a normal likelihood unless the data say otherwise.
        Likelihood(
            STUDENT_T,
            "Student-t noise (robust to outliers)",
            "Student-t",
            priors={"nu_alpha": 2.0, "nu_beta": 0.1},
            parameters=(NU,),
            robust=True,
        ),
        # Successes out of `trials` (1: Bernoulli); the coefficients are on the logit scale.
        Likelihood(BINOMIAL, "binomial successes out of trials (logit link)", "binomial",
                   outcome=BINOMIAL_OUTCOME, link=LOGIT_LINK, has_noise=False, columns=(TRIALS,)),
        Likelihood(POISSON, "Poisson counts (log link)", "Poisson", outcome=COUNT, link=LOG_LINK, has_noise=False),
        # Var(y) = mu + (overdispersion * mu)^2: overdispersion = 1/sqrt(alpha) of PyMC's
        # NegativeBinomial(mu, alpha), 0 is the Poisson. Its prior HalfNormal(1) pulls
        # towards the Poisson (the Stan prior-choice wiki's recommendation for the
        # negative binomial: a prior on the reciprocal square root of its shape).
        Likelihood(NEGATIVE_BINOMIAL, "negative-binomial counts (log link; overdispersed)", "negative-binomial",
                   priors={"overdispersion_sd": 1.0}, parameters=(OVERDISPERSION,), robust=True,
                   outcome=COUNT, link=LOG_LINK, has_noise=False),
    ]
}

# The default family of each outcome: the one a robust family is compared with.
DEFAULT_FAMILIES = {CONTINUOUS: NORMAL, BINOMIAL_OUTCOME: BINOMIAL, COUNT: POISSON}


def families_for(outcome: str, names) -> list[str]:
    """Those of the family names `names` that model `outcome` data, in their order."""
    return [name for name in names if LIKELIHOODS[name].outcome == outcome]

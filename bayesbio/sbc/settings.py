"""SBC settings: generic defaults, a model script's own ``sbc = {...}``, and the caller's overrides.

A model script may define a module-level dict ``sbc`` with any of the fields of
:class:`SBCSettings`; the bundled models use it to give the number of replications and the
sampler settings their posteriors need. Keys the caller passes to :func:`bayesbio.sbc.run_sbc`
(or on the command line) override the script's, which override the defaults below.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from bayesbio.errors import ModelError, OptionError, describe

__all__ = ["SBCSettings", "resolve_settings"]


@dataclass(frozen=True)
class SBCSettings:
    """Settings of one SBC run.

    Attributes
    ----------
    reps : int
        Number of replications (prior draw -> simulated data -> fit).
    warmup : int
        NUTS warm-up iterations per fit.
    draws : int
        Thinned posterior draws kept per chain; a rank takes the values ``0 .. chains * draws``.
    thin : int
        Keep every ``thin``-th draw (NUTS runs ``draws * thin`` iterations after warm-up).
        Autocorrelated draws make rank histograms U-shaped (Talts et al. 2018, sec. 5), so thin
        to roughly one draw per effective sample.
    chains : int
        Chains per fit (their thinned draws are pooled).
    target_accept, max_tree_depth, dense_mass
        NUTS settings, as for :func:`bayesbio.sample_nuts`.
    bins : int
        Bins of the rank histogram and of the chi-square uniformity test.
    batch : int
        Replications fitted together in one vectorised (``vmap``) computation. Larger
        batches amortise per-operation overhead on CPU; chains of a batch wait for the
        longest trajectory of each iteration.
    params : tuple of str or None
        Latent variables whose scalar components are tested (default: every latent variable).
    alpha : float
        Family-wise level of the uniformity tests after the Holm correction: the run passes
        when every Holm-adjusted p-value is >= ``alpha``.
    max_prior_attempts : int
        Prior draws tried per replication before giving up: draws whose simulation fails
        (a failed ODE/PDE solve, non-finite data) are outside the model's support and rejected.
    init : {"model", "truth"}
        Where each chain starts. ``"model"`` (default): as :func:`bayesbio.sample_nuts` does
        (the model script's ``init_strategy``, else uniform in (-2, 2) on the unconstrained
        scale), so SBC also checks that warm-up finds the posterior from an ordinary start.
        ``"truth"``: at the replication's true parameters. In SBC the truth is an exact draw
        from the posterior of its own simulated data, so such a chain starts in its stationary
        distribution. The ranks are then uniform for a correct model and sampler only
        approximately: the kept draws are correlated with the starting truth, which is
        negligible when warm-up is long against the chain's autocorrelation time (strong
        autocorrelation would show as U-shaped ranks). The check covers the likelihood, the
        prior and the sampler's invariance, but no longer whether warm-up finds the posterior
        from elsewhere: a multimodal or slowly mixing posterior can pass this way and fail with
        ``"model"``, and such a failure is a real limit for users. Results record which was used.
    prefit : {"none", "svi", "map"} or None
        With ``init="model"``: whether each chain first runs a pre-fit of
        :mod:`bayesbio.infer.prefit`, as :func:`bayesbio.sample_nuts` does for models whose script
        sets ``nuts_prefit``: ``"svi"``, the mean-field SVI fit (start at a draw from it, warm-up
        from its variances as the inverse mass matrix); ``"map"``, the best of several L-BFGS
        mode searches from the usual starting points. None (default): the model script's
        ``nuts_prefit``, so SBC checks the procedure ``bayesbio fit`` runs. Here the pre-fit runs
        inside the compiled fit, once per chain and replication
        (:func:`~bayesbio.infer.prefit.svi_fit_traced`, :func:`~bayesbio.infer.prefit.best_start`).
    """

    reps: int = 100
    warmup: int = 500
    draws: int = 99
    thin: int = 5
    chains: int = 1
    target_accept: float = 0.8
    max_tree_depth: int = 10
    dense_mass: bool = False
    bins: int = 10
    batch: int = 4
    params: tuple[str, ...] | None = None
    alpha: float = 0.01
    max_prior_attempts: int = 20
    init: str = "model"
    prefit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["params"] = list(self.params) if self.params is not None else None
        return out


_FIELDS = {f.name for f in dataclasses.fields(SBCSettings)}
_POSITIVE_INTS = ("reps", "warmup", "draws", "thin", "chains", "max_tree_depth", "bins", "batch",
                  "max_prior_attempts")


def _check(name: str, value: Any, origin: str) -> Any:
    where = f"{origin}: SBC setting '{name}'"
    if name in _POSITIVE_INTS:
        minimum = 0 if name == "warmup" else (2 if name == "bins" else 1)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise OptionError(f"{where} must be an integer >= {minimum}; got {describe(value)}")
        return int(value)
    if name in ("target_accept", "alpha"):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.floating))
            or not math.isfinite(value)
            or not 0.0 < value < 1.0
        ):
            raise OptionError(f"{where} must be a number strictly between 0 and 1; got {describe(value)}")
        return float(value)
    if name == "dense_mass":
        if not isinstance(value, bool):
            raise OptionError(f"{where} must be True or False; got {describe(value)}")
        return value
    if name == "init":
        if value not in ("model", "truth"):
            raise OptionError(f"{where} must be 'model' or 'truth'; got {value!r}")
        return value
    if name == "prefit":
        if value is not None and value not in ("none", "svi", "map"):
            raise OptionError(f"{where} must be 'none', 'svi' or 'map'; got {value!r}")
        return value
    if name == "params":
        if value is None:
            return None
        if isinstance(value, str) or not all(isinstance(v, str) for v in value) or not len(value):
            raise OptionError(f"{where} must be a non-empty list of latent variable names; got {value!r}")
        return tuple(value)
    raise AssertionError(name)  # pragma: no cover - every field is handled above


def resolve_settings(model_settings: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None,
                     *, model_name: str = "model") -> SBCSettings:
    """Defaults <- the model script's ``sbc`` dict <- ``overrides`` (``None`` values ignored)."""
    values: dict[str, Any] = {}
    for origin, source, error in (
        (f"model script '{model_name}'", model_settings or {}, ModelError),
        ("run_sbc", overrides or {}, OptionError),
    ):
        for name, value in source.items():
            if name not in _FIELDS:
                raise error(
                    f"{origin}: unknown SBC setting '{name}'; expected one of {sorted(_FIELDS)}"
                )
            if value is None and origin == "run_sbc":
                continue
            try:
                values[name] = _check(name, value, origin)
            except OptionError as exc:
                raise error(str(exc)) from None
    return SBCSettings(**values)

"""What every field prior shares: hyperparameters that may be numbers or priors, NumPyro sites,
prior draws outside a model."""

from __future__ import annotations

import abc

import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesbio.errors import OptionError, describe
from bayesbio.fields._grid import FieldGrid, as_field_grid

__all__ = ["FieldPrior", "check_hyper"]


def check_hyper(name: str, value, *, positive: bool = True):
    """A hyperparameter is a positive finite number or a NumPyro distribution (a hyperprior)."""
    if isinstance(value, dist.Distribution):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionError(
            f"'{name}' must be a number or a numpyro distribution (hyperprior); got {describe(value)}"
        )
    value = float(value)
    if not np.isfinite(value) or (positive and value <= 0):
        raise OptionError(f"'{name}' must be a finite number{' > 0' if positive else ''}; got {value!r}")
    return value


class FieldPrior(abc.ABC):
    """Base class: a prior over a field on ``grid``, used inside a NumPyro model with :meth:`sample`.

    Subclasses set ``self.grid`` and ``self.hyper`` (name -> number or distribution) and
    implement :meth:`_sample_sites`.
    """

    grid: FieldGrid
    hyper: dict

    def __init__(self, grid):
        self.grid = as_field_grid(grid)

    # -- hyperparameters -------------------------------------------------------------------
    def _hyper_values(self, name: str, overrides: dict | None = None) -> dict:
        """Sample the hyperpriors as sites ``{name}_{hyper}``; numbers pass through."""
        overrides = overrides or {}
        out = {}
        for key, value in self.hyper.items():
            if key in overrides and overrides[key] is not None:
                out[key] = overrides[key]
            elif isinstance(value, dist.Distribution):
                out[key] = numpyro.sample(f"{name}_{key}", value)
            else:
                out[key] = value
        return out

    def fixed_hyper(self, **overrides) -> dict:
        """Hyperparameter values for computations outside a model (oracles, covariances)."""
        out = {}
        for key, value in self.hyper.items():
            v = overrides.get(key)
            if v is None:
                if isinstance(value, dist.Distribution):
                    raise OptionError(
                        f"'{key}' has a hyperprior; pass a value ({key}=...) to compute with a fixed one"
                    )
                v = value
            out[key] = v
        return out

    @property
    def has_hyperpriors(self) -> bool:
        return any(isinstance(v, dist.Distribution) for v in self.hyper.values())

    # -- NumPyro ---------------------------------------------------------------------------
    def sample(self, name: str, *, whitened: bool = True, preconditioner=None):
        """Declare the field as NumPyro sites inside a model and return it (shape ``grid.shape``).

        Whitened (default, for NUTS): a standard-normal (or standard heavy-tailed) latent site
        ``{name}_white`` and the field as the deterministic site ``name``. Centred: the field
        itself is the sample site ``name`` with the prior's density. Hyperpriors are sites
        ``{name}_{hyper}`` (e.g. ``u_sigma``, ``u_length_scale``).

        ``preconditioner=(shift, scale)`` (Gaussian priors, whitened only; see
        :func:`bayesbio.fields.laplace_preconditioner`): the latent site is ``{name}_eta`` with
        ``{name}_white = shift + scale @ eta`` (a deterministic site), ``eta`` distributed so
        that ``{name}_white`` is still ``N(0, I)`` a priori — the same model, in coordinates in
        which the posterior is close to ``N(0, I)``.
        """
        if not isinstance(name, str) or not name:
            raise OptionError(f"'name' must be a non-empty string; got {describe(name)}")
        if not isinstance(whitened, bool):
            raise OptionError(f"'whitened' must be True or False; got {describe(whitened)}")
        if preconditioner is not None:
            if not whitened:
                raise OptionError("'preconditioner' applies to the whitened parameterisation only")
            return self._sample_preconditioned(name, preconditioner)
        return self._sample_sites(name, whitened)

    def _sample_preconditioned(self, name, preconditioner):
        raise OptionError(f"{type(self).__name__} does not support a preconditioner")

    @abc.abstractmethod
    def _sample_sites(self, name, whitened):
        """Sample the prior's sites under ``name``; return the field."""

    def draw(self, rng_key, num: int = 1, *, whitened: bool = True) -> np.ndarray:
        """``num`` prior draws of the field (hyperparameters drawn too), shape ``(num, *grid.shape)``."""
        from numpyro.infer import Predictive

        def model():
            self.sample("field", whitened=whitened)

        out = Predictive(model, num_samples=int(num), return_sites=["field"])(rng_key)
        return np.asarray(out["field"])

"""Edge-preserving priors: independent heavy-tailed differences between neighbouring cells.

1-D: ``u_0 ~ N(mean, start_sd^2)`` and increments ``u_{i+1} - u_i = scale_h * eps_i`` with
standard ``eps_i`` of one of two kinds:

``"cauchy"`` (default)
    ``scale_h = scale * h``. Cauchy is a stable law, so the increment over any fixed physical
    distance ``d`` is ``Cauchy(0, scale * d)`` on every grid: the prior is exactly
    discretisation-invariant and stays edge-preserving as ``h -> 0`` (a Cauchy-difference
    prior, Markkanen, Roininen, Huttunen & Lasanen 2019, *Inverse Problems* 35, 075004).
``"laplace"`` (total-variation-like)
    ``scale_h = scale * sqrt(h / 2)``, so ``Var(increment) = scale^2 h`` per cell (the
    variance per unit length is fixed). Its MAP estimate is a TV-regularised solution, but
    Lassas & Siltanen (2004, *Inverse Problems* 20, 1537) showed that no scaling of a TV prior
    keeps both a limit and its edge preference: under refinement this prior converges to
    Brownian motion with sd ``scale`` per square root of length. Use it at a fixed resolution.

The whitened parameterisation samples ``eps`` (standard Cauchy or Laplace, site
``{name}_white``) and the start value (site ``{name}_start``, standard normal), so a
hyperprior on ``scale`` enters non-centred. The centred parameterisation puts the density on
the field directly (site ``name``).

2-D: ``p(u) ∝ prod Cauchy/Laplace(differences along x and y) * N(mean(u); mean, start_sd^2)``
(an anisotropic, TV-like product over both directions of differences). Its normalising
constant is unknown, so ``scale`` must be a number there, and only the centred form exists.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesbio.errors import OptionError, describe
from bayesbio.fields._base import FieldPrior, check_hyper

__all__ = ["EdgePreserving"]

KINDS = ("cauchy", "laplace")


def _standard(kind):
    return dist.Cauchy(0.0, 1.0) if kind == "cauchy" else dist.Laplace(0.0, 1.0)


class _DifferenceDensity(dist.Distribution):
    """Centred density of the 1-D difference prior (event shape ``(n,)``)."""

    def __init__(self, n, kind, scale_h, mean, start_sd, validate_args=None):
        self.n, self.kind, self.scale_h, self.loc, self.start_sd = n, kind, scale_h, mean, start_sd
        super().__init__(batch_shape=(), event_shape=(n,), validate_args=validate_args)

    support = dist.constraints.real_vector

    def log_prob(self, value):
        u = value - self.loc
        incr = jnp.diff(u, axis=-1) / self.scale_h
        lp = jnp.sum(_standard(self.kind).log_prob(incr), axis=-1) - (self.n - 1) * jnp.log(self.scale_h)
        return lp + dist.Normal(0.0, self.start_sd).log_prob(u[..., 0])

    def sample(self, key, sample_shape=()):
        import jax

        k1, k2 = jax.random.split(key)
        eps = _standard(self.kind).sample(k1, sample_shape + (self.n - 1,))
        start = self.start_sd * jax.random.normal(k2, sample_shape + (1,))
        return self.loc + jnp.concatenate([start, start + jnp.cumsum(self.scale_h * eps, axis=-1)], axis=-1)


class EdgePreserving(FieldPrior):
    """Cauchy- or Laplace-difference (TV-like) prior; see the module docstring.

    Parameters
    ----------
    grid : FieldGrid, int or bayesbio.pde grid
    scale : float or numpyro distribution
        Cauchy: scale of the increment per unit length; Laplace: sd of the increment per
        square root of length. A distribution makes it a hyperprior (1-D only).
    kind : {"cauchy", "laplace"}
    start_sd : float
        Prior sd of the first cell (1-D) or of the field's average (2-D) around ``mean``.
    mean : float
    """

    def __init__(self, grid, *, scale=1.0, kind="cauchy", start_sd=1.0, mean=0.0):
        super().__init__(grid)
        if kind not in KINDS:
            raise OptionError(f"'kind' must be one of {list(KINDS)}; got {describe(kind)}")
        self.kind = kind
        self.hyper = {"scale": check_hyper("scale", scale)}
        if self.grid.ndim == 2 and self.has_hyperpriors:
            raise OptionError("2-D edge-preserving prior: 'scale' must be a number (its normalising constant is unknown)")
        sd = check_hyper("start_sd", start_sd)
        if not isinstance(sd, float):
            raise OptionError("'start_sd' must be a number")
        self.start_sd = sd
        self.mean = float(check_hyper("mean", mean, positive=False))

    def step_scale(self, scale, h):
        """Scale of one cell's increment for a per-length ``scale`` and spacing ``h``."""
        return scale * h if self.kind == "cauchy" else scale * jnp.sqrt(h / 2.0)

    @property
    def n_latent(self) -> int:
        return self.grid.size

    def field_from_white(self, white, start, **hyper):
        """Field from standard increments ``white`` (``(..., n-1)``) and a standard start value."""
        s = self.step_scale(self.fixed_hyper(**hyper)["scale"], self.grid.spacing[0])
        first = self.mean + self.start_sd * jnp.asarray(start)[..., None]
        return jnp.concatenate([first, first + jnp.cumsum(s * white, axis=-1)], axis=-1)

    def distribution(self, **hyper):
        if self.grid.ndim == 2:
            raise OptionError("the 2-D edge-preserving prior has no normalised distribution; use sample(name)")
        s = self.step_scale(self.fixed_hyper(**hyper)["scale"], self.grid.spacing[0])
        return _DifferenceDensity(self.grid.shape[0], self.kind, s, self.mean, self.start_sd)

    def _sample_sites(self, name, whitened):
        h = self._hyper_values(name)
        if self.grid.ndim == 2:
            return self._sample_2d(name, h["scale"])
        s = self.step_scale(h["scale"], self.grid.spacing[0])
        if not whitened:
            d = _DifferenceDensity(self.grid.shape[0], self.kind, s, self.mean, self.start_sd)
            return numpyro.sample(name, d)
        n = self.grid.shape[0]
        eps = numpyro.sample(f"{name}_white", _standard(self.kind).expand([n - 1]).to_event(1))
        start = numpyro.sample(f"{name}_start", dist.Normal(0.0, 1.0))
        first = self.mean + self.start_sd * start
        field = jnp.concatenate([first[None], first + jnp.cumsum(s * eps)])
        return numpyro.deterministic(name, field)

    def _sample_2d(self, name, scale):
        hx, hy = self.grid.spacing
        u = numpyro.sample(name, dist.ImproperUniform(dist.constraints.real_vector, (), self.grid.shape[-1:])
                           .expand([self.grid.shape[0]]).to_event(1))
        base = _standard(self.kind)
        dx = jnp.diff(u, axis=0) / self.step_scale(scale, hx)
        dy = jnp.diff(u, axis=1) / self.step_scale(scale, hy)
        lp = jnp.sum(base.log_prob(dx)) + jnp.sum(base.log_prob(dy))
        lp = lp + dist.Normal(self.mean, self.start_sd).log_prob(jnp.mean(u))
        numpyro.factor(f"{name}_prior", lp)
        return u

    def draw(self, rng_key, num: int = 1, *, whitened: bool = True) -> np.ndarray:
        if self.grid.ndim == 2:
            raise OptionError("the 2-D edge-preserving prior cannot be sampled directly (unnormalised)")
        return super().draw(rng_key, num, whitened=whitened)

    def __repr__(self):
        return (f"EdgePreserving(grid={self.grid.shape}, scale={self.hyper['scale']}, kind={self.kind!r}, "
                f"start_sd={self.start_sd})")

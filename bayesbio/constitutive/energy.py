"""Strain-energy functions: the one thing a user writes to define a hyperelastic law.

A law is a :class:`StrainEnergy`: a function ``W(x, params)`` of either the invariants of the
right Cauchy–Green tensor (``variables="invariants"``; ``x`` is an :class:`Invariants`) or of
the three principal stretches (``variables="stretches"``; ``x`` is an array of shape (3,)),
plus a list of :class:`Parameter` declarations (name, shape, admissible prior). Stresses,
shear moduli and the incompressibility pressure all follow from ``W`` by automatic
differentiation (:mod:`bayesbio.constitutive.stress`); nothing is hand-coded per law.

Material is taken as incompressible (``J = det F = 1``): every deformation of
:mod:`bayesbio.constitutive.kinematics` is isochoric, so ``W`` needs no volumetric part.

Example: a user-defined law (a two-term Gent–Thomas-like energy)::

    import jax.numpy as jnp, numpyro.distributions as dist
    from bayesbio.constitutive import Parameter, StrainEnergy

    def energy(inv, p):
        return p["c1"] * (inv.I1 - 3.0) + p["c2"] * jnp.log(inv.I2 / 3.0)

    law = StrainEnergy(
        "gent_thomas", energy, variables="invariants",
        parameters=(Parameter("c1", lambda s: dist.LogNormal(jnp.log(s), 1.5)),
                    Parameter("c2", lambda s: dist.LogNormal(jnp.log(s), 1.5))),
    )
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import gammaln
from numpyro.distributions import constraints

from bayesbio.errors import ModelError, describe

__all__ = ["Invariants", "OrderedNormal", "Parameter", "StrainEnergy", "invariants"]

VARIABLES = ("invariants", "stretches")


class Invariants(NamedTuple):
    """Invariants of the right Cauchy–Green tensor ``C = F^T F`` of one deformation.

    ``I1 = tr C``, ``I2 = ((tr C)^2 - tr C^2) / 2``, ``J = det F`` (1 for the isochoric
    deformations used here), and ``C`` itself for anisotropic invariants: ``inv.I4(a)``
    is ``a · C a``, the squared stretch of a fibre with reference direction ``a``.
    """

    I1: Any
    I2: Any
    J: Any
    C: Any

    def I4(self, direction) -> Any:  # noqa: N802 - the standard symbol
        a = jnp.asarray(direction)
        a = a / jnp.linalg.norm(a)
        return a @ self.C @ a


def invariants(F) -> Invariants:
    """:class:`Invariants` of a deformation gradient ``F`` (3 x 3)."""
    C = F.T @ F
    I1 = jnp.trace(C)
    I2 = 0.5 * (I1**2 - jnp.trace(C @ C))
    return Invariants(I1=I1, I2=I2, J=jnp.linalg.det(F), C=C)


@dataclass(frozen=True)
class Parameter:
    """A material parameter: name, shape and prior.

    ``prior(scale)`` returns a NumPyro distribution given the stress scale of the experiment
    (e.g. 0.5 for rubber in MPa, 1.0 for brain tissue in kPa), so one law serves data in
    any stress unit. Physical admissibility (a positive modulus, ordered exponents, a
    bounded dispersion) is expressed through the prior's support, which keeps every prior
    normalised (needed for model evidence).
    """

    name: str
    prior: Callable[[float], dist.Distribution]
    shape: tuple[int, ...] = ()
    description: str = ""


@dataclass(frozen=True, eq=False)  # identity hash: compiled stress functions are cached per law
class StrainEnergy:
    """A hyperelastic law defined by its strain-energy function ``W(x, params)`` only.

    Parameters
    ----------
    name : str
        Short name (used in messages and model names).
    energy : callable
        ``W(x, params) -> scalar`` in stress units; ``x`` is an :class:`Invariants`
        (``variables="invariants"``) or the principal stretches, shape (3,)
        (``variables="stretches"``); ``params`` maps parameter names to values. ``W`` must
        vanish in the reference state and be written in ``jax.numpy``.
    variables : {"invariants", "stretches"}
    parameters : tuple of Parameter
    isotropic : bool
        False for fibre-reinforced laws: uniaxial tension then solves for the lateral
        stretches instead of assuming them equal.
    description : str
    """

    name: str
    energy: Callable[..., Any]
    variables: str
    parameters: tuple[Parameter, ...]
    isotropic: bool = True
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ModelError(f"StrainEnergy 'name' must be a non-empty string; got {describe(self.name)}")
        if not callable(self.energy):
            raise ModelError(f"StrainEnergy '{self.name}': 'energy' must be callable W(x, params); "
                             f"got {type(self.energy).__name__}")
        if self.variables not in VARIABLES:
            raise ModelError(f"StrainEnergy '{self.name}': 'variables' must be one of {list(VARIABLES)}; "
                             f"got {describe(self.variables)}")
        params = tuple(self.parameters)
        if not params or not all(isinstance(p, Parameter) for p in params):
            raise ModelError(f"StrainEnergy '{self.name}': 'parameters' must be a non-empty tuple of Parameter")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ModelError(f"StrainEnergy '{self.name}': parameter names must be unique; got {names}")
        object.__setattr__(self, "parameters", params)

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise :class:`~bayesbio.errors.ModelError` naming missing parameters."""
        if not isinstance(params, Mapping):
            raise ModelError(f"parameters of law '{self.name}' must be a dict; got {describe(params)}")
        missing = [n for n in self.parameter_names if n not in params]
        if missing:
            raise ModelError(
                f"law '{self.name}' needs parameters {self.parameter_names}; missing {missing}"
            )

    def sample(self, scale: float = 1.0, *, prefix: str = "") -> dict[str, Any]:
        """Draw every parameter from its prior as a NumPyro site named ``prefix + name``.

        Call inside a ``numpyro.plate`` to get one set of parameters per plate member.
        """
        if not np.isfinite(scale) or scale <= 0:
            raise ModelError(f"'scale' of law '{self.name}' must be a positive stress; got {describe(scale)}")
        return {p.name: numpyro.sample(prefix + p.name, p.prior(float(scale))) for p in self.parameters}


class OrderedNormal(dist.Distribution):
    """``n`` iid ``Normal(loc, scale)`` draws sorted in increasing order.

    The density on the ordered cone is ``n! prod_i phi(x_i)``, a proper prior that breaks the
    label switching of exchangeable terms (e.g. the exponents of an n-term Ogden law) without
    changing the model's evidence.
    """

    support = constraints.ordered_vector
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}

    def __init__(self, loc, scale, n: int, *, validate_args=None):
        self.loc, self.scale, self.n = jnp.asarray(loc), jnp.asarray(scale), int(n)
        batch_shape = jnp.broadcast_shapes(jnp.shape(loc), jnp.shape(scale))
        super().__init__(batch_shape=batch_shape, event_shape=(self.n,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape + self.event_shape
        import jax

        z = jax.random.normal(key, shape)
        return jnp.sort(self.loc[..., None] + self.scale[..., None] * z, axis=-1)

    def log_prob(self, value):
        lp = dist.Normal(self.loc[..., None], self.scale[..., None]).log_prob(value).sum(-1)
        return lp + gammaln(self.n + 1.0)

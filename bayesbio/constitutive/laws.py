"""The bundled strain-energy functions, each written only as ``W(invariants or stretches)``.

Conventions (``I1, I2`` invariants of ``C``; ``lambda_a`` principal stretches; every ``W``
vanishes at ``F = I``; ``mu`` below is the small-strain shear modulus):

=====================  ==============================================================  ======================
law                    W                                                               mu
=====================  ==============================================================  ======================
neo_hookean            mu/2 (I1 - 3)                                                   mu
mooney_rivlin          C10 (I1 - 3) + C01 (I2 - 3)                                     2 (C10 + C01)
yeoh(n)                sum_i C_i (I1 - 3)^i                                            2 C_1
gent                   -mu Jm / 2 ln(1 - (I1 - 3) / Jm)                                mu
demiray                a / (2 b) [exp(b (I1 - 3)) - 1]                                 a
ogden(n)               sum_i 2 mu_i / alpha_i^2 (l1^alpha_i + l2^alpha_i + l3^alpha_i - 3)   sum_i mu_i
holzapfel_gasser_ogden mu/2 (I1-3) + k1/(2 k2) sum_f [exp(k2 E_f^2) - 1],                mu (fibres unloaded)
                       E_f = kappa (I1-3) + (1-3 kappa)(I4_f - 1), fibres only in tension
=====================  ==============================================================  ======================

Admissibility is built into the priors' supports: positive moduli (``mu``, ``C10``,
``C01``, ``C_i``, ``a``, ``b``, ``Jm``, ``mu_i``, ``k1``, ``k2``), which make each law's
``dW/dI1 > 0`` (Baker–Ericksen) and, for Ogden with ``mu_i > 0``, ``mu_i alpha_i^2 > 0`` term
by term (Ogden's sufficient stability condition); dispersion ``0 <= kappa <= 1/3``. Gent's
energy is undefined beyond the locking stretch (``I1 - 3 >= Jm``): it returns NaN there, which
the stress layer turns into an inadmissible (zero-likelihood) prediction. Yeoh with all
``C_i > 0`` cannot reproduce the slight initial softening some rubbers show (a negative
``C_2`` in least-squares fits); that is the price of the sufficient condition.

References: Treloar (1943) neo-Hookean; Mooney (1940), Rivlin (1948); Yeoh (1993) Rubber Chem.
Technol. 66:754; Gent (1996) Rubber Chem. Technol. 69:59; Demiray (1972) J. Biomech. 5:309;
Ogden (1972) Proc. R. Soc. A 326:565; Gasser, Ogden & Holzapfel (2006) J. R. Soc. Interface 3:15.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from bayesbio.constitutive.energy import OrderedNormal, Parameter, StrainEnergy
from bayesbio.errors import ModelError, describe

__all__ = [
    "LAWS",
    "demiray",
    "gent",
    "holzapfel_gasser_ogden",
    "law",
    "mooney_rivlin",
    "neo_hookean",
    "ogden",
    "yeoh",
]


def _modulus(rel: float = 1.0, sd: float = 1.5):
    """LogNormal prior centred on ``rel * scale`` with log-sd ``sd``."""
    return lambda s: dist.LogNormal(float(np.log(rel * s)), sd)


def _check_terms(name, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ModelError(f"'{name}': the number of terms must be a positive integer; got {describe(n)}")
    return int(n)


def neo_hookean() -> StrainEnergy:
    def energy(inv, p):
        return 0.5 * p["mu"] * (inv.I1 - 3.0)

    return StrainEnergy("neo_hookean", energy, "invariants",
                        (Parameter("mu", _modulus(), description="shear modulus"),),
                        description="Neo-Hookean, W = mu/2 (I1 - 3)")


def mooney_rivlin() -> StrainEnergy:
    def energy(inv, p):
        return p["C10"] * (inv.I1 - 3.0) + p["C01"] * (inv.I2 - 3.0)

    return StrainEnergy("mooney_rivlin", energy, "invariants",
                        (Parameter("C10", _modulus(0.25)), Parameter("C01", _modulus(0.25))),
                        description="Mooney–Rivlin, W = C10 (I1 - 3) + C01 (I2 - 3)")


def yeoh(n: int = 3) -> StrainEnergy:
    """``n``-term Yeoh law; the prior of ``C_i`` is centred at ``scale / 2 * exp(-3 (i - 1))``
    with log-sd ``1.5 i`` (higher-order terms are small at moderate strain but must be free)."""
    n = _check_terms("yeoh", n)
    i = np.arange(n)

    def prior(s):
        return dist.LogNormal(jnp.asarray(np.log(0.5 * s) - 3.0 * i), jnp.asarray(1.5 * (i + 1))).to_event(1)

    def energy(inv, p):
        x = inv.I1 - 3.0
        w = 0.0
        for i in range(n - 1, -1, -1):  # Horner; x ** k with a float k has a NaN derivative at x = 0
            w = (w + p["C"][..., i]) * x
        return w

    return StrainEnergy(f"yeoh{n}", energy, "invariants", (Parameter("C", prior, shape=(n,)),),
                        description=f"{n}-term Yeoh, W = sum_i C_i (I1 - 3)^i")


def gent(jm_median: float = 50.0) -> StrainEnergy:
    """Gent law; ``Jm`` (the limiting value of ``I1 - 3``) has a LogNormal(log jm_median, 1.5) prior."""

    def energy(inv, p):
        x = 1.0 - (inv.I1 - 3.0) / p["Jm"]
        ok = x > 0
        w = -0.5 * p["mu"] * p["Jm"] * jnp.log(jnp.where(ok, x, 1.0))
        return jnp.where(ok, w, jnp.nan)  # beyond the locking stretch: inadmissible

    return StrainEnergy("gent", energy, "invariants",
                        (Parameter("mu", _modulus()), Parameter("Jm", lambda s: dist.LogNormal(np.log(jm_median), 1.5))),
                        description="Gent, W = -mu Jm/2 ln(1 - (I1 - 3)/Jm)")


def demiray() -> StrainEnergy:
    def energy(inv, p):
        return 0.5 * p["a"] / p["b"] * jnp.expm1(p["b"] * (inv.I1 - 3.0))

    return StrainEnergy("demiray", energy, "invariants",
                        (Parameter("a", _modulus()), Parameter("b", lambda s: dist.LogNormal(0.0, 1.5))),
                        description="Demiray (exponential), W = a/(2b) [exp(b (I1 - 3)) - 1]")


def ogden(n: int = 1, *, alpha_scale: float = 10.0) -> StrainEnergy:
    """``n``-term Ogden law in the ``2 mu_i / alpha_i^2`` convention (``mu = sum mu_i``).

    ``mu_i > 0`` (LogNormal prior at ``scale / n``); exponents ``alpha`` sorted increasingly,
    ``OrderedNormal(0, alpha_scale)`` prior (removes label switching between terms).
    """
    n = _check_terms("ogden", n)

    def energy(stretches, p):
        alpha = p["alpha"][:, None]
        terms = jnp.sum(stretches[None, :] ** alpha - 1.0, axis=1)
        return jnp.sum(2.0 * p["mu"] / p["alpha"] ** 2 * terms)

    return StrainEnergy(
        f"ogden{n}", energy, "stretches",
        (Parameter("mu", lambda s: dist.LogNormal(float(np.log(s / n)), 1.5).expand([n]).to_event(1), shape=(n,)),
         Parameter("alpha", lambda s: OrderedNormal(0.0, float(alpha_scale), n), shape=(n,))),
        description=f"{n}-term Ogden, W = sum_i 2 mu_i/alpha_i^2 (l1^a_i + l2^a_i + l3^a_i - 3)",
    )


def holzapfel_gasser_ogden(fibre_angle: float | None = None) -> StrainEnergy:
    """Holzapfel–Gasser–Ogden law with two fibre families at ``±theta`` to axis 1 in the 1–2 plane.

    ``fibre_angle`` (radians) fixes ``theta``; ``None`` makes it a parameter with a uniform
    prior on (0, pi/2). Fibres bear load only when stretched (``I4 > 1``).
    """

    def energy(inv, p):
        theta = p["theta"] if fibre_angle is None else fibre_angle
        c, s = jnp.cos(theta), jnp.sin(theta)
        w = 0.5 * p["mu"] * (inv.I1 - 3.0)
        for a in (jnp.stack([c, s, 0.0 * c]), jnp.stack([c, -s, 0.0 * c])):
            i4 = inv.I4(a)
            e = p["kappa"] * (inv.I1 - 3.0) + (1.0 - 3.0 * p["kappa"]) * (i4 - 1.0)
            fibre = 0.5 * p["k1"] / p["k2"] * jnp.expm1(p["k2"] * e**2)
            w = w + jnp.where(i4 > 1.0, fibre, 0.0)
        return w

    params = [
        Parameter("mu", _modulus(), description="matrix shear modulus"),
        Parameter("k1", _modulus(), description="fibre stiffness"),
        Parameter("k2", lambda s: dist.LogNormal(0.0, 1.5), description="fibre nonlinearity (-)"),
        Parameter("kappa", lambda s: dist.Uniform(0.0, 1.0 / 3.0), description="fibre dispersion (-)"),
    ]
    if fibre_angle is None:
        params.append(Parameter("theta", lambda s: dist.Uniform(0.0, 0.5 * np.pi), description="fibre angle (rad)"))
    return StrainEnergy("holzapfel_gasser_ogden", energy, "invariants", tuple(params), isotropic=False,
                        description="Holzapfel–Gasser–Ogden, two fibre families with dispersion")


#: Constructors by name, e.g. ``LAWS["ogden3"]()``.
LAWS = {
    "neo_hookean": neo_hookean,
    "mooney_rivlin": mooney_rivlin,
    "yeoh2": lambda: yeoh(2),
    "yeoh3": lambda: yeoh(3),
    "gent": gent,
    "demiray": demiray,
    "ogden1": lambda: ogden(1),
    "ogden2": lambda: ogden(2),
    "ogden3": lambda: ogden(3),
    "holzapfel_gasser_ogden": holzapfel_gasser_ogden,
}


def law(name: str, **options) -> StrainEnergy:
    """A bundled law by name (``neo_hookean``, ``mooney_rivlin``, ``yeohN``, ``gent``,
    ``demiray``, ``ogdenN``, ``holzapfel_gasser_ogden``); ``options`` go to its constructor."""
    if isinstance(name, str):
        for prefix, make in (("yeoh", yeoh), ("ogden", ogden)):
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                return make(int(name[len(prefix):]), **options)
        if name in LAWS:
            return LAWS[name](**options) if options else LAWS[name]()
    raise ModelError(
        f"unknown constitutive law {describe(name)}: expected one of {sorted(LAWS)} "
        "(yeohN and ogdenN for any number of terms N)"
    )

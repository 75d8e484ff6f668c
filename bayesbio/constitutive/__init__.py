"""Hyperelastic constitutive laws written as strain-energy functions, with kinematics and stresses.

A law is only its strain energy ``W`` (of the invariants of ``C`` or of the principal
stretches) and its parameters' admissible priors (:class:`StrainEnergy`); nominal and Cauchy
stresses of the standard tests follow by automatic differentiation, with the incompressibility
pressure eliminated through the traction-free boundary condition (:mod:`.stress`).

>>> from bayesbio.constitutive import law, stress
>>> float(stress(law("neo_hookean"), "uniaxial", 2.0, {"mu": 1.0}))
1.75
"""

from bayesbio.constitutive.energy import Invariants, OrderedNormal, Parameter, StrainEnergy, invariants
from bayesbio.constitutive.kinematics import (
    MODES,
    Deformation,
    biaxial,
    equibiaxial,
    pure_shear,
    simple_shear,
    uniaxial,
)
from bayesbio.constitutive.laws import (
    LAWS,
    demiray,
    gent,
    holzapfel_gasser_ogden,
    law,
    mooney_rivlin,
    neo_hookean,
    ogden,
    yeoh,
)
from bayesbio.constitutive.observe import observe_stress
from bayesbio.constitutive.stress import cauchy_stress, energy, nominal_stress, shear_modulus, stress

__all__ = [
    "Deformation",
    "Invariants",
    "LAWS",
    "MODES",
    "OrderedNormal",
    "Parameter",
    "StrainEnergy",
    "biaxial",
    "cauchy_stress",
    "demiray",
    "energy",
    "equibiaxial",
    "gent",
    "holzapfel_gasser_ogden",
    "invariants",
    "law",
    "mooney_rivlin",
    "neo_hookean",
    "nominal_stress",
    "observe_stress",
    "ogden",
    "pure_shear",
    "shear_modulus",
    "simple_shear",
    "stress",
    "uniaxial",
    "yeoh",
]

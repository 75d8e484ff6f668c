"""Hyperelastic constitutive laws written as strain-energy functions, with kinematics and stresses."""

"""Bundled bayesbio model scripts (installed as ``bayesbio.models``).

Each module is a model script written only against bayesbio's public API; see
:mod:`bayesbio.model` for the contract. ``bayesbio models`` lists them.
"""

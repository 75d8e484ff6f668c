"""Bundled public datasets, loaded with :mod:`importlib.resources`.

Provenance of every file is in ``PROVENANCE.md`` beside the data.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from bayesbio.errors import DataError

__all__ = ["available", "load", "path"]

_FILES = {
    "backward_heat": "backward_heat.csv",
    "deconvolution": "deconvolution.csv",
    "diffusivity_field": "diffusivity_field.csv",
    "budday2017": "budday2017_human_brain.csv",
    "lynx_hare": "lynx_hare_hudson_bay.csv",
    "theophylline": "theophylline_Theoph.csv",
    "treloar1944": "treloar1944_rubber.csv",
    "theophylline_nonmem": "theophylline_theo_sd_nonmem.csv",
    "scratch_assay": "scratch_assay_jin2016.csv",
    "warfarin_pkpd": "warfarin_pkpd.csv",
}


def available() -> list[str]:
    """Names of the bundled datasets."""
    return sorted(_FILES)


def path(name: str):
    """Path-like resource of a bundled dataset's CSV file."""
    if name not in _FILES:
        raise DataError(f"unknown dataset '{name}': expected one of {available()}")
    return resources.files("bayesbio.datasets") / "data" / _FILES[name]


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as a pandas DataFrame."""
    with resources.as_file(path(name)) as p:
        return pd.read_csv(p)

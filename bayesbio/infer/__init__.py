"""Inference runners; each returns an ``arviz.InferenceData``."""

from bayesbio.infer.laplace import LaplaceError, fit_laplace
from bayesbio.infer.nuts import CHAIN_METHODS, sample_nuts
from bayesbio.infer.svi import GUIDES, fit_svi

__all__ = ["CHAIN_METHODS", "GUIDES", "LaplaceError", "fit_laplace", "fit_svi", "sample_nuts"]

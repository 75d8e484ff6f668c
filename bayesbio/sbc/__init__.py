"""Simulation-based calibration (SBC) of bayesbio's NUTS inference on a model.

``bayesbio sbc MODEL --reps N --out DIR`` or :func:`run_sbc`: draw parameters from the prior,
simulate data on the model's design, fit each data set with NUTS and test that the rank of
every true parameter among its posterior draws is uniform (Talts et al. 2018). Modules:

* :mod:`~bayesbio.sbc.settings` — settings; a model script's optional ``sbc = {...}`` dict;
* :mod:`~bayesbio.sbc.simulate` — prior predictive draws (rejecting failed solves);
* :mod:`~bayesbio.sbc.fit` — one compiled, vectorised NUTS fit reused for every data set;
* :mod:`~bayesbio.sbc.stats` — ranks, chi-square test, Holm correction, ECDF bands (pure);
* :mod:`~bayesbio.sbc.plots`, :mod:`~bayesbio.sbc.output` — figures and atomic result files.
"""

from bayesbio.sbc.run import SBCResult, run_sbc
from bayesbio.sbc.settings import SBCSettings

__all__ = ["SBCResult", "SBCSettings", "run_sbc"]

"""Several observed outputs in one event table (e.g. a drug concentration and a biomarker).

NONMEM-style data mark what each record measures by its compartment (``CMT``; 0-based
``obs_cmt`` in a :class:`~bayesbio.population.PopulationBatch`). A model with one noise model
per output observes each output on its own records: :func:`output_values` gives one output's
measurements with NaN on every other record (the missing-data convention of
:func:`bayesbio.observe`), so each ``bb.observe`` site keeps the batch's (P, O) shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesbio.errors import DataError, describe
from bayesbio.population.batch import as_batch

__all__ = ["output_values"]


def output_values(events, compartment: int):
    """Measurements of the records with ``obs_cmt == compartment`` (0-based), NaN elsewhere.

    NumPy arrays in, NumPy out (so :func:`bayesbio.observe` checks the data eagerly); traced
    arrays in (inside ``jit``), a traced array out.

    Examples
    --------
    Inside a model with concentrations on compartment 1 and PCA on compartment 2::

        bb.observe("conc", bb.CombinedNoise(conc, a, b), obs=output_values(data["events"], 1))
        bb.observe("pca", bb.NormalNoise(pca, sigma), obs=output_values(data["events"], 2))
    """
    if isinstance(compartment, bool) or not isinstance(compartment, (int, np.integer)) or compartment < 0:
        raise DataError(f"output_values: 'compartment' must be a 0-based integer; got {describe(compartment)}")
    batch = as_batch(events)
    value, cmt = batch.obs_value, batch.obs_cmt
    if isinstance(value, jax.core.Tracer) or isinstance(cmt, jax.core.Tracer):
        return jnp.where(jnp.asarray(cmt) == compartment, value, jnp.nan)
    return np.where(np.asarray(cmt) == compartment, np.asarray(value, dtype=float), np.nan)

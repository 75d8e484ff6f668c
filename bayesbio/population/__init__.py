"""Population (hierarchical, patient-level) models with dosing events.

Building blocks, each a small module:

* :mod:`~bayesbio.population.effects` — typical values and log-normal between-subject
  variability: :func:`lognormal_parameters` (in a model), :func:`random_effects`,
  :func:`individual_parameters` (pure);
* :mod:`~bayesbio.population.covariates` — multiplicative covariate effects:
  :func:`allometric`, :func:`power`, :func:`exponential`, :func:`categorical`;
* :mod:`~bayesbio.population.dosing` — one patient's records: :func:`bolus`,
  :func:`infusion`, :func:`reset`, :func:`repeat`, :func:`patient`;
* :mod:`~bayesbio.population.batch` — the padded arrays of a population
  (:class:`PopulationBatch`, patient axis first): :func:`make_batch`, :func:`as_batch`;
* :mod:`~bayesbio.population.batched` — every patient solved in one ``vmap``-ed call,
  restarting exactly at each dose: :func:`solve_population` (in a model, failure-safe),
  :func:`solve_population_with_status`, :func:`solve_patient` (pure, one patient);
  ``solver="expm"`` solves a *linear* model exactly by the matrix exponential
  (:mod:`~bayesbio.population.linear`, with :func:`check_linear` to verify an ``rhs``),
  ``solver="analytic"`` in closed form when it has one state or two in a chain, e.g. one
  compartment with first-order absorption (:mod:`~bayesbio.population.analytic`);
* :mod:`~bayesbio.population.nonmem` — :func:`read_nonmem` for NONMEM-style tables;
* :mod:`~bayesbio.population.simulate` — predictions and simulations from a fit: individual
  (IPRED), typical (PRED) and new patients (:func:`simulate`), new regimens
  (:func:`simulate_regimen`); :mod:`~bayesbio.population.fits` — :func:`individual_fits`;
* :mod:`~bayesbio.population.outputs` — :func:`output_values` (one output of a multi-output
  table, for models with one noise model per output);
* :mod:`~bayesbio.population.diagnostics` — η-shrinkage (:func:`shrinkage`,
  :func:`eta_shrinkage`) and visual predictive checks (:func:`vpc`, :func:`vpc_from_model`);
* :mod:`~bayesbio.population.plots` — :func:`plot_individual_fits`, :func:`plot_vpc`,
  :func:`plot_regimen` (matplotlib, imported on first use).

A population PK model script then reads::

    def model(data):
        ka_pop = numpyro.sample("ka_pop", dist.LogNormal(0.0, 1.0))
        ...
        omega = numpyro.sample("omega", dist.HalfNormal(1.0).expand([3]))
        p = bb.population.lognormal_parameters({"ka": ka_pop, "cl": cl_pop, "v": v_pop}, omega, P)
        amounts = bb.population.solve_population(rhs, p, data["events"])   # (P, O, n_states)
        conc = amounts[..., 1] / p["v"][:, None]
        bb.observe("conc", bb.NormalNoise(conc, sigma), obs=data["events"]["obs_value"])

(``models/theophylline.py`` is the complete example.)
"""

from bayesbio.population.batch import PopulationBatch, as_batch, make_batch
from bayesbio.population.batched import solve_patient, solve_population, solve_population_with_status
from bayesbio.population.linear import check_linear
from bayesbio.population.covariates import allometric, categorical, exponential, power
from bayesbio.population.dosing import Dose, Patient, bolus, infusion, patient, repeat, reset
from bayesbio.population.effects import individual_parameters, lognormal_parameters, random_effects
from bayesbio.population.nonmem import EVID_SUPPORTED, PopulationData, read_nonmem
from bayesbio.population.diagnostics import VPC, eta_shrinkage, shrinkage, time_bins, vpc, vpc_from_model
from bayesbio.population.plots import plot_individual_fits, plot_regimen, plot_vpc
from bayesbio.population.fits import IndividualFits, individual_fits
from bayesbio.population.outputs import output_values
from bayesbio.population.simulate import (
    Simulation,
    dense_events,
    posterior_draws,
    prediction_bands,
    simulate,
    simulate_regimen,
    with_events,
)

__all__ = [
    "EVID_SUPPORTED",
    "IndividualFits",
    "Simulation",
    "VPC",
    "dense_events",
    "eta_shrinkage",
    "individual_fits",
    "output_values",
    "plot_individual_fits",
    "plot_regimen",
    "plot_vpc",
    "posterior_draws",
    "prediction_bands",
    "shrinkage",
    "simulate",
    "simulate_regimen",
    "time_bins",
    "vpc",
    "vpc_from_model",
    "with_events",
    "Dose",
    "Patient",
    "PopulationBatch",
    "PopulationData",
    "allometric",
    "as_batch",
    "bolus",
    "categorical",
    "check_linear",
    "exponential",
    "individual_parameters",
    "infusion",
    "lognormal_parameters",
    "make_batch",
    "patient",
    "power",
    "random_effects",
    "read_nonmem",
    "repeat",
    "reset",
    "solve_patient",
    "solve_population",
    "solve_population_with_status",
]

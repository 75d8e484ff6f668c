"""Simulation from a fitted population model: predictions, new patients, new regimens.

Everything here runs the **model script itself** (any model written with
:func:`bayesbio.observe` and, for random effects, :func:`~bayesbio.population.lognormal_parameters`)
under NumPyro effect handlers, one posterior draw at a time (``vmap``-ed over draws):

* the draw's latent sample sites are substituted (deterministic sites are recomputed);
* the observed sites are *simulated* (observation noise added) and their noise-free
  **prediction** is read from the noise model (``noise.prediction``);
* the random effects are handled by ``mode``:

  ``"individual"``
      the posterior random effects of the fitted patients (IPRED: individual predictions);
  ``"typical"``
      every random effect set to 0 (PRED: the typical patient of the population);
  ``"new"``
      new random effects drawn from the population distribution ``N(0, Omega)`` of each
      posterior draw: new patients, with both parameter uncertainty and between-subject
      variability (posterior predictive for a new population; what a VPC simulates).

The random-effect sites are those of ``lognormal_parameters(name=...)``: the sampled standard
normals ``f"{name}_z"`` (non-centred) or ``name`` itself (centred); the correlation factor
``f"{name}_corr_cholesky"`` is a population parameter and stays substituted.

A new design (other sampling times, another dosing regimen, more patients) is a new
``data["events"]`` batch, e.g. from :func:`dense_events` or
:func:`~bayesbio.population.make_batch`; its records need no measurements (NaN). Other
per-patient data fields (covariates) must match the new number of patients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayesbio.errors import DataError, ModelError, OptionError, describe
from bayesbio.population.batch import PopulationBatch, as_batch, make_batch
from bayesbio.population.dosing import Dose, patient

__all__ = [
    "MODES",
    "Simulation",
    "dense_events",
    "posterior_draws",
    "prediction_bands",
    "simulate",
    "simulate_regimen",
    "with_events",
]

MODES = ("individual", "typical", "new")


@dataclass(frozen=True)
class Simulation:
    """Simulated outputs of ``S`` draws.

    Attributes
    ----------
    prediction : dict of arrays (S, ...)
        Noise-free model prediction of each observed site (the noise model's ``prediction``).
    observation : dict of arrays (S, ...)
        Simulated measurements (prediction plus observation noise).
    failed : array of bool (S,)
        Draws whose ODE solve failed; their predictions and observations are NaN.
    """

    prediction: dict[str, np.ndarray]
    observation: dict[str, np.ndarray]
    failed: np.ndarray

    @property
    def n_draws(self) -> int:
        return int(self.failed.shape[0])


def _resolve_model(model, data):
    """(model function, data) from a bundled name, script path, ModelSpec or function."""
    from bayesbio.model import ModelSpec, load_model

    if callable(model) and not isinstance(model, (str, ModelSpec)):
        if data is None:
            raise ModelError("simulate: a bare model function needs its data: pass data=...")
        return model, data
    spec = load_model(model)
    return spec.model, (spec.load_data() if data is None else data)


def posterior_draws(idata_or_draws, *, num_draws: int | None = None) -> dict[str, np.ndarray]:
    """Posterior draws as ``{name: array (S, ...)}`` (chains and draws flattened).

    Parameters
    ----------
    idata_or_draws : arviz.InferenceData, xarray Dataset or dict
        A fit (its ``posterior`` group) or draws already flattened.
    num_draws : int, optional
        Keep this many draws, evenly spaced over the flattened chains (deterministic
        thinning); default all.
    """
    post = getattr(idata_or_draws, "posterior", idata_or_draws)
    if hasattr(post, "data_vars"):
        out = {}
        for k in post.data_vars:
            v = np.asarray(post[k].values)
            out[str(k)] = v.reshape((-1,) + v.shape[2:])
    elif isinstance(post, Mapping):
        out = {str(k): np.asarray(v) for k, v in post.items()}
    else:
        raise DataError(f"posterior_draws: expected an InferenceData or a dict of draws; got {describe(idata_or_draws)}")
    if not out:
        raise DataError("posterior_draws: no posterior variables found")
    sizes = {v.shape[0] if v.ndim else 0 for v in out.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise DataError(f"posterior_draws: every variable needs the same leading number of draws; got sizes {sorted(sizes)}")
    n = sizes.pop()
    if num_draws is not None:
        if isinstance(num_draws, bool) or not isinstance(num_draws, (int, np.integer)) or num_draws < 1:
            raise OptionError(f"'num_draws' must be a positive integer; got {describe(num_draws)}")
        if num_draws < n:
            idx = np.round(np.linspace(0, n - 1, int(num_draws))).astype(int)
            out = {k: v[idx] for k, v in out.items()}
    return out


def with_events(data: Mapping[str, Any], events, **fields) -> dict[str, Any]:
    """A copy of model ``data`` with a new ``"events"`` batch (and other fields replaced)."""
    if not isinstance(data, Mapping):
        raise DataError(f"with_events: 'data' must be the model's data dict; got {describe(data)}")
    out = dict(data)
    out["events"] = as_batch(events).to_dict()
    out.update(fields)
    return out


def dense_events(
    events, *, num_times: int = 100, t_end: float | None = None, compartment: int | None = None,
    times=None,
) -> PopulationBatch:
    """The same patients and doses, observed on a fine time grid (for smooth prediction curves).

    Parameters
    ----------
    events : PopulationBatch or dict
        The fitted design.
    num_times : int
        Grid points from 0 (or the first record, if earlier) to ``t_end``.
    t_end : float, optional
        End of the grid (default: each patient's last record).
    compartment : int, optional
        ``obs_cmt`` of the grid records (default: the patient's first observed output).
    times : array, optional
        Use these times for every patient instead of a grid.

    Notes
    -----
    Doses are rebuilt from the batch's dose records (bolus / infusion); compartment resets
    (EVID 3/4) are not carried over.
    """
    batch = as_batch(events)
    b = {k: np.asarray(v) for k, v in batch.to_dict().items()}
    if isinstance(num_times, bool) or not isinstance(num_times, (int, np.integer)) or num_times < 2:
        raise OptionError(f"dense_events: 'num_times' must be an integer >= 2; got {describe(num_times)}")
    patients = []
    for i in range(b["obs_time"].shape[0]):
        valid = b["obs_valid"][i]
        doses = [
            Dose(float(b["dose_time"][i, j]), float(b["dose_amount"][i, j]), int(b["dose_cmt"][i, j]),
                 float(b["dose_rate"][i, j]))
            for j in np.flatnonzero(b["dose_valid"][i])
        ]
        if times is not None:
            grid = np.asarray(times, dtype=float)
        else:
            t_obs = b["obs_time"][i][valid]
            start = min(0.0, float(t_obs.min()))
            end = float(t_obs.max()) if t_end is None else float(t_end)
            grid = np.linspace(start, end, int(num_times))
        cmt = int(b["obs_cmt"][i][valid][0]) if compartment is None else int(compartment)
        patients.append(patient(doses, grid, obs_compartment=cmt))
    return make_batch(patients, n_states=batch.n_states)


def _prediction(fn):
    """Noise-free prediction of a (possibly masked / censored) bayesbio noise model."""
    for _ in range(5):
        if hasattr(fn, "prediction"):
            return fn.prediction
        inner = getattr(fn, "base_dist", None) or getattr(fn, "base", None)
        if inner is None:
            break
        fn = inner
    return fn.mean


def _site_info(model, data):
    """Latent sample sites (name -> shape) and observed site names of an eager trace."""
    from numpyro import handlers
    from numpyro.distributions.distribution import Unit

    from bayesbio.ode import FAILURE_SITE_SUFFIX

    latent, observed = {}, []

    def run(data):  # traced data: a design without measurements (all NaN) is fine here
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(data)
        for name, site in tr.items():
            if site["type"] != "sample" or name.endswith(FAILURE_SITE_SUFFIX) or isinstance(site["fn"], Unit):
                continue
            if site["is_observed"]:
                observed.append(name)
            else:
                latent[name] = tuple(np.shape(site["value"]))
        return 0.0

    jax.eval_shape(run, _numeric_data(data))
    return latent, observed


def _numeric_data(data):
    out = {}
    for k, v in data.items():
        out[k] = _numeric_data(v) if isinstance(v, Mapping) else jnp.asarray(v)
    return out


def simulate(
    model,
    draws,
    data: Mapping[str, Any] | None = None,
    *,
    mode: str = "individual",
    random_effects: str = "eta",
    sites: str | Sequence[str] | None = None,
    num_draws: int | None = None,
    seed: int = 0,
    batch_size: int = 200,
) -> Simulation:
    """Simulate the observed sites of a model for every posterior draw.

    Parameters
    ----------
    model : str, ModelSpec or callable
        Bundled model name, script path, :class:`~bayesbio.ModelSpec` or model function.
    draws : arviz.InferenceData or dict
        The posterior (see :func:`posterior_draws`).
    data : dict, optional
        Model data for the design to simulate (default: the model's bundled data). Build new
        designs with :func:`with_events`.
    mode : {"individual", "typical", "new"}
        Random effects from the posterior, zero, or new patients (module docstring).
    random_effects : str
        Site name of the random effects (``lognormal_parameters(name=...)``).
    sites : str or sequence of str, optional
        Observed sites to simulate (default: all).
    num_draws : int, optional
        Thin the posterior to this many draws (:func:`posterior_draws`).
    seed : int
        Seed of the new random effects and the observation noise.
    batch_size : int
        Draws simulated per compiled call (memory bound).

    Returns
    -------
    Simulation
        Arrays with a leading draw axis.

    Examples
    --------
    >>> sim = simulate("theophylline", idata, mode="new", num_draws=200)   # doctest: +SKIP
    >>> sim.observation["conc"].shape                                      # doctest: +SKIP
    (200, 12, 11)
    """
    from numpyro import handlers

    from bayesbio.infer._idata import _Unobserve
    from bayesbio.model import validate_data
    from bayesbio.ode import FAILURE_SITE_SUFFIX

    if mode not in MODES:
        raise OptionError(f"simulate: 'mode' must be one of {list(MODES)}; got {mode!r}")
    fn, data = _resolve_model(model, data)
    data = validate_data(data, model_name="simulate")
    draws = posterior_draws(draws, num_draws=num_draws)
    latent, observed = _site_info(fn, data)
    if not observed:
        raise ModelError("simulate: the model has no observed sites (declare data with bb.observe)")
    if sites is None:
        names = list(observed)
    else:
        names = [sites] if isinstance(sites, str) else list(sites)
        unknown = [s for s in names if s not in observed]
        if unknown:
            raise ModelError(f"simulate: unknown observed site(s) {unknown}; the model observes {observed}")
    eta_sites = [s for s in (random_effects, f"{random_effects}_z") if s in latent]
    if mode != "individual" and not eta_sites:
        raise ModelError(
            f"simulate: mode={mode!r} needs the random effects, but the model has no sample site "
            f"'{random_effects}' or '{random_effects}_z'; set random_effects= to the name given to "
            f"lognormal_parameters (latent sites: {sorted(latent)})"
        )
    n = next(iter(draws.values())).shape[0]
    subst = {}
    for name, shape in latent.items():
        if mode != "individual" and name in eta_sites:
            if mode == "typical":
                subst[name] = np.zeros((n,) + shape)
            continue
        if name not in draws:
            raise ModelError(
                f"simulate: the posterior has no draws of the model's latent site '{name}'; was it fitted "
                "with this model?"
            )
        if tuple(draws[name].shape[1:]) != shape:
            raise ModelError(
                f"simulate: posterior draws of '{name}' have shape {tuple(draws[name].shape[1:])} but the "
                f"model with this data needs {shape}"
                + ("; a design with other patients needs mode='new' (or 'typical')" if name in eta_sites else "")
            )
        subst[name] = draws[name]
    names_t = tuple(names)

    def one(draw, key, data):
        m = handlers.substitute(handlers.seed(_Unobserve(fn, names_t), key), data=draw)
        tr = handlers.trace(m).get_trace(data)
        failed = jnp.zeros((), bool)
        for name, site in tr.items():
            if name.endswith(FAILURE_SITE_SUFFIX):
                failed = failed | ~jnp.isfinite(jnp.sum(site["fn"].log_factor))
        pred = {k: jnp.where(failed, jnp.nan, _prediction(tr[k]["fn"])) for k in names_t}
        obs = {k: jnp.where(failed, jnp.nan, tr[k]["value"]) for k in names_t}
        return pred, obs, failed

    run = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    keys = jax.random.split(jax.random.PRNGKey(int(seed)), n)
    jdata = _numeric_data(data)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise OptionError(f"simulate: 'batch_size' must be a positive integer; got {describe(batch_size)}")
    parts = []
    for start in range(0, n, int(batch_size)):
        stop = min(n, start + int(batch_size))
        part = {k: jnp.asarray(v[start:stop]) for k, v in subst.items()}
        if stop - start < batch_size and start > 0:  # pad the last batch: one compilation
            pad = batch_size - (stop - start)
            part = {k: jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)]) for k, v in part.items()}
            k_part = jnp.concatenate([keys[start:stop], jnp.repeat(keys[stop - 1 : stop], pad, axis=0)])
            out = jax.device_get(run(part, k_part, jdata))
            out = jax.tree_util.tree_map(lambda x, m=stop - start: x[:m], out)
        else:
            out = jax.device_get(run(part, keys[start:stop], jdata))
        parts.append(out)
    pred = {k: np.concatenate([p[0][k] for p in parts]) for k in names}
    obs = {k: np.concatenate([p[1][k] for p in parts]) for k in names}
    failed = np.concatenate([p[2] for p in parts])
    return Simulation(prediction=pred, observation=obs, failed=failed)


def prediction_bands(values, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> np.ndarray:
    """Quantiles over the leading (draw) axis, ignoring failed (NaN) draws: array (Q, ...)."""
    q = np.asarray(quantiles, dtype=float)
    if q.ndim != 1 or np.any((q < 0) | (q > 1)):
        raise OptionError(f"'quantiles' must be probabilities in [0, 1]; got {describe(quantiles)}")
    values = np.asarray(values, dtype=float)
    if np.all(np.isnan(values)):
        raise DataError("prediction_bands: every draw is NaN (every solve failed?)")
    return np.nanquantile(values, q, axis=0)


def simulate_regimen(
    model,
    draws,
    events,
    data: Mapping[str, Any] | None = None,
    *,
    site: str | None = None,
    mode: str = "new",
    random_effects: str = "eta",
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
    num_draws: int | None = None,
    seed: int = 0,
    with_noise: bool = False,
):
    """Predicted outputs of a dosing regimen, with credible bands, from the posterior.

    For each posterior draw (thinned to ``num_draws``) the regimen is solved for new
    patients (``mode="new"``: random effects from the population distribution of that draw;
    ``"typical"``: the typical patient; ``"individual"``: the fitted patients, same number of
    patients as the fit) and the draws are summarised by ``quantiles``.

    Parameters
    ----------
    model, draws, mode, random_effects, num_draws, seed
        As for :func:`simulate`.
    events : PopulationBatch, dict or sequence of Patient
        The regimen: patients built with :func:`~bayesbio.population.patient` and the dosing
        functions (their ``obs_time`` is the prediction grid), or a batch.
    data : dict, optional
        Model data whose ``"events"`` is replaced (default: the model's bundled data); pass
        the per-patient covariates of the new patients here when the model uses covariates.
    site : str, optional
        Observed site to report (default: the model's first).
    quantiles : sequence of float
        Quantiles of the bands; columns ``q05``, ``q50``, ... of the result.
    with_noise : bool
        Summarise simulated measurements (prediction intervals) instead of noise-free
        predictions (credible bands of the concentration).

    Returns
    -------
    pandas.DataFrame
        One row per patient and record: ``patient`` (0-based), ``time``, ``compartment``,
        ``mean`` and one column per quantile.
    """
    import pandas as pd

    from bayesbio.population.dosing import Patient

    if isinstance(events, Sequence) and events and all(isinstance(p, Patient) for p in events):
        fn, base = _resolve_model(model, data)
        n_states = as_batch(base["events"]).n_states if "events" in base else None
        if n_states is None:
            raise DataError("simulate_regimen: the model data has no 'events'; pass a PopulationBatch")
        events = make_batch(list(events), n_states=n_states)
    else:
        fn, base = _resolve_model(model, data)
    batch = as_batch(events)
    sim = simulate(fn, draws, with_events(base, batch), mode=mode, random_effects=random_effects,
                   sites=site, num_draws=num_draws, seed=seed)
    name = site or next(iter(sim.prediction))
    values = (sim.observation if with_noise else sim.prediction)[name]
    bands = prediction_bands(values, quantiles)
    b = batch.to_dict()
    rows = []
    mean = np.nanmean(values, axis=0)
    for i in range(b["obs_time"].shape[0]):
        for j in np.flatnonzero(b["obs_valid"][i]):
            row = {"patient": i, "time": float(b["obs_time"][i, j]), "compartment": int(b["obs_cmt"][i, j]),
                   "mean": float(mean[i, j])}
            for q, band in zip(quantiles, bands):
                row[f"q{round(100 * q):02d}"] = float(band[i, j])
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(site=name, mode=mode, n_draws=sim.n_draws, failed_draws=int(sim.failed.sum()))
    return out


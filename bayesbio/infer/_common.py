"""Pieces shared by the runners: preparing a model, failure bookkeeping, run metadata."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.distributions.distribution import Unit

from bayesbio._patient_failures import recording_population_sizes
from bayesbio.errors import BayesbioError, DataError, ModelError, OptionError, describe
from bayesbio.model import ModelSpec, data_fingerprint, load_model, validate_data
from bayesbio.observe import _OBS_KEY
from bayesbio._failure_report import _failure_context, _FailureContext
from bayesbio.ode import FAILURE_SITE_SUFFIX


@dataclass
class Prepared:
    """A model with validated data and what an eager trace told us about it."""

    spec: ModelSpec
    data: dict[str, Any]
    observed: dict[str, np.ndarray]  # observed site -> data (NaN where missing)
    latent: list[str]
    deterministic: list[str]
    dims: dict[str, list[str]]
    coords: dict[str, list]
    fingerprint: str
    #: number of patients of every population solve in the model, in trace order (empty: none)
    population_sizes: tuple[int, ...] = ()

    @property
    def n_patients(self) -> int | None:
        """Patients whose solver failures are counted one by one: those of the model's first
        population solve (:mod:`bayesbio._patient_failures`); None without population solves."""
        return self.population_sizes[0] if self.population_sizes else None


def prepare(model, data=None, *, dims=None, coords=None) -> Prepared:
    """Resolve the model, load and validate its data, and trace it once to catch bad input.

    The trace runs abstractly (``jax.eval_shape``) with the data held concrete, so the checks
    of :func:`bayesbio.observe` and :func:`bayesbio.solve` see real values but nothing is
    compiled.
    """
    if callable(model) and not isinstance(model, (str, ModelSpec)):
        if data is None:
            raise ModelError("a bare model function needs its data: pass data=...")
        spec = ModelSpec(name=getattr(model, "__name__", "model"), model=model, load_data=lambda path=None: data)
    else:
        spec = load_model(model)
    if data is None:
        data = _load_data(spec, None)
    elif isinstance(data, (str, os.PathLike)):
        if spec.data_is_file and not os.path.isfile(data):
            raise DataError(f"data: file '{os.fspath(data)}' does not exist (data for model '{spec.name}')")
        data = _load_data(spec, str(data))
    data = validate_data(data, model_name=spec.name)
    _check_dims_coords(dims, coords)

    observed: dict[str, np.ndarray] = {}
    latent: list[str] = []
    deterministic: list[str] = []

    def run():
        tr = handlers.trace(handlers.seed(spec.model, 0)).get_trace(data)
        for name, site in tr.items():
            if site["type"] == "deterministic":
                deterministic.append(name)
            if site["type"] != "sample" or name.endswith(FAILURE_SITE_SUFFIX):
                continue
            if isinstance(site["fn"], Unit):  # a numpyro.factor term, not data
                continue
            if site["is_observed"]:
                obs = (site.get("infer") or {}).get(_OBS_KEY, site["value"])
                observed[name] = np.asarray(obs, dtype=float)
            else:
                latent.append(name)
        return 0.0

    try:
        with recording_population_sizes() as sizes:
            jax.eval_shape(run)
    except BayesbioError:
        raise
    except Exception as exc:
        key = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
        if isinstance(key, str) and key not in data:
            raise DataError(
                f"data for model '{spec.name}' has no field '{key}'{_where(exc, spec.model)}; "
                f"it has {sorted(data)}"
            ) from exc
        raise ModelError(
            f"model '{spec.name}' failed when traced with its data{_where(exc, spec.model)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not observed:
        raise ModelError(f"model '{spec.name}' observes no data (no site with obs=...)")
    if not latent:
        raise ModelError(f"model '{spec.name}' has no latent variables to infer")
    all_dims = {k: list(v) for k, v in spec.dims.items()}
    all_dims.update({k: list(v) for k, v in (dims or {}).items()})
    all_coords = spec.coords_for(data)
    all_coords.update({k: list(v) for k, v in (coords or {}).items()})
    return Prepared(
        spec=spec, data=data, observed=observed, latent=latent, deterministic=deterministic, dims=all_dims,
        coords=all_coords, fingerprint=data_fingerprint(data), population_sizes=tuple(sizes),
    )


def _load_data(spec: ModelSpec, path):
    """``spec.load_data(path)``; a reader's own exception (pandas, OS) becomes a DataError."""
    try:
        return spec.load_data(path)
    except BayesbioError:
        raise
    except Exception as exc:
        what = f"'{path}'" if path is not None else "its bundled data"
        raise DataError(
            f"data: model '{spec.name}' could not load {what}: {type(exc).__name__}: {exc}"
        ) from exc


def _check_dims_coords(dims, coords) -> None:
    for label, value in (("dims", dims), ("coords", coords)):
        if value is not None and not isinstance(value, Mapping):
            raise OptionError(f"'{label}' must be a dict; got {describe(value)}")
    for name, names in (dims or {}).items():
        if isinstance(names, str) or not all(isinstance(d, str) for d in names):
            raise OptionError(
                f"'dims': the dims of '{name}' must be a list of dimension names; got {names!r}"
            )


def _where(exc: BaseException, model) -> str:
    """`` (at FILE:LINE: code)`` of the innermost traceback frame inside the model's own file."""
    import traceback

    filename = getattr(getattr(model, "__code__", None), "co_filename", None)
    if filename is None:
        return ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {os.path.basename(frame.filename)}:{frame.lineno}: {(frame.line or '').strip()})"


class FailureLog:
    """Host-side tally of failed ODE/PDE solves, keyed by (chain, iteration); and of failed
    population solves per patient, also keyed by (chain, iteration) (each value an int64 array,
    one count per patient). Iterations before ``warmup`` belong to the warm-up phase."""

    def __init__(self, *, warmup: int | None = None):
        self._lock = threading.Lock()
        self.counts: dict[tuple[int, int], int] = defaultdict(int)
        self.warmup = warmup
        self.patient_counts: dict[tuple[int, int], np.ndarray] = {}

    def record_patients(self, chain, iteration, failed) -> None:
        failed = np.asarray(failed).astype(bool).reshape(-1)
        if not failed.any():
            return
        key = (int(np.asarray(chain)), int(np.asarray(iteration)))
        with self._lock:
            previous = self.patient_counts.get(key)
            self.patient_counts[key] = failed.astype(np.int64) + (0 if previous is None else previous)

    def _phase(self, iteration: int) -> str:
        return "warmup" if self.warmup is not None and iteration < self.warmup else "sampling"

    def per_patient(self, chains: int, n_patients: int, phase: str) -> np.ndarray:
        """Per-patient counts of ``phase`` ("warmup" or "sampling"), shape (chains, n_patients)."""
        jax.effects_barrier()
        out = np.zeros((chains, n_patients), dtype=np.int64)
        with self._lock:
            for (c, it), counts in self.patient_counts.items():
                if self._phase(it) == phase and 0 <= c < chains and counts.shape == (n_patients,):
                    out[c] += counts
        return out

    def snapshot(self, done) -> dict:
        """Copies of both tallies restricted to the iterations each chain has completed
        (``done[chain]``): what a checkpoint of chains stopped at those iterations holds, without
        the failures of chunks still running."""
        jax.effects_barrier()
        done = np.asarray(done)

        def completed(key):
            return 0 <= key[0] < len(done) and key[1] < done[key[0]]

        with self._lock:
            return dict(
                failures={k: v for k, v in self.counts.items() if completed(k)},
                patient_failures={k: v.copy() for k, v in self.patient_counts.items() if completed(k)},
            )

    def restore(self, saved: dict) -> None:
        """Continue from a :meth:`snapshot`."""
        with self._lock:
            self.counts.update(saved["failures"])
            self.patient_counts.update({k: np.asarray(v, dtype=np.int64) for k, v in saved["patient_failures"].items()})

    def record(self, chain, iteration, failed) -> None:
        if not bool(np.asarray(failed)):
            return
        key = (int(np.asarray(chain)), int(np.asarray(iteration)))
        with self._lock:
            self.counts[key] += 1

    def per_draw(self, chains: int, start: int, length: int) -> np.ndarray:
        """Counts for iterations ``start .. start+length-1`` of every chain, shape (chains, length)."""
        jax.effects_barrier()
        out = np.zeros((chains, length), dtype=np.int64)
        with self._lock:
            for (c, it), n in self.counts.items():
                if 0 <= c < chains and start <= it < start + length:
                    out[c, it - start] += n
        return out

    def total(self) -> int:
        jax.effects_barrier()
        with self._lock:
            return int(sum(self.counts.values()))


def with_failure_context(model: Callable, log: FailureLog) -> Callable:
    """Wrap ``model(data)`` so solves inside it report failures as (chain, iteration)."""

    def wrapped(*args, _bb_chain=-1, _bb_iteration=-1, **kwargs):
        token = _failure_context.set(_FailureContext(_bb_chain, _bb_iteration, log.record))
        try:
            return model(*args, **kwargs)
        finally:
            _failure_context.reset(token)

    return wrapped


def strip_failure_sites(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.endswith(FAILURE_SITE_SUFFIX)}


def software_versions() -> dict[str, str]:
    from importlib.metadata import version

    import arviz

    import bayesbio

    return {
        "bayesbio": bayesbio.__version__,
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "diffrax": version("diffrax"),  # not imported: the fused solvers do not need it
        "arviz": arviz.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def run_attrs(prepared: Prepared, method: str, settings: dict, seed: int, timings: dict) -> dict:
    """Attributes stored on the posterior group (netCDF-safe scalars and strings)."""
    import json

    attrs = {
        "model": prepared.spec.name,
        "model_source": prepared.spec.source or prepared.spec.name,
        "method": method,
        "seed": int(seed),
        "data_fingerprint": prepared.fingerprint,
        "settings": json.dumps(settings, sort_keys=True),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "x64": int(bool(jax.config.jax_enable_x64)),
        "platform": jax.default_backend(),
        "deterministic_variables": json.dumps(sorted(prepared.deterministic)),
    }
    for k, v in software_versions().items():
        attrs[f"version_{k}"] = v
    for k, v in timings.items():
        attrs[k] = float(v)
    return attrs


def show_progress(progress: bool | None) -> bool:
    """Progress bars only on an interactive terminal outside CI, unless asked explicitly."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return sys.stderr.isatty()


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise OptionError(f"'{name}' must be an integer >= {minimum}; got {describe(value)}")
    return int(value)


def check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value < 1.0):
        raise OptionError(f"'{name}' must be a number strictly between 0 and 1; got {describe(value)}")
    return float(value)


def check_seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise OptionError(f"'seed' must be a non-negative integer; got {describe(value)}")
    return int(value)


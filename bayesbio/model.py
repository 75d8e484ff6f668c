"""Model specifications: a NumPyro model plus its data, dimensions and coordinates.

A *model script* (a bundled one in ``models/`` or a user's ``.py`` file) defines at module
level:

``model(data)``
    the NumPyro model; latent variables with ``numpyro.sample``, observations with
    :func:`bayesbio.observe`, ODE solves with :func:`bayesbio.solve`.
``load_data(path=None)``
    returns the data as a dict of numeric arrays (``path=None`` loads the bundled default).
``dims`` (optional)
    ``{variable: [dim, ...]}`` naming the non-(chain, draw) axes of each variable.
``coords(data)`` (optional)
    ``{dim: labels}`` for those dims.
``description`` (optional)
    one line shown by ``bayesbio models``.
``init_strategy`` (optional)
    a NumPyro init strategy for NUTS when the caller gives none (default: uniform in (-2, 2)
    on the unconstrained scale, as Stan), e.g. ``init_to_median()`` for hierarchical models
    whose ODE turns stiff in the far corners of that box.
``nuts_prefit`` (optional)
    ``"svi"`` to precede NUTS warm-up with a mean-field variational pre-fit by default
    (:mod:`bayesbio.infer.prefit`), e.g. for population models with hundreds of random effects;
    ``"map"`` or ``"laplace"`` for the other pre-fits of :func:`bayesbio.sample_nuts`.
``data_is_file`` (optional, default True)
    False when ``load_data`` takes something other than a file path (``--data 10000`` as a
    number of simulated patients); the runners then pass it through without the file check.
``sbc`` (optional)
    settings for simulation-based calibration (:mod:`bayesbio.sbc`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bayesbio.errors import DataError, ModelError, describe

__all__ = ["ModelSpec", "bundled_models", "data_fingerprint", "load_model", "validate_data"]


@dataclass(frozen=True)
class ModelSpec:
    """A model ready for the runners: model function, data loader, dims and coords."""

    name: str
    model: Callable[..., Any]
    load_data: Callable[..., Mapping[str, Any]]
    dims: Mapping[str, Sequence[str]] = field(default_factory=dict)
    coords: Callable[[Mapping[str, Any]], Mapping[str, Sequence[Any]]] | None = None
    description: str = ""
    source: str = ""
    #: Settings for simulation-based calibration (the script's optional ``sbc = {...}``;
    #: see :mod:`bayesbio.sbc`).
    sbc: Mapping[str, Any] = field(default_factory=dict)
    #: NumPyro init strategy for NUTS (the script's optional ``init_strategy``); None: the default.
    init_strategy: Any = None
    #: Default ``prefit`` of NUTS (the script's optional ``nuts_prefit``); None: no pre-fit.
    prefit: str | None = None
    #: False when ``load_data`` takes something other than a file path (the script's optional
    #: ``data_is_file = False``, e.g. a simulated population size): ``--data`` is then passed
    #: through unchecked.
    data_is_file: bool = True

    def coords_for(self, data: Mapping[str, Any]) -> dict[str, list]:
        if self.coords is None:
            return {}
        return {k: list(np.asarray(v).tolist()) for k, v in self.coords(data).items()}


def validate_data(data: Any, *, model_name: str = "model") -> dict[str, Any]:
    """Check that model data is a mapping of numeric arrays; return it with numpy arrays."""
    if not isinstance(data, Mapping):
        raise DataError(
            f"data for '{model_name}' must be a dict of numeric arrays; got {describe(data)}"
        )
    if not data:
        raise DataError(f"data for '{model_name}' is empty")
    out = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out[key] = validate_data(value, model_name=f"{model_name}.{key}")
            continue
        try:
            arr = np.asarray(value)
        except Exception:
            raise DataError(f"data field '{key}' must be numeric; got {describe(value)}") from None
        if arr.dtype.kind not in "biuf":
            raise DataError(
                f"data field '{key}' must be numeric; got {describe(value)}"
            )
        if arr.size == 0:
            raise DataError(f"data field '{key}' is empty")
        out[key] = arr
    return out


def data_fingerprint(data: Mapping[str, Any]) -> str:
    """SHA-256 of the data's field names, shapes, dtypes and bytes (first 16 hex digits)."""
    h = hashlib.sha256()

    def feed(prefix, d):
        for key in sorted(d):
            value = d[key]
            if isinstance(value, Mapping):
                feed(f"{prefix}{key}.", value)
                continue
            arr = np.ascontiguousarray(np.asarray(value))
            h.update(f"{prefix}{key}:{arr.shape}:{arr.dtype};".encode())
            h.update(arr.tobytes())

    feed("", data)
    return h.hexdigest()[:16]


def _spec_from_module(module, name: str, source: str) -> ModelSpec:
    missing = [attr for attr in ("model", "load_data") if not callable(getattr(module, attr, None))]
    if missing:
        raise ModelError(
            f"model script '{source}' must define {' and '.join(missing)} "
            "(model(data) and load_data(path=None)); see bayesbio.model"
        )
    dims = getattr(module, "dims", {}) or {}
    if not isinstance(dims, Mapping):
        raise ModelError(f"model script '{source}': 'dims' must be a dict; got {describe(dims)}")
    return ModelSpec(
        name=getattr(module, "name", name),
        model=module.model,
        load_data=module.load_data,
        dims=dims,
        coords=getattr(module, "coords", None),
        description=getattr(module, "description", (module.__doc__ or "").strip().split("\n")[0]),
        source=source,
        sbc=_sbc_settings(module, source),
        init_strategy=getattr(module, "init_strategy", None),
        prefit=_prefit_setting(module, source),
        data_is_file=bool(getattr(module, "data_is_file", True)),
    )


def _prefit_setting(module, source: str) -> str | None:
    from bayesbio.infer.prefit import PREFITS

    prefit = getattr(module, "nuts_prefit", None)
    if prefit is not None and prefit not in PREFITS:
        raise ModelError(f"model script '{source}': 'nuts_prefit' must be one of {list(PREFITS)}; got {describe(prefit)}")
    return prefit


def _sbc_settings(module, source: str) -> dict[str, Any]:
    sbc = getattr(module, "sbc", None)
    if sbc is None:
        return {}
    if not isinstance(sbc, Mapping):
        raise ModelError(f"model script '{source}': 'sbc' must be a dict of SBC settings; got {describe(sbc)}")
    return dict(sbc)


def bundled_models() -> dict[str, str]:
    """Names and one-line descriptions of the models shipped with bayesbio."""
    import bayesbio.models as pkg

    out = {}
    for name, module in _bundled_sources(pkg).items():
        out[name] = _spec_from_module(module, name, f"bayesbio.models.{name}").description
    return out


def _bundled_sources(pkg) -> dict[str, Any]:
    """Bundled model name -> module-like object with the model-script contract.

    A *model family* module defines ``variants`` (``{name: description}``) and
    ``variant(name)`` returning a module-like object (e.g. a ``SimpleNamespace``) with the
    contract above; each variant is listed and loaded under its own name (e.g. the Treloar
    fits of every constitutive law, ``treloar_neo_hookean``, ``treloar_ogden3``, ...)."""
    out = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bayesbio.models.{info.name}")
        variants = getattr(module, "variants", None)
        if isinstance(variants, Mapping) and callable(getattr(module, "variant", None)):
            for name in variants:
                out[name] = module.variant(name)
        else:
            out[info.name] = module
    return out


def load_model(model: str | ModelSpec) -> ModelSpec:
    """Load a bundled model by name, or a user's model script by path."""
    if isinstance(model, ModelSpec):
        return model
    if not isinstance(model, str) or not model:
        raise ModelError(f"model must be a bundled model name or a .py path; got {describe(model)}")
    path = Path(model)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise ModelError(f"model script '{model}' does not exist")
        spec = importlib.util.spec_from_file_location(f"bayesbio_user_model_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ModelError(
                f"model script '{model}' failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        return _spec_from_module(module, path.stem, str(path))
    import bayesbio.models as pkg

    sources = _bundled_sources(pkg)
    if model not in sources:
        raise ModelError(
            f"unknown model '{model}': expected a bundled model ({', '.join(sources)}) "
            "or the path of a model script ending in .py"
        )
    return _spec_from_module(sources[model], model, f"bayesbio.models.{model}")

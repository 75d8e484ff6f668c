"""Save an SBC run's finished fits after every batch, so a killed run resumes where it stopped.

An SBC run of a population or PDE model takes hours; its fits are independent, and each batch
of replications is fitted from keys and simulated data that depend only on the seed and the
settings. So the run keeps, after every batch, the fits done so far and their replication
numbers in one file (written atomically: a kill leaves the previous batch's file whole; with
several workers the batches finish in any order, and a kill loses only those in flight), and a
resumed run re-simulates the same data, skips the finished batches and fits the rest: on the
same machine its result is bit-identical to an uninterrupted run's. Files of the first format
(no replication numbers: the first fits, in order) are still read.

The file records what identifies the run (model name and a digest of its code, settings, seed,
data fingerprint, precision, backend and package versions); resuming with anything different
is refused with an error naming what differs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np

from bayesbio._io import write_atomic
from bayesbio.errors import OptionError
from bayesbio.sbc.fit import FitResult

__all__ = ["CHECKPOINT_NAME", "check_draws", "code_digest", "load_progress", "save_progress"]

#: File name of the progress file inside an SBC output folder (removed once results are written).
CHECKPOINT_NAME = "sbc_checkpoint.npz"
FORMAT = 2
#: Formats this module reads (1: the first ``n`` replications, without their numbers).
READABLE_FORMATS = (1, 2)
_DRAW = "draw:"


def code_digest(fn) -> str:
    """SHA-256 of the source of the module that defines ``fn`` (else of ``fn`` itself; "" when
    no source is available), so an edited model script does not resume an earlier run."""
    for obj in (inspect.getmodule(fn), fn):
        try:
            return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()
        except (OSError, TypeError):
            continue
    return ""


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_progress(path, identity: dict[str, Any], fits: FitResult, fit_seconds: float) -> Path:
    """Write the fits finished so far (of the replications ``fits.indices()``) atomically."""
    arrays = {f"{_DRAW}{k}": np.asarray(v) for k, v in fits.draws.items()}
    arrays.update(divergences=np.asarray(fits.divergences), mean_steps=np.asarray(fits.mean_steps),
                  init_ok=np.asarray(fits.init_ok), replications=fits.indices(),
                  fit_seconds=np.asarray(float(fit_seconds)),
                  identity=np.asarray(json.dumps(dict(identity, format=FORMAT), sort_keys=True)))

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return write_atomic(path, write)


def load_progress(path, identity: dict[str, Any]) -> tuple[FitResult, float]:
    """The fits saved by :func:`save_progress` and the fitting seconds spent on them.

    Raises :class:`~bayesbio.errors.OptionError` when the file is unreadable or belongs to a
    run with a different model, settings, seed, data or precision.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            saved = json.loads(str(f["identity"]))
            if not isinstance(saved, dict):
                raise ValueError("its identity record is not a mapping")
            draws = {k[len(_DRAW):]: f[k] for k in f.files if k.startswith(_DRAW)}
            fits = FitResult(draws=draws, divergences=f["divergences"], mean_steps=f["mean_steps"],
                             init_ok=f["init_ok"],
                             replications=f["replications"] if "replications" in f.files else None)
            seconds = float(f["fit_seconds"])
    except Exception as exc:  # any unreadable file (empty, truncated, not an npz, ...)
        raise OptionError(f"resume: '{path}' is not a readable SBC checkpoint ({type(exc).__name__}: {exc}); "
                          "start again without resume (CLI: --force)") from None
    if saved.get("format", 1) not in READABLE_FORMATS:
        raise OptionError(f"resume: '{path}' is an SBC checkpoint of format {saved.get('format')!r}; this "
                          f"version reads formats {list(READABLE_FORMATS)}; start again (CLI: --force)")
    expected = _flat(json.loads(json.dumps(dict(identity), sort_keys=True)))
    saved = _flat({k: v for k, v in saved.items() if k != "format"})
    differ = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
    if differ:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, this run {expected.get(k)!r}" for k in differ)
        raise OptionError(f"resume: '{path}' belongs to a different SBC run ({details}); resume with the "
                          "same model, data, seed, settings and software, or start again (CLI: --force)")
    n = len(fits.divergences)
    index = fits.indices()
    if (any(np.shape(v)[:1] != (n,) for v in fits.draws.values()) or np.shape(fits.init_ok) != (n,)
            or np.shape(fits.mean_steps) != (n,) or np.shape(index) != (n,)
            or np.any(np.diff(index) <= 0) or (n and index[0] < 0)):
        raise OptionError(f"resume: '{path}' is inconsistent (arrays of different lengths, or replication "
                          "numbers not increasing); start again "
                          "(CLI: --force)")
    return fits, seconds


def check_draws(path, fits: FitResult, expected: dict[str, tuple]) -> None:
    """Raise :class:`~bayesbio.errors.OptionError` unless the saved draws are exactly the sites
    of ``expected`` with those per-replication shapes (``(chains * draws, *site shape)``)."""
    if set(fits.draws) != set(expected):
        raise OptionError(f"resume: '{path}' holds draws of {sorted(fits.draws)}; this run tests "
                          f"{sorted(expected)}; start again (CLI: --force)")
    for k, shape in expected.items():
        if tuple(np.shape(fits.draws[k])[1:]) != tuple(shape):
            raise OptionError(f"resume: '{path}': draws of '{k}' have shape {np.shape(fits.draws[k])[1:]} per "
                              f"replication; expected {tuple(shape)}; start again (CLI: --force)")

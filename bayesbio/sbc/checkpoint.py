"""Save an SBC run's finished fits after every batch, so a killed run resumes where it stopped.

An SBC run of a population or PDE model takes hours; its fits are independent, and each batch
of replications is fitted from keys and simulated data that depend only on the seed and the
settings. So the run keeps, after every batch, the fits done so far in one file (written
atomically: a kill leaves the previous batch's file whole), and a resumed run re-simulates the
same data, skips the finished batches and fits the rest: on the same machine its result is
bit-identical to an uninterrupted run's.

The file records what identifies the run (model, settings, seed, data fingerprint, precision);
resuming with anything different is refused with an error naming what differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bayesbio._io import write_atomic
from bayesbio.errors import OptionError
from bayesbio.sbc.fit import FitResult

__all__ = ["CHECKPOINT_NAME", "load_progress", "save_progress"]

#: File name of the progress file inside an SBC output folder (removed once results are written).
CHECKPOINT_NAME = "sbc_checkpoint.npz"
FORMAT = 1
_DRAW = "draw:"


def save_progress(path, identity: dict[str, Any], fits: FitResult, fit_seconds: float) -> Path:
    """Write the fits finished so far (``fits``: the first ``n`` replications) atomically."""
    arrays = {f"{_DRAW}{k}": np.asarray(v) for k, v in fits.draws.items()}
    arrays.update(divergences=np.asarray(fits.divergences), mean_steps=np.asarray(fits.mean_steps),
                  init_ok=np.asarray(fits.init_ok), fit_seconds=np.asarray(float(fit_seconds)),
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
            draws = {k[len(_DRAW):]: f[k] for k in f.files if k.startswith(_DRAW)}
            fits = FitResult(draws=draws, divergences=f["divergences"], mean_steps=f["mean_steps"],
                             init_ok=f["init_ok"])
            seconds = float(f["fit_seconds"])
    except (OSError, ValueError, KeyError) as exc:
        raise OptionError(f"resume: '{path}' is not a readable SBC checkpoint ({exc}); "
                          "start again without resume (CLI: --force)") from None
    expected = json.loads(json.dumps(dict(identity, format=FORMAT), sort_keys=True))
    differ = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
    if differ:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, this run {expected.get(k)!r}" for k in differ)
        raise OptionError(f"resume: '{path}' belongs to a different SBC run ({details}); resume with the "
                          "same model, data, seed and settings, or start again (CLI: --force)")
    n = len(fits.divergences)
    if any(np.shape(v)[0] != n for v in fits.draws.values()) or len(fits.init_ok) != n:
        raise OptionError(f"resume: '{path}' is inconsistent (arrays of different lengths); start again "
                          "(CLI: --force)")
    return fits, seconds

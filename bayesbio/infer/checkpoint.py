"""Sampler checkpoints: the full NUTS state, each group of chains at a chunk boundary, written
atomically.

A checkpoint holds everything the chunked driver (:mod:`bayesbio.infer._driver`) needs to
continue as if it had never stopped: per group of chains, the iterations done, the sampler
state (position, adapted step size and mass matrix, random key), the draws collected so far
and its timings; and the solver-failure tallies of exactly those iterations (per chain and
iteration, and per patient for population models). Because the driver
replays the same compiled chunks from the same state, a resumed run gives draws that are
bit-identical to an uninterrupted run with the same seed on the same machine.

The file is a pickle of NumPy arrays and plain Python values (only ever read back from a
file this process or an earlier run wrote), written to a temporary file that is renamed
over the old checkpoint, so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bayesbio._io import write_atomic
from bayesbio.errors import OptionError

__all__ = ["load_checkpoint", "save_checkpoint"]

# 2: per-iteration solver-failure counts in the draws, warm-up failures per chain;
# 3: per-patient failure counts of population models (host tally and in-graph totals);
# 4: progress per group of chains (groups may run side by side: bayesbio.infer._driver)
_FORMAT = 4
#: per group: the entries holding arrays
_GROUP_ARRAYS = ("state", "collected", "kept")


def _to_numpy(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x), jax.device_get(tree))


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (pytrees of arrays and plain values) atomically to ``path``."""
    path = Path(path)
    data = {"format": _FORMAT, **payload}
    if "groups" in payload:
        data["groups"] = {gi: {k: _to_numpy(v) if k in _GROUP_ARRAYS else v for k, v in group.items()}
                          for gi, group in payload["groups"].items()}

    def write(tmp):
        with open(tmp, "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)

    write_atomic(path, write, mode=0o600)
    return path


def load_checkpoint(path: str | os.PathLike, *, expect: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to this run (same settings, seed and data)."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"resume: checkpoint '{path}' does not exist; run without resume first")
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)
    except Exception as exc:
        raise OptionError(f"resume: checkpoint '{path}' cannot be read ({type(exc).__name__})") from None
    if not isinstance(data, dict) or "format" not in data:
        raise OptionError(f"resume: '{path}' is not a bayesbio checkpoint")
    if data["format"] != _FORMAT:
        raise OptionError(
            f"resume: checkpoint '{path}' has format {data['format']!r}, written by another bayesbio "
            f"version; this version reads format {_FORMAT}: run again without resume"
        )
    for key, value in expect.items():
        if data.get(key) != value:
            raise OptionError(
                f"resume: checkpoint '{path}' was written with {key}={data.get(key)!r}, this run has "
                f"{key}={value!r}; resume with the same model, data, seed and settings"
            )
    return data

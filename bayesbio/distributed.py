"""Several processes, several hosts: ``jax.distributed`` set up from the cluster's environment.

JAX runs one Python process per host (or per GPU), all executing the same program; after
``jax.distributed.initialize`` every process sees the devices of every other one in
``jax.devices()``, and a mesh built from them (:func:`bayesbio.make_mesh`) shards the
patients of a population model across hosts exactly as across local devices. bayesbio only
reads the cluster's environment and calls JAX's own initialisation:

:func:`initialize`
    call once, at the top of the script, **before anything else touches JAX**. It reads,
    in this order:

    1. explicit variables — ``BAYESBIO_COORDINATOR_ADDRESS`` (``host:port`` of process 0),
       ``BAYESBIO_NUM_PROCESSES``, ``BAYESBIO_PROCESS_ID`` and, optionally,
       ``BAYESBIO_LOCAL_DEVICE_IDS`` (comma-separated); the ``JAX_`` spellings
       (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``,
       ``JAX_LOCAL_DEVICE_IDS``) are accepted too;
    2. SLURM — inside ``srun`` with more than one task (``SLURM_NTASKS`` > 1 and
       ``SLURM_STEP_NODELIST``, ``SLURM_PROCID``, ``SLURM_JOB_ID`` set), JAX's own SLURM
       detection (``cluster_detection_method="slurm"``: coordinator on the first node of the
       step, a port derived from the job id);
    3. nothing found: a single process; ``initialize`` does nothing.

The command line does this with ``bayesbio fit ... --distributed``.

Running on SLURM (one task per node, all GPUs of the node to that task)::

    #SBATCH --nodes=4 --ntasks-per-node=1 --gpus-per-node=8
    srun python fit_population.py          # or: srun bayesbio fit MODEL --distributed --devices 32

where ``fit_population.py`` starts with::

    import bayesbio as bb
    bb.distributed.initialize()            # before any other JAX call
    idata = bb.sample_nuts(MODEL, DATA, devices=len(jax.devices()), chain_method="sequential")

Without SLURM, start the same script on every host with::

    BAYESBIO_COORDINATOR_ADDRESS=host0:12355 BAYESBIO_NUM_PROCESSES=2 BAYESBIO_PROCESS_ID=<0 or 1> \\
        python fit_population.py

Every process computes the same draws (the chains' random keys are the same everywhere and
the sharded results are replicated back to all processes; checked for a short NUTS run on
2 processes x 4 CPU devices, whose draws were bitwise equal on both processes); write
results from process 0 only (``jax.process_index() == 0``). Patient sharding across hosts is
what this supports; ``chain_method="parallel"`` with a ``chains`` mesh axis across hosts is
untested. On CPUs, cross-process collectives use Gloo (JAX's
default), so the same works on a laptop with processes on the loopback address — which is
how ``tests/test_sharding.py`` tests it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from bayesbio.errors import OptionError

__all__ = ["ClusterConfig", "cluster_config", "initialize"]

_PREFIXES = ("BAYESBIO_", "JAX_")


@dataclass(frozen=True)
class ClusterConfig:
    """How this process joins the others (from :func:`cluster_config`)."""

    source: str  # "explicit" or "slurm"
    num_processes: int
    process_id: int
    coordinator_address: str | None = None  # None: found by JAX's cluster detection
    local_device_ids: tuple[int, ...] | None = None


def _get(environ: Mapping[str, str], name: str) -> tuple[str | None, str | None]:
    for prefix in _PREFIXES:
        value = environ.get(prefix + name)
        if value not in (None, ""):
            return value, prefix + name
    return None, None


def _int(value: str, name: str, minimum: int) -> int:
    try:
        out = int(value)
    except ValueError:
        raise OptionError(f"{name}: expected an integer; got {value!r}") from None
    if out < minimum:
        raise OptionError(f"{name}: expected an integer >= {minimum}; got {out}")
    return out


def cluster_config(environ: Mapping[str, str] | None = None) -> ClusterConfig | None:
    """The multi-process setting described by ``environ`` (default ``os.environ``), or None
    for a single process. A pure function of the environment (see the module docstring)."""
    environ = os.environ if environ is None else environ
    address, address_name = _get(environ, "COORDINATOR_ADDRESS")
    count, count_name = _get(environ, "NUM_PROCESSES")
    pid, pid_name = _get(environ, "PROCESS_ID")
    if address is not None or count is not None or pid is not None:
        missing = [f"BAYESBIO_{n}" for n, v in
                   (("COORDINATOR_ADDRESS", address), ("NUM_PROCESSES", count), ("PROCESS_ID", pid)) if v is None]
        if missing:
            raise OptionError(
                f"distributed: {', '.join(missing)} not set; the explicit setting needs the coordinator address "
                "(host:port of process 0), the number of processes and this process's id"
            )
        if ":" not in address:
            raise OptionError(f"{address_name}: expected host:port of process 0; got {address!r}")
        n = _int(count, count_name, 1)
        i = _int(pid, pid_name, 0)
        if i >= n:
            raise OptionError(f"{pid_name}: must be below {count_name}={n}; got {i}")
        ids, ids_name = _get(environ, "LOCAL_DEVICE_IDS")
        local = tuple(_int(x.strip(), ids_name, 0) for x in ids.split(",")) if ids else None
        return ClusterConfig("explicit", n, i, address, local)
    slurm = ("SLURM_NTASKS", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_JOB_ID")
    if all(environ.get(k) for k in slurm):
        n = _int(environ["SLURM_NTASKS"], "SLURM_NTASKS", 1)
        if n > 1:
            return ClusterConfig("slurm", n, _int(environ["SLURM_PROCID"], "SLURM_PROCID", 0))
    return None


def initialize(environ: Mapping[str, str] | None = None, *, timeout: int = 300) -> ClusterConfig | None:
    """Join the other processes with :func:`jax.distributed.initialize`, configured by
    :func:`cluster_config`; does nothing for a single process or when already initialised.

    Must run before anything else uses JAX (a device query, an array, a computation).

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (default ``os.environ``).
    timeout : int
        Seconds to wait for every process to join.

    Returns
    -------
    ClusterConfig or None
        The setting used (None: single process).
    """
    import jax

    config = cluster_config(environ)
    if config is None or jax.distributed.is_initialized():
        return config
    kwargs: dict = {"initialization_timeout": int(timeout)}
    if config.source == "slurm":
        kwargs["cluster_detection_method"] = "slurm"
    else:
        kwargs.update(
            coordinator_address=config.coordinator_address, num_processes=config.num_processes,
            process_id=config.process_id,
        )
        if config.local_device_ids is not None:
            kwargs["local_device_ids"] = list(config.local_device_ids)
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as exc:
        if "before" in str(exc).lower():
            raise OptionError(
                "distributed: bayesbio.distributed.initialize() must run before anything else uses JAX "
                f"(JAX said: {exc})"
            ) from exc
        raise
    return config

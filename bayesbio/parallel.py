"""Device meshes for bayesbio: which devices hold which patients and which chains.

bayesbio does not schedule devices itself: it builds a :class:`jax.sharding.Mesh` with two
named axes and lets JAX/XLA do the rest (``jax.shard_map`` for the per-device work, XLA
collectives for the reductions):

``"chains"`` (:data:`CHAIN_AXIS`)
    independent NUTS chains; each row of devices along this axis runs its own chain, with
    no communication between chains (``chain_method="parallel"`` of
    :func:`bayesbio.sample_nuts`; :class:`ChainRows`);
``"patients"`` (:data:`PATIENT_AXIS`)
    the patient axis of a population likelihood
    (:func:`bayesbio.population.solve_population`): each device solves its own block of
    patients — its own adaptive ODE loops, with no cross-device synchronisation per step —
    and the log density and its gradient are reduced across the axis by XLA collectives.

A mesh is made active with JAX's own context manager, :func:`jax.set_mesh` (or
:func:`use_mesh`, the same with a check), outside of ``jax.jit``; every population solve
traced inside the context is sharded along ``"patients"``. :func:`bayesbio.sample_nuts` does
this for you with ``devices=`` / ``mesh=`` (and the command line with ``--devices N``).

Devices
-------
The mesh spans ``jax.devices()``: all devices of all processes. On one machine that is the
local devices: GPUs, or CPU "devices" made with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before JAX starts; the command
line sets one per core). On several machines, call
:func:`bayesbio.distributed.initialize` first (see :mod:`bayesbio.distributed`): the mesh
then spans every process's devices and the same script runs unchanged on every node.

Examples
--------
>>> import bayesbio as bb
>>> mesh = bb.make_mesh(1)
>>> dict(mesh.shape)
{'chains': 1, 'patients': 1}
"""

from __future__ import annotations

import contextlib
import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from bayesbio.errors import OptionError, describe

__all__ = [
    "CHAIN_AXIS", "PATIENT_AXIS", "ChainRows", "active_mesh", "chain_groups", "make_mesh", "resolve_mesh",
    "run_with_mesh", "use_mesh",
]

CHAIN_AXIS = "chains"
PATIENT_AXIS = "patients"


def _resolve_devices(devices) -> list:
    available = jax.devices()
    if devices is None:
        return list(available)
    if isinstance(devices, bool):
        raise OptionError(f"'devices' must be a positive integer or a list of JAX devices; got {describe(devices)}")
    if isinstance(devices, (int, np.integer)):
        n = int(devices)
        if n < 1:
            raise OptionError(f"'devices' must be a positive integer; got {n}")
        if n > len(available):
            platform = available[0].platform
            hint = (
                " (set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts to get N CPU "
                "devices)" if platform == "cpu" else ""
            )
            raise OptionError(
                f"'devices': asked for {n} devices but JAX sees {len(available)} {platform} device(s)"
                f"{hint}"
            )
        return list(available[:n])
    try:
        out = list(devices)
    except TypeError:
        raise OptionError(f"'devices' must be a positive integer or a list of JAX devices; got {describe(devices)}") from None
    if not out or not all(isinstance(d, jax.Device) for d in out):
        raise OptionError(f"'devices' must be a positive integer or a non-empty list of JAX devices; got {out!r}")
    return out


def make_mesh(devices=None, *, chains: int = 1) -> Mesh:
    """A ``(chains, patients)`` device mesh.

    Parameters
    ----------
    devices : int, sequence of jax.Device or None
        The first ``devices`` of ``jax.devices()``, these devices, or all of them (None).
    chains : int
        Size of the ``"chains"`` axis: chains running side by side, each on
        ``len(devices) // chains`` devices that share its patients. Must divide the number of
        devices.

    Returns
    -------
    jax.sharding.Mesh
        Axes ``("chains", "patients")``, both of type ``AxisType.Auto`` (XLA propagates the
        shardings; nothing changes for code that does not use them).
    """
    devs = _resolve_devices(devices)
    if isinstance(chains, bool) or not isinstance(chains, (int, np.integer)) or chains < 1:
        raise OptionError(f"'chains' (chain devices) must be a positive integer; got {describe(chains)}")
    if len(devs) % int(chains):
        raise OptionError(
            f"'chains' (chain devices) must divide the number of devices {len(devs)}; got {chains}"
        )
    shape = (int(chains), len(devs) // int(chains))
    return Mesh(
        np.asarray(devs, dtype=object).reshape(shape), (CHAIN_AXIS, PATIENT_AXIS),
        axis_types=(AxisType.Auto, AxisType.Auto),
    )


def check_mesh(mesh) -> Mesh:
    """``mesh`` if it is a :class:`jax.sharding.Mesh` with a ``"patients"`` axis."""
    if not isinstance(mesh, Mesh):
        raise OptionError(f"'mesh' must be a jax.sharding.Mesh (see bayesbio.make_mesh); got {describe(mesh)}")
    if PATIENT_AXIS not in mesh.axis_names:
        raise OptionError(
            f"'mesh' must have an axis named {PATIENT_AXIS!r} (and optionally {CHAIN_AXIS!r}); got axes "
            f"{tuple(mesh.axis_names)}"
        )
    unknown = [a for a in mesh.axis_names if a not in (PATIENT_AXIS, CHAIN_AXIS)]
    if unknown:
        raise OptionError(f"'mesh': unexpected axis names {unknown}; bayesbio uses {(CHAIN_AXIS, PATIENT_AXIS)}")
    return mesh


def resolve_mesh(devices=None, mesh=None, *, chains: int = 1) -> Mesh | None:
    """The mesh asked for by ``devices=`` / ``mesh=`` (at most one of them), or None."""
    if devices is not None and mesh is not None:
        raise OptionError("give 'devices' or 'mesh', not both")
    if mesh is not None:
        return check_mesh(mesh)
    if devices is None:
        return None
    return make_mesh(devices, chains=chains)


def run_with_mesh(runner, arguments: dict):
    """``runner(**arguments)`` under the mesh its ``devices``/``mesh`` arguments ask for.

    The hook of the runners (e.g. :func:`bayesbio.sample_nuts`): they call it with their own
    arguments when ``devices`` or ``mesh`` is given; it resolves the mesh, makes it active
    (:func:`jax.set_mesh`) and calls the runner again without them."""
    arguments = dict(arguments)
    mesh = resolve_mesh(arguments.pop("devices", None), arguments.pop("mesh", None))
    with use_mesh(mesh):
        return runner(**arguments)


@contextlib.contextmanager
def use_mesh(mesh: Mesh):
    """Make ``mesh`` the active mesh (JAX's :func:`jax.set_mesh`) inside the ``with`` block."""
    mesh = check_mesh(mesh)
    with jax.set_mesh(mesh):
        yield mesh


def active_mesh() -> Mesh | None:
    """The concrete mesh set by :func:`jax.set_mesh` if it has a ``"patients"`` axis, else None.

    Outside of ``jax.jit`` only (it is how the runners learn the mesh)."""
    mesh = jax.sharding.get_mesh()
    if mesh.empty or PATIENT_AXIS not in mesh.axis_names:
        return None
    return mesh


def chain_groups(chains: int, mesh: Mesh) -> list[np.ndarray]:
    """Chain indices run together: groups of the ``"chains"`` axis size."""
    width = dict(mesh.shape).get(CHAIN_AXIS, 1)
    return [np.arange(chains)[i : i + width] for i in range(0, chains, width)]


class ChainRows:
    """Chains spread over the rows of the mesh: chain ``i`` of a group runs on row ``i`` (the
    devices ``mesh.devices[i]``), whose devices share that chain's patients.

    Each row gets its own compiled program (``fn`` jitted, traced under the row's
    ``(1, patients)`` mesh) and the rows are dispatched asynchronously, so they run side by
    side and never wait for each other. One program for all rows (a ``shard_map`` manual in
    ``"chains"``) would not do: NUTS trees of different lengths are data-dependent loops, and
    XLA's cross-device collectives inside them (re-laying out the padded patients) would make
    the rows wait for each other — on CPUs they deadlock.

    Call it like the mapped chunk of the NUTS runner: ``rows(state, chain_ids, *shared)`` with
    a leading chain axis (at most the number of rows) on ``state`` and ``chain_ids``; returns
    the outputs stacked along that axis, as NumPy arrays.
    """

    def __init__(self, fn, mesh: Mesh):
        mesh = check_mesh(mesh)
        devices = np.asarray(mesh.devices).reshape(-1, patient_shards(mesh))
        self.rows = [
            Mesh(devices[i : i + 1], (CHAIN_AXIS, PATIENT_AXIS), axis_types=(AxisType.Auto, AxisType.Auto))
            for i in range(devices.shape[0])
        ]
        self.fn = jax.jit(fn)
        self._placed: dict = {}

    def _replicated(self, row: int, tree):
        return jax.device_put(tree, NamedSharding(self.rows[row], PartitionSpec()))

    def _shared(self, row: int, shared):
        key = (row, tuple(id(x) for x in jax.tree_util.tree_leaves(shared)))
        if key not in self._placed:  # the data: put once on each row
            self._placed[key] = (shared, self._replicated(row, shared))
        return self._placed[key][1]

    def __call__(self, state, chain_ids, *shared):
        n = int(np.shape(chain_ids)[0])
        if n > len(self.rows):
            raise ValueError(f"ChainRows: {n} chains for {len(self.rows)} rows of devices")
        pending = []
        for i in range(n):
            row_state = self._replicated(i, jax.tree_util.tree_map(lambda x, i=i: x[i : i + 1], state))
            row_ids = self._replicated(i, chain_ids[i : i + 1])
            placed = [self._shared(i, x) if _is_large(x) else self._replicated(i, x) for x in shared]
            with jax.set_mesh(self.rows[i]):
                pending.append(self.fn(row_state, row_ids, *placed))  # asynchronous dispatch
        done = jax.device_get(pending)
        return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *done)


def _is_large(x) -> bool:
    """Data worth placing once per row (anything but scalars)."""
    return any(np.ndim(leaf) > 0 for leaf in jax.tree_util.tree_leaves(x))


def patient_shards(mesh: Mesh) -> int:
    """Number of devices along the ``"patients"`` axis."""
    return int(dict(mesh.shape).get(PATIENT_AXIS, 1))


def padded_size(n_patients: int, n_shards: int) -> int:
    """Smallest multiple of ``n_shards`` that is at least ``n_patients``."""
    return int(math.ceil(n_patients / n_shards) * n_shards)

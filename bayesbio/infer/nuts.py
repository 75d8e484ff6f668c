"""NUTS runner: NumPyro's NUTS kernel driven in compiled chunks.

The sampling loop runs as compiled ``lax.scan`` chunks of ``chunk_size`` iterations, so
Python is touched only between chunks (progress bar, timing, checkpoints). The same compiled
chunk serves warm-up and sampling (NumPyro's kernel switches adaptation off by iteration
count), so there is exactly one compilation per run.

Chain methods:

``"auto"`` (default)
    ``"parallel"`` when there are several CPU cores (or local accelerators) and several
    chains, else ``"sequential"``. On a 2-core CPU, lockstep vectorised chains measured slower
    than one chain per core, because every iteration waits for the longest NUTS trajectory
    (``benchmarks/README.md``).
``"vectorized"``
    all chains advance together in one ``vmap``-ed computation (per-op overhead amortised;
    chains wait for the longest trajectory of each iteration);
``"sequential"``
    one chain after the other, one compilation;
``"parallel"``
    chains run side by side, one per CPU core (one per accelerator where there are several):
    worker threads each take the next chain and run it through the same compiled program as
    ``"sequential"``, so the draws equal a sequential run's, bit for bit, and no chain waits for
    another (:mod:`bayesbio.infer._driver`).

Devices (``devices=`` / ``mesh=``, :mod:`bayesbio.parallel`): the run happens under a
``("chains", "patients")`` device mesh made active with :func:`jax.set_mesh`. Population
solves shard their patients over ``"patients"`` (:mod:`bayesbio.population.sharding`);
``"parallel"`` then runs one chain per row of devices along ``"chains"``
(:class:`bayesbio.parallel.ChainRows` instead of threads on one device), and ``"auto"`` means
``"parallel"`` when that axis is longer than 1, else ``"sequential"``.
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_uniform
from numpyro.infer.hmc import hmc
from numpyro.infer.util import ParamInfo, constrain_fn, initialize_model

from bayesbio.errors import ModelError, OptionError, describe
from bayesbio.infer._counting import counting_model as _counting_model
from bayesbio.infer._common import (
    FailureLog,
    check_positive_int,
    check_probability,
    check_seed,
    prepare,
    run_attrs,
    show_progress,
)
from bayesbio.infer import _driver
from bayesbio.infer._driver import one_chain, run_groups, tree_concat, tree_index
from bayesbio.infer._idata import build_inference_data
from bayesbio.infer._patients import add_patient_failures
from bayesbio.infer.checkpoint import load_checkpoint
from bayesbio.infer import whiten
from bayesbio.infer.prefit import PREFITS, laplace_prefit, map_prefit, prefit_points, svi_prefit

__all__ = ["CHAIN_METHODS", "DENSE_MASS_MAX_DIM", "sample_nuts"]

#: ``dense_mass="auto"`` adapts a dense mass matrix up to this many unconstrained latent
#: dimensions and a diagonal one above. Small mechanistic posteriors (rate constants, material
#: parameters, noise scales) are often strongly correlated, and a dense metric removes the
#: correlation NUTS would otherwise resolve with long trajectories: on the Lotka–Volterra (8
#: dimensions) and stiff Michaelis–Menten (4) benchmarks it cut the gradient evaluations of 4 x
#: 1000 draws 5.8x and 4.3x and raised the minimum bulk ESS 5.0x and 2.3x (benchmarks/README.md,
#: levers log). Above the limit (population models with per-patient random effects, discretised
#: fields) a d x d covariance has d(d+1)/2 entries to estimate from a few hundred warm-up draws
#: and costs O(d^2) per leapfrog step; dense metrics were not measured there, so the diagonal
#: stays.
DENSE_MASS_MAX_DIM = 32

CHAIN_METHODS = ("auto", "vectorized", "sequential", "parallel")

#: count solver failures inside the compiled chunks where the chain method allows it (False: always
#: through the host callback; the tests compare the two)
_IN_GRAPH_FAILURES = True
#: stream of the run's key reserved for the pre-fit (the other streams are unchanged by it)
_PREFIT_STREAM = 0x5F17


def _run_prefit(sampler, key, chains, prefit):
    """The pre-fit of a run seeded with ``key`` (None for ``prefit="none"``)."""
    key = jax.random.fold_in(key, _PREFIT_STREAM)
    if prefit == "map":
        return map_prefit(sampler.model, sampler.prepared.data, key, chains, init_strategy=sampler.init_strategy)
    if prefit == "laplace":
        return laplace_prefit(sampler.model, sampler.prepared.data, key, chains, init_strategy=sampler.init_strategy,
                              latent=sampler.prepared.latent, n_patients=sampler.prepared.n_patients)
    if prefit != "svi":
        return None
    return svi_prefit(
        sampler.model, data=sampler.prepared.data, key=key, chains=chains,
        init_strategy=sampler.init_strategy, latent=sampler.prepared.latent,
    )


class _Sampler:
    """Compiled NUTS chunks for one model and data."""

    def __init__(self, prepared, *, log, target_accept, dense_mass, max_tree_depth, warmup, init_strategy,
                 in_graph_failures=False):
        self.prepared = prepared
        #: patients counted one by one (population models, when counting failures), else None
        self.n_patients = prepared.n_patients if log is not None else None
        self.model = _counting_model(prepared.spec.model, log, self.n_patients)
        self.in_graph_failures = bool(in_graph_failures and log is not None)
        self.warmup = warmup
        self.options = dict(
            target_accept_prob=target_accept, dense_mass=dense_mass, max_tree_depth=max_tree_depth
        )
        self.init_strategy = init_strategy
        #: ``prefit="laplace"``: the whitening arrays (:mod:`bayesbio.infer.whiten`); the chains
        #: then move in whitened coordinates and the sampler's data is ``(data, whitening)``
        self.whitening = None

    def run_data(self):
        """What the compiled programs take as the model's data."""
        data = self.prepared.data
        return data if self.whitening is None else (data, self.whitening)

    def initial_states(self, key, chains, prefit=None):
        """Find valid starting points (one per chain) and initialise the kernel.

        With a :class:`~bayesbio.infer.prefit.Prefit`, each chain starts at its pre-fit draw
        (or the pre-fit mean where that draw has no finite log density and gradient) and
        warm-up at the pre-fit's diagonal inverse mass matrix. With a whitening pre-fit
        (``prefit="laplace"``) the kernel's potential is that of the whitened coordinates ``w``
        (a flat vector; ``x = to_x(w)``), warm-up starts from the identity metric there.

        NumPyro's ``initialize_model`` (model trace, search for finite initial points) and the
        kernel initialisation run inside one jitted function with the data as an argument: one
        program, which JAX's persistent compilation cache serves on a later start, instead of
        the model's ops dispatched one by one and a search loop compiled separately.
        """
        found = {}

        whitened = prefit is not None and prefit.whitening is not None
        if whitened:
            self.whitening = jax.tree_util.tree_map(jnp.asarray, prefit.whitening)

        def init_all(key, run_data, start, mean, inverse_mass):
            data, arrays = run_data if whitened else (run_data, None)
            # the random keys: a split of the run's key for the chains, the rest for predictions
            key_chains, key_predictive = jax.random.split(key)
            keys = jax.random.split(key_chains, chains * 2).reshape(chains, 2, -1)
            (z, pe, grad), potential_gen, _, _ = initialize_model(
                keys[:, 0],
                self.model,
                init_strategy=self.init_strategy,
                dynamic_args=True,
                model_args=(data,),
                model_kwargs={},
            )
            if whitened:
                unravel = ravel_pytree(jax.tree_util.tree_map(lambda v: v[0], z))[1]
                found.update(unravel=unravel)
                x_gen = potential_gen

                def potential_gen(run_data, **kwargs):
                    data, arrays = run_data
                    potential = x_gen(data, **kwargs)
                    return lambda w: potential(whiten.to_sites(arrays, unravel, w))

                to_w = jax.vmap(lambda z_: whiten.to_w(arrays, ravel_pytree(z_)[0]))
                z = to_w(z)
                start = to_w(start)
                mean = jnp.zeros_like(start[0])
            init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
            found.update(sample_kernel=sample_kernel)
            options = dict(self.options)
            if options["dense_mass"] == "auto":  # shapes are static: decided while tracing
                size = sum(int(np.prod(np.shape(leaf)[1:])) for leaf in jax.tree_util.tree_leaves(z))
                options["dense_mass"] = size <= DENSE_MASS_MAX_DIM
            found.update(dense_mass=options["dense_mass"])
            if whitened:  # the init strategy's points, their energies and gradients in w
                pe, grad = jax.vmap(jax.value_and_grad(potential_gen(run_data)))(z)
            if start is not None:
                z, pe, grad = prefit_points(potential_gen(run_data), start, mean, (z, pe, grad))
            if inverse_mass is not None:
                options["inverse_mass_matrix"] = jnp.diag(inverse_mass) if options["dense_mass"] else inverse_mass

            def init_one(param_info, key):
                return init_kernel(
                    param_info, self.warmup, model_args=(run_data,), model_kwargs={}, rng_key=key, **options
                )

            grad_flat = jax.vmap(lambda g: ravel_pytree(g)[0])(grad)
            valid = jnp.isfinite(pe) & jnp.all(jnp.isfinite(grad_flat), axis=-1)
            return jax.vmap(init_one)(ParamInfo(z, pe, grad), keys[:, 1]), valid, key_predictive

        args = (None, None, None) if prefit is None else (prefit.start, prefit.mean, prefit.inverse_mass)
        states, valid, key_predictive = jax.jit(init_all)(key, self.run_data(), *args)
        self.unravel = found.get("unravel")
        # the postprocessing generator made inside the trace may hold that trace's transforms
        # (e.g. a Uniform with array bounds): replay the model instead, outside any trace
        model = self.model
        self.postprocess_gen = lambda *args: partial(constrain_fn, model, args, {}, return_deterministic=True)
        self.sample_kernel = found["sample_kernel"]
        #: the metric actually adapted (``dense_mass="auto"`` resolved)
        self.dense_mass = bool(found["dense_mass"])
        valid = np.asarray(valid)
        if not valid.all():  # NumPyro's check, which it skips under jit
            raise ModelError(
                f"model '{self.prepared.spec.name}': no initial point with a finite log density and "
                f"gradient found in 100 tries for chain(s) {np.flatnonzero(~valid).tolist()}; check "
                "the priors, the data and the init_strategy"
            )
        return states, key_predictive

    def chunk_fn(self, chunk_size):
        """``chunk(state, chain, n_active, data) -> (state, out)``: ``out`` holds per-iteration
        arrays (leading axis ``chunk_size``); with in-graph counting of a population model also
        ``out["patient_failures"]``, the chunk's per-patient failure totals (``n_patients``)."""
        sample_kernel = self.sample_kernel
        in_graph = self.in_graph_failures
        n_patients = self.n_patients if in_graph else None

        def chunk(state, chain, n_active, data):
            def body(carry, k):
                s, patients = carry if n_patients is not None else (carry, None)
                counter = jax.new_ref(jnp.zeros((), jnp.int32)) if in_graph else None
                if n_patients is not None:
                    patient_counter = jax.new_ref(jnp.zeros((n_patients,), jnp.int32))

                def step(s):
                    kwargs = {"_bb_chain": chain, "_bb_iteration": s.i}
                    if in_graph:
                        kwargs["_bb_failures"] = counter
                    if n_patients is not None:
                        kwargs["_bb_patient_failures"] = patient_counter
                    return sample_kernel(s, model_args=(data,), model_kwargs=kwargs)

                s = jax.lax.cond(k < n_active, step, lambda s: s, s)
                out = {
                    "z": s.z,
                    "potential_energy": s.potential_energy,
                    "energy": s.energy,
                    "num_steps": s.num_steps,
                    "accept_prob": s.accept_prob,
                    "diverging": s.diverging,
                    "step_size": s.adapt_state.step_size,
                }
                if in_graph:  # failed solves of this iteration
                    out["failures"] = counter[...]
                if n_patients is not None:
                    return (s, patients + patient_counter[...]), out
                return s, out

            if n_patients is None:
                return jax.lax.scan(body, state, jnp.arange(chunk_size))
            start = (state, jnp.zeros((n_patients,), jnp.int32))
            (state, patients), out = jax.lax.scan(body, start, jnp.arange(chunk_size))
            return state, dict(out, patient_failures=patients)

        return chunk

    def sites(self, z):
        """The kernel's positions ``z`` (leading axis: chains) as site dicts on the unconstrained
        scale: unchanged without whitening, else mapped from the whitened coordinates."""
        if self.whitening is None:
            return z
        arrays, unravel = self.whitening, self.unravel
        return jax.vmap(lambda w: whiten.to_sites(arrays, unravel, w))(z)

    def constrain(self, z_draws):
        """Unconstrained draws (chains, draws, ...) -> constrained + deterministic sites."""
        fn = self.postprocess_gen(self.prepared.data)
        chains, draws = jax.tree_util.tree_leaves(z_draws)[0].shape[:2]
        if self.whitening is not None:  # whitened draws (chains, draws, n) -> site dicts
            z_draws = jax.jit(jax.vmap(self.sites))(z_draws)
        flat = jax.tree_util.tree_map(lambda x: x.reshape((chains * draws,) + x.shape[2:]), z_draws)
        out = jax.jit(jax.vmap(fn))(flat)
        return {k: np.asarray(v).reshape((chains, draws) + np.shape(v)[1:]) for k, v in out.items()}


def sample_nuts(
    model,
    data=None,
    *,
    chains: int = 4,
    warmup: int = 1000,
    samples: int = 1000,
    seed: int = 0,
    target_accept: float = 0.8,
    dense_mass: bool | str = "auto",
    max_tree_depth: int = 10,
    chain_method: str = "auto",
    chunk_size: int = 50,
    init_strategy=None,
    prefit: str | None = None,
    progress: bool | None = None,
    checkpoint: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    count_solver_failures: bool = True,
    dims=None,
    coords=None,
    devices=None,
    mesh=None,
):
    """Sample the posterior of a model with NUTS and return an ``arviz.InferenceData``.

    Parameters
    ----------
    model : str, ModelSpec or callable
        Bundled model name, path of a model script, a :class:`~bayesbio.ModelSpec`, or a
        NumPyro model function ``model(data)`` (then ``data`` is required).
    data : dict, path or None
        The data; ``None`` loads the model's bundled default, a path is given to its
        ``load_data``.
    chains, warmup, samples : int
        Number of chains, warm-up (adaptation) iterations per chain, kept draws per chain.
    seed : int
        Seed of every random choice (initial points, momenta, predictive draws).
    target_accept : float
        Target acceptance probability of step-size adaptation (raise it, e.g. 0.95, when
        there are divergences).
    dense_mass : bool or "auto"
        Adapt a dense (True) or diagonal (False) mass matrix. ``"auto"`` (default): dense for
        models with at most :data:`DENSE_MASS_MAX_DIM` unconstrained latent dimensions, diagonal
        above. The metric used is recorded in ``posterior.attrs["metric"]``.
    max_tree_depth : int
        Maximum NUTS tree depth (at most ``2**max_tree_depth - 1`` leapfrog steps).
    chain_method : {"auto", "vectorized", "sequential", "parallel"}
        How chains share the machine (see the module docstring).
    chunk_size : int
        Iterations per compiled chunk (progress and checkpoint granularity).
    init_strategy : callable, optional
        A NumPyro init strategy; default: the model script's ``init_strategy`` if it defines one,
        else uniform in (-2, 2) on the unconstrained scale, as Stan.
    prefit : {"none", "svi", "map", "laplace"}, optional
        ``"svi"``: a short mean-field variational fit before warm-up gives each chain its
        starting point and warm-up its initial (diagonal) inverse mass matrix; it starts from
        ``init_strategy``. For hierarchical models with many latent variables of very different
        posterior scales, where the first warm-up window would otherwise build very deep trees.
        ``"map"``: each chain starts at the best of several L-BFGS mode searches from
        ``init_strategy`` points, for posteriors with poor local modes that trap a chain
        (:mod:`bayesbio.infer.prefit`). ``"laplace"``: the ``"svi"`` fit, then the Hessian at
        its mean, measured as one block per patient plus the population parameters, whitens the
        coordinates NUTS moves in (:mod:`bayesbio.infer.whiten`; population models, best in the
        centred parameterisation when the data pin each patient down; falls back to ``"svi"``
        with a warning where that structure does not hold; not under a device mesh). Default:
        the model script's ``nuts_prefit``, else
        ``"none"``. It is deterministic given the seed, so a resumed run repeats it exactly.
    progress : bool, optional
        Show a progress bar; default only on an interactive terminal outside CI.
    checkpoint : path, optional
        File for sampler checkpoints (see :mod:`bayesbio.infer.checkpoint`).
    checkpoint_every : int, optional
        Save a checkpoint whenever the chains together ran at least this many iterations
        since the last one (checked at chunk boundaries, so a killed run loses at most
        ``checkpoint_every - 1 + chunk_size`` iterations; with ``"parallel"`` chains, at most
        ``checkpoint_every - 1 + workers * chunk_size`` in all). Requires ``checkpoint``.
    resume : bool
        Continue from ``checkpoint``; the draws are bit-identical to an uninterrupted run with
        the same seed and settings on the same machine.
    count_solver_failures : bool
        Count failed ODE/PDE solves per chain and draw (``sample_stats.solver_failures``).
        With ``"sequential"`` and ``"parallel"`` chains (the defaults) the count is kept inside
        the compiled sampler (a per-iteration ``jax.Ref`` counter), so the sampler program can
        be stored in JAX's persistent compilation cache. With ``"vectorized"`` chains, or a
        mesh, and for solves inside the model's own ``jax.vmap``, it travels through a host
        callback instead, and JAX never caches programs with host callbacks: set this to
        False there for the fastest second start (failures still reject their proposals; they
        are just not counted). Known limitation: with ``"vectorized"`` chains the count is an
        upper bound. On a model whose solves blow up it reported up to 8 failures per draw
        where sequential chains, with identical draws, report at most 1 (equal to the
        divergences); the lockstep loop over chains appears to count evaluations that the
        other chains' longer trajectories force but whose results are discarded.
        Population models are also counted per patient, per chain, over the whole run:
        ``sample_stats.patient_solver_failures`` (sampling) and
        ``warmup_patient_solver_failures``, dims ``(chain, patient)``; a patient counts 1 for
        each evaluation in which its solve failed (what is counted where, and the relation to
        the chain count: :mod:`bayesbio._patient_failures`).
    dims, coords : dict, optional
        Extra dims/coords for the InferenceData (added to the model's own).
    devices : int or sequence of jax.Device, optional
        Shard the patients of population models over this many devices (the first
        ``devices`` of ``jax.devices()``, or these devices); see :mod:`bayesbio.parallel`.
        Default: no mesh, everything as before.
    mesh : jax.sharding.Mesh, optional
        Instead of ``devices``: a mesh from :func:`bayesbio.make_mesh` (``chains=`` spreads
        chains over groups of devices with ``chain_method="parallel"``).

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior`` (run settings, versions and wall times in its attrs),
        ``sample_stats`` (``diverging``, ``solver_failures``, ``tree_depth``, ``step_size``,
        ..., and ``patient_solver_failures`` for population models), ``log_likelihood``,
        ``posterior_predictive`` and ``observed_data``.
    """
    if devices is not None or mesh is not None:  # run again under the mesh (bayesbio.parallel)
        arguments = dict(locals())
        from bayesbio.parallel import run_with_mesh

        return run_with_mesh(sample_nuts, arguments)
    chains = check_positive_int("chains", chains)
    warmup = check_positive_int("warmup", warmup, minimum=0)
    samples = check_positive_int("samples", samples)
    seed = check_seed(seed)
    target_accept = check_probability("target_accept", target_accept)
    max_tree_depth = check_positive_int("max_tree_depth", max_tree_depth)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if chain_method not in CHAIN_METHODS:
        raise OptionError(f"'chain_method' must be one of {list(CHAIN_METHODS)}; got {describe(chain_method)}")
    if not (isinstance(dense_mass, bool) or (isinstance(dense_mass, str) and dense_mass == "auto")):
        raise OptionError(f"'dense_mass' must be True, False or 'auto'; got {describe(dense_mass)}")
    if prefit is not None and prefit not in PREFITS:
        raise OptionError(f"'prefit' must be one of {list(PREFITS)}; got {describe(prefit)}")
    from bayesbio.parallel import CHAIN_AXIS, active_mesh

    active = active_mesh()
    chain_width = dict(active.shape).get(CHAIN_AXIS, 1) if active is not None else None
    if chain_method == "auto" and active is not None:
        chain_method = "parallel" if chain_width > 1 and chains > 1 else "sequential"
    if chain_method == "auto":
        chain_method = "parallel" if _driver.parallel_workers() > 1 and chains > 1 else "sequential"
    if (checkpoint_every is not None or resume) and checkpoint is None:
        raise OptionError("'checkpoint' (a file path) is required with checkpoint_every or resume")
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)

    t_start = time.perf_counter()
    prepared = prepare(model, data, dims=dims, coords=coords)
    log = FailureLog(warmup=warmup) if count_solver_failures else None
    # failures counted inside the compiled chunk (no host callback: the chunk can come from JAX's
    # persistent cache) wherever a chunk runs one chain unbatched: "sequential" and threaded "parallel"
    in_graph = _IN_GRAPH_FAILURES and (chain_method == "sequential" or (chain_method == "parallel" and active is None))
    sampler = _Sampler(
        prepared, log=log, target_accept=target_accept, dense_mass=dense_mass,
        max_tree_depth=max_tree_depth, warmup=warmup,
        init_strategy=init_strategy or prepared.spec.init_strategy or init_to_uniform(radius=2.0),
        in_graph_failures=in_graph,
    )
    key = jax.random.PRNGKey(seed)
    prefit = prefit or prepared.spec.prefit or "none"
    if active is not None and prefit == "laplace":
        raise OptionError("prefit='laplace' does not run under a device mesh (devices= / mesh=) yet; "
                          "use prefit='svi' there")
    # also on resume: chain groups that had not started when the run stopped start from it
    fitted = _run_prefit(sampler, key, chains, prefit)
    # on the host: slicing chain groups then runs no device programs
    states, key_predictive = jax.device_get(sampler.initial_states(key, chains, prefit=fitted))
    chunk = sampler.chunk_fn(chunk_size)
    data = sampler.run_data()
    chain_ids = np.arange(chains, dtype=np.int32)
    rows = chain_method == "parallel" and active is not None  # one chain per row of the mesh
    workers = 1  # groups of chains running side by side (threads of the driver)
    if chain_method == "vectorized":
        groups = [np.arange(chains)]
        mapped = jax.vmap(chunk, in_axes=(0, 0, None, None))
    elif rows:
        from bayesbio.parallel import ChainRows, chain_groups

        groups = chain_groups(chains, active)
        mapped = ChainRows(jax.vmap(chunk, in_axes=(0, 0, None, None)), active)
    else:  # "sequential", or "parallel": one chain per group, `workers` groups at a time
        groups = [np.array([c]) for c in range(chains)]
        mapped = one_chain(chunk)
        if chain_method == "parallel":
            workers = min(chains, _driver.parallel_workers())
    devices = _driver.worker_devices(workers) if chain_method == "parallel" and not rows else [None]
    placed = {None: data}  # the data on each worker's device

    def on(device, tree):
        return tree if device is None else jax.device_put(tree, device)

    compiled = {}

    def compile_for(size, device):
        if (size, device) not in compiled:
            example = tree_index(states, slice(0, size))
            if rows:
                compiled[size, device] = mapped  # ChainRows compiles on first call
                jax.block_until_ready(mapped(example, chain_ids[:size], np.int32(0), data))
            else:
                placed.setdefault(device, on(device, data))
                args = on(device, (example, chain_ids[:size], np.int32(0)))
                compiled[size, device] = jax.jit(mapped).lower(*args, placed[device]).compile()
        return compiled[size, device]

    for g in groups:
        for device in dict.fromkeys(devices):
            compile_for(len(g), device)
    t_compiled = time.perf_counter()

    def call(worker, state, g, n):
        device = devices[worker % len(devices)]
        fn = compile_for(len(g), device)
        ids = chain_ids[int(g[0]) : int(g[-1]) + 1]
        state, out = fn(*on(device, (state, ids, np.int32(n))), placed[device])
        return state, jax.device_get(out)

    total = warmup + samples
    use_bar = show_progress(progress)
    bar = None
    if use_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=total * len(groups), desc=f"NUTS {chain_method} x{chains}", unit="it")

    identity = dict(
        model=prepared.spec.name, data_fingerprint=prepared.fingerprint, seed=seed,
        settings=dict(chains=chains, warmup=warmup, samples=samples, target_accept=target_accept,
                      dense_mass=dense_mass, max_tree_depth=max_tree_depth,
                      chain_method=chain_method, chunk_size=chunk_size, prefit=prefit),
    )
    if active is not None:  # the mesh shape is part of a run's identity (checkpoints, attrs)
        identity["settings"]["mesh"] = {str(k): int(v) for k, v in dict(active.shape).items()}
    saved = None
    if resume:
        saved = load_checkpoint(checkpoint, expect=identity)
        if log is not None:
            log.restore(saved)
        if bar is not None:
            bar.update(sum(int(p["done"]) for p in saved["groups"].values()))

    def failure_tallies(done):  # the host-side tallies of the completed iterations, for a checkpoint
        return log.snapshot(done) if log is not None else dict(failures={}, patient_failures={})

    result = run_groups(
        groups=groups, call=call,
        initial_state=lambda gi: tree_index(states, slice(int(groups[gi][0]), int(groups[gi][-1]) + 1)),
        warmup=warmup, total=total, chunk_size=chunk_size, workers=workers, n_chains=chains,
        n_patients=sampler.n_patients, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
        checkpoint_extra=failure_tallies, identity=identity, resumed=saved,
        on_chunk=bar.update if bar is not None else None,
    )
    if bar is not None:
        bar.close()
    warmup_seconds, sampling_seconds = result.warmup_seconds, result.sampling_seconds
    warmup_counted, patients_counted = result.warmup_failures, result.patient_failures
    draws = tree_concat(result.kept, axis=0)

    posterior = sampler.constrain(draws["z"])
    counted = log if log is not None else FailureLog()  # an empty tally when not counting
    failures = counted.per_draw(chains, warmup, samples)
    warmup_failures = counted.per_draw(chains, 0, warmup).sum(axis=1) if warmup else np.zeros(chains, int)
    if "failures" in draws:  # counted in the compiled chunks (plus any host-counted ones above)
        failures = failures + np.asarray(draws["failures"], dtype=np.int64)
        warmup_failures = warmup_failures + warmup_counted
    num_steps = np.asarray(draws["num_steps"])
    tree_depth = np.ceil(np.log2(num_steps + 1)).astype(np.int64)
    sample_stats = {
        "lp": -np.asarray(draws["potential_energy"]),
        "energy": np.asarray(draws["energy"]),
        "diverging": np.asarray(draws["diverging"]),
        "n_steps": num_steps,
        "tree_depth": tree_depth,
        "reached_max_treedepth": tree_depth >= max_tree_depth,
        "acceptance_rate": np.asarray(draws["accept_prob"]),
        "step_size": np.asarray(draws["step_size"]),
    }
    if count_solver_failures:
        sample_stats["solver_failures"] = failures
    timings = {
        # includes the pre-fit, if any (also given alone as prefit_seconds)
        "compile_seconds": t_compiled - t_start,
        "prefit_seconds": fitted.seconds if fitted is not None else 0.0,
        "warmup_seconds": warmup_seconds,
        "sampling_seconds": sampling_seconds,
    }
    settings = identity["settings"]
    attrs = run_attrs(prepared, "nuts", settings, seed, timings)
    attrs["gradient_evaluations"] = int(num_steps.sum())
    attrs["parallel_workers"] = workers
    attrs["metric"] = ("dense" if sampler.dense_mass else "diagonal") + (
        ", in Laplace-whitened coordinates" if sampler.whitening is not None else "")
    attrs["warmup_solver_failures"] = int(warmup_failures.sum())
    attrs["solver_failures_counted"] = int(count_solver_failures)
    t_post = time.perf_counter()
    idata = build_inference_data(
        prepared, posterior, sample_stats=sample_stats, attrs=attrs, rng_key=key_predictive,
        per_chain_stats={"warmup_solver_failures": warmup_failures} if count_solver_failures else None,
    )
    if count_solver_failures and sampler.n_patients is not None:
        add_patient_failures(idata, prepared, {
            phase: patients_counted[phase] + counted.per_patient(chains, sampler.n_patients, phase)
            for phase in ("warmup", "sampling")
        })
    idata.posterior.attrs["postprocess_seconds"] = time.perf_counter() - t_post
    return idata

"""Fit many simulated data sets of one model with NUTS, compiled once.

:func:`bayesbio.sample_nuts` compiles its sampler for one data set and builds a full
InferenceData (log-likelihood, posterior predictive), which is what a user wants from one fit
and far too much for hundreds of SBC fits. Here NumPyro's NUTS kernel
(:func:`numpyro.infer.hmc.hmc`) runs on a model whose observed values are *arguments*
(``numpyro.handlers.condition``), so one compiled program fits every replication; a batch of
replications is fitted together with ``vmap``, and several batches at once by worker threads
(XLA's CPU client runs each thread's call on its own core) or by worker processes, each with
its own fitter (:mod:`bayesbio.sbc.processes`).

Each fit starts, as :func:`bayesbio.sample_nuts` does, from the model script's
``init_strategy`` when it defines one, else from a point drawn uniformly in ``(-2, 2)`` on the
unconstrained scale (redrawn until the log density and its gradient are finite). Where no such
uniform point is found (a prior whose support within that box puts the data outside the model's
domain, e.g. a Gent locking stretch ``Jm`` below the data's ``I1 - 3``), the chain starts from
a prior draw instead (``init_to_sample``): its truth is a prior draw too, so this start is as
legitimate, and only fits that need it use it. With the setting ``init="truth"`` every chain
starts at its replication's true parameters instead (see :class:`~bayesbio.sbc.SBCSettings`
for what that does and does not check). For a model whose script sets ``nuts_prefit = "svi"``
(or with the setting ``prefit="svi"``), each chain first runs the mean-field SVI pre-fit, as
:func:`bayesbio.sample_nuts` does, inside the compiled fit: it starts at a draw from that
approximation (or its mean, or the point above, whichever first has a finite log density and
gradient) and warm-up starts from its variances as the inverse mass matrix. With ``prefit="map"``
each chain starts at the best of several L-BFGS mode searches, each from a start as above. Then
NUTS adapts step size and mass matrix during warm-up and keeps every ``thin``-th draw.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import init_to_sample, init_to_uniform, init_to_value
from numpyro.infer.hmc import hmc
from numpyro.infer.util import ParamInfo, find_valid_initial_params, initialize_model

from bayesbio.infer._common import Prepared
from bayesbio.infer.prefit import MAP_STARTS, best_start, prefit_points, svi_fit_traced
from bayesbio.sbc.settings import SBCSettings

__all__ = ["BatchFitter", "FitResult"]

#: Tries at finding a finite initial point per chain before the chain is marked as failed.
INIT_TRIES = 100


@dataclass(frozen=True)
class FitResult:
    """Thinned posterior draws ``draws[name]``: (fits, chains * draws, ...), and per fit the
    post-warm-up divergences, mean leapfrog steps per iteration and whether every chain found a
    finite starting point. ``replications``: the replication of each fit, in increasing order
    (None: the first ``len(divergences)`` replications)."""

    draws: dict[str, np.ndarray]
    divergences: np.ndarray
    mean_steps: np.ndarray
    init_ok: np.ndarray
    replications: np.ndarray | None = None

    def indices(self) -> np.ndarray:
        """The replication of each fit (``replications``, else ``0 .. n - 1``)."""
        if self.replications is None:
            return np.arange(len(self.divergences))
        return np.asarray(self.replications, dtype=np.int64)


class BatchFitter:
    """One compiled NUTS fit, reused for every simulated data set of a model."""

    def __init__(self, prepared: Prepared, observed: list[str], params: list[str], settings: SBCSettings,
                 example_obs: dict[str, np.ndarray]):
        self.prepared = prepared
        self.params = params
        self.settings = settings

        def conditioned(data, obs):
            return handlers.condition(prepared.spec.model, data=obs)(data)

        self._conditioned = conditioned
        self._init_strategy = prepared.spec.init_strategy
        # only the structure (sites, shapes, transforms) is taken from here; a prior draw is
        # the start most likely to be valid whatever the model's support
        info, potential_gen, postprocess_gen, _ = initialize_model(
            jax.random.PRNGKey(0), conditioned, init_strategy=self._init_strategy or init_to_sample,
            dynamic_args=True, model_args=(prepared.data, example_obs),
        )
        self._flat0, self._unravel = ravel_pytree(info.z)
        self._latent = sorted(info.z)
        self._prefit = settings.prefit or "none"
        self._potential_gen = potential_gen
        self._postprocess_gen = postprocess_gen
        self._init_kernel, self._sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
        self._compiled: tuple | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ one fit, traced

    def _initial_point(self, key, data, obs):
        if self._init_strategy is not None:  # the model script's own start, as sample_nuts
            return self._strategy_point(key, data, obs, self._init_strategy)
        info, ok = self._uniform_point(key, data, obs)
        # no finite point in the (-2, 2) box after INIT_TRIES draws: start from a prior draw
        return jax.lax.cond(ok, lambda: (info, ok),
                            lambda: self._strategy_point(jax.random.fold_in(key, 1), data, obs, init_to_sample))

    def _strategy_point(self, key, data, obs, strategy):
        info, ok = find_valid_initial_params(key, self._conditioned, init_strategy=strategy, model_args=(data, obs),
                                             prototype_params=self._unravel(self._flat0))
        return ParamInfo(*info), ok

    def _prefit_point(self, key, data, obs, found):
        """The pre-fit's start (a draw, else its mean, else ``found``) and inverse mass diagonal."""
        key_fit, key_draw = jax.random.split(key)
        mean, scale = svi_fit_traced(self._conditioned, (data, obs), key_fit, latent=self._latent,
                                     init_strategy=self._init_strategy or init_to_uniform(radius=2.0))
        keys = jax.random.split(key_draw, len(self._latent))
        start = {n: (mean[n] + scale[n] * jax.random.normal(k, jnp.shape(mean[n]), jnp.result_type(mean[n])))[None]
                 for k, n in zip(keys, self._latent)}
        lead = jax.tree_util.tree_map(lambda x: x[None], (found.z, found.potential_energy, found.z_grad))
        z, pe, grad = jax.tree_util.tree_map(lambda x: x[0], prefit_points(self._potential_gen(data, obs), start,
                                                                           mean, lead))
        ok = jnp.isfinite(pe) & jnp.all(jnp.isfinite(ravel_pytree(grad)[0]))
        inverse_mass = jnp.clip(ravel_pytree(scale)[0], 1e-6, 1e3) ** 2
        return ParamInfo(z, pe, grad), ok, inverse_mass

    def _map_point(self, key, data, obs, found):
        """The best of ``MAP_STARTS`` mode searches, each from an :meth:`_initial_point` (else
        ``found``), as ``sample_nuts(prefit="map")``."""
        keys = jax.random.split(key, MAP_STARTS)
        starts, _ = jax.vmap(lambda k: self._initial_point(k, data, obs))(keys)
        x0s = jax.vmap(lambda z: ravel_pytree(z)[0])(starts.z)
        potential = self._potential_gen(data, obs)
        x, _ = best_start(lambda flat: potential(self._unravel(flat)), x0s)
        best = self._unravel(x)
        lead = jax.tree_util.tree_map(lambda v: v[None], (found.z, found.potential_energy, found.z_grad))
        z, pe, grad = jax.tree_util.tree_map(
            lambda v: v[0], prefit_points(potential, jax.tree_util.tree_map(lambda v: v[None], best), best, lead))
        ok = jnp.isfinite(pe) & jnp.all(jnp.isfinite(ravel_pytree(grad)[0]))
        return ParamInfo(z, pe, grad), ok

    def _uniform_point(self, key, data, obs):
        potential = self._potential_gen(data, obs)
        unravel = self._unravel
        value_and_grad = jax.value_and_grad(lambda flat: potential(unravel(flat)))
        n, dtype = self._flat0.shape[0], self._flat0.dtype

        def finite(pe, grad):
            return jnp.isfinite(pe) & jnp.all(jnp.isfinite(grad))

        def cond(carry):
            i, _, _, pe, grad = carry
            return (i < INIT_TRIES) & ~finite(pe, grad)

        def body(carry):
            i, key, _, _, _ = carry
            key, sub = jax.random.split(key)
            flat = jax.random.uniform(sub, (n,), dtype=dtype, minval=-2.0, maxval=2.0)
            pe, grad = value_and_grad(flat)
            return i + 1, key, flat, pe, grad

        init = (0, key, jnp.zeros(n, dtype), jnp.array(jnp.inf, dtype), jnp.zeros(n, dtype))
        _, _, flat, pe, grad = jax.lax.while_loop(cond, body, init)
        return ParamInfo(unravel(flat), pe, unravel(grad)), finite(pe, grad)

    def _one_chain(self, key, data, obs, truth=None):
        s = self.settings
        key_init, key_kernel = jax.random.split(key)
        options = {}
        if truth is None:
            param_info, ok = self._initial_point(key_init, data, obs)
            if self._prefit == "svi":
                param_info, ok, inverse_mass = self._prefit_point(jax.random.fold_in(key_init, 1), data, obs,
                                                                  param_info)
                options["inverse_mass_matrix"] = jnp.diag(inverse_mass) if s.dense_mass else inverse_mass
            elif self._prefit == "map":
                param_info, ok = self._map_point(jax.random.fold_in(key_init, 1), data, obs, param_info)
        else:  # settings.init == "truth": start at the replication's true parameters
            param_info, ok = self._strategy_point(key_init, data, obs, init_to_value(values=truth))
        state = self._init_kernel(
            param_info, s.warmup, model_args=(data, obs), rng_key=key_kernel,
            target_accept_prob=s.target_accept, dense_mass=s.dense_mass, max_tree_depth=s.max_tree_depth,
            **options,
        )
        sample = self._sample_kernel

        def warm(st, _):
            return sample(st, model_args=(data, obs)), None

        def keep(st, _):
            def step(st, _):
                st = sample(st, model_args=(data, obs))
                return st, (st.diverging, st.num_steps)

            st, (div, steps) = jax.lax.scan(step, st, None, length=s.thin)
            return st, (st.z, div.sum(), steps.sum())

        if s.warmup:
            state, _ = jax.lax.scan(warm, state, None, length=s.warmup)
        state, (zs, div, steps) = jax.lax.scan(keep, state, None, length=s.draws)
        constrained = jax.vmap(self._postprocess_gen(data, obs))(zs)
        draws = {k: constrained[k] for k in self.params}
        return draws, div.sum(), steps.sum() / (s.draws * s.thin), ok

    def _one_fit(self, key, data, obs, truth=None):
        keys = jax.random.split(key, self.settings.chains)
        draws, div, steps, ok = jax.vmap(lambda k: self._one_chain(k, data, obs, truth))(keys)
        draws = {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}  # pool the chains
        return draws, div.sum(), steps.mean(), jnp.all(ok)

    # ------------------------------------------------------------------ many fits

    def fit(self, keys, observations: dict[str, np.ndarray], *, truths: dict[str, np.ndarray] | None = None,
            on_batch: Callable[[int], None] | None = None, done: FitResult | None = None,
            on_progress: Callable[[FitResult], None] | None = None, workers: int = 1,
            processes: Callable[[], "BatchFitter"] | None = None) -> FitResult:
        """Fit replication ``i`` (data ``observations[k][i]``) with ``keys[i]``, a batch at a time
        (batch ``j``: replications ``j * batch`` up to ``(j + 1) * batch``); with ``truths`` (every
        latent site, (reps, ...)), each fit's chains start there.

        ``done``: fits of whole batches from an earlier, interrupted run with the same keys and
        data (any batches, see ``FitResult.replications``); they are kept and not refitted.
        ``on_progress`` is called after every batch with all fits finished so far (to save them).
        ``workers``: batches fitted at once, each by its own thread through the one compiled
        program (XLA's CPU client runs calls from several threads on their own cores); a
        replication's fit does not depend on which thread or batch fits it, so batches may
        finish in any order. The result holds every replication, in order.
        ``processes``: fit in ``workers`` worker processes instead of threads, each with its own
        fitter built by this picklable, argument-free callable (:mod:`bayesbio.sbc.processes`).
        """
        reps = int(np.shape(keys)[0])
        batch = min(self.settings.batch, reps)
        starts = list(range(0, reps, batch))
        have = set() if done is None else {int(i) for i in done.indices()}
        whole = set()
        for start in starts:
            if have.issuperset(range(start, min(start + batch, reps))):
                whole.update(range(start, min(start + batch, reps)))
        if have != whole or (done is not None and len(have) != len(done.divergences)):
            raise ValueError(f"done: its {len(have)} finished replications are not whole batches of {batch} "
                             f"out of {reps}")
        keys = np.asarray(keys)

        def inputs(start):
            idx = np.arange(start, start + batch)
            idx = np.minimum(idx, reps - 1)  # pad the last batch by repeating its last replication
            obs = {k: np.asarray(v[idx]) for k, v in observations.items()}
            truth = None if truths is None else {k: np.asarray(v[idx]) for k, v in truths.items()}
            return keys[idx], obs, truth

        def finished(start, out):
            n_real = min(batch, reps - start)
            out = jax.tree_util.tree_map(lambda x: np.asarray(x)[:n_real], out)
            return out + (np.arange(start, start + n_real),)

        parts = [] if done is None else [_parts_of(done)]
        todo = [start for start in starts if start not in have]
        if processes is not None and workers > 1 and len(todo) > 1:
            from bayesbio.sbc.processes import as_finished_in_processes

            results = as_finished_in_processes(processes, inputs, todo, workers)
        else:
            results = _as_finished(lambda start: self.fit_batch(*inputs(start)), todo, workers)
        with contextlib.closing(results):  # an error in a callback stops the workers at once
            for start, out in results:
                parts.append(finished(start, out))
                if on_progress is not None:
                    joined = _joined(parts)
                    parts = [_parts_of(joined)]
                    on_progress(joined)
                if on_batch is not None:
                    on_batch(min(batch, reps - start))
        return _joined(parts)

    def fit_batch(self, keys, obs, truth=None):
        """One batch's fits (NumPy arrays, the batch's leading axis): draws, divergences, mean
        leapfrog steps and whether every chain started, for ``keys`` (batch, 2), observations
        ``obs[k]`` (batch, ...) and optionally the truths to start at. Compiled on first use (and
        again when the batch size changes)."""
        fn = self._program(int(np.shape(keys)[0]), truth is not None)
        obs = {k: jnp.asarray(v) for k, v in obs.items()}
        truth = None if truth is None else {k: jnp.asarray(v) for k, v in truth.items()}
        return jax.tree_util.tree_map(np.asarray, jax.device_get(fn(jnp.asarray(keys), self.prepared.data, obs,
                                                                    truth)))

    def _program(self, batch: int, with_truth: bool):
        """The one jitted fit of ``batch`` replications, shared by every worker thread: threads
        that each made their own would trace the model at the same time, and NumPyro's effect
        handlers (one stack per process) would then see each other's sites."""
        with self._lock:
            if self._compiled is None or self._compiled[0] != (batch, with_truth):
                fn = jax.jit(jax.vmap(self._one_fit, in_axes=(0, None, 0, 0 if with_truth else None)))
                self._compiled = ((batch, with_truth), fn)
            return self._compiled[1]


def _as_finished(fn, starts, workers: int):
    """Yield ``(start, fn(start))`` for each of ``starts`` as the calls finish, with up to
    ``workers`` calls running at once on their own (daemon) threads (one worker: in order, in
    this thread). The first error of any call is raised here, and no further call starts."""
    starts = list(starts)
    if workers <= 1 or len(starts) <= 1:
        for start in starts:
            yield start, fn(start)
        return
    todo: queue.Queue = queue.Queue()
    for start in starts:
        todo.put(start)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work():
        while not stop.is_set():
            try:
                start = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results.put((start, fn(start), None))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                results.put((start, None, exc))
                return

    threads = [threading.Thread(target=work, name=f"bayesbio-sbc-{w}", daemon=True)
               for w in range(min(workers, len(starts)))]
    for t in threads:
        t.start()
    try:
        for _ in starts:
            start, out, exc = results.get()
            if exc is not None:
                raise exc
            yield start, out
    finally:
        stop.set()  # a failure, an interrupt or an abandoned generator: start nothing more


def _parts_of(fits: FitResult):
    return fits.draws, fits.divergences, fits.mean_steps, fits.init_ok, fits.indices()


def _joined(parts) -> FitResult:
    """The fits of ``parts`` in increasing order of replication."""
    draws, div, steps, ok, index = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *parts)
    order = np.argsort(index, kind="stable")
    return FitResult(draws={k: v[order] for k, v in draws.items()}, divergences=div[order],
                     mean_steps=steps[order], init_ok=ok[order], replications=index[order])

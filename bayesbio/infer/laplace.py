"""Laplace approximation: a Gaussian at the posterior mode on the unconstrained scale.

The mode is found with L-BFGS (optax) on the potential energy ``U = -log p(z | y)`` of the
unconstrained parameters ``z`` (transform Jacobians included, as for NUTS). The Hessian is the
central finite difference of the exact gradient, column by column,

    H[:, k] = (grad U(z + h_k e_k) - grad U(z - h_k e_k)) / (2 h_k),   h_k = 1e-4 (1 + |z_k|),

symmetrised. Its truncation error is O(h^2 * third derivatives) ~ 1e-8 relative for smooth
potentials, which keeps it valid whatever the sensitivity method of the ODE solves (forward
sensitivities behind a custom VJP cannot be differentiated twice).

Draws ``z ~ N(z*, H^-1)`` are mapped to the constrained scale. Their log importance weights
``log p - log q`` are kept in ``sample_stats.log_importance_weight`` and summarised by the
Pareto-k̂ of PSIS (``posterior.attrs["pareto_k"]``): k̂ < 0.7 means the Gaussian is a usable
approximation of the posterior.
"""

from __future__ import annotations

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_median, init_to_uniform
from numpyro.infer.util import initialize_model

from bayesbio.errors import BayesbioError
from bayesbio.infer._common import (
    FailureLog,
    check_positive_int,
    check_seed,
    prepare,
    run_attrs,
    with_failure_context,
)
from bayesbio.infer._idata import build_inference_data

__all__ = ["LaplaceError", "fd_hessian", "find_mode", "fit_laplace", "minimize_lbfgs", "mode_problem", "search_modes"]


class LaplaceError(BayesbioError, RuntimeError):
    """The mode could not be found or the Hessian there is not positive definite."""


def minimize_lbfgs(fun, x0, *, max_iter: int = 1000, tol: float = 1e-8):
    """Minimise a smooth scalar function with optax's L-BFGS (zoom line search)."""
    import optax  # on first use: not needed by the NUTS path (start-up time)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        x, state, _, i = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        x = optax.apply_updates(x, updates)
        return x, state, jnp.max(jnp.abs(grad)), i + 1

    def cond(carry):
        _, _, gmax, i = carry
        return (i < max_iter) & (gmax > tol)

    init = (x0, opt.init(x0), jnp.array(jnp.inf, x0.dtype), 0)
    x, _, gmax, iters = jax.lax.while_loop(cond, step, init)
    return x, gmax, iters


def search_modes(flat_potential, x0s, *, max_iter: int = 1000, tol: float = 1e-8):
    """L-BFGS from every row of ``x0s`` (traceable): ``(xs, values, gmax, iters)`` per start, with
    ``values`` the potential at each end point, ``inf`` where it or the point is not finite."""
    xs, gmax, iters = jax.vmap(lambda x0: minimize_lbfgs(flat_potential, x0, max_iter=max_iter, tol=tol))(x0s)
    values = jax.vmap(flat_potential)(xs)
    values = jnp.where(jnp.isfinite(values) & jnp.all(jnp.isfinite(xs), axis=-1), values, jnp.inf)
    return xs, values, gmax, iters


def fd_hessian(grad_fn, x, *, rel_step: float = 1e-4):
    """Symmetrised central finite-difference Hessian of a function given its gradient."""
    n = x.shape[0]
    h = rel_step * (1.0 + jnp.abs(x))
    basis = jnp.eye(n, dtype=x.dtype) * h[:, None]
    plus = jax.vmap(grad_fn)(x + basis)
    minus = jax.vmap(grad_fn)(x - basis)
    cols = (plus - minus) / (2.0 * h[:, None])  # row k = d grad / d x_k
    return 0.5 * (cols + cols.T)


def mode_problem(prepared, model, rng_key, *, starts: int = 8):
    """The pieces of a mode search: ``(x0s, unravel, flat_potential, postprocess)``.

    ``x0s`` (``starts``, n): the prior median plus ``starts - 1`` uniform draws in (-2, 2) on the
    unconstrained scale (as NUTS initialises); ``flat_potential(x)`` is the potential energy of
    the flat unconstrained vector ``x``. Used by :func:`find_mode` and by other optimisers (e.g.
    the Newton search of :mod:`bayesbio.fields.laplace`).
    """
    data = prepared.data
    kwargs = {"_bb_chain": 0, "_bb_iteration": 0}
    key_median, key_uniform = jax.random.split(rng_key)
    info, potential_gen, postprocess_gen, _ = initialize_model(
        key_median, model, init_strategy=init_to_median(num_samples=15), dynamic_args=True,
        model_args=(data,), model_kwargs=kwargs,
    )
    z0, unravel = ravel_pytree(info.z)
    x0s = [z0]
    if starts > 1:
        more, _, _, _ = initialize_model(
            jax.random.split(key_uniform, starts - 1), model, init_strategy=init_to_uniform(radius=2.0),
            dynamic_args=True, model_args=(data,), model_kwargs=kwargs,
        )
        x0s.extend(jax.vmap(lambda z: ravel_pytree(z)[0])(more.z))
    x0s = jnp.stack(x0s)
    potential = potential_gen(data, **kwargs)

    def flat_potential(x):
        return potential(unravel(x))

    return x0s, unravel, flat_potential, postprocess_gen(data, **kwargs)


def find_mode(prepared, model, rng_key, *, starts: int = 8, max_iter: int = 2000):
    """Posterior mode on the unconstrained scale by L-BFGS from several starting points.

    Starts: see :func:`mode_problem`. Mechanistic likelihoods are often multimodal (e.g.
    Lotka–Volterra from the prior median converges to a poor local mode), so the best of
    several starts is kept.

    Returns ``(x_map, unravel, flat_potential, postprocess, gmax, iters)``.
    """
    x0s, unravel, flat_potential, postprocess = mode_problem(prepared, model, rng_key, starts=starts)

    @jax.jit
    def search(x0s):
        xs, values, gmax, iters = search_modes(flat_potential, x0s, max_iter=max_iter)
        best = jnp.argmin(values)
        return xs[best], gmax[best], iters[best], values[best]

    x_map, gmax, iters, value = jax.device_get(search(x0s))
    if not np.isfinite(value) or not np.all(np.isfinite(x_map)):
        raise LaplaceError("mode search: no start reached a point where the model can be evaluated")
    return x_map, unravel, flat_potential, postprocess, float(gmax), int(iters)


def fit_laplace(
    model, data=None, *, samples: int = 4000, seed: int = 0, max_iter: int = 2000, starts: int = 8,
    dims=None, coords=None,
):
    """Laplace approximation of the posterior; returns ``arviz.InferenceData`` (one chain).

    ``starts`` mode searches run from different points (see :func:`find_mode`); the best is kept.

    Raises
    ------
    LaplaceError
        If the optimiser fails or the Hessian at the mode is not positive definite (the
        posterior is improper or not identified there: use NUTS).
    """
    samples = check_positive_int("samples", samples)
    seed = check_seed(seed)
    max_iter = check_positive_int("max_iter", max_iter)
    starts = check_positive_int("starts", starts)
    t_start = time.perf_counter()
    prepared = prepare(model, data, dims=dims, coords=coords)
    log = FailureLog()
    wrapped = with_failure_context(prepared.spec.model, log)
    key = jax.random.PRNGKey(seed)
    key_init, key_draw, key_pred = jax.random.split(key, 3)
    x_map, unravel, flat_potential, postprocess, gmax, iters = find_mode(
        prepared, wrapped, key_init, starts=starts, max_iter=max_iter
    )
    hessian = np.asarray(jax.jit(lambda x: fd_hessian(jax.grad(flat_potential), x))(x_map))
    t_fit = time.perf_counter()
    if not np.all(np.isfinite(hessian)):
        raise LaplaceError("Laplace: the Hessian at the mode is not finite (a solver failure next to the mode?)")
    if gmax > 1e-3:
        warnings.warn(
            f"Laplace: the mode search stopped with gradient norm {gmax:.2e} after {int(iters)} "
            "iterations; the approximation may be off-centre",
            RuntimeWarning,
            stacklevel=2,
        )
    try:
        chol_h = np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        raise LaplaceError(
            "Laplace: the Hessian at the mode is not positive definite (a flat or non-identified "
            "direction); use NUTS or a more informative prior"
        ) from None
    n = x_map.shape[0]
    eps = np.asarray(jax.random.normal(key_draw, (samples, n), dtype=x_map.dtype))
    # z = x* + L^-T eps has covariance (L L^T)^-1 = H^-1
    z = x_map + np.linalg.solve(chol_h.T, eps.T).T
    log_q = -0.5 * np.sum(eps**2, axis=1) + np.sum(np.log(np.diag(chol_h))) - 0.5 * n * np.log(2 * np.pi)
    log_p = -np.asarray(jax.jit(jax.vmap(flat_potential))(z))
    log_w = log_p - log_q
    constrain = jax.jit(jax.vmap(lambda x: postprocess(unravel(x))))
    posterior = {k: np.asarray(v)[None] for k, v in constrain(z).items()}
    finite = np.isfinite(log_w)
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, pareto_k = az.psislw(np.where(finite, log_w, -np.inf))
    settings = dict(samples=samples, max_iter=max_iter, starts=starts)
    timings = {
        "compile_seconds": 0.0,
        "fit_seconds": t_fit - t_start,
        "warmup_seconds": 0.0,
        "sampling_seconds": time.perf_counter() - t_fit,
    }
    attrs = run_attrs(prepared, "laplace", settings, seed, timings)
    attrs["pareto_k"] = float(pareto_k)
    attrs["mode_gradient_norm"] = float(gmax)
    attrs["optimizer_iterations"] = int(iters)
    sample_stats = {
        "log_importance_weight": log_w[None],
        "solver_failures": (~finite)[None].astype(np.int64),
    }
    return build_inference_data(
        prepared, posterior, sample_stats=sample_stats, attrs=attrs, rng_key=key_pred,
        per_chain_stats={"fit_solver_failures": np.array([log.total()])},
    )

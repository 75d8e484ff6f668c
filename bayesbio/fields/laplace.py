"""Laplace approximation for field models: the mode plus a (low-rank) Hessian, as a field posterior.

The model is a NumPyro model whose field is a deterministic site (a whitened prior, e.g.
``prior.sample("u")``). On the unconstrained latent coordinates ``z`` (the whitened field plus
any hyperparameters) the posterior is approximated by ``N(z*, H^-1)``, ``z*`` the mode
(damped Newton with the dense Hessian, :mod:`bayesbio.fields._newton`, exact in one step for a
linear-Gaussian model; or L-BFGS, :func:`bayesbio.infer.laplace.find_mode`, for large ``n`` or
when Newton fails) and ``H`` the Hessian of the potential there.
The field ``f(z)`` is pushed forward linearly: mean ``f(z*)``, covariance ``J H^-1 J^T`` with
``J = df/dz`` (exact for a field linear in ``z`` at fixed hyperparameters, the linear-Gaussian
case).

``rank=None``: the dense Hessian (forward-over-reverse, ``n`` Hessian-vector products in one
vectorised pass; the Newton search's last Hessian is reused). ``rank=r``: the
prior-preconditioned low-rank form used for large-scale inverse problems (Bui-Thanh, Ghattas,
Martin & Stadler 2013, SIAM J. Sci. Comput. 35, A2494): in whitened coordinates the prior
Hessian is the identity, so ``H = I + H_misfit`` and the data inform only a few directions;
``H_misfit ≈ V diag(lambda) V^T`` from a randomised eigensolver (Halko, Martinsson & Tropp 2011,
Alg. 4.4 + 5.3, ``r + oversample`` probes and ``power_iters`` subspace iterations), so

    H^-1 ≈ I - V diag(lambda / (1 + lambda)) V^T,   H^-1/2 ≈ I + V (diag((1 + lambda)^-1/2) - I) V^T.

The neglected eigenvalues should be << 1: ``info["smallest_kept_eigenvalue"]`` reports how far
down the spectrum the rank reached.
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from scipy.linalg import cho_solve

from bayesbio.errors import ModelError, OptionError, describe
from bayesbio.fields._grid import as_field_grid
from bayesbio.fields._newton import newton_mode, value_grad_hessian
from bayesbio.fields._potential import FastPathUnavailable, fast_mode_problem
from bayesbio.fields.exact import FieldPosterior
from bayesbio.infer._common import FailureLog, check_positive_int, prepare, with_failure_context
from bayesbio.infer.laplace import LaplaceError, find_mode, mode_problem

__all__ = ["laplace_field", "laplace_preconditioner", "randomized_eigh"]


def randomized_eigh(matvec, n: int, rank: int, rng_key, *, oversample: int = 10, power_iters: int = 2):
    """Leading ``rank`` eigenpairs (by magnitude) of a symmetric ``n x n`` operator given by ``matvec``.

    ``matvec`` maps a batch of vectors ``(k, n)`` to ``(k, n)``. Returns ``(eigenvalues,
    eigenvectors (n, rank))``, eigenvalues in decreasing magnitude.
    """
    k = min(n, rank + oversample)
    omega = jax.random.normal(rng_key, (k, n))
    q, _ = jnp.linalg.qr(matvec(omega).T)
    for _ in range(power_iters):
        q, _ = jnp.linalg.qr(matvec(q.T).T)
    t = q.T @ matvec(q.T).T
    lam, u = jnp.linalg.eigh(0.5 * (t + t.T))
    order = jnp.argsort(-jnp.abs(lam))[:rank]
    return lam[order], q @ u[:, order]


MODES = ("auto", "newton", "lbfgs")
#: ``mode="auto"`` uses Newton up to this many latent dimensions (the dense Hessian costs ``n``
#: gradient-like passes and ``n^2`` memory per iteration), L-BFGS above
NEWTON_MAX_DIM = 4000


def _mode_and_hessian(model, data, *, seed, starts, max_iter, mode="auto", need_dense=True):
    """Mode, flat unravel, postprocess, the dense Hessian at the mode (or None), HVP batch fn, key, info.

    ``mode``: "newton" (damped Newton with the dense Hessian, :mod:`bayesbio.fields._newton`;
    falls back to L-BFGS when Newton fails, the reason in ``info["newton_failure"]``),
    "lbfgs" (:func:`bayesbio.infer.laplace.find_mode`), or "auto" (Newton when the latent
    dimension is at most :data:`NEWTON_MAX_DIM`, else L-BFGS).
    """
    if mode not in MODES:
        raise OptionError(f"'mode' must be one of {list(MODES)}; got {describe(mode)}")
    prepared = prepare(model, data)
    log = FailureLog()
    wrapped = with_failure_context(prepared.spec.model, log)
    key_mode, key_eig = jax.random.split(jax.random.PRNGKey(seed))
    info = {}
    hess = None
    x_map = None
    if mode != "lbfgs":
        try:  # a few compiled programs instead of NumPyro's op-by-op set-up (see _potential)
            x0s, unravel, potential, postprocess = fast_mode_problem(wrapped, prepared.data, key_mode, starts=starts)
        except FastPathUnavailable:
            x0s, unravel, potential, postprocess = mode_problem(prepared, wrapped, key_mode, starts=starts)
        use_newton = mode == "newton" or int(x0s.shape[1]) <= NEWTON_MAX_DIM
    if mode != "lbfgs" and use_newton:
        vgh, value_fn = value_grad_hessian(potential), jax.jit(potential)
        results = [newton_mode(potential, x0, vgh=vgh, value_fn=value_fn) for x0 in np.asarray(x0s)]
        ok = [r for r in results if r.converged]
        if ok:
            best = min(ok, key=lambda r: r.value)
            x_map, hess = jnp.asarray(best.x), best.hessian
            info["_chol"] = best.chol  # its Cholesky factor, reused below (popped before returning)
            info.update(mode_method="newton", mode_gradient_norm=best.gradient_norm,
                        optimizer_iterations=best.iterations, newton_shifted_iterations=best.shifted)
        else:
            info["newton_failure"] = results[0].reason
    if x_map is None:  # L-BFGS (chosen, or Newton failed)
        x_map, unravel, potential, postprocess, gmax, iters = find_mode(prepared, wrapped, key_mode, starts=starts,
                                                                         max_iter=max_iter)
        x_map = jnp.asarray(x_map)
        info.update(mode_method="lbfgs", mode_gradient_norm=float(gmax), optimizer_iterations=int(iters))
        if need_dense:
            hess = np.asarray(jax.jit(jax.hessian(potential))(x_map))
            hess = 0.5 * (hess + hess.T)
    info["n_latent"] = int(x_map.shape[0])
    grad = jax.grad(potential)

    def hvp(v):
        return jax.jvp(grad, (x_map,), (v,))[1]

    matvec = (lambda v: jnp.asarray(v) @ jnp.asarray(hess)) if hess is not None else jax.jit(jax.vmap(hvp))
    return x_map, unravel, postprocess, hess, matvec, key_eig, info


def _dense_cholesky(hess, info):
    chol = info.pop("_chol", None)
    if chol is not None:
        return chol
    try:
        return np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        why = f" (Newton search: {info['newton_failure']}; mode from L-BFGS)" if "newton_failure" in info else ""
        raise LaplaceError(
            f"laplace: the Hessian at the mode is not positive definite{why}: a flat or non-identified "
            "direction, no Gaussian approximation exists there; use NUTS or a more informative prior"
        ) from None


def laplace_preconditioner(model, data=None, *, site: str, seed: int = 0, starts: int = 1, max_iter: int = 5000,
                           mode: str = "auto"):
    """``(shift, scale)`` for NUTS in posterior-whitened coordinates of the latent ``site``.

    From the dense Laplace approximation ``N(z*, H^-1)``: ``shift`` is the mode of ``site``
    and ``scale`` the lower Cholesky factor of its block of ``H^-1``. Pass them to a prior's
    ``sample(name, preconditioner=(shift, scale))`` (``site`` is then ``f"{name}_white"``):
    the sampler moves ``eta`` with ``white = shift + scale @ eta``, and for a linear-Gaussian
    problem the posterior of ``eta`` is exactly ``N(0, I)`` — NUTS needs a few leapfrog steps
    per draw instead of hundreds (the whitened prior coordinates are badly conditioned once
    the data are informative).

    ``mode`` picks the mode search (see :func:`laplace_field`).
    """
    x_map, unravel, _, hess, _, _, info = _mode_and_hessian(model, data, seed=seed, starts=starts, max_iter=max_iter,
                                                         mode=mode)
    tree = unravel(x_map)
    if site not in tree:
        raise ModelError(f"'site': no latent site '{site}'; latent sites: {sorted(tree)}")
    n = x_map.shape[0]
    chol = _dense_cholesky(hess, info)
    cov = cho_solve((chol, True), np.eye(n))
    mask = np.asarray(jax.flatten_util.ravel_pytree({k: (jnp.ones_like(v) if k == site else jnp.zeros_like(v))
                                                     for k, v in tree.items()})[0]).astype(bool)
    block = cov[np.ix_(mask, mask)]
    return np.asarray(tree[site]).ravel(), np.linalg.cholesky(0.5 * (block + block.T))


def laplace_field(model, data=None, *, field: str, rank: int | None = None, seed: int = 0, starts: int = 1,
                  max_iter: int = 5000, oversample: int = 10, power_iters: int = 2,
                  grid=None, mode: str = "auto") -> FieldPosterior:
    """Laplace approximation of a field's posterior (see the module docstring).

    Parameters
    ----------
    model, data
        As for :func:`bayesbio.fit_laplace` (a bundled name, script path, ModelSpec, or a model
        function with its data).
    field : str
        Name of the deterministic (or sample) site holding the field.
    rank : int, optional
        ``None``: dense Hessian; else the rank of the low-rank misfit Hessian.
    grid : optional
        The field's grid (for plotting); default a 1-D unit grid of the field's length.
    mode : {"auto", "newton", "lbfgs"}
        Mode search. "newton": damped Newton steps with the dense Hessian (exact in one step
        for a linear-Gaussian model; :mod:`bayesbio.fields._newton`), falling back to L-BFGS
        when Newton fails (a Hessian that is not positive definite on the way, no decrease, no
        convergence; ``info["newton_failure"]`` says why). "lbfgs": L-BFGS only
        (``max_iter`` iterations at most). "auto" (default): Newton up to
        :data:`NEWTON_MAX_DIM` latent dimensions, else L-BFGS. ``info["mode_method"]`` records
        which found the mode.

    Returns
    -------
    FieldPosterior
        ``method`` "laplace" or "laplace-lowrank", with the covariance factor ``J H^-1/2`` of the
        field and ``info`` (mode method, mode gradient norm, iterations, eigenvalues for low rank).
    """
    if rank is not None:
        rank = check_positive_int("rank", rank)
    x_map, unravel, postprocess, hess, matvec, key_eig, info = _mode_and_hessian(
        model, data, seed=seed, starts=starts, max_iter=max_iter, mode=mode, need_dense=rank is None
    )
    sites = postprocess(unravel(x_map))
    if field not in sites:
        raise ModelError(f"'field': the model has no site '{field}'; sites: {sorted(sites)}")
    shape = tuple(np.shape(sites[field]))

    def field_fn(x):
        return jnp.ravel(postprocess(unravel(x))[field])

    n = x_map.shape[0]
    mean, jac = jax.jit(lambda x: (field_fn(x), jax.jacfwd(field_fn)(x)))(x_map)
    mean, jac = np.asarray(mean), np.asarray(jac)  # (N,), (N, n)
    if rank is None or rank >= n:
        if hess is None:
            hess = np.asarray(matvec(jnp.eye(n)))
            hess = 0.5 * (hess + hess.T)
        chol = _dense_cholesky(hess, info)
        factor = np.linalg.solve(chol, jac.T).T  # J C^-T
        method = "laplace"
    else:
        lam, vec = randomized_eigh(lambda v: matvec(v) - v, n, rank, key_eig, oversample=oversample,
                                   power_iters=power_iters)
        lam, vec = np.asarray(lam), np.asarray(vec)
        if np.any(lam <= -1.0):
            raise LaplaceError("laplace_field: H - I has an eigenvalue <= -1 (Hessian not positive definite)")
        jv = jac @ vec
        factor = jac + (jv * (1.0 / np.sqrt(1.0 + lam) - 1.0)) @ vec.T
        method = "laplace-lowrank"
        info.update(rank=int(rank), eigenvalues=lam, smallest_kept_eigenvalue=float(np.min(np.abs(lam))))
    info.pop("_chol", None)
    if grid is None:
        grid = as_field_grid(shape[0]) if len(shape) == 1 else None
    else:
        grid = as_field_grid(grid)
    if grid is None or grid.shape != shape:
        raise OptionError(f"'grid' must match the field's shape {shape}; got {describe(grid)}")
    mean = mean.reshape(shape)
    sd = np.sqrt(np.sum(factor**2, axis=1)).reshape(shape)
    return FieldPosterior(grid, mean, sd, factor, method, info)

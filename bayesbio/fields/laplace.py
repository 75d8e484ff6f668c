"""Laplace approximation for field models: the mode plus a (low-rank) Hessian, as a field posterior.

The model is a NumPyro model whose field is a deterministic site (a whitened prior, e.g.
``prior.sample("u")``). On the unconstrained latent coordinates ``z`` (the whitened field plus
any hyperparameters) the posterior is approximated by ``N(z*, H^-1)``, ``z*`` the mode
(L-BFGS, :func:`bayesbio.infer.laplace.find_mode`) and ``H`` the Hessian of the potential there.
The field ``f(z)`` is pushed forward linearly: mean ``f(z*)``, covariance ``J H^-1 J^T`` with
``J = df/dz`` (exact for a field linear in ``z`` at fixed hyperparameters, the linear-Gaussian
case).

``rank=None``: the dense Hessian (``n`` Hessian-vector products). ``rank=r``: the
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

from bayesbio.errors import ModelError, OptionError, describe
from bayesbio.fields._grid import as_field_grid
from bayesbio.fields.exact import FieldPosterior
from bayesbio.infer._common import FailureLog, check_positive_int, prepare, with_failure_context
from bayesbio.infer.laplace import LaplaceError, find_mode

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


def _mode_and_hessian(model, data, *, seed, starts, max_iter):
    prepared = prepare(model, data)
    log = FailureLog()
    wrapped = with_failure_context(prepared.spec.model, log)
    key_mode, key_eig = jax.random.split(jax.random.PRNGKey(seed))
    x_map, unravel, potential, postprocess, gmax, iters = find_mode(
        prepared, wrapped, key_mode, starts=starts, max_iter=max_iter
    )
    x_map = jnp.asarray(x_map)
    grad = jax.grad(potential)

    def hvp(v):
        return jax.jvp(grad, (x_map,), (v,))[1]

    info = {"mode_gradient_norm": float(gmax), "optimizer_iterations": int(iters), "n_latent": int(x_map.shape[0])}
    return x_map, unravel, postprocess, jax.jit(jax.vmap(hvp)), key_eig, info


def _dense_cholesky(matvec, n):
    hess = np.asarray(matvec(jnp.eye(n)))
    hess = 0.5 * (hess + hess.T)
    try:
        return np.linalg.cholesky(hess), hess
    except np.linalg.LinAlgError:
        raise LaplaceError("laplace: the Hessian at the mode is not positive definite") from None


def laplace_preconditioner(model, data=None, *, site: str, seed: int = 0, starts: int = 1, max_iter: int = 5000):
    """``(shift, scale)`` for NUTS in posterior-whitened coordinates of the latent ``site``.

    From the dense Laplace approximation ``N(z*, H^-1)``: ``shift`` is the mode of ``site``
    and ``scale`` the lower Cholesky factor of its block of ``H^-1``. Pass them to a prior's
    ``sample(name, preconditioner=(shift, scale))`` (``site`` is then ``f"{name}_white"``):
    the sampler moves ``eta`` with ``white = shift + scale @ eta``, and for a linear-Gaussian
    problem the posterior of ``eta`` is exactly ``N(0, I)`` — NUTS needs a few leapfrog steps
    per draw instead of hundreds (the whitened prior coordinates are badly conditioned once
    the data are informative).
    """
    x_map, unravel, _, matvec, _, _ = _mode_and_hessian(model, data, seed=seed, starts=starts, max_iter=max_iter)
    tree = unravel(x_map)
    if site not in tree:
        raise ModelError(f"'site': no latent site '{site}'; latent sites: {sorted(tree)}")
    n = x_map.shape[0]
    chol, _ = _dense_cholesky(matvec, n)
    cov = np.linalg.solve(chol.T, np.linalg.solve(chol, np.eye(n)))
    mask = np.asarray(jax.flatten_util.ravel_pytree({k: (jnp.ones_like(v) if k == site else jnp.zeros_like(v))
                                                     for k, v in tree.items()})[0]).astype(bool)
    block = cov[np.ix_(mask, mask)]
    return np.asarray(tree[site]).ravel(), np.linalg.cholesky(0.5 * (block + block.T))


def laplace_field(model, data=None, *, field: str, rank: int | None = None, seed: int = 0, starts: int = 1,
                  max_iter: int = 5000, oversample: int = 10, power_iters: int = 2,
                  grid=None) -> FieldPosterior:
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

    Returns
    -------
    FieldPosterior
        ``method`` "laplace" or "laplace-lowrank", with the covariance factor ``J H^-1/2`` of the
        field and ``info`` (mode gradient norm, iterations, eigenvalues for low rank).
    """
    if rank is not None:
        rank = check_positive_int("rank", rank)
    x_map, unravel, postprocess, matvec, key_eig, info = _mode_and_hessian(
        model, data, seed=seed, starts=starts, max_iter=max_iter
    )
    sites = postprocess(unravel(x_map))
    if field not in sites:
        raise ModelError(f"'field': the model has no site '{field}'; sites: {sorted(sites)}")
    shape = tuple(np.shape(sites[field]))

    def field_fn(x):
        return jnp.ravel(postprocess(unravel(x))[field])

    n = x_map.shape[0]
    jac = np.asarray(jax.jacfwd(field_fn)(x_map))  # (N, n)
    if rank is None or rank >= n:
        chol, _ = _dense_cholesky(matvec, n)
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
    if grid is None:
        grid = as_field_grid(shape[0]) if len(shape) == 1 else None
    else:
        grid = as_field_grid(grid)
    if grid is None or grid.shape != shape:
        raise OptionError(f"'grid' must match the field's shape {shape}; got {describe(grid)}")
    mean = np.asarray(field_fn(x_map)).reshape(shape)
    sd = np.sqrt(np.sum(factor**2, axis=1)).reshape(shape)
    return FieldPosterior(grid, mean, sd, factor, method, info)

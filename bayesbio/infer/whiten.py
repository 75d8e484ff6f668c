"""Structured Gaussian whitening of a hierarchical posterior, for NUTS (``prefit="laplace"``).

A population model's unconstrained parameters split into *local* ones, a block of ``k``
per patient (its random effects: every latent site whose leading axis has one entry per
patient), and ``g`` *global* ones (typical values, SDs of the random effects, residual
error). Given the globals, patients are independent, so the Hessian ``H`` of the potential
energy is an arrowhead matrix::

    H = [[A, B], [B^T, D]]    A = diag(A_1, ..., A_P), A_i (k, k);  B (P k, g);  D (g, g)

:func:`structured_hessian` measures it at a point with ``k + g`` central differences of the
gradient: one direction per global coordinate (column ``g`` of ``H``) and one per local
coordinate index ``j`` moving that coordinate of *every* patient at once (patients do not
couple, so row ``(i, r)`` of the result is ``A_i[r, j]``). One more difference along a random
probe compares the exact product ``H v`` with the assembled matrix: a model whose patients do
couple (or whose per-patient sites are not what they seem) shows there, and is not whitened.
Finite differences of the gradient rather than second derivatives, because ODE sensitivities
behind a custom VJP cannot be differentiated twice (as :func:`bayesbio.infer.laplace.fd_hessian`).

:func:`whiten` factors ``H = L L^T`` (patient blocks first) and NUTS then samples ``w`` in

    x = c + L^-T w

whose Hessian at the centre ``c`` is the identity: the posterior correlations between every
patient's random effects and the population parameters, which a diagonal metric cannot
represent and which set the step size and trajectory length on the original scale, are gone.
The map costs ``O(P k (k + g) + g^2)`` per gradient (no ``n x n`` matrix is formed), against
``O(n^2)`` for a dense metric. Any invertible linear map leaves the sampled posterior exact
(its Jacobian is constant); the quality of the Gaussian only changes the efficiency. Where
``H`` is not positive definite at the centre (a patient whose posterior is far from Gaussian),
each block's eigenvalues are replaced by their absolute values, floored at
:data:`EIGEN_FLOOR` times the largest: still an invertible map, just a poorer fit there.

The centre is the mean of the mean-field SVI pre-fit, not the joint mode: in hierarchical
models the joint mode over random effects and their SDs can be far from the posterior mass
(non-centred, informative data: the mode's SDs grow like ``N^(1/4)``; centred: the mode search
can run into the funnel's neck).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["EIGEN_FLOOR", "Layout", "MAX_GLOBAL", "layout", "structured_hessian", "to_sites", "to_w", "to_x", "whiten"]

#: relative step of the central differences, per coordinate ``REL_STEP * (1 + |x|)`` (double
#: precision; about eps^(1/3) in single precision, :data:`REL_STEP_32`, so rounding stays small)
REL_STEP = 1e-4
REL_STEP_32 = 5e-3
#: at most this many global coordinates (one difference of the gradient each)
MAX_GLOBAL = 200
#: eigenvalues of the blocks below this fraction of the largest (in absolute value) are raised to it
EIGEN_FLOOR = 1e-6


@dataclass(frozen=True)
class Layout:
    """Where the local and global coordinates sit in the flat unconstrained vector."""

    #: (P, k) flat indices of each patient's local coordinates
    local: np.ndarray
    #: (g,) flat indices of the global coordinates
    glob: np.ndarray
    #: (n,) position of each flat index in ``concatenate([local.ravel(), glob])``
    inverse: np.ndarray


def layout(z: dict, n_patients: int | None) -> Layout:
    """The layout of the flat vector ``ravel_pytree(z)`` (``z``: site -> unconstrained value of
    one chain): sites whose leading axis has ``n_patients`` entries are local, the rest global."""
    local, glob, offset = [], [], 0
    for name in sorted(z):  # ravel_pytree flattens a dict in sorted key order, each leaf in C order
        shape = np.shape(z[name])
        size = int(np.prod(shape, dtype=int))
        idx = offset + np.arange(size)
        if n_patients is not None and len(shape) >= 1 and shape[0] == n_patients and n_patients > 1:
            local.append(idx.reshape(n_patients, -1))
        else:
            glob.append(idx)
        offset += size
    p = n_patients if local else 0
    local = np.concatenate(local, axis=1) if local else np.zeros((p, 0), dtype=int)
    glob = np.concatenate(glob) if glob else np.zeros(0, dtype=int)
    inverse = np.argsort(np.concatenate([local.ravel(), glob]))
    return Layout(local=local, glob=glob, inverse=inverse)


def structured_hessian(grad_fn, x, lay: Layout, key, *, rel_step: float | None = None):
    """``(A, B, D, probe_error)`` of the arrowhead Hessian at ``x`` (module docstring).

    ``A`` (P, k, k), ``B`` (P, k, g), ``D`` (g, g); ``probe_error`` is the relative error
    ``|H_struct v - H v| / |H v|`` along a random probe (finite-difference error ~1e-6 when the
    structure holds). Traceable; the differences run one after the other (``lax.map``), so
    memory stays that of one gradient.
    """
    n = x.shape[0]
    p, k = lay.local.shape
    g = lay.glob.size
    if rel_step is None:
        rel_step = REL_STEP if x.dtype == jnp.float64 else REL_STEP_32
    h = rel_step * (1.0 + jnp.abs(x))
    rows = np.concatenate([np.repeat(np.arange(k), p), k + np.arange(g)]).astype(int)
    cols = np.concatenate([lay.local.T.ravel(), lay.glob]).astype(int)
    dirs = jnp.zeros((k + g, n), x.dtype).at[rows, cols].set(h[cols])
    probe = jax.random.rademacher(key, (n,), dtype=x.dtype) * h
    dirs = jnp.concatenate([dirs, probe[None]])
    hv = jax.lax.map(lambda d: 0.5 * (grad_fn(x + d) - grad_fn(x - d)), dirs)
    hl, hg = h[lay.local], h[lay.glob]
    # A[i, r, c] = (H e_c)[local[i, r]] / h[local[i, c]]
    a = jnp.transpose(hv[:k][:, lay.local], (1, 2, 0)) / hl[:, None, :]
    a = 0.5 * (a + jnp.swapaxes(a, 1, 2))
    b = jnp.transpose(hv[k : k + g][:, lay.local], (1, 2, 0)) / hg[None, None, :]
    d = hv[k : k + g][:, lay.glob].T / hg[None, :]
    d = 0.5 * (d + d.T)
    vl, vg = probe[lay.local], probe[lay.glob]
    assembled = jnp.concatenate([
        (jnp.einsum("irc,ic->ir", a, vl) + b @ vg).ravel(),
        jnp.einsum("irq,ir->q", b, vl) + d @ vg,
    ])[lay.inverse]
    exact = hv[-1]
    error = jnp.linalg.norm(assembled - exact) / jnp.linalg.norm(exact)
    return a, b, d, error


def _positive(m):
    """Symmetric positive definite version of symmetric ``m`` (..., q, q): absolute eigenvalues,
    floored at ``EIGEN_FLOOR`` times the largest of each matrix."""
    w, q = jnp.linalg.eigh(m)
    w = jnp.abs(w)
    w = jnp.maximum(w, EIGEN_FLOOR * jnp.max(w, axis=-1, keepdims=True))
    return (q * w[..., None, :]) @ jnp.swapaxes(q, -1, -2)


def whiten(a, b, d, center, lay: Layout) -> dict:
    """The map ``x = center + L^-T w`` with ``L L^T = H`` (made positive definite), as arrays:
    ``center``, ``m = L_A^-T`` (P, k, k), ``lt = L_A^T`` (P, k, k), ``ct = L_A^-1 B`` (P, k, g),
    ``p = L_S^-T``, ``pt = L_S^T`` (g, g) with ``S = D - B^T A^-1 B``, and the layout's index
    arrays (``local``, ``glob``, ``inverse``)."""
    dtype = center.dtype
    k, g = lay.local.shape[1], lay.glob.size
    la = jnp.linalg.cholesky(_positive(a)) if k else jnp.zeros(a.shape, dtype)
    eye_k = jnp.broadcast_to(jnp.eye(k, dtype=dtype), la.shape)
    la_inv = jax.scipy.linalg.solve_triangular(la, eye_k, lower=True) if k else la
    ct = la_inv @ b
    s = d - jnp.einsum("irq,irs->qs", ct, ct)
    ls = jnp.linalg.cholesky(_positive(s)) if g else jnp.zeros((0, 0), dtype)
    ls_inv = jax.scipy.linalg.solve_triangular(ls, jnp.eye(g, dtype=dtype), lower=True) if g else ls
    return {
        "center": center, "m": jnp.swapaxes(la_inv, 1, 2), "lt": jnp.swapaxes(la, 1, 2), "ct": ct,
        "p": ls_inv.T, "pt": ls.T,
        "local": jnp.asarray(lay.local), "glob": jnp.asarray(lay.glob), "inverse": jnp.asarray(lay.inverse),
    }


def to_x(wh: dict, w):
    """Whitened ``w`` (n,) -> flat unconstrained ``x`` (n,)."""
    p, k = wh["local"].shape
    zl, zg = w[: p * k].reshape(p, k), w[p * k :]
    wg = wh["p"] @ zg
    wl = jnp.einsum("irc,ic->ir", wh["m"], zl - wh["ct"] @ wg)
    return wh["center"] + jnp.concatenate([wl.ravel(), wg])[wh["inverse"]]


def to_sites(wh: dict, unravel, w):
    """Whitened ``w`` (n,) -> the model's unconstrained site dict (``unravel`` of :func:`to_x`)."""
    return unravel(to_x(wh, w))


def to_w(wh: dict, x):
    """Flat unconstrained ``x`` (n,) -> whitened ``w`` (n,) (the inverse of :func:`to_x`)."""
    dx = x - wh["center"]
    dl, dg = dx[wh["local"]], dx[wh["glob"]]
    zl = jnp.einsum("irc,ic->ir", wh["lt"], dl) + wh["ct"] @ dg
    return jnp.concatenate([zl.ravel(), wh["pt"] @ dg])

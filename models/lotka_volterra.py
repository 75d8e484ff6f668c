"""Lotka–Volterra predator–prey model of the Hudson's Bay lynx and hare pelts (1900–1920).

Exactly the posteriordb posterior ``hudson_lynx_hare-lotka_volterra`` (Carpenter's Stan case
study):

    du/dt = (alpha - beta v) u        (hare)
    dv/dt = (-gamma + delta u) v      (lynx)

    theta[alpha, gamma] ~ Normal(1, 0.5) truncated to > 0
    theta[beta, delta]  ~ Normal(0.05, 0.05) truncated to > 0
    z_init ~ LogNormal(log 10, 1);  sigma ~ LogNormal(-1, 1)
    y_init[k] ~ LogNormal(log z_init[k], sigma[k]);  y[:, k] ~ LogNormal(log z[:, k], sigma[k])

Posterior variables are named as in posteriordb: ``theta`` (alpha, beta, gamma, delta),
``z_init`` (hare, lynx), ``sigma`` (hare, lynx).
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesbio as bb

description = "Lotka–Volterra predator–prey ODE on the Hudson Bay lynx–hare pelts (posteriordb)"

dims = {
    "theta": ["parameter"],
    "z_init": ["species"],
    "sigma": ["species"],
    "y_init": ["species"],
    "y": ["time", "species"],
}


#: Simulation-based calibration (``bayesbio sbc lotka_volterra``, see bayesbio.sbc): data simulated
#: from these priors often have a small noise sd, which makes the posterior narrow and strongly
#: correlated (theta with z_init); a dense mass matrix keeps NUTS at ~10 leapfrog steps per
#: iteration there (a diagonal one needed 50-280 in a trial). Thinning by 3 keeps roughly one draw
#: per effective sample (min bulk ESS per draw ~0.25 on the lynx–hare data, benchmarks/README.md);
#: a tree depth of 8 caps the cost of the rare, very narrow posteriors (it shows in the JSON's
#: leapfrog steps). One replication at a time: replications differ a lot in trajectory length.
#: Chains start as `bayesbio fit --prefit map` starts them: at the best of 8 L-BFGS mode searches
#: from the ordinary uniform(-2, 2) points (bayesbio.infer.prefit). Without the pre-fit (the
#: `bayesbio fit` default, which keeps the start-up short), 34 of 200 single-chain fits never reached
#: the posterior (tree depth saturated at 255 steps, or stuck at 1 step) and the SBC fails
#: (benchmarks/results/sbc/lotka_volterra_init_model, Holm p 3e-7): for ~17 % of prior-predictive
#: data sets one chain from a distant start does not find the posterior. With the pre-fit it passes
#: (Holm p 0.27), with 9 of 200 fits still trapped; started at the truth it passes too
#: (lotka_volterra_init_truth, calibration at stationarity only).
sbc = {"reps": 200, "warmup": 200, "draws": 49, "thin": 3, "dense_mass": True, "max_tree_depth": 8, "batch": 1,
       "prefit": "map"}


def coords(data):
    return {
        "parameter": ["alpha", "beta", "gamma", "delta"],
        "species": ["hare", "lynx"],
        "time": 1900 + np.asarray(data["ts"]),
    }


def load_data(path=None):
    """Hare and lynx pelts (thousands); time in years since 1900. ``path``: a CSV like the bundled one."""
    table = bb.datasets.load("lynx_hare") if path is None else bb.read_table(path)
    source = str(path or "lynx_hare")
    bb.require_columns(table, ["year", "hare_pelts_thousands", "lynx_pelts_thousands"], source=source)
    if len(table) < 2:
        raise bb.errors.DataError(f"{source}: expected at least 2 rows (the initial year and later ones); got {len(table)}")
    years = bb.numeric_column(table, "year", source=source, increasing=True)
    # pelt counts: positive (lognormal noise); an empty cell is a missing record
    counts = np.stack(
        [bb.numeric_column(table, c, source=source, allow_missing=True, positive=True)
         for c in ("hare_pelts_thousands", "lynx_pelts_thousands")],
        axis=1,
    )
    return {"ts": years[1:] - years[0], "y_init": counts[0], "y": counts[1:]}


def rhs(t, z, theta):
    hare, lynx = z[0], z[1]
    alpha, beta, gamma, delta = theta[0], theta[1], theta[2], theta[3]
    return jnp.stack([(alpha - beta * lynx) * hare, (-gamma + delta * hare) * lynx])


def model(data):
    loc = jnp.array([1.0, 0.05, 1.0, 0.05])
    scale = jnp.array([0.5, 0.05, 0.5, 0.05])
    theta = numpyro.sample("theta", dist.TruncatedNormal(loc, scale, low=0.0))
    z_init = numpyro.sample("z_init", dist.LogNormal(jnp.log(10.0), 1.0).expand([2]))
    sigma = numpyro.sample("sigma", dist.LogNormal(-1.0, 1.0).expand([2]))
    # tolerances and step budget of the posteriordb Stan model (integrate_ode_rk45 1e-5, 1e-3, 500)
    z = bb.solve(rhs, z_init, data["ts"], theta, rtol=1e-5, atol=1e-3, max_steps=500)
    bb.observe("y_init", bb.LogNormalNoise(z_init, sigma), obs=data["y_init"])
    bb.observe("y", bb.LogNormalNoise(z, sigma), obs=data["y"])

"""Worker of tests/test_sharding.py, run in a subprocess (XLA_FLAGS must be set before JAX
starts, and jax.distributed needs a process of its own).

    python tests/sharding_worker.py density --patients 13 [--devices 8] [--reference] [--distributed]
    python tests/sharding_worker.py nuts --patients 13 [--devices 8 | --chain-devices 2]

prints one JSON line: the potential energy (negative log density) and its gradient at a fixed
point of a synthetic one-compartment population model, or the draws of a short NUTS run.
The model exercises every input kind of the sharded solve: per-patient parameters (random
effects), population-wide parameters passed through ``shared=`` (``ka``) and a shared
``bioavailability`` (replicated inputs, whose gradients are summed over devices).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def simulate(n_patients: int, seed: int = 0):
    from bayesbio.population import bolus, make_batch, patient

    rng = np.random.default_rng(seed)
    patients = []
    for i in range(n_patients):
        n = int(rng.integers(3, 7))
        t = np.sort(rng.uniform(0.25, 24.0, n))
        doses = [bolus(0.0, 100.0, 0)] + ([bolus(12.0, 50.0, 0)] if i % 3 == 0 else [])
        patients.append(patient(doses, t, obs_compartment=1, obs_value=rng.lognormal(1.0, 0.3, n)))
    return {"events": make_batch(patients, n_states=2).to_dict()}


def rhs(t, y, p):
    import jax.numpy as jnp

    k = p["cl"] / p["v"]
    return jnp.stack([-p["ka"] * y[0], p["ka"] * y[0] - k * y[1]])


def model(data):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    import bayesbio as bb
    from bayesbio.population import lognormal_parameters, solve_population

    events = data["events"]
    n_patients = events["obs_time"].shape[0]
    ka = numpyro.sample("ka", dist.LogNormal(0.0, 0.5))
    cl = numpyro.sample("cl_pop", dist.LogNormal(1.0, 0.5))
    v = numpyro.sample("v_pop", dist.LogNormal(3.0, 0.5))
    f_oral = numpyro.sample("f_oral", dist.Beta(8.0, 2.0))
    omega = numpyro.sample("omega", dist.HalfNormal(0.5).expand([2]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    p = lognormal_parameters({"cl": cl, "v": v}, omega, n_patients, record=False)
    amounts = solve_population(rhs, p, events, shared={"ka": ka}, bioavailability=jnp.stack([f_oral, 1.0]))
    conc = amounts[..., 1] / p["v"][:, None]
    bb.observe("conc", bb.LogNormalNoise(conc, sigma), obs=events["obs_value"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["density", "nuts"])
    parser.add_argument("--patients", type=int, default=13)
    parser.add_argument("--devices", type=int)
    parser.add_argument("--chain-devices", type=int)
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument("--reference", action="store_true", help="also without a mesh (density)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args(argv)

    import bayesbio as bb

    if args.distributed:
        bb.distributed.initialize()
    import jax

    jax.config.update("jax_enable_x64", True)
    data = simulate(args.patients)
    mesh = None
    if args.chain_devices:
        mesh = bb.make_mesh(args.devices, chains=args.chain_devices)
    elif args.devices:
        mesh = bb.make_mesh(args.devices)
    out = {"process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count(),
           "mesh": None if mesh is None else {k: int(v) for k, v in dict(mesh.shape).items()}}
    if args.mode == "density":
        from numpyro.infer.util import initialize_model

        def value_and_grad():
            # a fixed point: NumPyro's uniform(-2, 2) initialisation with a fixed key
            info, potential, _, _ = initialize_model(jax.random.PRNGKey(1), model, model_args=(data,))
            value, grad = jax.jit(jax.value_and_grad(potential))(info.z)
            return float(value), {k: np.asarray(v).ravel().tolist() for k, v in grad.items()}

        if mesh is not None:
            with jax.set_mesh(mesh):
                out["value"], out["grad"] = value_and_grad()
        if args.reference or mesh is None:  # the plain vmap on one device, same process
            out["reference_value"], out["reference_grad"] = value_and_grad()
    else:
        chain_method = "parallel" if args.chain_devices else "sequential"
        idata = bb.sample_nuts(
            model, data, chains=2, warmup=args.warmup, samples=args.samples, seed=3, chunk_size=10,
            progress=False, chain_method=chain_method, mesh=mesh,
        )
        post = idata.posterior
        out["draws"] = {k: np.asarray(post[k]).tolist() for k in ("ka", "cl_pop", "v_pop", "f_oral", "omega", "sigma", "eta")}
        out["n_steps"] = np.asarray(idata.sample_stats["n_steps"]).tolist()
        out["settings"] = post.attrs["settings"]
    print(json.dumps(out))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

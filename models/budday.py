"""Human brain tissue (Budday et al. 2017): constitutive laws fitted per region to tension,
compression and shear jointly.

A model family, one model per law: ``budday_neo_hookean``, ``budday_mooney_rivlin``,
``budday_yeoh2``, ``budday_gent``, ``budday_demiray``, ``budday_ogden1``, ``budday_ogden2``.
Each of the four regions (cortex, basal ganglia, corona radiata, corpus callosum) has its own
material and noise parameters; uniaxial tension/compression (stretch 0.9–1.1, P11) and simple
shear (gamma −0.2–0.2, P12), nominal stresses in kPa; the reference-state points (stretch 1,
gamma 0: zero stress for every law) are marked missing:

    params[region] ~ the law's admissible priors at stress scale 1 kPa (Ogden exponents ~ N(0, 20))
    noise_abs[region] ~ HalfNormal(0.1 kPa),  noise_rel[region] ~ HalfNormal(0.2)
    P[region, mode] ~ Normal(P_law, sqrt(noise_abs^2 + noise_rel^2 P_law^2))

``shear_modulus`` (deterministic, kPa) is ``d P12 / d gamma`` at 0, from the law by autodiff.
Data: ``bayesbio.datasets.load("budday2017")`` (averaged curves from LivingMatterLab/CANN).
"""

from types import SimpleNamespace

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

import bayesbio as bb
from bayesbio import constitutive as bbc

LAWS = ["neo_hookean", "mooney_rivlin", "yeoh2", "gent", "demiray", "ogden1", "ogden2"]
REGIONS = {"CX": "cortex", "BG": "basal_ganglia", "CR": "corona_radiata", "CC": "corpus_callosum"}
SCALE_KPA = 1.0

#: Simulation-based calibration (``bayesbio sbc budday_<law>``, results in benchmarks/results/sbc/):
#: the generic NUTS settings (500 warm-up, 99 draws thinned by 5) with 4 replications vmapped together.
sbc = {"reps": 200, "warmup": 500, "draws": 99, "thin": 5, "batch": 4}
#: Laws whose SBC has been run; the others have no settings yet, so the slow SBC test skips
#: them (costs and reasons in benchmarks/results/sbc/README.md).
SBC_LAWS = ("neo_hookean", "mooney_rivlin", "yeoh2", "gent", "demiray", "ogden1", "ogden2")
#: Laws whose SBC fits run as ``bayesbio fit --prefit map`` runs them: chains start from the
#: best of 8 mode searches (bayesbio.infer.prefit) and adapt a dense mass matrix (``dense_mass="auto"``
#: picks it for Ogden-2's 24 parameters); the same settings as Treloar's Ogden-2 and -3.
SBC_MAP_DENSE = ("ogden2",)

variants = {f"budday_{law}": f"Budday (2017) human brain, 4 regions, tension/compression + shear: "
            f"{bbc.law(law).description}" for law in LAWS}


def load_data(path=None):
    """``{"uniaxial": {"stretch", "stress"}, "simple_shear": {"amount", "stress"}}``, arrays
    of shape (region, point) in the order cortex, basal ganglia, corona radiata, corpus callosum."""
    table = bb.datasets.load("budday2017") if path is None else pd.read_csv(path)
    cols = ["region_code", "loading_mode", "stretch_lambda", "shear_amount_gamma", "nominal_stress_kPa"]
    bb.require_columns(table, cols, source=path or "budday2017")
    regions = [r for r in REGIONS if r in set(table["region_code"])]
    if not regions:
        raise bb.errors.DataError(f"region_code: expected some of {list(REGIONS)}; got {sorted(set(table['region_code']))}")
    out = {"uniaxial": {"stretch": [], "stress": []}, "simple_shear": {"amount": [], "stress": []}}
    for r in regions:
        rows = table[table["region_code"] == r]
        ut = rows[rows["loading_mode"] == "uniaxial_tension_compression"].sort_values("stretch_lambda")
        ss = rows[rows["loading_mode"] == "simple_shear"].sort_values("shear_amount_gamma")
        out["uniaxial"]["stretch"].append(ut["stretch_lambda"].to_numpy(float))
        out["uniaxial"]["stress"].append(ut["nominal_stress_kPa"].to_numpy(float))
        out["simple_shear"]["amount"].append(ss["shear_amount_gamma"].to_numpy(float))
        out["simple_shear"]["stress"].append(ss["nominal_stress_kPa"].to_numpy(float))
    try:
        data = {m: {k: np.stack(v) for k, v in d.items()} for m, d in out.items()}
    except ValueError:
        raise bb.errors.DataError("every region needs the same number of uniaxial and of shear points") from None
    # the reference state (stretch 1, gamma 0) has zero stress for every law and every parameter: it is
    # not a measurement, and observing an exact 0 where the prediction is exactly 0 makes the
    # likelihood unbounded as the noise floor shrinks (PSIS k = inf). Mark it missing.
    data["uniaxial"]["stress"][data["uniaxial"]["stretch"] == 1.0] = np.nan
    data["simple_shear"]["stress"][data["simple_shear"]["amount"] == 0.0] = np.nan
    return data


def build(law_name, *, scale=SCALE_KPA):
    law = bbc.law(law_name, alpha_scale=20.0) if law_name.startswith("ogden") else bbc.law(law_name)

    def model(data):
        n_regions = data["uniaxial"]["stretch"].shape[0]
        with numpyro.plate("region", n_regions):
            params = law.sample(scale)
            a = numpyro.sample("noise_abs", dist.HalfNormal(0.1 * scale))
            b = numpyro.sample("noise_rel", dist.HalfNormal(0.2))
        numpyro.deterministic("shear_modulus", jax.vmap(lambda p: bbc.shear_modulus(law, p))(params))
        ut = jax.vmap(lambda p, x: bbc.stress(law, "uniaxial", x, p))(params, data["uniaxial"]["stretch"])
        ss = jax.vmap(lambda p, x: bbc.stress(law, "simple_shear", x, p))(params, data["simple_shear"]["amount"])
        bbc.observe_stress("uniaxial", ut, data["uniaxial"]["stress"], noise=bb.CombinedNoise,
                           a=a[:, None], b=b[:, None])
        bbc.observe_stress("simple_shear", ss, data["simple_shear"]["stress"], noise=bb.CombinedNoise,
                           a=a[:, None], b=b[:, None])

    dims = {p.name: ["region"] + ([f"{p.name}_term"] if p.shape else []) for p in law.parameters}
    dims.update(noise_abs=["region"], noise_rel=["region"], shear_modulus=["region"],
                uniaxial=["region", "stretch"], simple_shear=["region", "gamma"])

    def coords(data):
        n = data["uniaxial"]["stretch"].shape[0]
        return {"region": list(REGIONS.values())[:n], "stretch": data["uniaxial"]["stretch"][0],
                "gamma": data["simple_shear"]["amount"][0]}

    return SimpleNamespace(name=f"budday_{law_name}", model=model, load_data=load_data, dims=dims, coords=coords,
                           description=variants.get(f"budday_{law_name}", law.description), law=law,
                           sbc=(dict(sbc, prefit="map", dense_mass=True) if law_name in SBC_MAP_DENSE else sbc)
                           if law_name in SBC_LAWS else None)


def variant(name):
    return build(name.removeprefix("budday_"))

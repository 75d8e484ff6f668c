"""Shared pieces of the report tests (test_report.py, test_report_browser.py): the small
NumPyro models they fit, a synthetic Lotka–Volterra-shaped result, and strict checks of a
report's HTML and images."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import arviz as az
import numpy as np
import numpyro
import numpyro.distributions as dist
from PIL import Image

import bayesbio as bb


MAX_BYTES = 5 * 1024 * 1024

# ----------------------------------------------------------------------------- models

SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def centred_schools(data):
    """Eight schools, centred: the classic funnel that makes NUTS diverge."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", data["y"].shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, data["sigma"]), obs=data["y"])


def regression(data):
    a = numpyro.sample("a", dist.Normal(0.0, 10.0))
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    s = numpyro.sample("s", dist.HalfNormal(2.0))
    numpyro.sample("y", dist.Normal(a + b * data["x"], s), obs=data["y"])


def _regression_data():
    x = np.linspace(-1.0, 1.0, 20)  # centred: a and b nearly uncorrelated, so NUTS mixes well
    noise = np.random.default_rng(1).permutation(np.linspace(-1.5, 1.5, 20))  # no outliers
    return {"x": x, "y": 1.0 + 2.0 * x + 0.3 * noise}



def fit_good_run():
    return bb.sample_nuts(
        regression, data=_regression_data(), chains=4, warmup=300, samples=500, progress=False
    )


def fit_bad_run():
    """The centred eight schools at a low target acceptance: divergences by design."""
    return bb.sample_nuts(
        centred_schools,
        data={"y": SCHOOLS_Y, "sigma": SCHOOLS_SIGMA},
        chains=4,
        warmup=100,
        samples=250,
        target_accept=0.6,
        progress=False,
    )


def fit_svi_run():
    return bb.fit_svi(regression, data=_regression_data(), steps=500, samples=500, starts=2, progress=False)


def fit_laplace_run():
    return bb.fit_laplace(regression, data=_regression_data(), samples=500, starts=2)


# ----------------------------------------------------------------------------- synthetic LV-shaped result


def synthetic_lv(chains=4, draws=1000, seed=0, *, divergent=0):
    """An InferenceData shaped like the Lotka–Volterra NUTS result (same groups, dims, attrs)."""
    rng = np.random.default_rng(seed)
    shape = (chains, draws)
    t = np.arange(1901.0, 1921.0)
    theta = np.stack(
        [rng.normal(m, s, shape) for m, s in ((0.55, 0.06), (0.028, 0.004), (0.8, 0.09), (0.024, 0.004))],
        axis=-1,
    )
    z_init = np.stack([rng.normal(34, 3, shape), rng.normal(6, 0.5, shape)], axis=-1)
    sigma = np.abs(rng.normal(0.25, 0.045, shape + (2,)))
    base = np.stack(
        [40 + 30 * np.sin(2 * np.pi * (t - 1901) / 10), 20 + 15 * np.sin(2 * np.pi * (t - 1903) / 10)],
        axis=-1,
    )
    y_obs = base * np.exp(rng.normal(0, 0.25, base.shape))
    y_init_obs = np.array([30.0, 4.0])
    mu = np.log(base)[None, None] + rng.normal(0, 0.05, shape + base.shape)
    y_pp = np.exp(mu + rng.normal(0, 0.25, mu.shape))
    ll_y = -0.5 * ((np.log(y_obs) - mu) / 0.25) ** 2 - np.log(0.25 * np.sqrt(2 * np.pi) * y_obs)
    mu0 = np.log(z_init)
    y_init_pp = np.exp(mu0 + rng.normal(0, 0.25, mu0.shape))
    ll_y0 = -0.5 * ((np.log(y_init_obs) - mu0) / 0.25) ** 2 - np.log(0.25 * np.sqrt(2 * np.pi) * y_init_obs)
    diverging = np.zeros(shape, dtype=bool)
    if divergent:
        diverging.reshape(-1)[rng.choice(chains * draws, divergent, replace=False)] = True
    energy = 140 + rng.normal(0, 3, shape)
    tree_depth = rng.integers(3, 7, shape)
    idata = az.from_dict(
        posterior={"theta": theta, "z_init": z_init, "sigma": sigma},
        sample_stats={
            "lp": -energy + 5,
            "energy": energy,
            "diverging": diverging,
            "n_steps": 2**tree_depth - 1,
            "tree_depth": tree_depth,
            "reached_max_treedepth": tree_depth >= 10,
            "acceptance_rate": rng.uniform(0.7, 1.0, shape),
            "step_size": np.full(shape, 0.1),
            "solver_failures": np.zeros(shape, dtype=np.int64),
        },
        log_likelihood={"y_init": ll_y0, "y": ll_y},
        posterior_predictive={"y_init": y_init_pp, "y": y_pp},
        observed_data={"y_init": y_init_obs, "y": y_obs},
        coords={"parameter": ["alpha", "beta", "gamma", "delta"], "species": ["hare", "lynx"], "time": t},
        dims={
            "theta": ["parameter"],
            "z_init": ["species"],
            "sigma": ["species"],
            "y_init": ["species"],
            "y": ["time", "species"],
        },
    )
    idata.sample_stats["warmup_solver_failures"] = (("chain",), np.array([6, 10, 41, 183][:chains]))
    idata.posterior.attrs.update(
        {
            "model": "lotka_volterra",
            "model_source": "bayesbio.models.lotka_volterra",
            "method": "nuts",
            "seed": 0,
            "data_fingerprint": "859464d6abddf66e",
            "settings": json.dumps(
                {
                    "chains": chains,
                    "warmup": 1000,
                    "samples": draws,
                    "target_accept": 0.8,
                    "max_tree_depth": 10,
                }
            ),
            "version_bayesbio": bb.__version__,
            "version_arviz": az.__version__,
            "compile_seconds": 40.6,
            "warmup_seconds": 128.9,
            "sampling_seconds": 52.6,
        }
    )
    return idata


# ----------------------------------------------------------------------------- HTML checks

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class StrictHTML(HTMLParser):
    """Fails on unclosed or mismatched non-void tags; collects <img> sources and section ids."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, tuple[int, int]]] = []
        self.images: list[dict] = []
        self.sections: list[str] = []
        self.scripts = 0
        self.doctype = False

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "script":
            self.scripts += 1
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        if tag not in VOID:
            raise AssertionError(f"self-closing non-void <{tag}/> at {self.getpos()}")
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            raise AssertionError(f"end tag for void element </{tag}> at {self.getpos()}")
        if not self.stack:
            raise AssertionError(f"</{tag}> at {self.getpos()} closes nothing")
        open_tag, pos = self.stack.pop()
        if open_tag != tag:
            raise AssertionError(f"</{tag}> at {self.getpos()} closes <{open_tag}> opened at {pos}")

    def close(self):
        super().close()
        if self.stack:
            raise AssertionError(f"unclosed tags: {self.stack}")


def parse(text: str) -> StrictHTML:
    parser = StrictHTML()
    parser.feed(text)
    parser.close()
    assert parser.doctype, "missing <!DOCTYPE html>"
    return parser


def check_images(parser: StrictHTML) -> list[Image.Image]:
    out = []
    for img in parser.images:
        src = img.get("src", "")
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert img.get("alt"), "every image needs alt text"
        try:
            raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        except binascii.Error as exc:  # pragma: no cover - failure path
            raise AssertionError(f"invalid base64 in {img.get('alt')}") from exc
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        Image.open(io.BytesIO(raw)).verify()  # raises on a corrupt PNG
        im = Image.open(io.BytesIO(raw))
        im.load()
        assert im.format == "PNG" and min(im.size) > 50
        out.append(im)
    return out


def section(text: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', text, flags=re.DOTALL)
    assert m, f"no section {sid}"
    return m.group(1)


def check_report(path: Path) -> tuple[str, StrictHTML]:
    assert path.is_file()
    assert path.stat().st_size < MAX_BYTES
    text = path.read_text(encoding="utf-8")
    parser = parse(text)
    assert parser.scripts == 0, "the report must not need JavaScript"
    assert not re.search(r'(src|href)="(https?:|//)', text), "the report must not load anything remote"
    check_images(parser)
    assert parser.sections.index("verdict") < parser.sections.index("summary")
    assert parser.sections[0] == "verdict"
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    return text, parser


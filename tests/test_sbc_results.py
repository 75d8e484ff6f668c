"""The committed SBC results (benchmarks/results/sbc/) are the evidence for the bundled models'
calibration: each model whose script defines ``sbc`` settings has a passing result there, run
with exactly the settings the script gives now (the slow test would reproduce it draw for draw).
Reads JSON only; runs no fit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import bayesbio as bb
from bayesbio.sbc.settings import SBCSettings, resolve_settings

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "sbc"
DEFAULTS = SBCSettings().as_dict()
WITH_SETTINGS = sorted(name for name in bb.bundled_models() if bb.load_model(name).sbc)


def test_the_models_with_sbc_settings_are_the_ones_expected():
    # a guard against a family's SBC list silently dropping models
    assert len(WITH_SETTINGS) >= 22, WITH_SETTINGS
    assert {"lotka_volterra", "theophylline", "warfarin_pkpd", "scratch_assay", "diffusivity_field", "treloar_ogden2", "treloar_ogden3", "budday_ogden1", "budday_ogden2", "deconvolution",
            "backward_heat"} <= set(WITH_SETTINGS)


@pytest.mark.parametrize("name", WITH_SETTINGS)
def test_committed_sbc_result_passed_with_the_scripts_settings(name):
    spec = bb.load_model(name)
    path = RESULTS / name / "sbc.json"
    assert path.is_file(), f"{name}: no committed SBC result at {path}"
    payload = json.loads(path.read_text())
    assert payload["model"] == name and payload["passed"] is True
    assert min(p["p_holm"] for p in payload["parameters"]) >= payload["alpha"] == 0.01
    assert payload["settings"]["reps"] >= 200
    expected = resolve_settings(spec.sbc, None, model_name=name).as_dict()
    expected["prefit"] = expected["prefit"] or spec.prefit or "none"  # as run_sbc resolves it
    recorded = payload["settings"]
    for field in (f.name for f in dataclasses.fields(SBCSettings)):
        # fields added after a run was made are absent from its record: it ran with their default
        value = recorded.get(field, "none" if field == "prefit" else DEFAULTS[field])
        assert value == expected[field], f"{name}: SBC setting '{field}' recorded {value!r}, script gives {expected[field]!r}"

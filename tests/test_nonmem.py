"""NONMEM-style reader: records to batches, and a clear DataError (row, ID, column) for every
malformed record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesbio as bb
from bayesbio.errors import DataError
from bayesbio.population import read_nonmem


def table(**overrides):
    base = {
        "ID": [1, 1, 1, 1, 2, 2, 2],
        "TIME": [0.0, 0.0, 1.0, 12.0, 0.0, 2.0, 4.0],
        "AMT": [100.0, 0.0, 0.0, 0.0, 50.0, 0.0, 0.0],
        "EVID": [1, 0, 0, 0, 1, 0, 0],
        "CMT": [1, 2, 2, 2, 2, 2, 2],
        "DV": [np.nan, 0.0, 5.0, 2.0, np.nan, 3.0, 1.5],
        "MDV": [1, 0, 0, 0, 1, 0, 0],
        "WT": [70.0, 70.0, 70.0, 70.0, 55.0, 55.0, 55.0],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_reads_doses_observations_and_covariates():
    data = read_nonmem(table(), n_states=2, covariates=["WT"])
    b = data.batch
    assert data.n_patients == 2 and data.ids.tolist() == [1, 2]
    np.testing.assert_array_equal(data.covariates["WT"], [70.0, 55.0])
    # patient 1: 3 observations, patient 2: 2 (padded, NaN value, invalid)
    assert b.obs_valid.sum(axis=1).tolist() == [3, 2]
    assert np.isnan(b.obs_value[1, 2])
    assert b.obs_cmt[0].tolist() == [1, 1, 1]
    assert b.dose_cmt[:, 0].tolist() == [0, 1] and b.dose_amount[:, 0].tolist() == [100.0, 50.0]
    assert b.seg_bolus[0, 0].tolist() == [100.0, 0.0] and b.seg_bolus[1, 0].tolist() == [0.0, 50.0]
    d = data.to_dict()
    assert set(d) == {"events", "covariates", "id"}


def test_infusion_addl_reset_and_pre_dose_order():
    t = pd.DataFrame({
        "ID": [7] * 7,
        "TIME": [0.0, 12.0, 12.0, 20.0, 24.0, 24.0, 30.0],
        "AMT": [10.0, 0, 0, 0, 0, 20.0, 0],
        "EVID": [1, 0, 0, 2, 3, 4, 0],
        "CMT": [1, 1, 1, 1, 0, 1, 1],
        "DV": [np.nan, 1.0, 2.0, np.nan, np.nan, np.nan, 3.0],
        "RATE": [5.0, 0, 0, 0, 0, 0, 0],
        "ADDL": [1, 0, 0, 0, 0, 0, 0],
        "II": [12.0, 0, 0, 0, 0, 0, 0],
    })
    data = read_nonmem(t, n_states=1)
    p = data.patients[0]
    # ADDL=1, II=12: infusions at 0 and 12 (10 mg at 5 mg/h: 2 h), a reset at 24, and reset + dose at 24
    assert [(d.time, d.amount, d.rate, d.reset) for d in p.doses] == [
        (0.0, 10.0, 5.0, False), (12.0, 10.0, 5.0, False), (24.0, 0.0, 0.0, True), (24.0, 0.0, 0.0, True),
        (24.0, 20.0, 0.0, False),
    ]
    # the two observations at 12 h come after no dose row (the ADDL dose is implicit): both post-dose
    assert p.pre_dose.tolist() == [False, False, False, False]
    # EVID 2 at 20 h is a prediction-only record
    assert np.isnan(p.obs_value[2]) and p.obs_time.tolist() == [12.0, 12.0, 20.0, 30.0]
    b = data.batch
    assert b.seg_rate[0, :, 0].tolist()[:4] == [5.0, 0.0, 5.0, 0.0]
    assert bool(b.seg_reset[0].any())


def test_observation_before_dose_row_at_same_time_is_pre_dose():
    t = table(EVID=[1, 0, 0, 0, 0, 1, 0], AMT=[100.0, 0, 0, 0, 0, 50.0, 0], TIME=[0.0, 0.0, 1.0, 12.0, 0.0, 0.0, 4.0],
              DV=[np.nan, 0.0, 5.0, 2.0, 0.1, np.nan, 1.5], MDV=[1, 0, 0, 0, 0, 1, 0])
    data = read_nonmem(t, n_states=2)
    assert data.patients[0].pre_dose.tolist() == [False, False, False]  # obs after the dose row
    assert data.patients[1].pre_dose.tolist() == [True, False]          # obs row before the dose row


def test_theo_sd_reads_like_the_theoph_table():
    raw = bb.datasets.load("theophylline_nonmem")
    raw = raw.assign(EVID=np.where(raw["EVID_rxode2"] == 101, 1, raw["EVID_rxode2"]))
    data = read_nonmem(
        raw, n_states=2, covariates=["WT_kg"],
        columns={"TIME": "TIME_h", "DV": "DV_conc_mg_per_L", "AMT": "AMT_mg"},
    )
    theoph = bb.datasets.load("theophylline")
    assert data.n_patients == 12 and data.batch.obs_valid.sum() == len(theoph) == 132
    np.testing.assert_allclose(np.sort(data.batch.obs_value[data.batch.obs_valid]), np.sort(theoph["conc_mg_per_L"]))
    doses = theoph.groupby("subject", sort=False).first()
    np.testing.assert_allclose(data.batch.dose_amount[:, 0], doses["dose_mg_per_kg"] * doses["weight_kg"], rtol=1e-6)


@pytest.mark.parametrize(
    "overrides, kwargs, words",
    [
        (dict(TIME=[0.0, 0.0, 1.0, 0.5, 0.0, 2.0, 4.0]), {}, ["row 3", "ID 1", "TIME", "not sorted"]),
        (dict(AMT=[np.nan, 0, 0, 0, 50.0, 0, 0]), {}, ["row 0", "ID 1", "AMT", "without a positive amount"]),
        (dict(AMT=[0.0, 0, 0, 0, 50.0, 0, 0]), {}, ["row 0", "AMT", "without a positive amount"]),
        (dict(CMT=[1, 2, 2, 2, 3, 2, 2]), {}, ["row 4", "ID 2", "CMT", "unknown compartment CMT=3"]),
        (dict(CMT=[-1, 2, 2, 2, 2, 2, 2]), {}, ["row 0", "unknown compartment"]),
        (dict(DV=[np.nan, 0.0, np.nan, 2.0, np.nan, 3.0, 1.5]), {}, ["row 2", "ID 1", "DV", "missing DV"]),
        (dict(EVID=[1, 0, 0, 0, 101, 0, 0]), {}, ["row 4", "EVID", "unsupported EVID 101"]),
        (dict(EVID=[1, 0, 0.5, 0, 1, 0, 0]), {}, ["row 2", "EVID", "integer"]),
        (dict(MDV=[1, 0, 2, 0, 1, 0, 0]), {}, ["row 2", "MDV", "0 or 1"]),
        (dict(ID=[1, 1, 2, 2, 1, 1, 1]), {}, ["ID 1", "two separate blocks"]),
        (dict(TIME=[0.0, 0.0, "x", 12.0, 0.0, 2.0, 4.0]), {}, ["row 2", "TIME", "expected a number"]),
        (dict(RATE=[-2, 0, 0, 0, 0, 0, 0]), {}, ["row 0", "RATE", "not supported"]),
        (dict(SS=[1, 0, 0, 0, 0, 0, 0]), {}, ["row 0", "SS", "steady-state"]),
        (dict(ADDL=[2, 0, 0, 0, 0, 0, 0]), {}, ["row 0", "ADDL", "II > 0"]),
        (dict(WT=[70.0, 70.0, 71.0, 70.0, 55.0, 55.0, 55.0]), {"covariates": ["WT"]}, ["row 2", "WT", "changes within"]),
        (dict(WT=[70.0, 70.0, 70.0, 70.0, np.nan, 55.0, 55.0]), {"covariates": ["WT"]}, ["row 4", "WT", "missing"]),
        ({}, {"covariates": ["AGE"]}, ["'AGE' not found"]),
    ],
)
def test_malformed_records_raise_data_errors(overrides, kwargs, words):
    with pytest.raises(DataError) as err:
        read_nonmem(table(**overrides), n_states=2, **kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_missing_columns_and_observation_compartment():
    with pytest.raises(DataError, match="missing required column 'TIME'"):
        read_nonmem(table().drop(columns="TIME"), n_states=2)
    with pytest.raises(DataError, match="default_obs_cmt"):
        read_nonmem(table().drop(columns="CMT"), n_states=2)
    data = read_nonmem(table().drop(columns="CMT"), n_states=2, default_obs_cmt=2)
    assert data.batch.obs_cmt[0].tolist() == [1, 1, 1] and data.batch.dose_cmt[:, 0].tolist() == [0, 0]
    with pytest.raises(DataError, match="does not exist"):
        read_nonmem("/nonexistent/file.csv", n_states=2)

"""Greeks kernel and façade against the closed forms, mpmath and their own relations.

Tolerances: the kernel and :mod:`fastgex.reference_greeks` evaluate the same formulas
with different exp/log/CDF implementations, so values agree to a few 1e-14 relative;
each comparison adds an absolute floor of 1e-12 times the greek's natural scale for
values that cross zero (theta, vanna, charm, vomma, speed).
"""

from __future__ import annotations

import math

import mpmath
import numba
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import one_run_and_alone, random_contracts
from fastgex import ALL_GREEKS, GREEK_UNITS, GreekUnits, greeks
from fastgex import reference_greeks as ref
from fastgex._fastmath import fast_erfc, mills_ratio, norm_cdf

ALL = ("price", *ALL_GREEKS)
mpmath.mp.dps = 40


@numba.njit(parallel=True)
def _map(function_id, values):
    out = np.empty_like(values)
    for index in numba.prange(values.size):
        if function_id == 0:
            out[index] = norm_cdf(values[index])
        elif function_id == 1:
            out[index] = mills_ratio(values[index])
        else:
            out[index] = fast_erfc(values[index])
    return out


# --- the vectorizable normal distribution -------------------------------------------


def test_mills_ratio_whole_half_line():
    values = np.concatenate([np.linspace(0.0, 40.0, 4001), np.geomspace(40.0, 1e5, 300)])
    got = _map(1, values)
    exact = np.array(
        [float(mpmath.erfc(mpmath.mpf(v) / mpmath.sqrt(2)) / 2 / mpmath.npdf(v)) for v in values]
    )
    assert np.max(np.abs(got / exact - 1.0)) <= 1e-15
    # Beyond 1e5 the asymptotic series 1/x - 1/x^3 + 3/x^5 is exact to 1e-25.
    huge = np.geomspace(1e5, 1e300, 200)
    inverse = 1.0 / huge
    series = inverse * (1.0 - inverse * inverse * (1.0 - 3.0 * inverse * inverse))
    assert np.max(np.abs(_map(1, huge) / series - 1.0)) <= 1e-15


def test_mills_ratio_special_values():
    got = _map(1, np.array([0.0, np.inf, np.nan]))
    assert got[0] == pytest.approx(math.sqrt(math.pi / 2), rel=1e-15)
    assert got[1] == 0.0 and math.isnan(got[2])


@pytest.mark.parametrize(
    ("low", "high", "tolerance"),
    # relative error: the polynomial (1e-15) plus the rounding of x^2/2 in the exponential
    [(-5.0, 5.0, 2e-15), (-20.0, -5.0, 3e-14), (-37.5, -20.0, 1e-13)],
)
def test_norm_cdf_against_mpmath(low, high, tolerance):
    values = np.linspace(low, high, 3001)
    got = _map(0, values)
    exact = np.array([float(mpmath.ncdf(v)) for v in values])
    assert np.max(np.abs(got / exact - 1.0)) <= tolerance


def test_norm_cdf_right_side_and_specials():
    values = np.linspace(0.0, 40.0, 2001)
    exact = np.array([float(mpmath.ncdf(v)) for v in values])
    assert np.max(np.abs(_map(0, values) - exact)) <= 2.3e-16  # absolute, near 1
    got = _map(0, np.array([-np.inf, np.inf, np.nan, -40.0]))
    assert got[0] == 0.0 and got[1] == 1.0 and math.isnan(got[2]) and got[3] == 0.0


def test_fast_erfc_against_libm():
    values = np.linspace(-6.0, 26.0, 20001)
    got = _map(2, values)
    exact = np.array([math.erfc(v) for v in values])
    relative = np.abs(got / exact - 1.0)
    assert np.max(relative[values < 4.0]) <= 6e-15
    assert np.max(relative / np.maximum(1.0, values**2)) <= 1.2e-15  # x^2-sized in the tail


# --- the kernel through the façade -------------------------------------------------


def _chain(strike, vol, years, is_call, underlying=None, **extra):
    columns = {
        "underlying": underlying if underlying is not None else ["U"] * len(strike),
        "strike": np.asarray(strike, dtype=np.float64),
        "option_type": ["C" if flag else "P" for flag in is_call],
        "implied_vol": np.asarray(vol, dtype=np.float64),
        "time_to_expiry": np.asarray(years, dtype=np.float64),
    }
    columns.update(extra)
    return pa.table(columns)


def _random_cases(count, seed):
    columns = random_contracts(count, seed)
    return {
        "strike": columns["strike"],
        "vol": columns["implied_vol"],
        "years": columns["time_to_expiry"],
        "is_call": columns["option_type"] == "C",
    }


#: Natural scale of each raw greek (S = 100): the absolute floor is 1e-12 of it.
SCALE = {"price": 100, "delta": 1, "gamma": 1, "vega": 100, "theta": 100, "rho": 500,
         "vanna": 10, "charm": 100, "vomma": 1000, "speed": 0.1}  # fmt: skip


@pytest.mark.parametrize(("rate", "dividend"), [(0.0, 0.0), (0.05, 0.02), (-0.01, 0.04)])
def test_bsm_matches_reference(rate, dividend):
    cases = _random_cases(400, seed=int(abs(rate) * 1000) + 7)
    chain = _chain(cases["strike"], cases["vol"], cases["years"], cases["is_call"])
    result = greeks(chain, greeks=ALL, spot=100.0, rate=rate, dividend_yield=dividend,
                    units="raw", min_time_to_expiry=1e-9)  # fmt: skip
    assert result.dropped_count == 0 and result.model == "bsm"
    table = result.table
    for row in range(chain.num_rows):
        expected = ref.bsm_greeks(
            100.0, cases["strike"][row], cases["vol"][row], cases["years"][row], rate, dividend,
            bool(cases["is_call"][row]),
        )  # fmt: skip
        for name in ALL:
            got = table.column(name)[row].as_py()
            assert got == pytest.approx(expected[name], rel=5e-13, abs=1e-12 * SCALE[name]), name


def test_black76_matches_reference_and_bsm():
    cases = _random_cases(300, seed=3)
    rate, dividend, spot = 0.04, 0.015, 100.0
    forward = spot * np.exp((rate - dividend) * cases["years"])
    chain = _chain(cases["strike"], cases["vol"], cases["years"], cases["is_call"],
                   forward=forward)  # fmt: skip
    black = greeks(chain, greeks=ALL, rate=rate, units="raw", min_time_to_expiry=1e-9)
    assert black.model == "black76" and black.dropped_count == 0
    plain = _chain(cases["strike"], cases["vol"], cases["years"], cases["is_call"])
    bsm = greeks(plain, greeks=ALL, spot=spot, rate=rate, dividend_yield=dividend, units="raw",
                 min_time_to_expiry=1e-9).table  # fmt: skip
    growth = np.exp((rate - dividend) * cases["years"])
    b76 = {name: black.table.column(name).to_numpy() for name in ALL}
    for row in range(chain.num_rows):
        expected = ref.black76_greeks(
            forward[row],
            cases["strike"][row],
            cases["vol"][row],
            cases["years"][row],
            rate,
            bool(cases["is_call"][row]),
        )
        for name in ALL:
            assert b76[name][row] == pytest.approx(
                expected[name], rel=5e-13, abs=1e-12 * SCALE[name]
            ), name
    # Same option priced on S or on F = S e^{(r-q)T}: equal price and vega; delta and
    # gamma differ by dF/dS = e^{(r-q)T} (once, twice).
    np.testing.assert_allclose(b76["price"], bsm.column("price").to_numpy(), rtol=1e-12,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(b76["vega"], bsm.column("vega").to_numpy(), rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(b76["delta"] * growth, bsm.column("delta").to_numpy(),
                               rtol=1e-12, atol=1e-14)  # fmt: skip
    np.testing.assert_allclose(b76["gamma"] * growth**2, bsm.column("gamma").to_numpy(),
                               rtol=1e-12, atol=1e-16)  # fmt: skip


def test_far_tails_against_mpmath():
    """Deep out-of-the-money prices and deltas keep their relative accuracy (no 1 - N)."""
    spot, strike, vol, years = 100.0, 400.0, 0.2, 0.5  # d1 ~ -9.7
    chain = _chain([strike, 25.0], [vol, vol], [years, years], [True, False])
    table = greeks(chain, greeks=("price", "delta"), spot=spot, units="raw").table

    def exact(strike_value, is_call):
        s, k, v, t = (mpmath.mpf(x) for x in (spot, strike_value, vol, years))
        d1 = (mpmath.log(s / k) + v * v * t / 2) / (v * mpmath.sqrt(t))
        d2 = d1 - v * mpmath.sqrt(t)
        if is_call:
            return s * mpmath.ncdf(d1) - k * mpmath.ncdf(d2), mpmath.ncdf(d1)
        return k * mpmath.ncdf(-d2) - s * mpmath.ncdf(-d1), -mpmath.ncdf(-d1)

    for row, (k, is_call) in enumerate([(strike, True), (25.0, False)]):
        price, delta = exact(k, is_call)
        assert float(price) < 1e-15  # a real tail
        # price is a difference of two tails (cancellation ~ |d1|^2): 1e-11 relative
        assert table.column("price")[row].as_py() == pytest.approx(float(price), rel=1e-11)
        assert table.column("delta")[row].as_py() == pytest.approx(float(delta), rel=1e-13)


def _raw(chain, spot, **kwargs):
    table = greeks(chain, greeks=ALL, spot=spot, units="raw", min_time_to_expiry=1e-9,
                   **kwargs).table  # fmt: skip
    return {name: table.column(name).to_numpy() for name in ALL}


def test_finite_differences():
    """gamma = d delta/dS, speed = d gamma/dS, vanna = d delta/dvol, vomma = d vega/dvol,
    charm = -d delta/dT, theta = -d price/dT, rho = d price/dr (central differences)."""
    cases = _random_cases(60, seed=11)
    cases["vol"] = np.clip(cases["vol"], 0.1, 1.0)
    cases["years"] = np.clip(cases["years"], 0.05, 3.0)
    rate, dividend, spot = 0.03, 0.01, 100.0
    args = (cases["strike"], cases["vol"], cases["years"], cases["is_call"])
    base = _raw(_chain(*args), spot, rate=rate, dividend_yield=dividend)
    step_spot, step_vol, step_time, step_rate = 1e-4 * spot, 1e-6, 1e-7, 1e-6

    def shifted(spot_shift=0.0, vol_shift=0.0, time_shift=0.0, rate_shift=0.0):
        chain = _chain(cases["strike"], cases["vol"] + vol_shift, cases["years"] + time_shift,
                       cases["is_call"])  # fmt: skip
        return _raw(chain, spot + spot_shift, rate=rate + rate_shift, dividend_yield=dividend)

    up, down = shifted(spot_shift=step_spot), shifted(spot_shift=-step_spot)
    np.testing.assert_allclose(
        (up["delta"] - down["delta"]) / (2 * step_spot), base["gamma"], rtol=2e-5, atol=1e-10
    )
    np.testing.assert_allclose(
        (up["gamma"] - down["gamma"]) / (2 * step_spot), base["speed"], rtol=2e-5, atol=1e-9
    )
    up, down = shifted(vol_shift=step_vol), shifted(vol_shift=-step_vol)
    np.testing.assert_allclose(
        (up["delta"] - down["delta"]) / (2 * step_vol), base["vanna"], rtol=2e-5, atol=1e-8
    )
    np.testing.assert_allclose(
        (up["vega"] - down["vega"]) / (2 * step_vol), base["vomma"], rtol=2e-5, atol=1e-6
    )
    up, down = shifted(time_shift=step_time), shifted(time_shift=-step_time)
    np.testing.assert_allclose(
        -(up["delta"] - down["delta"]) / (2 * step_time), base["charm"], rtol=2e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        -(up["price"] - down["price"]) / (2 * step_time), base["theta"], rtol=2e-5, atol=1e-6
    )
    up, down = shifted(rate_shift=step_rate), shifted(rate_shift=-step_rate)
    np.testing.assert_allclose(
        (up["price"] - down["price"]) / (2 * step_rate), base["rho"], rtol=2e-5, atol=1e-6
    )


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    strike=st.floats(20.0, 500.0),
    vol=st.floats(0.01, 3.0),
    years=st.floats(1e-3, 10.0),
    rate=st.floats(-0.02, 0.1),
    dividend=st.floats(0.0, 0.08),
)
def test_put_call_parity(strike, vol, years, rate, dividend):
    spot = 100.0
    values = _raw(_chain([strike, strike], [vol, vol], [years, years], [True, False]), spot,
                  rate=rate, dividend_yield=dividend)  # fmt: skip
    call = {name: values[name][0] for name in ALL}
    put = {name: values[name][1] for name in ALL}
    dividend_discount = math.exp(-dividend * years)
    rate_discount = math.exp(-rate * years)
    forward_value = spot * dividend_discount - strike * rate_discount
    assert call["price"] - put["price"] == pytest.approx(forward_value, rel=1e-11, abs=1e-11)
    assert call["delta"] - put["delta"] == pytest.approx(dividend_discount, rel=1e-12, abs=1e-14)
    for name in ("gamma", "vega", "vanna", "vomma", "speed"):
        assert call[name] == pytest.approx(put[name], rel=1e-9, abs=1e-13), name
    # d/dt of the forward value S e^-qT - K e^-rT, and of its delta e^-qT.
    theta_difference = dividend * spot * dividend_discount - rate * strike * rate_discount
    assert call["theta"] - put["theta"] == pytest.approx(theta_difference, rel=1e-9, abs=1e-10)
    assert call["rho"] - put["rho"] == pytest.approx(
        strike * years * rate_discount, rel=1e-11, abs=1e-10
    )
    assert call["charm"] - put["charm"] == pytest.approx(
        dividend * dividend_discount, rel=1e-9, abs=1e-10
    )
    # a deep in-the-money call's delta is exp(-qT) to rounding
    assert 0.0 <= call["delta"] <= dividend_discount * (1 + 4e-16) and call["gamma"] >= 0.0


def test_units_subsets_and_input_order():
    cases = _random_cases(50, seed=5)
    names = ["B" if index % 3 else "A" for index in range(50)]  # interleaved underlyings
    chain = _chain(cases["strike"], cases["vol"], cases["years"], cases["is_call"],
                   underlying=names)  # fmt: skip
    spots = {"A": 100.0, "B": 80.0}
    trader = greeks(chain, spot=spots, rate=0.02)
    raw = greeks(chain, greeks=ALL, spot=spots, rate=0.02, units="raw")
    assert trader.units is GreekUnits.TRADER and "price" not in trader.table.column_names
    for name in ALL_GREEKS:
        np.testing.assert_allclose(
            trader.table.column(name).to_numpy(),
            raw.table.column(name).to_numpy() * GREEK_UNITS[GreekUnits.TRADER][name],
            # Two stored sets are two compiled variants (fastgex._greeks_kernel.STORED),
            # which may round differently: subsets agree to 1e-12, not bit for bit.
            rtol=1e-12,
        )
    subset = greeks(chain, greeks=["vanna", "delta"], spot=spots, rate=0.02)
    assert [c for c in subset.table.column_names if c in ALL] == ["delta", "vanna"]
    # A subset runs its own compiled variant (LLVM contracts multiply-adds differently),
    # so it agrees to rounding, not bitwise: within 1e-12 of each column's scale.
    for name in ("delta", "vanna"):
        full = trader.table.column(name).to_numpy()
        np.testing.assert_allclose(
            subset.table.column(name).to_numpy(), full, rtol=1e-12,
            atol=1e-12 * np.abs(full).max(),
        )  # fmt: skip
    for row in (0, 1, 2, 49):  # each row priced on its own underlying's spot
        spot = spots[names[row]]
        expected = ref.bsm_greeks(
            spot,
            cases["strike"][row],
            cases["vol"][row],
            cases["years"][row],
            0.02,
            0.0,
            bool(cases["is_call"][row]),
        )
        assert raw.table.column("delta")[row].as_py() == pytest.approx(expected["delta"], rel=1e-13)


def test_per_row_rates():
    cases = _random_cases(40, seed=8)
    rates = np.linspace(-0.01, 0.08, 40)
    dividends = np.linspace(0.0, 0.03, 40)
    chain = _chain(cases["strike"], cases["vol"], cases["years"], cases["is_call"],
                   rate=rates, dividend_yield=dividends)  # fmt: skip
    table = greeks(chain, greeks=ALL, spot=100.0, units="raw").table
    for row in range(40):
        expected = ref.bsm_greeks(100.0, cases["strike"][row], cases["vol"][row],
                                  cases["years"][row], rates[row], dividends[row],
                                  bool(cases["is_call"][row]))  # fmt: skip
        for name in ALL:
            assert table.column(name)[row].as_py() == pytest.approx(
                expected[name], rel=5e-13, abs=1e-12 * SCALE[name]
            )


def test_a_rows_greeks_do_not_depend_on_its_place_in_a_run():
    """Bitwise the same greeks for a row in a long run of its underlying (the vectorized
    loop) and alone in its run (the scalar loop): the kernel's flags forbid reassociation,
    with which LLVM rewrote the two copies differently (1-2 ulp on AVX-512)."""
    count = 60_000  # arrays past malloc's mmap threshold, so the vector path runs
    columns = random_contracts(count, seed=21)
    del columns["open_interest"]
    one_run, each_alone = one_run_and_alone(columns)
    together = greeks(one_run, greeks=ALL, spot=100.0, rate=0.03, dividend_yield=0.01).table
    alone = greeks(each_alone, greeks=ALL, rate=0.03, dividend_yield=0.01).table
    for name in ALL:
        first, second = together.column(name).to_numpy(), alone.column(name).to_numpy()
        assert np.isfinite(first).all()
        assert np.array_equal(first, second), (name, int((first != second).sum()))


def test_bad_rows_are_nan_with_reasons():
    chain = pa.table(
        {
            "underlying": ["U", "U", "U", "U", "U", "U", None, "U", "U"],
            "strike": [100.0, 0.0, 100.0, 100.0, 100.0, np.nan, 100.0, 100.0, 100.0],
            "option_type": ["C", "P", "C", "X", None, "C", "C", "P", "C"],
            "implied_vol": [0.2, 0.2, np.nan, 0.2, 0.2, 0.2, 0.2, -0.1, 0.2],
            "time_to_expiry": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, -0.01],
        }
    )
    result = greeks(chain, spot=100.0)
    reasons = result.table.column("reason").to_pylist()
    assert reasons == [
        None,
        "invalid_strike",
        "invalid_implied_vol",
        "unknown_option_type",
        "missing_value",
        "invalid_strike",
        "missing_value",
        "invalid_implied_vol",
        "expired",
    ]
    delta = result.table.column("delta").to_numpy()
    assert math.isfinite(delta[0]) and np.isnan(delta[1:]).all()
    counts = {(row["underlying"], row["reason"]): row["count"] for row in
              result.dropped.to_pylist()}  # fmt: skip
    assert counts[("U", "invalid_strike")] == 2 and counts[(None, "missing_value")] == 1
    assert result.dropped_count == 8


def test_bad_rates_and_forwards():
    chain = _chain([100.0, 100.0], [0.2, 0.2], [0.5, 0.5], [True, False],
                   rate=[0.01, np.inf])  # fmt: skip
    assert greeks(chain, spot=100.0).table.column("reason").to_pylist() == [None, "invalid_rate"]
    futures = _chain([100.0, 100.0], [0.2, 0.2], [0.5, 0.5], [True, True],
                     forward=[101.0, -5.0])  # fmt: skip
    result = greeks(futures)
    assert result.table.column("reason").to_pylist() == [None, "invalid_forward"]


def test_clear_errors():
    chain = _chain([100.0], [0.2], [0.5], [True])
    with pytest.raises(ValueError, match="unknown greek"):
        greeks(chain, greeks=["sigma"], spot=100.0)
    with pytest.raises(ValueError, match="unknown units"):
        greeks(chain, spot=100.0, units="bps")
    with pytest.raises(Exception, match="spot"):
        greeks(chain)
    empty = greeks(chain.slice(0, 0), spot=100.0)
    assert empty.table.num_rows == 0 and empty.dropped_count == 0


def test_expiration_and_snapshot():
    chain = pa.table(
        {
            "underlying": ["U", "U"],
            "strike": [100.0, 100.0],
            "option_type": ["C", "C"],
            "implied_vol": [0.2, 0.2],
            "expiration": ["2024-03-15", "2024-01-10"],
        }
    )
    result = greeks(chain, spot=100.0, snapshot_time="2024-01-12T10:00:00-05:00")
    assert result.table.column("reason").to_pylist() == [None, "expired"]
    years = result.table.column("time_to_expiry")[0].as_py()
    # 10:00 EST to 16:00 EDT (DST began on 10 March): 63 days and 5 hours.
    assert years == pytest.approx((63 * 86400 + 5 * 3600) / (365 * 86400), rel=1e-12)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    strike=st.floats(10.0, 1000.0),
    vol=st.floats(0.01, 3.0),
    years=st.floats(1e-4, 10.0),
    is_call=st.booleans(),
)
def test_scalar_formulas_run_uncompiled(strike, vol, years, is_call):
    """The plain-Python bodies (what a CUDA compiler or simulator takes) match the JIT.

    Only fast-math reassociation differs, amplified where a price is a difference of
    two tails (up to ~100x): 1e-11 relative.
    """
    from fastgex._greeks_formulas import bsm_greeks, normalized_black_otm

    compiled = bsm_greeks(100.0, strike, vol, years, 0.03, 0.01, is_call)
    uncompiled = bsm_greeks.py_func(100.0, strike, vol, years, 0.03, 0.01, is_call)
    np.testing.assert_allclose(uncompiled, compiled, rtol=1e-11, atol=1e-300)
    x = -abs(math.log(100.0 / strike))
    total = vol * math.sqrt(years)
    np.testing.assert_allclose(
        normalized_black_otm.py_func(x, total), normalized_black_otm(x, total), rtol=1e-11
    )

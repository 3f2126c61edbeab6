"""Implied vol from prices: round trips, a high-precision oracle, bounds and bad input.

Prices are computed with mpmath (30 digits) and rounded once to float64, so the exact
vol of the rounded price is within ``eps * price / vega`` of the input vol. "Well
posed" below means ``vega / price >= 1e-4`` (per 1.0 of vol): there the rounding moves
the vol by less than 2.2e-12, and the solver must recover it to 1e-10 absolute.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgex
from fastgex import implied_vol
from fastgex import reference_greeks as ref

mpmath.mp.dps = 30
TOLERANCE = 1e-10


def _mp_black(forward, strike, vol, years, discount, is_call):
    """Discounted Black price at 30 digits (and its vega per 1.0 of vol)."""
    f, k, v, t, d = (mpmath.mpf(x) for x in (forward, strike, vol, years, discount))
    total = v * mpmath.sqrt(t)
    d1 = (mpmath.log(f / k) + total * total / 2) / total
    d2 = d1 - total
    if is_call:
        price = d * (f * mpmath.ncdf(d1) - k * mpmath.ncdf(d2))
    else:
        price = d * (k * mpmath.ncdf(-d2) - f * mpmath.ncdf(-d1))
    vega = d * f * mpmath.npdf(d1) * mpmath.sqrt(t)
    return price, vega


def _cases(count, seed):
    rng = np.random.default_rng(seed)
    return {
        "log_moneyness": rng.normal(0.0, 0.6, count),
        "vol": np.exp(rng.uniform(math.log(0.01), math.log(4.0), count)),
        "years": np.exp(rng.uniform(math.log(1 / 365 / 24), math.log(10.0), count)),
        "is_call": rng.random(count) < 0.5,
        "rate": rng.uniform(-0.01, 0.1, count),
    }


def test_round_trip_wide_ranges_black76():
    cases = _cases(1500, seed=1)
    forward = 100.0
    strike = forward * np.exp(-cases["log_moneyness"])
    discount = np.exp(-cases["rate"] * cases["years"])
    prices, well_posed = [], []
    for row in range(strike.size):
        price, vega = _mp_black(forward, strike[row], cases["vol"][row], cases["years"][row],
                                discount[row], cases["is_call"][row])  # fmt: skip
        prices.append(float(price))
        well_posed.append(float(price) > 1e-300 and vega / price >= 1e-4)
    prices = np.array(prices)
    well_posed = np.array(well_posed)
    assert well_posed.sum() > 700  # the test covers a real range
    result = implied_vol(
        price=prices,
        strike=strike,
        time_to_expiry=cases["years"],
        option_type=cases["is_call"],
        forward=forward,
        rate=cases["rate"],
    )
    error = np.abs(result.implied_vol - cases["vol"])
    assert np.max(error[well_posed]) <= TOLERANCE
    # Outside the well-posed set every row still gets a vol or a reason, never a crash.
    reasons = np.array(result.reason.to_pylist(), dtype=object)
    assert all(
        (math.isfinite(vol) and reason is None) or (math.isnan(vol) and reason is not None)
        for vol, reason in zip(result.implied_vol, reasons, strict=True)
    )
    assert "not_converged" not in set(reasons[reasons != None])  # noqa: E711


def test_against_mpmath_root():
    """The solver's vol is the exact root of the float64 price (not just near the input)."""
    cases = [  # (forward, strike, vol, years, is_call)
        (100.0, 100.0, 0.2, 0.5, True),
        (100.0, 180.0, 0.35, 0.1, True),  # far out of the money
        (100.0, 40.0, 0.6, 2.0, False),
        (100.0, 60.0, 0.5, 1.0, True),  # in the money: parity first
        (100.0, 100.2, 0.05, 1 / 365, False),  # one day, just in the money
        (100.0, 100.0, 3.5, 5.0, True),  # near the upper bound
    ]
    prices = [float(_mp_black(f, k, v, t, 1.0, c)[0]) for f, k, v, t, c in cases]
    result = implied_vol(
        price=prices,
        strike=[case[1] for case in cases],
        time_to_expiry=[case[3] for case in cases],
        option_type=[case[4] for case in cases],
        forward=[case[0] for case in cases],
    )
    for row, (f, k, v, t, c) in enumerate(cases):
        target = mpmath.mpf(prices[row])

        def error(vol, f=f, k=k, t=t, c=c, target=target):
            return _mp_black(f, k, vol, t, 1.0, c)[0] - target

        exact = mpmath.findroot(error, v)
        assert result.implied_vol[row] == pytest.approx(float(exact), abs=TOLERANCE)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    log_moneyness=st.floats(-3.0, 3.0),
    vol=st.floats(0.02, 3.0),
    years=st.floats(1e-3, 5.0),
    rate=st.floats(-0.02, 0.1),
    dividend=st.floats(0.0, 0.08),
    is_call=st.booleans(),
)
def test_round_trip_bsm_property(log_moneyness, vol, years, rate, dividend, is_call):
    spot = 100.0
    forward = spot * math.exp((rate - dividend) * years)
    strike = forward * math.exp(-log_moneyness)
    price, vega = _mp_black(forward, strike, vol, years, math.exp(-rate * years), is_call)
    if not (float(price) > 1e-300 and vega / price >= 1e-4):
        return  # ill posed: covered by the wide-range test (vol or reason)
    result = implied_vol(
        price=float(price),
        strike=strike,
        time_to_expiry=years,
        option_type=is_call,
        spot=spot,
        rate=rate,
        dividend_yield=dividend,
    )
    assert abs(float(result.implied_vol) - vol) <= TOLERANCE


def test_bsm_and_black76_agree_and_match_reference_prices():
    rng = np.random.default_rng(4)
    count = 200
    spot, rate, dividend = 50.0, 0.03, 0.02
    years = rng.uniform(0.02, 3.0, count)
    strike = spot * np.exp(rng.normal(0.0, 0.3, count))
    vol = rng.uniform(0.1, 1.0, count)
    is_call = rng.random(count) < 0.5
    prices = np.array([ref.bsm_price(spot, strike[i], vol[i], years[i], rate, dividend,
                                     bool(is_call[i])) for i in range(count)])  # fmt: skip
    bsm = implied_vol(price=prices, strike=strike, time_to_expiry=years, option_type=is_call,
                      spot=spot, rate=rate, dividend_yield=dividend)  # fmt: skip
    forward = spot * np.exp((rate - dividend) * years)
    black = implied_vol(price=prices, strike=strike, time_to_expiry=years, option_type=is_call,
                        forward=forward, rate=rate)  # fmt: skip
    np.testing.assert_allclose(bsm.implied_vol, black.implied_vol, rtol=0, atol=1e-12)
    vega = np.array([ref.bsm_greeks(spot, strike[i], vol[i], years[i], rate, dividend,
                                    bool(is_call[i]))["vega"] for i in range(count)])  # fmt: skip
    well_posed = vega / prices >= 1e-4
    assert well_posed.sum() > 150
    # The reference's float64 prices carry a few ulps of error of their own.
    np.testing.assert_allclose(bsm.implied_vol[well_posed], vol[well_posed], rtol=0, atol=1e-9)
    assert bsm.model == "bsm" and black.model == "black76"


def test_bad_prices_and_inputs_have_reasons():
    spot, strike, years = 100.0, 100.0, 0.5
    call_bound = spot  # no rates: a call is worth less than the spot
    prices = [np.nan, 0.0, -1.0, call_bound, 1e6, 5.0, 5.0, 5.0, 5.0, 5.0, np.inf]
    strikes = [strike] * 5 + [0.0, strike, strike, strike, strike, strike]
    times = [years] * 6 + [0.0, -1.0, np.nan, years, years]
    kinds = ["C"] * 9 + ["X", "C"]
    result = implied_vol(price=prices, strike=strikes, time_to_expiry=times, option_type=kinds,
                         spot=spot)  # fmt: skip
    assert result.reason.to_pylist() == [
        "invalid_price",
        "invalid_price",
        "invalid_price",
        "price_above_upper_bound",
        "price_above_upper_bound",
        "invalid_strike",
        "expired",
        "expired",
        "invalid_time_to_expiry",
        "unknown_option_type",
        "invalid_price",
    ]
    assert np.isnan(result.implied_vol).all()
    counts = dict(zip(result.dropped.column("reason").to_pylist(),
                      result.dropped.column("count").to_pylist(), strict=True))  # fmt: skip
    assert counts["invalid_price"] == 4 and result.dropped_count == len(prices)
    # Deep in the money at exactly intrinsic (no time value): below intrinsic.
    itm = implied_vol(price=[40.0, 39.0], strike=60.0, time_to_expiry=1.0, option_type="C",
                      spot=100.0)  # fmt: skip
    assert itm.reason.to_pylist() == ["price_below_intrinsic", "price_below_intrinsic"]
    with pytest.raises(ValueError, match="exactly one of spot"):
        implied_vol(price=1.0, strike=1.0, time_to_expiry=1.0, option_type="C")


def _quote_chain():
    spot, years, rate = 4500.0, 0.25, 0.04
    strikes = np.array([4000.0, 4400.0, 4500.0, 4600.0, 5000.0])
    vols = np.array([0.24, 0.19, 0.17, 0.15, 0.13])
    calls = [
        ref.bsm_price(spot, k, v, years, rate, 0.0, True)
        for k, v in zip(strikes, vols, strict=True)
    ]
    puts = [
        ref.bsm_price(spot, k, v, years, rate, 0.0, False)
        for k, v in zip(strikes, vols, strict=True)
    ]
    mid = np.array(calls + puts)
    return (
        pa.table(
            {
                "underlying": ["SPX"] * 10,
                "strike": np.concatenate([strikes, strikes]),
                "option_type": ["C"] * 5 + ["P"] * 5,
                "time_to_expiry": [years] * 10,
                "bid": mid - 0.05,
                "ask": mid + 0.05,
                "last": mid,
                "spot": [spot] * 10,
            }
        ),
        np.concatenate([vols, vols]),
        rate,
    )


def test_chain_prices_and_read_chain_solve():
    chain, vols, rate = _quote_chain()
    from_last = implied_vol(chain, price="last", rate=rate)
    np.testing.assert_allclose(from_last.implied_vol, vols, atol=1e-10)
    mid = implied_vol(chain, rate=rate)  # bid/ask symmetric around the model price
    np.testing.assert_allclose(mid.implied_vol, vols, atol=1e-10)
    bid = implied_vol(chain, price="bid", rate=rate).implied_vol
    ask = implied_vol(chain, price="ask", rate=rate).implied_vol
    assert (bid < vols).all() and (ask > vols).all()
    filled = fastgex.read_chain(chain, iv="solve", iv_options={"price": "last", "rate": rate})
    np.testing.assert_allclose(filled.column("implied_vol").to_numpy(), vols, atol=1e-10)
    assert filled.column("implied_vol_reason").null_count == 10
    # The filled chain goes straight into gex.
    gex = fastgex.gex(filled.append_column("open_interest", pa.array([100.0] * 10)), rate=rate)
    assert gex.dropped_count == 0


def test_chain_errors_are_clear():
    chain, _, _ = _quote_chain()
    with pytest.raises(fastgex.ChainError, match="mark"):
        implied_vol(chain, price="mark")
    with pytest.raises(ValueError, match="unknown price"):
        implied_vol(chain, price="close")
    no_spot = chain.drop_columns(["spot"])
    with pytest.raises(fastgex.ChainError, match="spot"):
        fastgex.read_chain(no_spot, iv="solve")
    no_time = chain.drop_columns(["time_to_expiry"])
    with pytest.raises(fastgex.ChainError, match="time to expiry"):
        fastgex.read_chain(no_time, iv="solve")
    with pytest.raises(ValueError, match="iv must be"):
        fastgex.read_chain(chain, iv="guess")


def test_reference_bisection_agrees():
    price = ref.bsm_price(100.0, 110.0, 0.3, 0.75, 0.02, 0.01, False)
    expected = ref.implied_vol_bisection(price, 100.0, 110.0, 0.75, 0.02, 0.01, False)
    got = implied_vol(price=price, strike=110.0, time_to_expiry=0.75, option_type=False,
                      spot=100.0, rate=0.02, dividend_yield=0.01).implied_vol  # fmt: skip
    assert float(got) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(ref.implied_vol_bisection(1e9, 100.0, 110.0, 0.75))


def test_bad_spot_rates_and_forwards():
    bsm = implied_vol(price=5.0, strike=100.0, time_to_expiry=0.5, option_type="C",
                      spot=[100.0, -1.0, np.nan, 100.0, 100.0],
                      rate=[0.01, 0.01, 0.01, np.inf, 1e5])  # fmt: skip
    assert bsm.reason.to_pylist() == [
        None,
        "invalid_spot",
        "invalid_spot",
        "invalid_rate",
        "invalid_rate",  # finite, but e^{-rT} underflows
    ]
    black = implied_vol(price=5.0, strike=100.0, time_to_expiry=0.5, option_type="P",
                        forward=[100.0, 0.0], dividend_yield=np.nan)  # fmt: skip
    assert black.reason.to_pylist() == [None, "invalid_forward"]  # q is unused for Black-76

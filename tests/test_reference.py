"""Tests of the slow reference implementation (the oracle for every fast kernel).

The reference is checked against things that share no code with it: a finite
difference of the Black-Scholes-Merton price written out below, scipy's normal
density, mpmath at high precision (when installed), put-call identities, the Black-76
to BSM change of variable, an independent pandas/scipy implementation, and a figure
published from a real SPX chain.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastgex.reference import (
    CONVENTIONS,
    UNITS,
    ReferenceResult,
    black76_gamma,
    bsm_gamma,
    contract_gex,
    gex_pandas_scipy,
    gex_reference,
    norm_pdf,
    unit_factor,
)

SQRT2 = math.sqrt(2.0)
CHAINS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chains"

# Reasonable market ranges for property tests.
spots = st.floats(min_value=1.0, max_value=20_000.0)
moneyness = st.floats(min_value=0.5, max_value=2.0)  # strike / spot
vols = st.floats(min_value=0.03, max_value=2.0)
times = st.floats(min_value=1.0 / (365.0 * 24.0), max_value=5.0)  # one hour .. five years
rates = st.floats(min_value=-0.02, max_value=0.15)
yields = st.floats(min_value=0.0, max_value=0.10)
open_interests = st.integers(min_value=0, max_value=500_000)
multipliers = st.sampled_from([1.0, 10.0, 20.0, 50.0, 100.0, 1000.0])

fixed = settings(derandomize=True, max_examples=300, deadline=None)


# --------------------------------------------------------------------------- helpers


def norm_cdf(x: float) -> float:
    """Standard normal CDF via erfc (accurate in both tails)."""
    return 0.5 * math.erfc(-x / SQRT2)


def d1_d2(spot, strike, vol, time_to_expiry, rate, dividend_yield):
    vol_sqrt_time = vol * math.sqrt(time_to_expiry)
    d1 = (
        math.log(spot / strike) + (rate - dividend_yield + 0.5 * vol * vol) * time_to_expiry
    ) / vol_sqrt_time
    return d1, d1 - vol_sqrt_time


def bsm_call_price(spot, strike, vol, time_to_expiry, rate=0.0, dividend_yield=0.0):
    """C = S e^{-qT} N(d1) - K e^{-rT} N(d2)."""
    d1, d2 = d1_d2(spot, strike, vol, time_to_expiry, rate, dividend_yield)
    return spot * math.exp(-dividend_yield * time_to_expiry) * norm_cdf(d1) - strike * math.exp(
        -rate * time_to_expiry
    ) * norm_cdf(d2)


def bsm_put_price(spot, strike, vol, time_to_expiry, rate=0.0, dividend_yield=0.0):
    """P = K e^{-rT} N(-d2) - S e^{-qT} N(-d1)."""
    d1, d2 = d1_d2(spot, strike, vol, time_to_expiry, rate, dividend_yield)
    return strike * math.exp(-rate * time_to_expiry) * norm_cdf(-d2) - spot * math.exp(
        -dividend_yield * time_to_expiry
    ) * norm_cdf(-d1)


def black76_call_price(forward, strike, vol, time_to_expiry, rate=0.0):
    """C = e^{-rT} (F N(d1) - K N(d2))."""
    d1, d2 = d1_d2(forward, strike, vol, time_to_expiry, 0.0, 0.0)
    return math.exp(-rate * time_to_expiry) * (forward * norm_cdf(d1) - strike * norm_cdf(d2))


def central_second_difference(price, x, step):
    """Second derivative by central differences with one Richardson extrapolation step.

    The plain 3-point difference D(h) has error c h^2 + O(h^4); (4 D(h/2) - D(h)) / 3
    cancels the h^2 term, leaving O(h^4) truncation plus rounding ~ eps * price / h^2.
    """

    def plain(width):
        return (price(x + width) - 2.0 * price(x) + price(x - width)) / (width * width)

    return (4.0 * plain(0.5 * step) - plain(step)) / 3.0


def rel_close(actual, expected, rel):
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=0.0)


def make_row(option_type="C", **overrides):
    row = {
        "underlying": "SPX",
        "strike": 4500.0,
        "option_type": option_type,
        "open_interest": 1234.0,
        "implied_vol": 0.18,
        "time_to_expiry": 30.0 / 365.0,
        "spot": 4480.0,
    }
    row.update(overrides)
    return row


def small_chain(underlying="SPX", spot=4500.0, multiplier=None):
    """Deterministic chain: 3 expiries x 11 strikes x call/put, some strikes repeated."""
    rows = []
    for expiry_index, time_to_expiry in enumerate((2.0 / 365.0, 0.1, 0.75)):
        for strike_index in range(11):
            strike = spot * (0.8 + 0.04 * strike_index)
            for option_type in ("C", "P"):
                row = {
                    "underlying": underlying,
                    "strike": round(strike, 2),
                    "option_type": option_type,
                    "open_interest": float(
                        100
                        + 37 * strike_index
                        + 211 * expiry_index
                        + (5 if option_type == "P" else 0)
                    ),
                    "implied_vol": 0.12 + 0.01 * abs(strike_index - 5) + 0.02 * expiry_index,
                    "time_to_expiry": time_to_expiry,
                    "spot": spot,
                }
                if multiplier is not None:
                    row["multiplier"] = multiplier
                rows.append(row)
    return rows


# ------------------------------------------------------------------------ gamma formulas


def test_norm_pdf_known_values():
    assert norm_pdf(0.0) == pytest.approx(0.3989422804014327, rel=1e-15)
    assert norm_pdf(1.0) == pytest.approx(0.24197072451914337, rel=1e-15)
    assert norm_pdf(-1.0) == norm_pdf(1.0)
    assert norm_pdf(40.0) == 0.0


def test_norm_pdf_matches_scipy():
    np = pytest.importorskip("numpy")
    stats = pytest.importorskip("scipy.stats")
    points = np.linspace(-30.0, 30.0, 1201)
    for x, expected in zip(points.tolist(), stats.norm.pdf(points).tolist(), strict=True):
        assert rel_close(norm_pdf(x), expected, 1e-14), x


def _finite_difference_grid():
    """Grid of (spot, strike, vol, T, r, q), keeping |d1| <= 4 where gamma is not tiny."""
    cases = []
    for spot, ratio, vol, time_to_expiry, (rate, div) in itertools.product(
        (50.0, 4500.0),
        (0.8, 0.95, 1.0, 1.05, 1.25),
        (0.1, 0.3, 0.8),
        (1.0 / 365.0, 0.25, 2.0),
        ((0.0, 0.0), (0.05, 0.02), (-0.01, 0.03)),
    ):
        d1, _ = d1_d2(spot, spot * ratio, vol, time_to_expiry, rate, div)
        if abs(d1) <= 4.0:
            cases.append((spot, spot * ratio, vol, time_to_expiry, rate, div))
    return cases


def _fd_step(spot, vol, time_to_expiry):
    # Step scaled to the width of the lognormal: with one Richardson step the truncation
    # is ~1e-8 relative and rounding ~ eps / (4e-4 * vol * sqrt(T) * pdf(d1)) (<= 3e-6
    # for |d1| <= 4 over the property ranges).
    return 2e-2 * spot * vol * math.sqrt(time_to_expiry)


@pytest.mark.parametrize("price_formula", [bsm_call_price, bsm_put_price])
@pytest.mark.parametrize(
    ("spot", "strike", "vol", "time_to_expiry", "rate", "div"), _finite_difference_grid()
)
def test_bsm_gamma_matches_finite_difference_of_price(
    price_formula, spot, strike, vol, time_to_expiry, rate, div
):
    """Calls and puts: the second difference of each price equals bsm_gamma."""
    numeric = central_second_difference(
        lambda underlying: price_formula(underlying, strike, vol, time_to_expiry, rate, div),
        spot,
        _fd_step(spot, vol, time_to_expiry),
    )
    analytic = bsm_gamma(spot, strike, vol, time_to_expiry, rate, div)
    assert rel_close(analytic, numeric, 1e-5), (analytic, numeric)


@fixed
@given(spot=spots, ratio=moneyness, vol=vols, time_to_expiry=times, rate=rates, div=yields)
def test_bsm_gamma_finite_difference_property(spot, ratio, vol, time_to_expiry, rate, div):
    strike = spot * ratio
    d1, _ = d1_d2(spot, strike, vol, time_to_expiry, rate, div)
    assume(abs(d1) <= 4.0)  # deep wings: gamma is tiny, the difference is all rounding
    numeric = central_second_difference(
        lambda underlying: bsm_call_price(underlying, strike, vol, time_to_expiry, rate, div),
        spot,
        _fd_step(spot, vol, time_to_expiry),
    )
    analytic = bsm_gamma(spot, strike, vol, time_to_expiry, rate, div)
    assert rel_close(analytic, numeric, 1e-5)


def test_bsm_gamma_against_mpmath_high_precision():
    mpmath = pytest.importorskip("mpmath", reason="mpmath not installed")
    mpmath.mp.dps = 50
    cases = [
        (4500.0, 4500.0, 0.18, 30.0 / 365.0, 0.05, 0.015),
        (4500.0, 3600.0, 0.35, 2.0 / 365.0, 0.0, 0.0),
        (180.0, 240.0, 0.6, 1.5, 0.03, 0.0),
        (1.0, 1.3, 1.5, 0.01, -0.01, 0.05),
        (65000.0, 70000.0, 0.55, 1.0 / (365.0 * 24.0), 0.0, 0.0),
    ]
    for spot, strike, vol, time_to_expiry, rate, div in cases:
        mp_spot, mp_strike, mp_vol, mp_time, mp_rate, mp_div = map(
            mpmath.mpf, (spot, strike, vol, time_to_expiry, rate, div)
        )
        vol_sqrt_time = mp_vol * mpmath.sqrt(mp_time)
        d1 = (
            mpmath.log(mp_spot / mp_strike) + (mp_rate - mp_div + mp_vol**2 / 2) * mp_time
        ) / vol_sqrt_time
        exact = mpmath.exp(-mp_div * mp_time) * mpmath.npdf(d1) / (mp_spot * vol_sqrt_time)
        assert rel_close(
            bsm_gamma(spot, strike, vol, time_to_expiry, rate, div), float(exact), 1e-12
        )


@fixed
@given(spot=spots, ratio=moneyness, vol=vols, time_to_expiry=times, rate=rates, div=yields)
def test_bsm_gamma_matches_scipy_norm(spot, ratio, vol, time_to_expiry, rate, div):
    np = pytest.importorskip("numpy")
    stats = pytest.importorskip("scipy.stats")
    strike = spot * ratio
    d1 = (np.log(spot / strike) + (rate - div + 0.5 * vol**2) * time_to_expiry) / (
        vol * np.sqrt(time_to_expiry)
    )
    expected = (
        np.exp(-div * time_to_expiry) * stats.norm.pdf(d1) / (spot * vol * np.sqrt(time_to_expiry))
    )
    actual = bsm_gamma(spot, strike, vol, time_to_expiry, rate, div)
    assert actual >= 0.0
    # exp(-d1^2/2) turns an absolute error of a few ulps in d1 into a relative one
    # of ~ d1^2 * eps; 1e-11 covers |d1| up to ~ 100.
    assert math.isclose(actual, float(expected), rel_tol=1e-11, abs_tol=1e-300)


@fixed
@given(spot=spots, ratio=moneyness, vol=vols, time_to_expiry=times, rate=rates, div=yields)
def test_call_gamma_equals_put_gamma(spot, ratio, vol, time_to_expiry, rate, div):
    """The put's gamma written in the form of Perfiliev's cross-check equals the call's.

    K e^{-rT} pdf(d2) / (S^2 sigma sqrt T) == e^{-qT} pdf(d1) / (S sigma sqrt T) because
    S e^{-qT} pdf(d1) = K e^{-rT} pdf(d2) (an identity of the lognormal model).
    """
    strike = spot * ratio
    d1, d2 = d1_d2(spot, strike, vol, time_to_expiry, rate, div)
    assume(abs(d1) <= 20.0)  # beyond, both sides underflow towards 0
    put_form = (
        strike
        * math.exp(-rate * time_to_expiry)
        * norm_pdf(d2)
        / (spot * spot * vol * math.sqrt(time_to_expiry))
    )
    assert rel_close(bsm_gamma(spot, strike, vol, time_to_expiry, rate, div), put_form, 1e-11)


def test_put_gamma_by_finite_difference_equals_call_gamma():
    spot, strike, vol, time_to_expiry, rate, div = 100.0, 105.0, 0.25, 0.5, 0.03, 0.01
    step = 0.05
    call_fd = central_second_difference(
        lambda underlying: bsm_call_price(underlying, strike, vol, time_to_expiry, rate, div),
        spot,
        step,
    )
    put_fd = central_second_difference(
        lambda underlying: bsm_put_price(underlying, strike, vol, time_to_expiry, rate, div),
        spot,
        step,
    )
    assert rel_close(call_fd, put_fd, 1e-6)
    assert rel_close(bsm_gamma(spot, strike, vol, time_to_expiry, rate, div), call_fd, 1e-5)


@fixed
@given(spot=spots, ratio=moneyness, vol=vols, time_to_expiry=times, rate=rates, div=yields)
def test_black76_gamma_relates_to_bsm_gamma(spot, ratio, vol, time_to_expiry, rate, div):
    r"""Black-76 gamma (w.r.t. F) vs BSM gamma (w.r.t. S) with F = S e^{(r-q)T}.

    Derivation. The BSM call price is the discounted Black-76 price at the forward:
        C_bsm(S) = e^{-qT} S N(d1) - e^{-rT} K N(d2)
                 = e^{-rT} [F N(d1) - K N(d2)] = C_b76(F(S)),   F(S) = S e^{(r-q)T},
    with the same d1 = (ln(F/K) + sigma^2 T/2)/(sigma sqrt T) on both sides. F is linear
    in S, so by the chain rule
        dC_bsm/dS   = C_b76'(F) dF/dS
        d2C_bsm/dS2 = C_b76''(F) (dF/dS)^2 + C_b76'(F) d2F/dS2 = C_b76''(F) (dF/dS)^2,
    i.e. gamma_spot = gamma_fwd * (dF/dS)^2 = gamma_fwd * e^{2(r-q)T}; the e^{-rT}
    discount lives inside both gammas, there is no further factor. Check:
        gamma_fwd e^{2(r-q)T} = e^{-rT} pdf(d1) e^{2(r-q)T} / (S e^{(r-q)T} sigma sqrt T)
                              = e^{-qT} pdf(d1) / (S sigma sqrt T) = gamma_spot.
    """
    strike = spot * ratio
    d1, _ = d1_d2(spot, strike, vol, time_to_expiry, rate, div)
    assume(abs(d1) <= 20.0)  # beyond, both sides underflow towards 0
    forward = spot * math.exp((rate - div) * time_to_expiry)
    d_forward_d_spot = math.exp((rate - div) * time_to_expiry)
    gamma_fwd = black76_gamma(forward, strike, vol, time_to_expiry, rate)
    gamma_spot = bsm_gamma(spot, strike, vol, time_to_expiry, rate, div)
    # F and ln(F/K) round differently from ln(S/K) + (r - q)T; divided by sigma sqrt(T)
    # that moves d1 by a few 1e-14 at worst: measured max 3.4e-12 relative over 2e5 draws.
    assert rel_close(gamma_spot, gamma_fwd * d_forward_d_spot**2, 1e-10)


@pytest.mark.parametrize("ratio", [0.9, 1.0, 1.1])
@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_black76_gamma_matches_finite_difference_in_forward(ratio, rate):
    forward, vol, time_to_expiry = 5000.0, 0.2, 0.25
    strike = forward * ratio
    step = 1e-2 * forward * vol * math.sqrt(time_to_expiry)
    numeric = central_second_difference(
        lambda fwd: black76_call_price(fwd, strike, vol, time_to_expiry, rate), forward, step
    )
    assert rel_close(black76_gamma(forward, strike, vol, time_to_expiry, rate), numeric, 1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        {"spot": 0.0},
        {"strike": -1.0},
        {"vol": 0.0},
        {"time_to_expiry": 0.0},
        {"vol": math.nan},
        {"spot": math.inf},
        {"rate": math.nan},
    ],
)
def test_bsm_gamma_rejects_invalid_inputs(bad):
    args = {"spot": 100.0, "strike": 100.0, "vol": 0.2, "time_to_expiry": 0.5, "rate": 0.0}
    args.update(bad)
    with pytest.raises(ValueError):
        bsm_gamma(**args)


def test_black76_gamma_rejects_invalid_inputs():
    with pytest.raises(ValueError):
        black76_gamma(0.0, 100.0, 0.2, 0.5)
    with pytest.raises(ValueError):
        black76_gamma(100.0, 100.0, 0.2, -0.5)


# ------------------------------------------------------------------------ units and GEX


def test_unit_factor_values():
    assert unit_factor(4500.0, "dollars_per_1pct") == 4500.0 * 4500.0 * 0.01
    assert unit_factor(4500.0, "dollars_per_point") == 4500.0
    assert unit_factor(4500.0, "shares_per_dollar") == 1.0
    assert unit_factor(4500.0, "units_per_1pct") == 45.0
    with pytest.raises(ValueError, match="unknown unit"):
        unit_factor(4500.0, "dollars_per_bp")


def test_contract_gex_formula():
    gamma = bsm_gamma(4480.0, 4500.0, 0.18, 30.0 / 365.0)
    expected = -1234.0 * 100.0 * gamma * 4480.0**2 * 0.01
    assert rel_close(contract_gex(gamma, -1234.0, 100.0, 4480.0), expected, 1e-15)


@fixed
@given(
    spot=spots,
    ratio=moneyness,
    vol=vols,
    time_to_expiry=times,
    open_interest=open_interests,
    multiplier=multipliers,
)
def test_units_are_consistent(spot, ratio, vol, time_to_expiry, open_interest, multiplier):
    gamma = bsm_gamma(spot, spot * ratio, vol, time_to_expiry)
    shares = contract_gex(gamma, open_interest, multiplier, spot, "shares_per_dollar")
    per_point = contract_gex(gamma, open_interest, multiplier, spot, "dollars_per_point")
    per_pct = contract_gex(gamma, open_interest, multiplier, spot, "dollars_per_1pct")
    assert math.isclose(per_point, shares * spot, rel_tol=1e-14, abs_tol=1e-300)
    assert math.isclose(per_pct, shares * spot * spot * 0.01, rel_tol=1e-14, abs_tol=1e-300)


@fixed
@given(
    spot=spots,
    ratio=moneyness,
    vol=vols,
    time_to_expiry=times,
    open_interest=st.integers(min_value=1, max_value=500_000),
    scale=st.integers(min_value=0, max_value=1000),
    option_type=st.sampled_from(["C", "P"]),
    convention=st.sampled_from(sorted(CONVENTIONS)),
    unit=st.sampled_from(UNITS),
)
def test_gex_linear_in_open_interest(
    spot, ratio, vol, time_to_expiry, open_interest, scale, option_type, convention, unit
):
    row = make_row(
        option_type,
        strike=spot * ratio,
        spot=spot,
        implied_vol=vol,
        time_to_expiry=time_to_expiry,
        open_interest=float(open_interest),
    )
    base = gex_reference([row], convention=convention, unit=unit).per_contract[0]
    doubled = gex_reference(
        [dict(row, open_interest=2.0 * open_interest)], convention=convention, unit=unit
    ).per_contract[0]
    scaled = gex_reference(
        [dict(row, open_interest=float(open_interest * scale))], convention=convention, unit=unit
    ).per_contract[0]
    assert doubled == 2.0 * base  # doubling is exact in binary floating point
    assert math.isclose(scaled, scale * base, rel_tol=1e-14, abs_tol=1e-300)
    # Two rows with OI a and b add up to one row with OI a + b.
    split = gex_reference(
        [row, dict(row, open_interest=float(open_interest * scale))],
        convention=convention,
        unit=unit,
    ).by_underlying["SPX"]["total"]
    merged = gex_reference(
        [dict(row, open_interest=float(open_interest * (scale + 1)))],
        convention=convention,
        unit=unit,
    ).by_underlying["SPX"]["total"]
    assert math.isclose(split, merged, rel_tol=1e-14, abs_tol=1e-300)


@fixed
@given(
    spot=spots,
    ratio=moneyness,
    vol=vols,
    time_to_expiry=times,
    open_interest=st.integers(min_value=1, max_value=500_000),
    unit=st.sampled_from(UNITS),
)
def test_conventions_flip_signs(spot, ratio, vol, time_to_expiry, open_interest, unit):
    common = {
        "strike": spot * ratio,
        "spot": spot,
        "implied_vol": vol,
        "time_to_expiry": time_to_expiry,
        "open_interest": float(open_interest),
    }
    rows = [make_row("C", **common), make_row("P", **common)]
    results = {name: gex_reference(rows, convention=name, unit=unit) for name in CONVENTIONS}
    long_call, short_put = results["long_calls_short_puts"].per_contract
    short_call, long_put = results["short_calls_long_puts"].per_contract
    all_call, all_put = results["short_all"].per_contract
    magnitude = contract_gex(
        bsm_gamma(spot, spot * ratio, vol, time_to_expiry), open_interest, 100.0, spot, unit
    )
    assert magnitude >= 0.0
    assert long_call == magnitude == long_put
    assert short_call == -magnitude == short_put
    assert all_call == -magnitude == all_put
    assert (
        results["long_calls_short_puts"].by_underlying["SPX"]["total"]
        == -results["short_calls_long_puts"].by_underlying["SPX"]["total"]
    )
    for name, (call_sign, put_sign) in CONVENTIONS.items():
        totals = results[name].by_underlying["SPX"]
        assert totals["calls"] == call_sign * magnitude
        assert totals["puts"] == put_sign * magnitude


def test_convention_table():
    assert CONVENTIONS == {
        "short_calls_long_puts": (-1, 1),
        "long_calls_short_puts": (1, -1),
        "short_all": (-1, -1),
    }
    assert UNITS == ("dollars_per_1pct", "dollars_per_point", "shares_per_dollar", "units_per_1pct")


# ------------------------------------------------------------------ gex_reference shape


def test_default_convention_and_multiplier():
    row = make_row("C")
    gamma = bsm_gamma(4480.0, 4500.0, 0.18, 30.0 / 365.0)
    (value,) = gex_reference([row]).per_contract
    assert value == contract_gex(gamma, -1234.0, 100.0, 4480.0, "dollars_per_1pct")
    (value_none,) = gex_reference([dict(row, multiplier=None, rate=None)]).per_contract
    assert value_none == value
    (value_50,) = gex_reference([dict(row, multiplier=50.0)]).per_contract
    assert value_50 == contract_gex(gamma, -1234.0, 50.0, 4480.0, "dollars_per_1pct")


def test_rate_and_dividend_used():
    row = make_row("P", rate=0.05, dividend_yield=0.02)
    gamma = bsm_gamma(4480.0, 4500.0, 0.18, 30.0 / 365.0, 0.05, 0.02)
    (value,) = gex_reference([row], convention="short_all", unit="shares_per_dollar").per_contract
    assert value == -1234.0 * 100.0 * gamma


def test_dealer_position_replaces_sign_times_open_interest():
    rows = [
        make_row("C", dealer_position=-300.0),
        make_row("P", dealer_position=250.0),
        make_row("P", dealer_position=None),
    ]
    gamma = bsm_gamma(4480.0, 4500.0, 0.18, 30.0 / 365.0)
    for convention in CONVENTIONS:
        values = gex_reference(rows, convention=convention, unit="shares_per_dollar").per_contract
        assert values[0] == -300.0 * 100.0 * gamma
        assert values[1] == 250.0 * 100.0 * gamma
        assert values[2] == CONVENTIONS[convention][1] * 1234.0 * 100.0 * gamma


def test_forward_row_uses_black76_and_forward_price():
    forward = 4510.0
    row = make_row("C", forward=forward, rate=0.04, dividend_yield=0.5, multiplier=50.0)
    gamma_fwd = black76_gamma(forward, 4500.0, 0.18, 30.0 / 365.0, 0.04)
    for unit in UNITS:
        (value,) = gex_reference([row], convention="long_calls_short_puts", unit=unit).per_contract
        assert value == contract_gex(gamma_fwd, 1234.0, 50.0, forward, unit)
    (bsm_value,) = gex_reference([dict(row, forward=None)]).per_contract
    assert bsm_value == contract_gex(
        bsm_gamma(4480.0, 4500.0, 0.18, 30.0 / 365.0, 0.04, 0.5), -1234.0, 50.0, 4480.0
    )


def test_gamma_column_source():
    rows = [make_row("C", gamma=0.0012), make_row("P", gamma=0.0007, implied_vol=None)]
    result = gex_reference(rows, convention="long_calls_short_puts", gamma_source="column")
    factor = 4480.0**2 * 0.01
    assert result.per_contract == [
        1234.0 * 100.0 * 0.0012 * factor,
        -1234.0 * 100.0 * 0.0007 * factor,
    ]


def test_invalid_names_raise():
    with pytest.raises(ValueError, match="convention"):
        gex_reference([make_row()], convention="long_all")
    with pytest.raises(ValueError, match="unit"):
        gex_reference([make_row()], unit="dollars")
    with pytest.raises(ValueError, match="gamma_source"):
        gex_reference([make_row()], gamma_source="vendor")
    with pytest.raises(ValueError, match="option_type"):
        gex_reference([make_row("X")])


def test_empty_input():
    result = gex_reference([])
    assert result == ReferenceResult(by_underlying={}, by_strike={}, per_contract=[])


def test_aggregation_structure_and_exact_sums():
    rows = small_chain("SPX", 4500.0) + small_chain("NDX", 15000.0, multiplier=20.0)
    # Interleave to check that grouping does not depend on order.
    rows = rows[::2] + rows[1::2]
    result = gex_reference(rows)
    assert len(result.per_contract) == len(rows)
    assert set(result.by_underlying) == {"SPX", "NDX"}
    for underlying in ("SPX", "NDX"):
        mine = [
            (row, value)
            for row, value in zip(rows, result.per_contract, strict=True)
            if row["underlying"] == underlying
        ]
        calls = [value for row, value in mine if row["option_type"] == "C"]
        puts = [value for row, value in mine if row["option_type"] == "P"]
        totals = result.by_underlying[underlying]
        assert totals["contracts"] == len(mine) == 66
        assert totals["calls"] == math.fsum(calls)
        assert totals["puts"] == math.fsum(puts)
        assert totals["total"] == math.fsum(calls + puts)
        assert all(value < 0 for value in calls) and all(value > 0 for value in puts)

        profile = result.by_strike[underlying]
        strikes = [entry["strike"] for entry in profile]
        assert strikes == sorted(set(strikes)) and len(strikes) == 11
        nets = []
        for entry in profile:
            at_strike = [(row, value) for row, value in mine if row["strike"] == entry["strike"]]
            assert entry["call"] == math.fsum(v for r, v in at_strike if r["option_type"] == "C")
            assert entry["put"] == math.fsum(v for r, v in at_strike if r["option_type"] == "P")
            assert entry["net"] == math.fsum(v for _, v in at_strike)
            nets.append(entry["net"])
            assert entry["cumulative_net"] == math.fsum(nets)
        assert math.isclose(
            profile[-1]["cumulative_net"],
            totals["total"],
            rel_tol=1e-14,
            abs_tol=1e-14 * math.fsum(abs(v) for _, v in mine),
        )


def test_order_independent_totals():
    rows = small_chain()
    forward = gex_reference(rows)
    backward = gex_reference(list(reversed(rows)))
    assert forward.by_underlying == backward.by_underlying
    assert forward.by_strike == backward.by_strike
    assert forward.per_contract == list(reversed(backward.per_contract))


# --------------------------------------------------------------- pandas/scipy baseline


def _frame(rows, with_multiplier):
    pd = pytest.importorskip("pandas")
    columns = ["strike", "option_type", "open_interest", "implied_vol", "time_to_expiry"]
    if with_multiplier:
        columns.append("multiplier")
    return pd.DataFrame({name: [row[name] for row in rows] for name in columns})


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
@pytest.mark.parametrize("multiplier", [None, 10.0])
def test_pandas_scipy_agrees_with_reference(unit, convention, multiplier):
    pytest.importorskip("scipy")
    spot = 4500.0
    rows = small_chain("SPX", spot, multiplier=multiplier)
    frame = _frame(rows, with_multiplier=multiplier is not None)
    table = gex_pandas_scipy(frame, spot, convention=convention, unit=unit)
    reference = gex_reference(rows, convention=convention, unit=unit)

    assert list(table.columns) == ["strike", "call_gex", "put_gex", "net_gex"]
    profile = reference.by_strike["SPX"]
    assert table["strike"].tolist() == [entry["strike"] for entry in profile]
    for (_, line), entry in zip(table.iterrows(), profile, strict=True):
        assert rel_close(line["call_gex"], entry["call"], 1e-12)
        assert rel_close(line["put_gex"], entry["put"], 1e-12)
        scale = abs(entry["call"]) + abs(entry["put"])
        assert math.isclose(line["net_gex"], entry["net"], rel_tol=1e-12, abs_tol=1e-12 * scale)
    totals = reference.by_underlying["SPX"]
    scale = math.fsum(abs(value) for value in reference.per_contract)
    assert math.isclose(table.attrs["total"], totals["total"], rel_tol=1e-12, abs_tol=1e-12 * scale)
    assert rel_close(table.attrs["calls"], totals["calls"], 1e-12)
    assert rel_close(table.attrs["puts"], totals["puts"], 1e-12)
    assert table.attrs["convention"] == convention and table.attrs["unit"] == unit


def test_pandas_scipy_default_is_long_calls_short_puts():
    pytest.importorskip("scipy")
    rows = small_chain()
    table = gex_pandas_scipy(_frame(rows, False), 4500.0)
    reference = gex_reference(rows, convention="long_calls_short_puts")
    assert (table["call_gex"] > 0).all() and (table["put_gex"] < 0).all()
    assert rel_close(table.attrs["calls"], reference.by_underlying["SPX"]["calls"], 1e-12)


def test_pandas_scipy_zero_vol_or_time_gives_zero_like_the_script():
    pytest.importorskip("scipy")
    rows = [
        make_row("C", implied_vol=0.0),
        make_row("P", time_to_expiry=0.0),
        make_row("C", strike=4600.0),
    ]
    table = gex_pandas_scipy(_frame(rows, False), 4480.0)
    assert table.loc[table["strike"] == 4500.0, "net_gex"].item() == 0.0
    (expected,) = gex_reference(rows[2:], convention="long_calls_short_puts").per_contract
    assert rel_close(table.attrs["total"], expected, 1e-12)


def test_pandas_scipy_rejects_unknown_names():
    pytest.importorskip("scipy")
    frame = _frame([make_row()], False)
    with pytest.raises(ValueError, match="convention"):
        gex_pandas_scipy(frame, 4480.0, convention="dealers_flat")
    with pytest.raises(ValueError, match="unit"):
        gex_pandas_scipy(frame, 4480.0, unit="percent")


# ------------------------------------------------------------------ real published figure


def _read_cboe_quotedata(path):
    """Minimal CBOE quotedata reader (independent of fastgex.io on purpose)."""
    lines = path.read_text().splitlines()
    spot = next(float(line.split("Last:")[1].split(",")[0]) for line in lines if "Last:" in line)
    date_line = next(line for line in lines if "Date:" in line)
    stamp = date_line.split("Date:")[1].split(",Bid")[0].strip().strip('"')
    stamp = stamp.rsplit(" ", 1)[0]  # drop the time zone name (EST)
    snapshot = dt.datetime.strptime(stamp, "%B %d, %Y at %I:%M %p")
    header = next(i for i, line in enumerate(lines) if line.startswith("Expiration Date"))
    rows = []
    for record in csv.reader(lines[header + 1 :]):
        if not record:
            continue
        expiry = dt.datetime.strptime(record[0], "%a %b %d %Y")
        strike = float(record[11])
        for option_type, vol, gamma, open_interest in (
            ("C", record[7], record[9], record[10]),
            ("P", record[18], record[20], record[21]),
        ):
            rows.append(
                {
                    "underlying": "SPX",
                    "strike": strike,
                    "option_type": option_type,
                    "open_interest": float(open_interest),
                    "implied_vol": float(vol),
                    "gamma": float(gamma),
                    "spot": spot,
                    "expiry": expiry,
                }
            )
    return spot, snapshot, rows


PHAMMINGS = CHAINS / "phammings_spx_quotedata_2024-01-07.csv"
needs_phammings = pytest.mark.skipif(
    not PHAMMINGS.exists(), reason=f"real chain not found: {PHAMMINGS}"
)


def _live_rows():
    spot, snapshot, rows = _read_cboe_quotedata(PHAMMINGS)
    # Expired at the snapshot (Friday 16:00 close < Sunday snapshot) never counts.
    return (
        spot,
        snapshot,
        [row for row in rows if row["expiry"] + dt.timedelta(hours=16) > snapshot],
    )


@pytest.mark.realdata
@needs_phammings
def test_reproduces_published_total_gex_with_cboe_gamma():
    """Published: -11.00 $bn per 1% move (CBOE Gamma, long calls / short puts)."""
    spot, _, rows = _live_rows()
    assert spot == 4697.2402
    result = gex_reference(rows, convention="long_calls_short_puts", gamma_source="column")
    assert round(result.by_underlying["SPX"]["total"] / 1e9, 2) == -11.00


@pytest.mark.realdata
@pytest.mark.slow
@needs_phammings
def test_reproduces_published_zero_gamma_level():
    """Published zero gamma 4,734: BSM gamma, r = q = 0, business days / 262, 60 levels."""
    np = pytest.importorskip("numpy")
    spot, snapshot, rows = _live_rows()
    model_rows = []
    for row in rows:
        if row["implied_vol"] <= 0.0:  # the script gives these rows zero gamma
            continue
        business_days = int(np.busday_count(snapshot.date(), row["expiry"].date()))
        model_rows.append(dict(row, time_to_expiry=max(business_days, 1) / 262.0))
    levels = np.linspace(0.8 * spot, 1.2 * spot, 60)
    totals = []
    for level in levels:
        at_level = [dict(row, spot=float(level)) for row in model_rows]
        result = gex_reference(at_level, convention="long_calls_short_puts")
        totals.append(result.by_underlying["SPX"]["total"])
    crossing = next(i for i in range(59) if (totals[i] < 0.0) != (totals[i + 1] < 0.0))
    low, high = levels[crossing], levels[crossing + 1]
    zero_gamma = high - (high - low) * totals[crossing + 1] / (
        totals[crossing + 1] - totals[crossing]
    )
    assert abs(zero_gamma - 4734.0) < 3.0


# -- the package namespace ---------------------------------------------------------------


def test_no_public_name_shadows_a_submodule():
    """A public top-level name that is not a module has no submodule of the same name.

    ``from fastgex.greeks import greeks`` in ``__init__`` would rebind ``fastgex.greeks``
    from the module to the function; such modules are private (``_greeks.py``).
    """
    import types

    import fastgex

    package = Path(fastgex.__file__).resolve().parent
    public = {name for name in dir(fastgex) if not name.startswith("_")} | set(fastgex.__all__)
    shadowed = sorted(
        name
        for name in public
        if not isinstance(getattr(fastgex, name), types.ModuleType)
        and ((package / f"{name}.py").exists() or (package / name).is_dir())
    )
    assert shadowed == []

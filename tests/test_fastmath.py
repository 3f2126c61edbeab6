"""The vectorizable exp/log against libm (tolerances stated per range)."""

import math
import platform
import re

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgex._fastmath import (
    _exp_polynomial,
    _power_of_two,
    atanh_series,
    bits_float,
    exp_of_number,
    fast_exp,
    fast_log,
    float_bits,
    floor_float,
)


@numba.njit(parallel=True)
def _exp_many(values):
    out = np.empty_like(values)
    for index in numba.prange(values.size):
        out[index] = fast_exp(values[index])
    return out


@numba.njit(parallel=True)
def _log_many(values):
    out = np.empty_like(values)
    for index in numba.prange(values.size):
        out[index] = fast_log(values[index])
    return out


@pytest.mark.parametrize(
    ("low", "high", "tolerance"),
    # |x| < 50 covers exp(-d1^2/2) for |d1| < 10 (every gamma that matters): 2e-15.
    # Towards the ends of the range fast-math reassociation loosens the Cody-Waite split.
    [(-50.0, 50.0, 2e-15), (-708.0, 709.0, 5e-14)],
)
def test_exp_relative_error(low, high, tolerance):
    values = np.random.default_rng(0).uniform(low, high, 200_000)
    relative = np.abs(_exp_many(values) / np.exp(values) - 1.0)
    assert relative.max() <= tolerance


def test_log_error():
    rng = np.random.default_rng(1)
    values = np.exp(rng.uniform(-700, 700, 200_000))
    assert np.max(np.abs(_log_many(values) - np.log(values))) <= 2e-13  # |log| up to 700
    near_one = rng.uniform(0.5, 2.0, 200_000)
    assert np.max(np.abs(_log_many(near_one) - np.log(near_one))) <= 2e-16


def test_special_values():
    specials = np.array([800.0, -800.0, np.inf, -np.inf, np.nan, 0.0])
    expected = np.array([np.inf, 0.0, np.inf, 0.0, np.nan, 1.0])
    np.testing.assert_array_equal(_exp_many(specials), expected)
    log_inputs = np.array([0.0, -1.0, np.inf, np.nan, 1e-310, 5e-324, 1.0])
    got = _log_many(log_inputs)
    assert got[0] == -np.inf and np.isnan(got[1]) and got[2] == np.inf and np.isnan(got[3])
    assert got[4] == pytest.approx(math.log(1e-310), rel=1e-15)
    assert got[5] == pytest.approx(math.log(5e-324), rel=1e-15)
    assert got[6] == 0.0


@settings(derandomize=True, max_examples=300, deadline=None)  # the first call compiles
@given(st.floats(min_value=-700, max_value=700))
def test_python_and_compiled_agree(value):
    # The uncompiled bodies (used by the CUDA simulator) agree to rounding: compiled
    # code contracts multiply-adds into FMAs, plain Python rounds each step.
    assert math.isclose(fast_exp.py_func(value), _exp_many(np.array([value]))[0], rel_tol=5e-16)
    positive = math.exp(value)
    assert math.isclose(
        fast_log.py_func(positive), _log_many(np.array([positive]))[0], rel_tol=5e-16, abs_tol=5e-16
    )


def test_bit_helpers_round_trip():
    for value in (0.0, -0.0, 1.0, math.pi, 1e-310, -2.5e300):
        assert bits_float(float_bits(value)) == value


@numba.njit(parallel=True)
def _exp_of_number_many(values):
    out = np.empty_like(values)
    for index in numba.prange(values.size):
        out[index] = exp_of_number(values[index])
    return out


@numba.njit(parallel=True)
def _polynomials(values):
    exp_part = np.empty_like(values)
    atanh_part = np.empty_like(values)
    for index in numba.prange(values.size):
        exp_part[index] = _exp_polynomial(values[index])
        atanh_part[index] = atanh_series(values[index] * values[index])
    return exp_part, atanh_part


def _elementwise(scalar):
    """A compiled loop applying the compiled scalar function ``scalar`` to an array."""

    @numba.njit
    def apply(values):
        out = np.empty_like(values)
        for index in range(values.size):
            out[index] = scalar(values[index])
        return out

    return apply


_powers_of_two = _elementwise(_power_of_two)
_floors = _elementwise(floor_float)


def test_power_of_two_is_exact_over_the_normal_range():
    powers = np.arange(-1022.0, 1024.0)
    expected = np.ldexp(1.0, powers.astype(np.int64))
    np.testing.assert_array_equal(_powers_of_two(powers), expected)
    for power in (-1022.0, -1.0, 0.0, 1.0, 1023.0):  # the uncompiled body (simulator)
        assert _power_of_two.py_func(power) == math.ldexp(1.0, int(power))


def test_floor_float_compiled_and_python():
    values = np.concatenate(
        [
            np.random.default_rng(3).uniform(-2000.0, 2000.0, 10_000),
            [-1.5, -1.0, -0.5, 0.0, 0.5, 2.0],
        ]
    )
    floors = _floors(values)
    np.testing.assert_array_equal(floors, np.floor(values))
    assert floors.dtype == np.float64
    assert all(floor_float(value) == math.floor(value) for value in values[:100])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 assembly")
def test_compiled_exp_loop_has_no_scalar_conversions():
    # AVX2 has no vector float<->int64 conversion: an int() or math.floor() in fast_exp
    # becomes four scalar cvttsd2si/cvtsi2sd per vector (half of its time on a Zen 3).
    values = np.linspace(-5.0, 5.0, 64)
    _exp_of_number_many(values)
    assembly = "\n".join(_exp_of_number_many.inspect_asm().values())
    assert "vfmadd" in assembly or "vmulpd" in assembly  # a vector loop was compiled
    assert not re.findall(r"cvttsd2si|cvtsi2sd", assembly)


def test_exp_of_number_is_fast_exp_without_nan():
    values = np.concatenate(
        [np.random.default_rng(2).uniform(-800.0, 800.0, 100_000), [-708.0, 709.0, 0.0, -0.0]]
    )
    np.testing.assert_array_equal(_exp_of_number_many(values), _exp_many(values))


def test_polynomials_against_mpmath():
    """The near-minimax fits on their whole reduced ranges, against 40-digit mpmath."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    half_ln2 = math.log(2.0) / 2.0
    reduced = np.linspace(-half_ln2, half_ln2, 4001)
    exp_part, _ = _polynomials(reduced)
    worst_exp = max(
        abs(mpmath.mpf(float(got)) / mpmath.exp(mpmath.mpf(float(x))) - 1)
        for x, got in zip(reduced, exp_part, strict=True)
    )
    # The fit is 3e-18; the rest is rounding in Estrin's order (Horner's: 1.5e-16).
    assert worst_exp <= 4e-16
    top = (math.sqrt(2.0) - 1.0) / (math.sqrt(2.0) + 1.0)
    ratios = np.linspace(1e-9, top, 4001)
    _, atanh_part = _polynomials(ratios)
    worst_atanh = max(
        abs(mpmath.mpf(float(got)) * mpmath.mpf(float(x)) / mpmath.atanh(mpmath.mpf(float(x))) - 1)
        for x, got in zip(ratios, atanh_part, strict=True)
    )
    assert worst_atanh <= 4e-16  # the fit is 5e-18

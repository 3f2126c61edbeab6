"""Vectorizable ``exp`` and ``log`` written in Numba itself.

Numba >= 0.62 has no SVML, so ``math.exp``/``math.log`` inside a loop become scalar
libm calls and the loop cannot use SIMD. These versions use only integer bit
manipulation, multiply-adds and selects, which LLVM vectorizes. Maximum relative
error against libm is below 1e-15 over the ranges the kernels use (tested in
``tests/test_fastmath.py``).

The bit reinterpretation is an ``@intrinsic`` inside compiled code and ``struct`` in
plain Python, so the same functions also run uncompiled (e.g. in the CUDA simulator).
"""

from __future__ import annotations

import math
import struct

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from fastgex._jit import scalar_function

_LOG2_E = 1.4426950408889634
# ln(2) split in a high part with trailing zero bits and a low part, so k*ln2_high is exact.
_LN2_HIGH = 6.93147180369123816490e-01
_LN2_LOW = 1.90821492927058770002e-10
_SQRT_HALF = 0.7071067811865476
_EXPONENT_BIAS = 1023
_MANTISSA_MASK = (1 << 52) - 1
_SMALLEST_NORMAL = 2.2250738585072014e-308
_TWO_POW_54 = 18014398509481984.0
_EXP_MAX_ARG = 709.0
_EXP_MIN_ARG = -708.0  # below this the true result is subnormal: flushed to 0
# 1.5 * 2**52: adding it to an integer-valued float below 2**51 in magnitude puts that
# integer, in two's complement, in the low bits of the sum's mantissa.
_ROUNDING_SHIFT = 6755399441055744.0


def float_bits(value: float) -> int:
    """Return the IEEE-754 bits of a float64 as a signed 64-bit integer."""
    return struct.unpack("<q", struct.pack("<d", value))[0]


def bits_float(bits: int) -> float:
    """Return the float64 whose IEEE-754 bits are ``bits`` (a signed 64-bit integer)."""
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def floor_float(value: float) -> float:
    """``floor(value)`` as a float (``math.floor`` returns an int).

    Compiled, ``math.floor`` is a float floor followed by a conversion to int64, and a
    float use of that int converts back; AVX2 has no vector instruction for either, so
    LLVM splits every vector into scalars. This stays in floats (``vroundpd``).
    """
    return float(math.floor(value))


@intrinsic
def _bitcast_float_to_int(typingctx, value):  # pragma: no cover - compiled
    if isinstance(value, types.Float) and value.bitwidth == 64:

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(64))

        return types.int64(value), codegen
    return None


@intrinsic
def _bitcast_int_to_float(typingctx, value):  # pragma: no cover - compiled
    if isinstance(value, types.Integer) and value.bitwidth == 64:

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())

        return types.float64(value), codegen
    return None


@overload(float_bits, inline="always")
def _float_bits_compiled(value):
    return lambda value: _bitcast_float_to_int(value)


@overload(floor_float, inline="always")
def _floor_float_compiled(value):
    return lambda value: np.floor(value)


@overload(bits_float, inline="always")
def _bits_float_compiled(bits):
    return lambda bits: _bitcast_int_to_float(bits)


# Polynomial coefficients below come from mpmath (50 digits):
#   exp:   mpmath.chebyfit(lambda r: (exp(r) - 1 - r) / r**2, [-ln2/2, ln2/2], 10)
#   atanh: mpmath.chebyfit(lambda y: (atanh(sqrt(y)) / sqrt(y) - 1) / y, [0, 0.02944], 7)
# i.e. near-minimax fits with the leading terms kept exact; tests/test_fastmath.py checks
# the error bounds against libm and mpmath. They need two (exp) and three (atanh) fewer
# terms than the Taylor series for the same accuracy, which the GEX kernel feels.


@scalar_function
def _exp_polynomial(reduced: float) -> float:
    """``exp(reduced)`` for ``|reduced| <= ln(2)/2``: degree 11, relative error < 2e-16.

    Estrin's scheme (pairs, then quads in r^2, then Horner in r^4) instead of Horner:
    the dependency chain is 4 multiply-adds deep instead of 11, which lets the
    out-of-order core overlap more vector iterations. The last step, Horner in r^4
    rather than a product r^8, saves a multiply without deepening the chain (kernels
    compiled without reassociation keep the written order, see ``_jit.ROW_FLAGS``).
    """
    r2 = reduced * reduced
    r4 = r2 * r2
    pair0 = 1.0 + reduced
    pair1 = 0.5000000000000001 + 0.16666666666666669 * reduced
    pair2 = 0.041666666666624164 + 0.008333333333330065 * reduced
    pair3 = 0.0013888888917196719 + 0.00019841269863040545 * reduced
    pair4 = 2.4801521322368692e-05 + 2.7557268480310024e-06 * reduced
    pair5 = 2.7620075879983367e-07 + 2.5100375832561234e-08 * reduced
    quad0 = pair0 + pair1 * r2
    quad1 = pair2 + pair3 * r2
    quad2 = pair4 + pair5 * r2
    return quad0 + (quad1 + quad2 * r4) * r4


@scalar_function
def atanh_series(ratio_sq: float) -> float:
    """``atanh(x) / x`` as a polynomial in ``x**2`` for ``x**2 <= 0.02944`` (|x| <= 0.1716).

    Degree 7 in ``x**2``; relative error < 5e-18 before rounding. Pairs in ``x**2``,
    then Horner in ``x**4`` (no product ``x**8`` to compute; kernels compiled without
    reassociation keep this order).
    """
    y2 = ratio_sq * ratio_sq
    pair0 = 1.0 + 0.3333333333333335 * ratio_sq
    pair1 = 0.19999999999949752 + 0.14285714312987743 * ratio_sq
    pair2 = 0.1111110556739754 + 0.09091444562630861 * ratio_sq
    pair3 = 0.07665860800278021 + 0.07308224842521703 * ratio_sq
    return pair0 + (pair1 + (pair2 + pair3 * y2) * y2) * y2


@scalar_function
def _power_of_two(power: float) -> float:
    """``2**power`` for an integer-valued float ``power`` in [-1022, 1023].

    Built from the bits of ``power + 1.5 * 2**52`` rather than ``int(power)``: AVX2 has no
    vector float-to-int64 conversion, so LLVM splits ``int()`` into four scalar
    conversions per vector (half of ``fast_exp``'s time on a Zen 3). The shift
    constant's low 11 bits are zero, so the low 11 bits of ``bits + bias`` are exactly
    ``power + bias`` (in [1, 2046]); the mask keeps Python's unbounded ints in int64.
    No float operation follows the addition, so fast-math reassociation cannot cancel it.
    """
    biased = (float_bits(power + _ROUNDING_SHIFT) + _EXPONENT_BIAS) & 0x7FF
    return bits_float(biased << 52)


@scalar_function
def fast_exp(value: float) -> float:
    """``exp(value)`` as range reduction ``2**k * exp(r)`` and a degree-11 polynomial.

    Arguments above 709 give ``inf``, below -708 give 0.0, NaN propagates.
    """
    clamped = min(max(value, _EXP_MIN_ARG), _EXP_MAX_ARG)
    power = floor_float(clamped * _LOG2_E + 0.5)
    reduced = (clamped - power * _LN2_HIGH) - power * _LN2_LOW
    scale = _power_of_two(power)
    result = _exp_polynomial(reduced) * scale
    if value > _EXP_MAX_ARG:
        result = math.inf
    if value < _EXP_MIN_ARG:
        result = 0.0
    if value != value:  # NaN in, NaN out
        result = value
    return result


@scalar_function
def exp_of_number(value: float) -> float:
    """:func:`fast_exp` for arguments known not to be NaN (one select fewer).

    For validated kernel inputs (e.g. a density's exponent), where NaN cannot occur.
    """
    clamped = min(max(value, _EXP_MIN_ARG), _EXP_MAX_ARG)
    power = floor_float(clamped * _LOG2_E + 0.5)
    reduced = (clamped - power * _LN2_HIGH) - power * _LN2_LOW
    scale = _power_of_two(power)
    result = _exp_polynomial(reduced) * scale
    result = math.inf if value > _EXP_MAX_ARG else result
    return 0.0 if value < _EXP_MIN_ARG else result


@scalar_function
def fast_log(value: float) -> float:
    """Natural log via exponent extraction and an atanh series in ``(m-1)/(m+1)``.

    Valid for positive normal floats; 0 gives ``-inf``, negatives and NaN give NaN,
    ``inf`` gives ``inf``.
    """
    # Subnormals are scaled into the normal range first (branch-free, keeps SIMD).
    is_subnormal = value < _SMALLEST_NORMAL
    scaled = value * _TWO_POW_54 if is_subnormal else value
    bits = float_bits(scaled)
    exponent = ((bits >> 52) & 0x7FF) - _EXPONENT_BIAS - (54 if is_subnormal else 0)
    mantissa = bits_float((bits & _MANTISSA_MASK) | (_EXPONENT_BIAS << 52))  # in [1, 2)
    # Centre the mantissa on 1 (range [sqrt(1/2), sqrt(2))) so the series converges fast.
    if mantissa > 2.0 * _SQRT_HALF:
        mantissa = mantissa * 0.5
        exponent = exponent + 1
    ratio = (mantissa - 1.0) / (mantissa + 1.0)
    # 2 atanh(x) with |x| <= 0.1716.
    series = atanh_series(ratio * ratio)
    exponent_float = float(exponent)
    result = (exponent_float * _LN2_HIGH + 2.0 * ratio * series) + exponent_float * _LN2_LOW
    if value <= 0.0:
        result = -math.inf if value == 0.0 else math.nan
    if value == math.inf:
        result = math.inf
    if value != value:
        result = value
    return result


# --- The normal distribution without libm's erfc ------------------------------------
#
# The Mills ratio R(x) = N(-x) / n(x) (x >= 0) is smooth and bounded, so a polynomial
# in u = (c - x) / (c + x), u in (-1, 1], fits it over the whole half line:
# R(x) = t h(u) with t = c / (c + x). The coefficients of h are the degree-23
# Chebyshev interpolant of R / t (computed with mpmath at 40 digits, c = 3.75, after
# Shepherd & Laframboise 1981), converted to monomials (well conditioned: their
# absolute values sum to 1.26). Relative error of R is below 1e-15 on [0, inf) (see
# ``tests/test_fastmath.py``). N(x) then costs one ``fast_exp``, one division and a
# polynomial, all of which vectorize, and shares the exp with the density.
_MILLS_SCALE = 3.75
_MILLS_COEFFICIENTS = (
    0.50152222288793,
    0.3931652583890374,
    0.2359170735996693,
    0.10127905572328856,
    0.025059147491414496,
    -0.0007809664209352136,
    -0.00278260354516803,
    -0.00040768531426700123,
    0.00031404640652742886,
    7.83473722331583e-05,
    -4.684154238414219e-05,
    -1.1408331739260641e-05,
    8.898006948323896e-06,
    1.1008739032543682e-06,
    -1.8524614565536406e-06,
    1.0902032043770871e-07,
    3.628934344964114e-07,
    -1.0515867894439343e-07,
    -5.736107721812554e-08,
    3.585386337347626e-08,
    5.8359221956538145e-09,
    -7.445533435051268e-09,
    -2.2067689191747663e-10,
    7.629244756806688e-10,
)
_INV_SQRT_TWO_PI = 0.3989422804014327
_SQRT_TWO = 1.4142135623730951
_MILLS_CAP = 1e150


@scalar_function
def _mills_polynomial(u: float) -> float:
    """``h(u)`` of :func:`mills_ratio` by Estrin's scheme (a shallow dependency chain)."""
    c = _MILLS_COEFFICIENTS
    u2 = u * u
    u4 = u2 * u2
    u8 = u4 * u4
    u16 = u8 * u8
    p0 = c[0] + c[1] * u
    p1 = c[2] + c[3] * u
    p2 = c[4] + c[5] * u
    p3 = c[6] + c[7] * u
    p4 = c[8] + c[9] * u
    p5 = c[10] + c[11] * u
    p6 = c[12] + c[13] * u
    p7 = c[14] + c[15] * u
    p8 = c[16] + c[17] * u
    p9 = c[18] + c[19] * u
    p10 = c[20] + c[21] * u
    p11 = c[22] + c[23] * u
    q0 = p0 + p1 * u2
    q1 = p2 + p3 * u2
    q2 = p4 + p5 * u2
    q3 = p6 + p7 * u2
    q4 = p8 + p9 * u2
    q5 = p10 + p11 * u2
    r0 = q0 + q1 * u4
    r1 = q2 + q3 * u4
    r2 = q4 + q5 * u4
    return (r0 + r1 * u8) + r2 * u16


@scalar_function
def mills_ratio(value: float) -> float:
    """Mills ratio ``N(-x) / n(x)`` of the standard normal for ``x >= 0``.

    ``sqrt(pi/2)`` at 0, about ``1/x`` for large ``x``, 0 at ``inf``; NaN propagates.
    Relative error below 1e-15 (branch-free: one division and a polynomial).
    """
    t = _MILLS_SCALE / (_MILLS_SCALE + value)
    # u = (c - x) / (c + x) = 2 t - 1: also right at x = inf (t = 0, u = -1, R = 0).
    return t * _mills_polynomial(2.0 * t - 1.0)


@scalar_function
def mills_ratio_pair(first: float, second: float) -> tuple[float, float]:
    """:func:`mills_ratio` of two arguments (``>= 0``) with one division for both.

    Arguments are capped at 1e150 so the product of the two denominators stays finite
    (``R`` there is below 1e-150, and is multiplied by a density that is 0).
    """
    first = first if first < _MILLS_CAP else _MILLS_CAP  # selects: NaN passes through
    second = second if second < _MILLS_CAP else _MILLS_CAP
    left = _MILLS_SCALE + first
    right = _MILLS_SCALE + second
    shared = _MILLS_SCALE / (left * right)
    t_first = right * shared
    t_second = left * shared
    return (
        t_first * _mills_polynomial(2.0 * t_first - 1.0),
        t_second * _mills_polynomial(2.0 * t_second - 1.0),
    )


@scalar_function
def norm_pdf(value: float) -> float:
    """Standard normal density ``exp(-x**2/2) / sqrt(2 pi)`` (vectorizable)."""
    return _INV_SQRT_TWO_PI * fast_exp(-0.5 * value * value)


@scalar_function
def norm_cdf(value: float) -> float:
    """Standard normal distribution function ``N(x)`` (vectorizable).

    ``n(x) R(|x|)`` below 0 and ``1 - n(x) R(x)`` above: relative error about 1e-15 for
    ``|x| < 5``, growing to about 1e-13 near ``x = -37`` (the rounding of ``x**2/2``
    inside the exponential); 0 below about -38.5, 1 above 8.3; NaN propagates.
    """
    tail = norm_pdf(value) * mills_ratio(abs(value))
    return tail if value <= 0.0 else 1.0 - tail


@scalar_function
def fast_erfc(value: float) -> float:
    """Complementary error function ``erfc(x) = 2 N(-x sqrt(2))`` (vectorizable).

    Relative error below 6e-15 for ``x < 4`` and below ``x**2 * 1.2e-15`` in the right
    tail (the rounding of ``x**2`` in the exponential); 0 beyond about 26.5, like libm.
    """
    return 2.0 * norm_cdf(-_SQRT_TWO * value)

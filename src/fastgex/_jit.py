"""The one place that decides how fastgex compiles its Numba code.

Every kernel and scalar formula is decorated through this module, so caching, the
floating-point model and parallelism are chosen once. Set ``FASTGEX_NO_CACHE=1`` to
disable the on-disk cache (e.g. on read-only installs without ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import numba

FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])

#: Compiled kernels are cached next to the package (or in ``NUMBA_CACHE_DIR``).
CACHE: bool = os.environ.get("FASTGEX_NO_CACHE", "") not in ("1", "true", "yes")

#: LLVM fast-math flags. Reassociation and contraction let reductions and polynomial
#: evaluation vectorize; ``nnan``/``ninf`` are deliberately absent because validation
#: relies on NaN comparisons behaving as IEEE says.
FASTMATH_FLAGS: frozenset[str] = frozenset({"contract", "reassoc", "arcp", "nsz"})


def scalar_function(function: FunctionT) -> FunctionT:
    """Compile a scalar formula that kernels inline (``inline="always"``).

    The Python function stays callable from plain Python and stays a plain function
    body that a ``numba.cuda`` device compiler can take unchanged.
    """
    return numba.njit(
        cache=CACHE,
        inline="always",
        error_model="numpy",
        fastmath=set(FASTMATH_FLAGS),
    )(function)


def outlined(function: Any) -> Any:
    """The body of a :func:`scalar_function` compiled as its own, non-inlined function.

    For cold paths (a row-by-row fallback) that call a big formula: inlining it there
    adds nothing at run time but compile time (LLVM optimizes every inlined copy).
    Same floating-point policy and cache as the inlined version.
    """
    return numba.njit(cache=CACHE, error_model="numpy", fastmath=set(FASTMATH_FLAGS))(
        function.py_func
    )


def exact_function(function: FunctionT) -> FunctionT:
    """Compile a scalar helper with strict IEEE arithmetic (no fast-math), not inlined.

    For compensated summation: with reassociation allowed LLVM proves the Neumaier
    correction ``(total - new_total) + value`` is zero and deletes it. Fast-math flags
    are per instruction, so they stay off even when LLVM later inlines the call.
    """
    return numba.njit(cache=CACHE, error_model="numpy", fastmath=False)(function)


def kernel(function: FunctionT | None = None, *, parallel: bool = True) -> Any:
    """Compile a loop kernel (``prange`` loops run in parallel when ``parallel``)."""

    def decorate(inner: FunctionT) -> FunctionT:
        return numba.njit(
            cache=CACHE,
            parallel=parallel,
            error_model="numpy",
            fastmath=set(FASTMATH_FLAGS),
            nogil=True,
        )(inner)

    if function is None:
        return decorate
    return decorate(function)


def c_function(signature: Any) -> Callable[[FunctionT], Any]:
    """Compile a C-callable function (``numba.cfunc``); its ``.address`` is the C pointer."""

    def decorate(function: FunctionT) -> Any:
        return numba.cfunc(
            signature, cache=CACHE, error_model="numpy", fastmath=set(FASTMATH_FLAGS)
        )(function)

    return decorate


def threads() -> int:
    """Number of threads the parallel kernels use."""
    return int(numba.get_num_threads())


#: CUDA device functions made by :func:`device_function`, by the Python function they
#: compile (one device version of each scalar function per process).
_DEVICE_FUNCTIONS: dict[Callable[..., Any], Any] = {}


def device_function(
    function: Callable[..., Any], substitutes: dict[Callable[..., Any], Any] | None = None
) -> Any:
    """The ``numba.cuda`` device function compiled from a scalar function's own body.

    ``function`` is a :func:`scalar_function` / :func:`exact_function` dispatcher (or a
    plain function). Its Python body (``py_func``) is compiled with
    ``numba.cuda.jit(device=True)`` after every global it calls that is itself a Numba
    dispatcher is swapped for that dispatcher's device version (recursively), and every
    global found in ``substitutes`` for its replacement (e.g. the float/bit
    reinterpretation, whose CPU version is an ``@intrinsic``). The math is the same
    source as the CPU kernels; only the target differs. ``numba.cuda`` is imported here,
    lazily: nothing needs CUDA until a device function is asked for.
    """
    import types

    from numba import cuda

    python_function = getattr(function, "py_func", function)
    made = _DEVICE_FUNCTIONS.get(python_function)
    if made is not None:
        return made
    substitutes = substitutes or {}
    namespace = dict(python_function.__globals__)
    for name in python_function.__code__.co_names:
        value = namespace.get(name)
        if value is None:
            continue
        try:
            replacement = substitutes.get(value)
        except TypeError:  # unhashable globals are never substituted
            replacement = None
        if replacement is not None:
            namespace[name] = replacement
        elif isinstance(value, numba.core.registry.CPUDispatcher):
            namespace[name] = device_function(value, substitutes)
    rebound = types.FunctionType(
        python_function.__code__,
        namespace,
        python_function.__name__,
        python_function.__defaults__,
        python_function.__closure__,
    )
    made = cuda.jit(device=True)(rebound)
    _DEVICE_FUNCTIONS[python_function] = made
    return made

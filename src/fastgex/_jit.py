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


def threads() -> int:
    """Number of threads the parallel kernels use."""
    return int(numba.get_num_threads())

"""The one place that decides how fastgex compiles its Numba code.

Every kernel and scalar formula is decorated through this module, so caching, the
floating-point model and parallelism are chosen once. Set ``FASTGEX_NO_CACHE=1`` to
disable the on-disk cache (e.g. on read-only installs without ``NUMBA_CACHE_DIR``).

Threads: numba picks its threading layer at the first parallel launch (``tbb``, then
``omp``, then ``workqueue``, unless ``NUMBA_THREADING_LAYER`` says otherwise). ``tbb``
and ``omp`` may be entered by many Python threads at once; ``workqueue`` may not (numba
aborts the whole process on a concurrent launch). So every parallel kernel is launched
through :class:`Launcher`, which serializes launches with one process-wide lock while the
layer in use is ``workqueue`` (or not yet known) and adds nothing but a flag test
otherwise. Parallel kernels are therefore launched from Python only, never from other
compiled code.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numba
from numba.core import types
from numba.extending import intrinsic, overload

FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])

#: Compiled kernels are cached next to the package (or in ``NUMBA_CACHE_DIR``).
CACHE: bool = os.environ.get("FASTGEX_NO_CACHE", "") not in ("1", "true", "yes")

#: LLVM fast-math flags. Reassociation and contraction let reductions and polynomial
#: evaluation vectorize; ``nnan``/``ninf`` are deliberately absent because validation
#: relies on NaN comparisons behaving as IEEE says.
FASTMATH_FLAGS: frozenset[str] = frozenset({"contract", "reassoc", "arcp", "nsz"})

#: Fast-math flags for the row kernels (greeks, GEX, GEX profile): no ``reassoc``, so LLVM keeps
#: every formula in the order written and a row gets bitwise the same values in the
#: vectorized loop, its scalar remainder and the scalar loop taken when the runtime
#: alias check fails, and a process that compiles a kernel gets the same bits as one
#: that loads it from the cache. With ``reassoc``, LLVM rewrote the vector and the
#: scalar copies differently (1-2 ulp on up to half of the rows, AVX-512) and folded
#: the two-constant ``ln 2`` splits of ``exp`` and ``log`` into one constant. Their
#: running sums, whose order is free, still vectorize through :func:`reorderable_add`.
ROW_FLAGS: frozenset[str] = frozenset({"contract", "arcp", "nsz"})

#: ``FASTGEX_VECTOR_WIDTH``: ``512`` (default) or ``native`` (leave LLVM's choice).
VECTOR_WIDTH_ENV = "FASTGEX_VECTOR_WIDTH"


def _choose_vector_width() -> str:
    """Let LLVM use full 512-bit vectors on AVX-512 CPUs whose tuning prefers 256 bits.

    LLVM's tuning for Intel AVX-512 server and client cores (Skylake-X through
    Sapphire Rapids) vectorizes with 256-bit registers only, to avoid the clock
    penalty 512-bit instructions had on Skylake-X. The kernels here are floating-point
    throughput bound, and on a Sapphire Rapids-class machine 512-bit vectors made the
    GEX kernel 25% faster per row (4.7 to 3.7 ns on one thread). AMD Zen 4 already gets
    512-bit vectors. Numba takes the CPU features once, when its CPU target is first
    set up (the first ``njit`` decoration in the process), so this runs at import,
    before any kernel here is decorated, and only when nothing else chose: not when
    ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` are set (portable caches), not when
    ``FASTGEX_VECTOR_WIDTH=native``, and not when other code already initialized
    Numba's CPU target. It applies to the whole process's Numba code compiled after
    it (only vector width, never precision). Returns what was decided, in words.
    """
    choice = os.environ.get(VECTOR_WIDTH_ENV, "512").strip().lower()
    if choice == "native":
        return f"native ({VECTOR_WIDTH_ENV}=native)"
    if choice != "512":
        raise ValueError(f"{VECTOR_WIDTH_ENV} must be '512' or 'native', not {choice!r}")
    if numba.config.CPU_NAME or numba.config.CPU_FEATURES is not None:
        return "native (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES set)"
    from numba.core import codegen, registry

    if "_toplevel_target_context" in vars(registry.cpu_target):
        return "native (Numba's CPU target was set up before fastgex was imported)"
    features = codegen.get_host_cpu_features()
    if "+avx512f" not in features.split(","):
        return "native (no AVX-512)"
    numba.config.CPU_FEATURES = features + ",-prefer-256-bit"
    return "512-bit vectors"


#: What :func:`_choose_vector_width` decided for this process.
VECTOR_WIDTH: str = _choose_vector_width()

_PACKAGE_DIRECTORY = Path(__file__).resolve().parent


def sources_fingerprint(directory: Path) -> str:
    """SHA-256 of the names and bytes of every ``*.py`` file under ``directory``."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        digest.update(path.relative_to(directory).as_posix().encode("utf-8"))
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def package_fingerprint() -> str:
    """:func:`sources_fingerprint` of the installed package, once a process.

    Kernels inline formulas from other modules, and Numba's disk cache checks only the
    file a compiled function is defined in: the fingerprint is what ties a cached
    kernel to the formulas it was compiled from (see :func:`_fingerprint_disk_cache`).
    """
    return sources_fingerprint(_PACKAGE_DIRECTORY)


@functools.cache
def _in_package(directory: str) -> bool:
    """Whether ``directory`` is the package's or below it (resolved once per directory)."""
    try:
        return Path(directory).resolve().is_relative_to(_PACKAGE_DIRECTORY)
    except (OSError, ValueError):
        return False


def _fingerprinted_locator(locator_class: type) -> type:
    """``locator_class`` for fastgex's own files, with the package fingerprint in the stamp."""

    class FingerprintedLocator(locator_class):  # type: ignore[misc, valid-type]
        _fastgex_fingerprinted = True

        @classmethod
        def from_function(cls, py_func, py_file):
            inside = _in_package(os.path.dirname(py_file))
            return super().from_function(py_func, py_file) if inside else None

        def get_source_stamp(self):
            return super().get_source_stamp(), package_fingerprint()

    FingerprintedLocator.__name__ = f"Fingerprinted{locator_class.__name__}"
    FingerprintedLocator.__qualname__ = FingerprintedLocator.__name__
    return FingerprintedLocator


def _fingerprint_disk_cache() -> bool:
    """Make Numba's disk cache of fastgex's kernels depend on every module they inline.

    Numba stamps a cached function with the hash of its own source file only. A kernel
    that inlines ``fastgex._fastmath`` would then load code compiled from an older
    ``_fastmath`` after that file alone changed (an edited checkout, a hand-patched
    install). For files inside this package each of Numba's cache locators gets a
    subclass whose stamp also holds :func:`package_fingerprint`, so any change to any
    module recompiles; other code's functions fall through to Numba's own locators,
    unchanged. Returns False (and changes nothing) if Numba's caching internals are not
    the ones this was written against.
    """
    try:
        from numba.core import caching

        impl = caching.CompileResultCacheImpl
        originals = [
            locator
            for locator in impl._locator_classes
            if not getattr(locator, "_fastgex_fingerprinted", False)
        ]
    except (ImportError, AttributeError):
        return False
    impl._locator_classes = [_fingerprinted_locator(locator) for locator in originals] + originals
    return True


#: Whether :func:`_fingerprint_disk_cache` applied (it runs once, at import).
FINGERPRINTED_CACHE: bool = _fingerprint_disk_cache()


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


def outlined(function: Any, *, flags: frozenset[str] = FASTMATH_FLAGS) -> Any:
    """The body of a :func:`scalar_function` compiled as its own, non-inlined function.

    For cold paths (a row-by-row fallback) that call a big formula: inlining it there
    adds nothing at run time but compile time (LLVM optimizes every inlined copy).
    Same cache as the inlined version; ``flags``: those of the kernel it stands in for.
    """
    return numba.njit(cache=CACHE, error_model="numpy", fastmath=set(flags))(function.py_func)


def exact_function(function: FunctionT) -> FunctionT:
    """Compile a scalar helper with strict IEEE arithmetic (no fast-math), not inlined.

    For compensated summation: with reassociation allowed LLVM proves the Neumaier
    correction ``(total - new_total) + value`` is zero and deletes it. Fast-math flags
    are per instruction, so they stay off even when LLVM later inlines the call.
    """
    return numba.njit(cache=CACHE, error_model="numpy", fastmath=False)(function)


def reorderable_add(total: float, value: float) -> float:
    """``total + value`` as an add that LLVM may reassociate, in a kernel of any flags.

    For the running sums of kernels compiled with :data:`ROW_FLAGS`: the formulas keep
    their written order (so a row's value is bitwise the same in the vectorized loop
    and its scalar remainder), while the sums, whose order is free within their stated
    bound, still vectorize. Compiled, the add carries :data:`FASTMATH_FLAGS` itself
    (fast-math flags are per instruction); in plain Python it is ``total + value``.
    """
    return total + value


@intrinsic
def _reassociable_fadd(typingctx, total, value):  # pragma: no cover - compiled
    if isinstance(total, types.Float) and total == value:

        def codegen(context, builder, signature, args):
            return builder.fadd(args[0], args[1], flags=tuple(sorted(FASTMATH_FLAGS)))

        return total(total, value), codegen
    return None


@overload(reorderable_add, inline="always")
def _reorderable_add_compiled(total, value):
    return lambda total, value: _reassociable_fadd(total, value)


#: Serializes parallel launches while the threading layer is not thread-safe.
_LAUNCH_LOCK = threading.Lock()

#: Whether launches must take :data:`_LAUNCH_LOCK`: None until the first parallel launch
#: has chosen numba's threading layer, then ``layer == "workqueue"``.
_SERIALIZE: bool | None = None


def _layer_serializes() -> bool:
    """True when the threading layer numba chose must not be entered concurrently."""
    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:  # no parallel launch has chosen a layer yet
        return True


class Launcher:
    """A parallel kernel (a numba dispatcher) whose launches are safe from any thread.

    Calls go straight to the dispatcher under a thread-safe layer (``tbb``, ``omp``) and
    take one process-wide lock under ``workqueue``; until the first launch has chosen
    the layer, launches take the lock too. Attributes are the dispatcher's.
    """

    __slots__ = ("dispatcher",)

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher

    def __call__(self, *args: Any) -> Any:
        """Launch the kernel (under the lock while the layer may be ``workqueue``)."""
        global _SERIALIZE
        if _SERIALIZE is False:
            return self.dispatcher(*args)
        with _LAUNCH_LOCK:
            result = self.dispatcher(*args)
            _SERIALIZE = _layer_serializes()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dispatcher, name)


def threading_layer() -> str | None:
    """The threading layer numba chose, or None before the first parallel launch."""
    try:
        return str(numba.threading_layer())
    except ValueError:
        return None


def _parallel_options() -> dict[str, bool]:
    """Numba's ``parallel=`` for the kernels: explicit ``prange`` loops only.

    With ``parallel=True`` Numba also turns every ``np.zeros`` call and array
    expression into a parallel loop of its own, each compiled as a separate gufunc: the
    GEX kernel had six of those besides its three ``prange`` loops (about 2 s of its
    cold compile together), for arrays of a few thousand entries. The loops that matter
    are written as ``prange``, so nothing else is converted. (A new dict each time:
    Numba consumes it.)
    """
    return {
        "prange": True,
        "numpy": False,
        "reduction": False,
        "setitem": False,
        "inplace_binop": False,
        "comprehension": False,
        "stencil": False,
        "fusion": False,
    }


def loop_body(function: FunctionT | None = None, *, flags: frozenset[str] = FASTMATH_FLAGS) -> Any:
    """Compile the body of a kernel's ``prange`` loop as a serial function of its own.

    Numba's parfor passes (fusion, then lowering the loop into a gufunc that is typed
    and compiled again) work through everything inlined into a ``prange`` body; with
    the GEX kernel's two inlined copies of the formula there, they were over half of
    its cold compile. A body that is one call to a function compiled here keeps them to
    a one-line loop, at no cost at run time. Call it with the loop index cast to
    ``np.int64``: the index is ``uint64`` inside the gufunc and ``int64`` before it,
    and each type would compile the body again. ``flags`` as in :func:`kernel`.
    """
    return kernel(function, parallel=False, flags=flags)


def kernel(
    function: FunctionT | None = None,
    *,
    parallel: bool = True,
    flags: frozenset[str] = FASTMATH_FLAGS,
) -> Any:
    """Compile a loop kernel (``prange`` loops run in parallel when ``parallel``).

    Parallel kernels come wrapped in a :class:`Launcher` (thread-safe launches under any
    threading layer); serial ones are the plain dispatcher. ``flags``: the fast-math
    flags, :data:`FASTMATH_FLAGS` or :data:`ROW_FLAGS`; they also apply to every
    :func:`scalar_function` inlined into the kernel.
    """

    def decorate(inner: FunctionT) -> Any:
        compiled = numba.njit(
            cache=CACHE,
            parallel=_parallel_options() if parallel else False,
            error_model="numpy",
            fastmath=set(flags),
            nogil=True,
        )(inner)
        return Launcher(compiled) if parallel else compiled

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

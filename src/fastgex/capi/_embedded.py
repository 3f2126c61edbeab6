"""The Python side of libfastgex: what each ``fastgex__py_*`` C entry point does.

:func:`register` is called by the library's cffi init code with the module's ``ffi``
and ``lib``; it binds every ``extern "Python"`` function. Each one marks that Python was
reached, maps every exception to a status code and a message (per C thread), and never
lets one escape: cffi would print it and return 0, which reads as success.

Kernel launches are serialized by one lock: numba's ``workqueue`` threading layer (its
fallback when neither TBB nor OpenMP is available) must not be entered by two threads at
once, and each call is parallel inside anyway.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import traceback
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pyarrow as pa

import fastgex
from fastgex._errors import ChainError, InvalidRowsError
from fastgex.capi import _raw
from fastgex.sample import sample_chain

OK = 0
NOT_INITIALIZED = 1
PYTHON_START = 2
NULL_POINTER = 3
INVALID_ARGUMENT = 4
ARROW = 5
CHAIN = 6
INVALID_ROWS = 7
INTERNAL = 8

OPTIONS_VERSION = 1
NO_TIME = -(2**63)
CONVENTIONS = ("short_calls_long_puts", "long_calls_short_puts", "short_all")
GAMMA_SOURCES = ("model", "column")

_LOCK = threading.RLock()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class _ArgumentError(ValueError):
    """A bad option or argument (FASTGEX_ERROR_INVALID_ARGUMENT)."""


def _per_underlying(text: str) -> float | dict[str, float]:
    """``"0.05"`` or ``"SPX:0.05,NDX:0.04"``."""
    if ":" not in text:
        return float(text)
    pairs = [item.split(":", 1) for item in text.split(",") if item.strip()]
    return {name.strip(): float(value) for name, value in pairs}


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _buckets(text: str) -> str | dict[str, float]:
    if text.strip() == "default":
        return "default"
    pairs = [item.split(":", 1) for item in text.split(",") if item.strip()]
    return {name.strip(): float(days) for name, days in pairs}


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise _ArgumentError(f"expected true or false, not {text!r}")
    return lowered in ("true", "1", "yes")


def _range(text: str) -> tuple[float, float]:
    low, high = (float(part) for part in text.split(","))
    return low, high


_GEX_KEYS: dict[str, Callable[[str], Any]] = {
    "rate": _per_underlying,
    "dividend_yield": _per_underlying,
    "spot": _per_underlying,
    "day_count": str.strip,
    "settlement": str.strip,
    "settlement_tz": str.strip,
    "min_time_to_expiry": float,
    "on_invalid": str.strip,
    "buckets": _buckets,
    "views": _names,
}
_LEVELS_KEYS: dict[str, Callable[[str], Any]] = {
    "n_levels": int,
    "level_range": _range,
    "vol_model": str.strip,
    "walls_relative_to_spot": _bool,
    "oi_cluster_count": int,
    "exclude": str.strip,
}


def parse_extra(text: str, *, levels: bool) -> dict[str, Any]:
    """Parse ``"key=value;key=value"`` (``;`` or newlines) into keyword arguments."""
    keys = {**_GEX_KEYS, **_LEVELS_KEYS} if levels else _GEX_KEYS
    parsed: dict[str, Any] = {}
    for item in text.replace("\n", ";").split(";"):
        if not item.strip():
            continue
        key, separator, value = item.partition("=")
        key = key.strip()
        if not separator:
            raise _ArgumentError(f"option {item.strip()!r} is not key=value")
        if key not in keys:
            where = " (only for fastgex_levels)" if key in _LEVELS_KEYS else ""
            raise _ArgumentError(f"unknown option {key!r}{where}; known: {', '.join(sorted(keys))}")
        try:
            parsed[key] = keys[key](value)
        except (ValueError, TypeError) as error:
            raise _ArgumentError(f"option {key}={value!r}: {error}") from None
    return parsed


def _choice(value: int, names: tuple[str, ...], what: str) -> str:
    if not 0 <= value < len(names):
        raise _ArgumentError(f"{what} {value} is not one of 0..{len(names) - 1} ({names})")
    return names[value]


def options_kwargs(ffi: Any, options: Any, *, levels: bool) -> dict[str, Any]:
    """Keyword arguments of :func:`fastgex.gex` / :func:`fastgex.levels` from a C struct."""
    if options == ffi.NULL:
        return {}
    if options.version != OPTIONS_VERSION:
        raise _ArgumentError(
            f"fastgex_options.version is {options.version}; this library reads version "
            f"{OPTIONS_VERSION} (call fastgex_options_init first)"
        )
    kwargs: dict[str, Any] = {
        "convention": _choice(options.convention, CONVENTIONS, "convention"),
        "unit": _choice(options.unit, _raw.UNIT_CODES, "unit"),
        "gamma_source": _choice(options.gamma_source, GAMMA_SOURCES, "gamma_source"),
    }
    if not math.isnan(options.spot):
        if not (options.spot > 0 and math.isfinite(options.spot)):
            raise _ArgumentError(f"spot must be positive and finite (or NaN), not {options.spot}")
        kwargs["spot"] = float(options.spot)
    if options.snapshot_time_ns != NO_TIME:
        nanos = int(options.snapshot_time_ns)
        kwargs["snapshot_time"] = _EPOCH + dt.timedelta(microseconds=nanos // 1000)
    if options.extra != ffi.NULL:
        extra = parse_extra(ffi.string(options.extra).decode("utf-8"), levels=levels)
        if "spot" in extra and "spot" in kwargs:
            raise _ArgumentError("spot given both in the spot field and in extra")
        kwargs.update(extra)
    return kwargs


def _status_of(error: BaseException) -> int:
    if isinstance(error, InvalidRowsError):
        return INVALID_ROWS
    if isinstance(error, ChainError):
        return CHAIN
    if isinstance(error, (pa.ArrowException, _ArrowImportError)):
        return ARROW
    if isinstance(error, _ArgumentError):
        return INVALID_ARGUMENT
    if isinstance(error, (ValueError, TypeError, KeyError)):
        return INVALID_ARGUMENT  # option values the façade rejected
    return INTERNAL


class _ArrowImportError(Exception):
    """The caller's Arrow data could not be imported (FASTGEX_ERROR_ARROW)."""


def _import_chain(ffi: Any, stream: Any, array: Any, schema: Any) -> pa.Table:
    """Take ownership of the caller's stream (or array + schema) and validate it fully.

    Full validation matters: the buffers were built by hand in C and a wrong length or
    offset must be an error here, not an out-of-bounds read in a kernel.
    """
    try:
        if stream != ffi.NULL:
            table = pa.RecordBatchReader._import_from_c(int(ffi.cast("uintptr_t", stream)))
            table = table.read_all()
        else:
            batch = pa.RecordBatch._import_from_c(
                int(ffi.cast("uintptr_t", array)), int(ffi.cast("uintptr_t", schema))
            )
            table = pa.Table.from_batches([batch])
        table.validate(full=True)
    except pa.ArrowException as error:
        raise _ArrowImportError(f"invalid Arrow input: {error}") from None
    return table


def _export(ffi: Any, outputs: list[tuple[pa.Table, Any]]) -> None:
    """Export each table to its (non-NULL) output stream; all of them or none.

    If one export fails, the streams already written are released again, so that the
    caller sees what the header promises: outputs are filled only on FASTGEX_OK.
    """
    done = []
    try:
        for table, out in outputs:
            if out != ffi.NULL:
                table.to_reader()._export_to_c(int(ffi.cast("uintptr_t", out)))
                done.append(out)
    except BaseException:
        for out in done:
            if out.release != ffi.NULL:
                out.release(out)
        raise


def _guarded(ffi: Any, lib: Any, body: Callable[..., int]) -> Callable[..., int]:
    """Wrap an entry point: mark ``reached``, catch everything, set the message."""

    def entry(reached: Any, *args: Any) -> int:
        reached[0] = 1
        try:
            return body(*args)
        except BaseException as error:  # nothing may cross the C boundary
            status = _status_of(error)
            own = isinstance(error, (_ArgumentError, _ArrowImportError))
            message = str(error) if own else f"{type(error).__name__}: {error}"
            if status == INTERNAL:
                message += "\n" + traceback.format_exc()
            lib.fastgex__set_error(message.encode("utf-8", "replace"))
            return status

    entry.__name__ = body.__name__
    return entry


def _input(ffi: Any, pointer: Any, n: int, dtype: Any) -> np.ndarray:
    """A view of a caller's const array, left writable on purpose.

    The kernels never write their inputs, and numba dispatches read-only arrays through
    a slow path that costs tens of microseconds per call: more than a small call itself.
    """
    item = np.dtype(dtype).itemsize
    return np.frombuffer(ffi.buffer(pointer, n * item), dtype=dtype)


#: Below this many rows a call runs its kernels on one thread: waking the parallel
#: workers costs more than the loop, and on a busy machine each parallel launch can wait
#: a whole scheduler time slice for a descheduled worker.
SERIAL_ROWS = 16_384


class _Threads:
    """Run the parallel kernels on one thread for small inputs (restored on exit)."""

    def __init__(self, n_rows: int) -> None:
        self.serial = n_rows < SERIAL_ROWS

    def __enter__(self) -> None:
        if self.serial:
            self.previous = numba.get_num_threads()
            numba.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.serial:
            numba.set_num_threads(self.previous)


def _writable(ffi: Any, pointer: Any, n: int) -> np.ndarray:
    return np.frombuffer(ffi.buffer(pointer, n * 8), dtype=np.float64)


def _check_scalar(name: str, value: float, *, positive: bool) -> None:
    ok = math.isfinite(value) and (value > 0 or not positive)
    if not ok:
        kind = "positive and finite" if positive else "finite"
        raise _ArgumentError(f"{name} must be {kind}, not {value}")


def warm(lib_functions: Callable[[int, int], None] | None = None) -> None:
    """Compile (or load from cache) every kernel specialization the C calls run.

    The chain calls pass read-only Arrow buffers (as :func:`fastgex.gex` always does); the
    raw-array calls pass writable views (see :func:`_input`).
    """
    sample = pa.table(
        {
            "underlying": ["WARM", "WARM", "WARM", "WARM"],
            "strike": [90.0, 100.0, 100.0, 110.0],
            "option_type": ["C", "P", "C", "P"],
            "open_interest": [10.0, 20.0, 30.0, 40.0],
            "implied_vol": [0.2, 0.25, 0.2, 0.3],
            "time_to_expiry": [0.1, 0.1, 0.5, 0.5],
        }
    )
    fastgex.gex(sample, spot=100.0)
    fastgex.gex(sample, spot=100.0, by_strike=False)
    fastgex.levels(sample, spot=100.0, n_levels=8)
    # A chain with expiration dates, a snapshot and a spot column (the other prepare path).
    dated = sample_chain(seed=0)
    fastgex.gex(dated)
    fastgex.levels(dated, n_levels=8)
    values = np.linspace(90.0, 110.0, 4)
    # The raw-array calls pass writable views (see _input).
    inputs = [values, np.full(4, 0.2), np.full(4, 0.1), np.full(4, 5.0)]
    flags = np.array([1, 0, 1, 0], dtype=np.int8)
    out = np.empty(4)
    _raw.gamma_rows(100.0, inputs[0], inputs[1], inputs[2], 0.0, 0.0, out)
    _raw.gamma_rows_serial(100.0, inputs[0], inputs[1], inputs[2], 0.0, 0.0, out)
    for unit in range(len(_raw.UNIT_CODES)):  # one kernel variant per unit
        for rows in (out, np.empty(0)):
            _raw.contract_gex(100.0, *inputs, flags, 100.0, 0.0, 0.0, 0, unit, rows)
    if lib_functions is not None:
        lib_functions(_raw.gamma_cfunc.address, _raw.black76_gamma_cfunc.address)


def register(ffi: Any, lib: Any) -> None:
    """Bind every ``extern "Python"`` entry point of the library (called by its init code)."""

    def init() -> int:
        with _LOCK:
            warm(
                lambda gamma, black76: lib.fastgex__set_functions(
                    ffi.cast("fastgex_gamma_fn", gamma),
                    ffi.cast("fastgex_black76_gamma_fn", black76),
                )
            )
        return OK

    def gex(stream, array, schema, options, by_underlying, by_strike, dropped) -> int:
        kwargs = options_kwargs(ffi, options, levels=False)
        table = _import_chain(ffi, stream, array, schema)
        with _LOCK, _Threads(table.num_rows):
            result = fastgex.gex(table, by_strike=by_strike != ffi.NULL, **kwargs)
        _export(
            ffi,
            [
                (result.by_underlying, by_underlying),
                (result.by_strike, by_strike),
                (result.dropped, dropped),
            ],
        )
        return OK

    def levels(stream, options, levels_out, by_strike, profile) -> int:
        kwargs = options_kwargs(ffi, options, levels=True)
        table = _import_chain(ffi, stream, ffi.NULL, ffi.NULL)
        with _LOCK, _Threads(table.num_rows):
            result = fastgex.levels(table, **kwargs)
        _export(
            ffi,
            [(result.levels, levels_out), (result.by_strike, by_strike), (result.profile, profile)],
        )
        return OK

    def gamma(n, spot, strike, vol, time_to_expiry, rate, dividend_yield, out, invalid) -> int:
        _check_scalar("spot", spot, positive=True)
        _check_scalar("rate", rate, positive=False)
        _check_scalar("dividend_yield", dividend_yield, positive=False)
        arrays = [_input(ffi, pointer, n, np.float64) for pointer in (strike, vol)]
        times = _input(ffi, time_to_expiry, n, np.float64)
        run = _raw.gamma_rows_serial if n < SERIAL_ROWS else _raw.gamma_rows
        with _LOCK:
            count = run(spot, *arrays, times, rate, dividend_yield, _writable(ffi, out, n))
        if invalid != ffi.NULL:
            invalid[0] = count
        return OK

    def contract_gex(
        n,
        spot,
        strike,
        vol,
        time_to_expiry,
        open_interest,
        is_call,
        multiplier,
        rate,
        dividend_yield,
        convention,
        unit,
        out,
        total,
        invalid,
    ) -> int:
        _check_scalar("spot", spot, positive=True)
        _check_scalar("multiplier", multiplier, positive=True)
        _check_scalar("rate", rate, positive=False)
        _check_scalar("dividend_yield", dividend_yield, positive=False)
        _choice(convention, CONVENTIONS, "convention")
        _choice(unit, _raw.UNIT_CODES, "unit")
        inputs = [
            _input(ffi, pointer, n, np.float64)
            for pointer in (strike, vol, time_to_expiry, open_interest)
        ]
        flags = _input(ffi, is_call, n, np.int8)
        rows = _writable(ffi, out, n) if out != ffi.NULL else np.empty(0)
        with _LOCK, _Threads(n):
            summed, count = _raw.contract_gex(
                spot, *inputs, flags, multiplier, rate, dividend_yield, convention, unit, rows
            )
        if not math.isfinite(summed):
            raise _ArgumentError(
                "the GEX total overflows float64 (every row is finite but their sum is not)"
            )
        total[0] = summed
        if invalid != ffi.NULL:
            invalid[0] = count
        return OK

    bodies = {
        "fastgex__py_init": init,
        "fastgex__py_gex": gex,
        "fastgex__py_levels": levels,
        "fastgex__py_gamma": gamma,
        "fastgex__py_contract_gex": contract_gex,
    }
    for name, body in bodies.items():
        ffi.def_extern(name=name)(_guarded(ffi, lib, body))

"""Where the kernels run: ``device="cpu" | "cuda" | "auto"``, and GEX on device arrays.

Nothing here imports ``numba.cuda`` at import time: a machine without CUDA (or without
the ``cuda`` extra) imports fastgex as before, and only ``device="cuda"`` says what is
missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from fastgex._kernel_common import REASONS, KernelConfig

__all__ = [
    "DEVICES",
    "DeviceGexResult",
    "DeviceUnavailableError",
    "cuda_available",
    "gex_arrays",
    "resolve_device",
]

#: Accepted values of ``device=``.
DEVICES = ("cpu", "cuda", "auto")


class DeviceUnavailableError(RuntimeError):
    """``device="cuda"`` was asked for on a machine where CUDA cannot be used."""


def _cuda_state() -> tuple[bool, bool, str]:
    """``(usable, simulated, why_not)`` without raising (CUDA imported lazily)."""
    try:
        from numba import config, cuda
    except Exception as error:  # pragma: no cover - numba without its cuda package
        return False, False, f"numba.cuda cannot be imported ({error})"
    simulated = bool(config.ENABLE_CUDASIM)
    try:
        usable = bool(cuda.is_available())
    except Exception as error:  # pragma: no cover - broken driver
        return False, simulated, f"the CUDA driver failed ({error})"
    if usable:
        return True, simulated, ""
    return False, simulated, "no CUDA GPU or driver found (numba.cuda.is_available() is False)"


def cuda_available(*, simulator: bool = False) -> bool:
    """Whether a CUDA GPU can run the kernels.

    Parameters
    ----------
    simulator : bool
        Also count Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) as available.

    Returns
    -------
    bool
        True when ``device="cuda"`` would run.
    """
    usable, simulated, _ = _cuda_state()
    return usable and (simulator or not simulated)


def resolve_device(device: str) -> str:
    """The device a call runs on: ``"cpu"`` or ``"cuda"``.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"}
        ``auto`` picks ``cuda`` when a real GPU is present (never the simulator), else
        ``cpu``. ``cuda`` runs on a GPU, or on Numba's CUDA simulator when
        ``NUMBA_ENABLE_CUDASIM=1`` (for tests).

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        ``device`` is not one of ``"cpu"``, ``"cuda"``, ``"auto"``.
    DeviceUnavailableError
        ``device="cuda"`` without a usable GPU.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "cpu":
        return "cpu"
    usable, simulated, why_not = _cuda_state()
    if device == "auto":
        return "cuda" if usable and not simulated else "cpu"
    if not usable:
        raise DeviceUnavailableError(
            f"device='cuda' needs an NVIDIA GPU with a working driver: {why_not}. Install "
            "the CUDA support with `pip install fastgex[cuda]`, or use device='cpu' / 'auto'."
        )
    return "cuda"


@dataclass(frozen=True)
class DeviceGexResult:
    """GEX of device-resident arrays (see :func:`gex_arrays`).

    Attributes
    ----------
    by_underlying : pyarrow.Table or None
        Per underlying id: ``underlying_id``, ``total_gex``, ``call_gex``, ``put_gex``,
        ``contracts``, ``dropped``. None with ``keep_on_device=True``.
    dropped : pyarrow.Table or None
        Rows not counted per ``underlying_id`` and ``reason``. None with
        ``keep_on_device=True``.
    device_sums, device_counts : device arrays or None
        With ``keep_on_device=True``: ``sums[u] = (call, put)`` GEX and
        ``counts[u, c]`` rows of status ``c`` (0 = counted, ``c`` = ``REASONS[c - 1]``).
    values, status : device arrays or None
        With ``per_contract=True``: per-row signed GEX (0.0 when not counted) and
        status code, left on the device.
    timing : dict
        Seconds: ``host_to_device_s`` (inputs that were not already on the device and
        the tile plan), ``kernel_s``, ``device_to_host_s``.
    """

    by_underlying: pa.Table | None
    dropped: pa.Table | None
    device_sums: Any = None
    device_counts: Any = None
    values: Any = None
    status: Any = None
    timing: dict[str, float] = field(default_factory=dict)


def gex_arrays(
    strike: Any,
    vol: Any,
    time_to_expiry: Any,
    quantity: Any,
    option_code: Any,
    underlying_id: Any,
    spot: Any,
    *,
    rate: Any = 0.0,
    dividend_yield: Any = 0.0,
    multiplier: Any = 100.0,
    call_sign: float = -1.0,
    put_sign: float = 1.0,
    unit_scale: float = 0.01,
    unit_power: int = 2,
    min_time_to_expiry: float = 60.0 / (365.0 * 86_400.0),
    dealer_position: bool = False,
    plan: Any = None,
    per_contract: bool = False,
    keep_on_device: bool = False,
) -> DeviceGexResult:
    """Signed GEX per contract and call/put totals per underlying, on the GPU.

    Every per-row array may already be on the device (anything with
    ``__cuda_array_interface__``: numba device arrays, CuPy arrays, cuDF columns): it
    is used in place, with no host round trip. Host (numpy) arrays are copied once
    and the copy time is reported in ``timing``. The model is Black-Scholes-Merton
    with model gamma (the defaults of :func:`fastgex.gex`); validation and reasons are
    the CPU kernel's.

    Parameters
    ----------
    strike, vol, time_to_expiry, quantity : array-like
        float64 per row (time in years; quantity is open interest, or the signed
        dealer position with ``dealer_position=True``).
    option_code : array-like
        uint8 per row: 1 call, 0 put (any other value is an unknown type).
    underlying_id : array-like
        int32 per row, ``0 <= id < len(spot)``.
    spot : array-like
        float64 per underlying.
    rate, dividend_yield, multiplier : float or array-like
        Per underlying (scalars are broadcast).
    call_sign, put_sign : float
        Dealer signs (default: short calls, long puts).
    unit_scale, unit_power : float, int
        Unit factor ``unit_scale * spot**unit_power`` (default: dollars per 1% move).
    min_time_to_expiry : float
        Floor on the time used in gamma (years).
    dealer_position : bool
        ``quantity`` holds signed dealer contracts (no convention sign applied).
    plan : TilePlan, optional
        A precomputed ``fastgex._cuda_kernels.tile_plan(ids, n_underlyings,
        fastgex._cuda_kernels.gex_tile_rows())`` of ``underlying_id`` (a host array).
        Without it, a device ``underlying_id`` is copied to the host once
        (4 bytes per row) to plan the tiles.
    per_contract : bool
        Keep the per-row values and status codes (on the device).
    keep_on_device : bool
        Leave the totals on the device instead of building Arrow tables.

    Returns
    -------
    DeviceGexResult
        Totals (Arrow or device arrays), optional per-row device arrays, timings.

    Raises
    ------
    DeviceUnavailableError
        No usable GPU.
    """
    resolve_device("cuda")
    from fastgex import _cuda_kernels as kernels

    started = time.perf_counter()
    n_underlyings = int(np.shape(spot)[0]) if np.ndim(spot) else 1
    if plan is None:
        ids = underlying_id
        if kernels.is_device_array(ids):
            ids = kernels.as_device_array(ids).copy_to_host()
        plan = kernels.tile_plan(np.asarray(ids), n_underlyings, kernels.gex_tile_rows())

    def per_underlying(value: Any) -> Any:
        if kernels.is_device_array(value):
            return value
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (n_underlyings,))

    arrays = {
        "strike": kernels._to_device(strike, np.float64),
        "vol": kernels._to_device(vol, np.float64),
        "time": kernels._to_device(time_to_expiry, np.float64),
        "quantity": kernels._to_device(quantity, np.float64),
        "code": kernels._to_device(option_code, np.uint8),
        "uid": kernels._to_device(underlying_id, np.int32),
        "spot": kernels._to_device(per_underlying(spot), np.float64),
        "rate": kernels._to_device(per_underlying(rate), np.float64),
        "dividend_yield": kernels._to_device(per_underlying(dividend_yield), np.float64),
        "forward": kernels._to_device(np.zeros(1)),
        "gamma": kernels._to_device(np.zeros(1)),
        "multiplier": kernels._to_device(per_underlying(multiplier), np.float64),
    }
    device_plan = kernels.plan_to_device(plan)
    kernels._synchronize()
    copied = time.perf_counter()
    config = KernelConfig(dealer_position=dealer_position, unit_power=unit_power)
    scalars = {
        "call_sign": float(call_sign),
        "put_sign": float(put_sign),
        "unit_scale": float(unit_scale),
        "min_time": float(min_time_to_expiry),
    }
    sums, counts, values, status = kernels.gex_on_device(
        config, arrays, scalars, device_plan, per_contract
    )
    kernels._synchronize()
    computed = time.perf_counter()
    timing = {"host_to_device_s": copied - started, "kernel_s": computed - copied}
    keep_rows = {"values": values, "status": status} if per_contract else {}
    if keep_on_device:
        timing["device_to_host_s"] = 0.0
        return DeviceGexResult(None, None, sums, counts, timing=timing, **keep_rows)
    sums_host = sums.copy_to_host()
    counts_host = counts.copy_to_host()
    timing["device_to_host_s"] = time.perf_counter() - computed
    by_underlying, dropped = _tables(sums_host, counts_host)
    return DeviceGexResult(by_underlying, dropped, timing=timing, **keep_rows)


def _tables(sums: np.ndarray, counts: np.ndarray) -> tuple[pa.Table, pa.Table]:
    dropped_per = counts[:, 1:].sum(axis=1)
    by_underlying = pa.table(
        {
            "underlying_id": pa.array(np.arange(sums.shape[0]), pa.int64()),
            "total_gex": pa.array(sums[:, 0] + sums[:, 1], pa.float64()),
            "call_gex": pa.array(sums[:, 0], pa.float64()),
            "put_gex": pa.array(sums[:, 1], pa.float64()),
            "contracts": pa.array(counts[:, 0], pa.int64()),
            "dropped": pa.array(dropped_per, pa.int64()),
        }
    )
    ids, codes = np.nonzero(counts[:, 1:])
    dropped = pa.table(
        {
            "underlying_id": pa.array(ids, pa.int64()),
            "reason": pa.array([REASONS[code] for code in codes], pa.string()),
            "count": pa.array(counts[ids, codes + 1], pa.int64()),
        }
    )
    return by_underlying, dropped

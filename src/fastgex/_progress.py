"""A small progress line for long jobs: rows, partitions, rate and ETA on stderr.

Quiet unless the stream is a terminal, so logs and pipes stay clean. No dependency.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Minimum seconds between redraws (a redraw per partition would flood a slow terminal).
REDRAW_INTERVAL = 0.2


def _count(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Progress of a job over partitions and rows, drawn on one terminal line.

    Parameters
    ----------
    total_rows : int
        Rows the job will process (the rate and ETA are in rows).
    total_partitions : int
        Partitions the job will process.
    stream : file, optional
        Where to draw (default ``sys.stderr``).
    enabled : bool, optional
        Force on or off; default: on only when ``stream`` is a terminal.
    """

    def __init__(
        self,
        total_rows: int,
        total_partitions: int,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.total_rows = int(total_rows)
        self.total_partitions = int(total_partitions)
        self.rows = 0
        self.partitions = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def line(self) -> str:
        """The current progress text (without the carriage return)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.rows / elapsed
        if self.total_partitions:
            fraction = self.partitions / self.total_partitions
        else:
            fraction = 1.0
        width = 20
        filled = round(width * fraction)
        bar = "#" * filled + "-" * (width - filled)
        remaining = self.total_rows - self.rows
        eta = _duration(remaining / rate) if rate > 0 and remaining > 0 else "-"
        return (
            f"[{bar}] {self.partitions}/{self.total_partitions} partitions  "
            f"{_count(self.rows)}/{_count(self.total_rows)} rows  "
            f"{_count(rate)} rows/s  elapsed {_duration(elapsed)}  ETA {eta}"
        )

    def update(self, rows: int = 0, partitions: int = 0) -> None:
        """Count finished work and redraw (at most every :data:`REDRAW_INTERVAL` s)."""
        self.rows += int(rows)
        self.partitions += int(partitions)
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn >= REDRAW_INTERVAL or self.partitions >= self.total_partitions:
            self._drawn = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()

"""Progress of a training epoch: a tqdm bar on a terminal, a plain log line elsewhere."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """A tqdm bar per epoch (samples done, rate, live accuracy) on a terminal; plain lines elsewhere.

    On a terminal the bar is redrawn in place and erased by :meth:`clear`. Where the
    stream is not a terminal (a log file, CI), a plain line ``label: done/total samples,
    text`` is written at most every ``log_interval_s`` seconds, so a long epoch still
    shows that it is moving and a short run's log stays as it was.

    Args:
        stream: Where to write (default ``sys.stderr``).
        enabled: False writes nothing.
        min_interval_s: Least time between redraws of the bar.
        log_interval_s: Least time between plain lines (not on a terminal).
    """

    def __init__(
        self,
        *,
        stream: IO[str] | None = None,
        enabled: bool = True,
        min_interval_s: float = 0.2,
        log_interval_s: float = 60.0,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.log_interval_s = log_interval_s
        self._bar: Any = None
        self._label = ""
        self._last = 0.0
        self._logged: float | None = None

    def update(
        self, label: str, done: int, total: int, started: float, text: str = "", *, force: bool = False
    ) -> None:
        """Show ``done`` of ``total`` samples of the epoch ``label`` (begun at ``started``,
        a ``time.perf_counter()``), with ``text`` (e.g. the running accuracy) beside them."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.terminal:
            last = started if self._logged is None or label != self._label else self._logged
            self._label = label
            if now - last >= self.log_interval_s:
                self._logged = now
                rate = done / max(1e-9, now - started)
                self.stream.write(f"{label}: {done}/{total} samples, {rate:,.0f}/s, {text}\n")
                self.stream.flush()
            return
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        if self._bar is None or label != self._label:
            self.clear()
            self._label = label
            self._bar = tqdm(
                total=total, desc=label, file=self.stream, leave=False, dynamic_ncols=True, unit="sample"
            )
            self._bar.start_t = time.time() - (now - started)  # the rate counts from the epoch's start
        self._bar.total = total
        self._bar.n = done
        self._bar.set_postfix_str(text, refresh=False)
        self._bar.refresh()

    def clear(self) -> None:
        """Erase the bar so the next line prints cleanly (the next epoch starts a new one)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._logged = None

"""JSON-lines label sink: one JSON object per label, appended to a file (flushed per label by default)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from streamlsm.errors import ConfigError
from streamlsm.events import LabelEvent

__all__ = ["JsonlSink"]


class JsonlSink:
    """Appends ``label.to_dict()`` as a JSON line to ``path``; ``flush_every`` labels per flush, and
    at the latest ``flush_s`` seconds after a label was written (the daemon calls ``observe`` every
    ``limits.stats_every_s``): a kill -9 loses at most that much. Non-finite numbers are refused
    (strict JSON), never written as ``NaN``."""

    def __init__(self, path: str | Path, flush_every: int = 1, flush_s: float = 1.0) -> None:
        if type(flush_every) is not int or flush_every < 1:
            raise ConfigError("flush_every", f"must be an integer >= 1, got {flush_every!r}")
        if type(flush_s) not in (int, float) or not 0 <= flush_s < math.inf:
            raise ConfigError("flush_s", f"must be a number of seconds >= 0, got {flush_s!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self.flush_every = flush_every
        self.flush_s = float(flush_s)
        self.written = 0
        self._unflushed_since: float | None = None

    def write(self, label: LabelEvent) -> None:
        line = json.dumps(label.to_dict(), separators=(",", ":"), allow_nan=False)
        self._fh.write(line + "\n")
        self.written += 1
        if self.written % self.flush_every == 0:
            self._flush()
        elif self._unflushed_since is None:
            self._unflushed_since = time.monotonic()
        elif time.monotonic() - self._unflushed_since >= self.flush_s:
            self._flush()

    def _flush(self) -> None:
        self._fh.flush()
        self._unflushed_since = None

    def observe(self, status: dict) -> None:
        """The daemon's periodic call: flush labels written more than ``flush_s`` ago."""
        if self._unflushed_since is not None and time.monotonic() - self._unflushed_since >= self.flush_s:
            self._flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()

"""JSON-lines label sink: one JSON object per label, appended to a file (flushed per label by default)."""

from __future__ import annotations

import json
from pathlib import Path

from streamlsm.errors import ConfigError
from streamlsm.events import LabelEvent

__all__ = ["JsonlSink"]


class JsonlSink:
    """Appends ``label.to_dict()`` as a JSON line to ``path``; ``flush_every`` labels per flush."""

    def __init__(self, path: str | Path, flush_every: int = 1) -> None:
        if type(flush_every) is not int or flush_every < 1:
            raise ConfigError("flush_every", f"must be an integer >= 1, got {flush_every!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self.flush_every = flush_every
        self.written = 0

    def write(self, label: LabelEvent) -> None:
        self._fh.write(json.dumps(label.to_dict(), separators=(",", ":")) + "\n")
        self.written += 1
        if self.written % self.flush_every == 0:
            self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()

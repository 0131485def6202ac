"""Lab Streaming Layer label sink: every label becomes a sample of an LSL Markers outlet.

The outlet is an irregular-rate stream of one string channel (type ``Markers``, the convention
LabRecorder and BCI software read event markers from). A sample is the label text (``format =
"label"``, default) or the whole LabelEvent as a JSON object (``"json"``). Its LSL timestamp is the
moment the label was published, on LSL's clock (``local_clock`` minus the label's age), so that
a recorder aligns it with the signals it records. The stream's XML description holds the
provenance: software and version, host, the options given (``bundle_hash``, ``seed`` and any
``provenance`` key-values), and the field list of the JSON form. Needs ``pylsl`` (optional extra
``lsl``; its wheel ships liblsl).
"""

from __future__ import annotations

import json
import socket
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from streamlsm.errors import ConfigError
from streamlsm.events import LabelEvent

__all__ = ["LSLMarkerSink", "FORMATS"]

FORMATS = ("label", "json")


def _pylsl():
    try:
        import pylsl
    except ImportError:
        raise ConfigError("lsl", "the LSL sink needs pylsl: pip install 'streamlsm[lsl]'") from None
    return pylsl


def _version() -> str:
    try:
        return version("streamlsm")
    except PackageNotFoundError:
        return "unknown"


class LSLMarkerSink:
    """An LSL Markers outlet named ``name`` (``source_id`` lets recorders re-find it after a
    restart; default ``streamlsm:<name>@<host>``). ``format``: "label" or "json". ``provenance``:
    extra key-values written into the description. ``written`` counts samples pushed, ``dropped``
    labels written after ``close``."""

    def __init__(self, name: str = "streamlsm-labels", *, format: str = "label",
                 source_id: str | None = None, bundle_hash: str = "", seed: int | None = None,
                 provenance: dict[str, Any] | None = None, stream_type: str = "Markers") -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("name", f"must be a non-empty string, got {name!r}")
        if format not in FORMATS:
            raise ConfigError("format", f"must be one of {list(FORMATS)}, got {format!r}")
        if provenance is not None and not isinstance(provenance, dict):
            raise ConfigError("provenance", f"must be a table of key-values, got {provenance!r}")
        lsl = _pylsl()
        self._lsl = lsl
        self.format = format
        host = socket.gethostname()
        self.source_id = source_id or f"streamlsm:{name}@{host}"
        info = lsl.StreamInfo(name, stream_type, 1, lsl.IRREGULAR_RATE, lsl.cf_string, self.source_id)
        desc = info.desc()
        ch = desc.append_child("channels").append_child("channel")
        ch.append_child_value("label", "label" if format == "label" else "label_json")
        ch.append_child_value("type", "Marker")
        prov = desc.append_child("provenance")
        prov.append_child_value("software", "streamlsm")
        prov.append_child_value("version", _version())
        prov.append_child_value("host", host)
        prov.append_child_value("created_unix_s", f"{time.time():.3f}")
        prov.append_child_value("format", format)
        if bundle_hash:
            prov.append_child_value("bundle_hash", str(bundle_hash))
        if seed is not None:
            prov.append_child_value("seed", str(seed))
        for key, value in (provenance or {}).items():
            prov.append_child_value(str(key), str(value))
        if format == "json":
            fields = desc.append_child("fields")
            for key in LabelEvent("", 0, 0, 0, "", 0.0).to_dict():
                fields.append_child_value("field", key)
        self._outlet = lsl.StreamOutlet(info)
        self.info = info
        self.written = 0
        self.dropped = 0

    def write(self, label: LabelEvent) -> None:
        if self._outlet is None:  # written after close: counted, not raised into the daemon
            self.dropped += 1
            return
        text = label.label if self.format == "label" else json.dumps(label.to_dict(), separators=(",", ":"))
        now = self._lsl.local_clock()
        age_s = max(0, time.time_ns() - label.published_ns) / 1e9 if label.published_ns else 0.0
        self._outlet.push_sample([text], now - age_s)
        self.written += 1

    def have_consumers(self) -> bool:
        """Whether an inlet is connected (LabRecorder, a BCI program)."""
        return bool(self._outlet.have_consumers())

    def close(self) -> None:
        outlet, self._outlet = self._outlet, None
        if outlet is not None:
            del outlet  # liblsl destroys the outlet when its last reference goes
